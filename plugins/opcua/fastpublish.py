"""A PublishResponse of data changes decoded by ``struct`` into columns (issue 17). Pure.

asyncua decodes each notification into five dataclass objects (MonitoredItemNotification, DataValue,
Variant, two datetimes) through its generic decoder: about 18 us per item here, most of W3's cost.
``decode`` reads the common shape of a PublishResponse directly: a response header without
diagnostics, and notification data made only of DataChangeNotifications whose values are numeric or
boolean scalars. The items of one notification are read by one ``struct.iter_unpack`` when they all
have the first item's shape (the usual case: one server, one kind of variable), else one by one.

Anything else (a service fault, diagnostics, a string table, a status change or event notification,
an array, a string or structure value, a mask bit this module does not know, bytes left over) makes
``decode`` return ``None``, and the caller decodes the response with asyncua as before: the fast path
only ever narrows what it takes, never what the agent accepts. The ``ResponseHeader`` of what
``decode`` returns is left at its default: the publish loop reads only the result.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Any

from asyncua import ua

_PUBLISH_RESPONSE = ua.ObjectIds.PublishResponse_Encoding_DefaultBinary
_DATA_CHANGE = ua.ObjectIds.DataChangeNotification_Encoding_DefaultBinary
_I32 = struct.Struct("<i")
_U32 = struct.Struct("<I")
_HEADER = struct.Struct("<qIIB")  # Timestamp, RequestHandle, ServiceResult, ServiceDiagnostics mask
_RESULT = struct.Struct("<I")  # SubscriptionId
_MESSAGE = struct.Struct("<?Iq")  # MoreNotifications, SequenceNumber, PublishTime
_ITEM = struct.Struct("<IB")  # ClientHandle, DataValue encoding mask
_EXTENSION = struct.Struct("<Bi")  # encoding (1: binary body), body length
# Variant built-in type ids (OPC 10000-6 5.1.2) that are fixed-size numeric or boolean scalars.
_SCALARS = {1: "?", 2: "b", 3: "B", 4: "h", 5: "H", 6: "i", 7: "I", 8: "q", 9: "Q", 10: "f", 11: "d"}
_SCALAR_STRUCTS = {t: struct.Struct("<" + f) for t, f in _SCALARS.items()}
_KNOWN_MASK = 0x3F  # value, status, source ts, server ts, source ps, server ps
_MAX_ITEMS = 1 << 20


class _Off(Exception):
    """The response leaves the fast path; ``decode`` answers ``None``."""


@dataclass(slots=True)
class Changes:
    """One DataChangeNotification as columns, item ``i`` across them.

    ``values[i]`` is the decoded scalar (``None``: the DataValue had no value or a null Variant);
    ``codes[i]`` the status code (0 when absent); ``source[i]`` / ``server[i]`` the timestamps as
    OPC UA DateTime ticks (100 ns since 1601; 0 when absent). A column that is all absent is ``None``.
    ``vtype`` is the Variant type every value has, or 0 when they differ or some are null.
    """

    handles: tuple[int, ...]
    values: tuple[Any, ...]
    codes: tuple[int, ...] | None
    source: tuple[int, ...] | None
    server: tuple[int, ...] | None
    vtype: int


def _nodeid(buf: bytes, off: int) -> tuple[int, int, int]:
    """A numeric NodeId's (namespace, identifier, next offset); other forms leave the fast path."""
    enc = buf[off]
    if enc == 0:
        return 0, buf[off + 1], off + 2
    if enc == 1:
        return buf[off + 1], buf[off + 2] | buf[off + 3] << 8, off + 4
    if enc == 2:
        ns, ident = struct.unpack_from("<HI", buf, off + 1)
        return ns, ident, off + 7
    raise _Off


def _count(buf: bytes, off: int, most: int = _MAX_ITEMS) -> tuple[int, int]:
    (n,) = _I32.unpack_from(buf, off)
    if n > most:
        raise _Off
    return max(n, 0), off + 4


def decode(buf: bytes) -> ua.PublishResponse | None:
    """The PublishResponse in ``buf`` (its TypeId first, as asyncua's request returns it) with each
    DataChangeNotification as a ``Changes`` in ``NotificationMessage.NotificationData``, or ``None``
    when the response is off the fast path (see the module docstring)."""
    try:
        return _decode(buf)
    except (_Off, struct.error, IndexError):
        return None


def _decode(buf: bytes) -> ua.PublishResponse:
    ns, ident, off = _nodeid(buf, 0)
    if (ns, ident) != (0, _PUBLISH_RESPONSE):
        raise _Off
    _, _, service_result, diagnostics = _HEADER.unpack_from(buf, off)
    off += _HEADER.size
    strings, off = _count(buf, off, 0)
    ns, ident, off = _nodeid(buf, off)
    if service_result or diagnostics or strings or (ns, ident) != (0, 0) or buf[off] != 0:
        raise _Off
    (subscription,) = _RESULT.unpack_from(buf, off + 1)
    available, off = _count(buf, off + 5)
    sequences = list(struct.unpack_from(f"<{available}I", buf, off))
    more, sequence, published = _MESSAGE.unpack_from(buf, off + 4 * available)
    off += 4 * available + _MESSAGE.size
    notifications, off = _count(buf, off)
    data: list[Any] = []
    for _ in range(notifications):
        ns, ident, off = _nodeid(buf, off)
        encoding, length = _EXTENSION.unpack_from(buf, off)
        off += _EXTENSION.size
        if (ns, ident) != (0, _DATA_CHANGE) or encoding != 1:
            raise _Off
        changes, end = _data_change(buf, off)
        if end != off + length:
            raise _Off
        data.append(changes)
        off = end
    results, off = _count(buf, off)
    off += 4 * results
    _, off = _count(buf, off, 0)  # none allowed: a diagnostic leaves the fast path
    if off != len(buf):
        raise _Off
    message = ua.NotificationMessage(
        SequenceNumber=sequence, PublishTime=ua.win_epoch_to_datetime(published), NotificationData=data
    )
    result = ua.PublishResult(
        SubscriptionId=subscription,
        AvailableSequenceNumbers=sequences,
        MoreNotifications=more,
        NotificationMessage=message,
    )
    return ua.PublishResponse(Parameters=result)


def _layout(buf: bytes, off: int) -> tuple[str, int] | None:
    """The ``struct`` format of an item shaped like the one at ``off`` and its Variant type, or
    ``None`` when that item is not a fixed-size one."""
    mask = buf[off + 4]
    if mask & ~_KNOWN_MASK:
        raise _Off
    fmt, vtype = "IB", 0
    if mask & 0x01:
        vtype = buf[off + 5]
        scalar = _SCALARS.get(vtype)
        if scalar is None:
            return None  # a null Variant or a type off the fast path: the item loop decides
        fmt += "B" + scalar
    fmt += ("I" if mask & 0x02 else "") + ("q" if mask & 0x04 else "") + ("H" if mask & 0x10 else "")
    fmt += ("q" if mask & 0x08 else "") + ("H" if mask & 0x20 else "")
    return fmt, vtype


def _data_change(buf: bytes, off: int) -> tuple[Changes, int]:
    """The DataChangeNotification at ``off`` and the offset after it."""
    n, off = _count(buf, off)
    shape = _layout(buf, off) if n else None
    changes = None
    if shape is not None:
        changes, end = _uniform(buf, off, n, *shape)
    if changes is None:
        changes, end = _items(buf, off, n)
    _, end = _count(buf, end, 0)  # none allowed, as above
    return changes, end


def _uniform(buf: bytes, off: int, n: int, fmt: str, vtype: int) -> tuple[Changes | None, int]:
    """All ``n`` items by one ``iter_unpack``, when each has the first one's mask and type."""
    item = struct.Struct("<" + fmt)
    end = off + n * item.size
    if end > len(buf):
        return None, off
    columns = list(zip(*item.iter_unpack(memoryview(buf)[off:end]), strict=True))
    mask = columns[1][0]
    if columns[1].count(mask) != n or (vtype and columns[2].count(vtype) != n):
        return None, off
    at = 2
    values: tuple[Any, ...] = (None,) * n
    if mask & 0x01:
        values, at = columns[3], 4
    codes = source = server = None
    if mask & 0x02:
        codes, at = columns[at], at + 1
    if mask & 0x04:
        source, at = columns[at], at + 1
    at += 1 if mask & 0x10 else 0
    if mask & 0x08:
        server = columns[at]
    return Changes(columns[0], values, codes, source, server, vtype), end


def _items(buf: bytes, off: int, n: int) -> tuple[Changes, int]:
    """The ``n`` items one by one (their shapes differ, or some value is null)."""
    handles, values, codes, source, server = [], [], [], [], []
    vtypes = set()
    for _ in range(n):
        handle, mask = _ITEM.unpack_from(buf, off)
        off += _ITEM.size
        if mask & ~_KNOWN_MASK:
            raise _Off
        value, vtype = None, 0
        if mask & 0x01:
            vtype = buf[off]
            off += 1
            if vtype:
                scalar = _SCALAR_STRUCTS.get(vtype)
                if scalar is None:
                    raise _Off  # an array, a string, a structure...: asyncua decodes it
                (value,) = scalar.unpack_from(buf, off)
                off += scalar.size
        vtypes.add(vtype)
        code = source_ts = server_ts = 0
        if mask & 0x02:
            (code,) = _U32.unpack_from(buf, off)
            off += 4
        if mask & 0x04:
            (source_ts,) = struct.unpack_from("<q", buf, off)
            off += 8
        off += 2 if mask & 0x10 else 0
        if mask & 0x08:
            (server_ts,) = struct.unpack_from("<q", buf, off)
            off += 8
        off += 2 if mask & 0x20 else 0
        handles.append(handle)
        values.append(value)
        codes.append(code)
        source.append(source_ts)
        server.append(server_ts)
    vtype = vtypes.pop() if len(vtypes) == 1 else 0
    changes = Changes(tuple(handles), tuple(values), tuple(codes), tuple(source), tuple(server), vtype)
    return changes, off
