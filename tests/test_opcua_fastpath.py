"""The fast publish path (issue 17) gives the readings asyncua's decoder gives, or steps aside.

Every PublishResponse here is built with asyncua and encoded by asyncua (``struct_to_binary``), the
bytes a server sends. The reference is asyncua's own decoder plus ``status.reading``, the path the
agent took before; ``fastpublish.decode`` plus ``ChangeReader`` must give equal readings, or return
``None`` so that asyncua decodes the response.
"""

from __future__ import annotations

import datetime as dt
import math
import random
import struct
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
from asyncua import ua
from asyncua.common.utils import Buffer
from asyncua.ua.ua_binary import struct_from_binary, struct_to_binary

from agent.batch import ReadingBatch, parts
from agent.records import Quality, Reading
from plugins.opcua.changes import ChangeReader, stamp
from plugins.opcua.fastpublish import Changes, decode
from plugins.opcua.status import reading
from tests.opcua_server import plant_server
from tests.test_opcua_source import Collector, make_source, running

VT = ua.VariantType
NUMERIC = [VT.Boolean, VT.SByte, VT.Byte, VT.Int16, VT.UInt16, VT.Int32, VT.UInt32, VT.Int64, VT.UInt64]
FLOATS = [VT.Float, VT.Double]
CODES = [0, 0, 0, ua.StatusCodes.UncertainLastUsableValue, ua.StatusCodes.BadNodeIdUnknown, 0x00A80000]
NOW = 1_765_000_000.5
TAGS = {h: f"Line1.T{h}" for h in range(1, 400)}


def _value(rng: random.Random, vt: VT) -> Any:
    if vt is VT.Boolean:
        return rng.random() < 0.5
    if vt in FLOATS:
        special = [math.nan, math.inf, -math.inf, 0.0, -0.0, 1e300 if vt is VT.Double else 3.5]
        x = rng.choice(special) if rng.random() < 0.1 else rng.uniform(-1e6, 1e6)
        return x if vt is VT.Double else float(ua.Float(x)) if math.isfinite(x) else x
    bits = {VT.SByte: 8, VT.Int16: 16, VT.Int32: 32, VT.Int64: 64}
    if vt in bits:
        n = bits[vt]
        return rng.randrange(-(1 << (n - 1)), 1 << (n - 1))
    n = {VT.Byte: 8, VT.UInt16: 16, VT.UInt32: 32, VT.UInt64: 64}[vt]
    return rng.randrange(0, 1 << n)


def _stamp(rng: random.Random) -> dt.datetime | None:
    pick = rng.random()
    if pick < 0.3:
        return None
    if pick < 0.35:
        return dt.datetime(1601, 1, 1, tzinfo=dt.UTC)  # "no timestamp", as some servers send it
    if pick < 0.37:
        return dt.datetime(9999, 12, 31, 23, 59, 59, tzinfo=dt.UTC)
    return dt.datetime(2026, 12, 7, tzinfo=dt.UTC) + dt.timedelta(microseconds=rng.randrange(10**11))


def _data_value(rng: random.Random, vt: VT | None, shared: dict[str, Any] | None) -> ua.DataValue:
    if shared is not None:  # one scan: one status, one timestamp
        dv = ua.DataValue(ua.Variant(_value(rng, vt), vt), **shared)
        return dv
    variant = ua.Variant(None) if vt is None else ua.Variant(_value(rng, vt), vt)
    dv = ua.DataValue(
        variant,
        StatusCode=ua.StatusCode(rng.choice(CODES)),
        SourceTimestamp=_stamp(rng),
        ServerTimestamp=_stamp(rng),
    )
    if rng.random() < 0.05:
        object.__setattr__(dv, "Value", None)  # a DataValue without a value
    if rng.random() < 0.2:
        dv.StatusCode = None
    return dv


def _notification(rng: random.Random) -> ua.DataChangeNotification:
    n = rng.choice([1, 2, 7, 50, 300])
    handles = rng.sample(range(1, 400), n) if rng.random() < 0.97 else [*range(1, n), 999]
    uniform = rng.random() < 0.5
    vt = rng.choice(NUMERIC + FLOATS)
    shared = None
    if uniform:
        stamp_at = _stamp(rng)
        shared = {"SourceTimestamp": stamp_at, "ServerTimestamp": rng.choice([stamp_at, None])}
    items = []
    for h in handles:
        item_vt = vt if uniform else rng.choice([*NUMERIC, *FLOATS, None])
        items.append(ua.MonitoredItemNotification(ClientHandle=h, Value=_data_value(rng, item_vt, shared)))
    return ua.DataChangeNotification(MonitoredItems=items)


def _response(data: list[Any], sequences: Sequence[int] = (7, 8)) -> bytes:
    message = ua.NotificationMessage(
        SequenceNumber=8, PublishTime=dt.datetime(2026, 12, 7, 1, 2, 3, 456789), NotificationData=data
    )
    result = ua.PublishResult(
        SubscriptionId=42, AvailableSequenceNumbers=list(sequences), NotificationMessage=message
    )
    return bytes(struct_to_binary(ua.PublishResponse(Parameters=result)))


def _by_asyncua(buf: bytes) -> tuple[ua.PublishResponse, list[Reading]]:
    response = struct_from_binary(ua.PublishResponse, Buffer(buf))
    out = []
    for notification in response.Parameters.NotificationMessage.NotificationData:
        for item in notification.MonitoredItems:
            if item.ClientHandle in TAGS:
                out.append(reading(TAGS[item.ClientHandle], item.Value, NOW))
    return response, out


def _by_fast_path(response: ua.PublishResponse) -> list[Reading]:
    reader = ChangeReader(TAGS)
    out: list[Reading] = []
    for changes in response.Parameters.NotificationMessage.NotificationData:
        assert isinstance(changes, Changes)
        out.extend(reader(changes, NOW))
    return out


def _same(a: Reading, b: Reading) -> bool:
    nan = (
        isinstance(a.value, float)
        and isinstance(b.value, float)
        and math.isnan(a.value)
        and math.isnan(b.value)
    )
    return (a.tag, a.ts, a.quality, a.reason) == (b.tag, b.ts, b.quality, b.reason) and (
        nan or (a.value == b.value and type(a.value) is type(b.value))
    )


@pytest.mark.parametrize("seed", range(60))
def test_fast_path_readings_equal_asyncua_readings(seed: int) -> None:
    rng = random.Random(seed)
    data = [_notification(rng) for _ in range(rng.choice([1, 1, 2, 3]))]
    buf = _response(data)
    expected_response, expected = _by_asyncua(buf)
    fast = decode(buf)
    assert fast is not None
    got = _by_fast_path(fast)
    assert len(got) == len(expected)
    assert all(_same(a, b) for a, b in zip(got, expected, strict=True)), (got[:3], expected[:3])
    assert fast.Parameters.SubscriptionId == expected_response.Parameters.SubscriptionId == 42
    assert fast.Parameters.AvailableSequenceNumbers == [7, 8]
    assert fast.Parameters.NotificationMessage.SequenceNumber == 8
    assert (
        fast.Parameters.NotificationMessage.PublishTime
        == expected_response.Parameters.NotificationMessage.PublishTime
    )


def test_one_good_scan_of_one_type_is_one_batch_with_float_values() -> None:
    at = dt.datetime(2026, 12, 7, 8, 0, 0, 123456, tzinfo=dt.UTC)
    items = [
        ua.MonitoredItemNotification(
            ClientHandle=h,
            Value=ua.DataValue(ua.Variant(h * 10, VT.Int32), SourceTimestamp=at, ServerTimestamp=at),
        )
        for h in (3, 1, 2)
    ]
    fast = decode(_response([ua.DataChangeNotification(MonitoredItems=items)]))
    assert fast is not None
    (changes,) = fast.Parameters.NotificationMessage.NotificationData
    readings = ChangeReader(TAGS)(changes, NOW)
    assert isinstance(readings, ReadingBatch)
    assert readings.layout.tags == ("Line1.T3", "Line1.T1", "Line1.T2")
    assert list(readings.values) == [30.0, 10.0, 20.0] and all(type(v) is float for v in readings.values)
    assert readings.ts == (at - dt.datetime(1970, 1, 1, tzinfo=dt.UTC)).total_seconds()


def test_picoseconds_are_read_in_the_specification_order() -> None:
    """OPC 10000-6 5.2.2.17: SourceTimestamp, SourcePicoseconds, ServerTimestamp, ServerPicoseconds.
    (asyncua 2.1 encodes and decodes both picoseconds after both timestamps, so this response is built
    by hand, as node-opcua, which sends picoseconds, writes it.)"""
    source = ua.datetime_to_win_epoch(dt.datetime(2026, 12, 7, 1, tzinfo=dt.UTC))
    server = ua.datetime_to_win_epoch(dt.datetime(2026, 12, 7, 2, tzinfo=dt.UTC))
    item = struct.pack("<IBBd", 1, 0x3D, 11, 4.5) + struct.pack("<qHqH", source, 1234, server, 5678)
    only_server = struct.pack("<IBBd", 2, 0x39, 11, 6.5) + struct.pack("<HqH", 1234, server, 5678)
    body = struct.pack("<i", 2) + item + only_server + struct.pack("<i", 0)
    good = _response([ua.DataChangeNotification(MonitoredItems=[])])
    empty = struct.pack("<ii", 0, 0)  # no items, no diagnostic infos
    at = good.index(struct.pack("<i", len(empty)) + empty) + 4
    length = struct.unpack_from("<i", good, at - 4)[0]
    assert length == len(empty)
    buf = good[: at - 4] + struct.pack("<i", len(body)) + body + good[at + len(empty) :]
    fast = decode(buf)
    assert fast is not None
    (changes,) = fast.Parameters.NotificationMessage.NotificationData
    assert changes.source == (source, 0) and changes.server == (server, server)
    got = ChangeReader(TAGS)(changes, NOW)
    hour = dt.datetime(2026, 12, 7, tzinfo=dt.UTC).timestamp()
    assert list(got) == [Reading("Line1.T1", hour + 3600, 4.5), Reading("Line1.T2", hour + 7200, 6.5)]


def test_stamp_follows_asyncua_datetimes() -> None:
    for ticks in (0, 5, 116_444_736_000_000_000, 134_090_000_000_123_457, 2_650_467_743_990_000_000, 2**62):
        expected = ua.win_epoch_to_datetime(ticks)
        want = (
            None
            if expected.year < 1700
            else (expected - dt.datetime(1970, 1, 1, tzinfo=dt.UTC)).total_seconds()
        )
        assert stamp(ticks) == want, ticks


def _status_change() -> ua.StatusChangeNotification:
    return ua.StatusChangeNotification(Status=ua.StatusCode(ua.StatusCodes.BadTimeout))


@pytest.mark.parametrize(
    "data",
    [
        [
            ua.DataChangeNotification(
                MonitoredItems=[ua.MonitoredItemNotification(1, ua.DataValue(ua.Variant("x")))]
            )
        ],
        [
            ua.DataChangeNotification(
                MonitoredItems=[ua.MonitoredItemNotification(1, ua.DataValue(ua.Variant([1.0, 2.0])))]
            )
        ],
        [_status_change()],
        [ua.EventNotificationList(Events=[])],
    ],
    ids=["string", "array", "status-change", "events"],
)
def test_what_the_fast_path_does_not_know_is_left_to_asyncua(data: list[Any]) -> None:
    assert decode(_response(data)) is None


def test_service_faults_diagnostics_and_truncated_bytes_are_left_to_asyncua() -> None:
    buf = _response([_notification(random.Random(1))])
    assert decode(buf) is not None
    assert decode(buf[:-1]) is None and decode(buf + b"\x00") is None
    for cut in range(0, len(buf), 97):
        assert decode(buf[:cut]) is None
    faulted = ua.PublishResponse()
    faulted.ResponseHeader.ServiceResult = ua.StatusCode(ua.StatusCodes.BadTooManyPublishRequests)
    assert decode(bytes(struct_to_binary(faulted))) is None
    with_strings = ua.PublishResponse()
    with_strings.ResponseHeader.StringTable = ["x"]
    assert decode(bytes(struct_to_binary(with_strings))) is None
    assert decode(bytes(struct_to_binary(ua.ReadResponse()))) is None


class Parts(Collector):
    """A ``Collector`` that also keeps what each emit was, to see the batches."""

    def __init__(self) -> None:
        super().__init__()
        self.emits: list[Sequence[Reading]] = []

    async def __call__(self, batch: Sequence[Reading]) -> None:
        self.emits.append(batch)
        await super().__call__(batch)


async def test_a_real_server_scan_arrives_as_batches_through_the_fast_path(port: int, tmp_path: Path) -> None:
    async with plant_server(port, 20) as plant:
        tags = [{"name": f"v{i}", "node": f"ns={plant.ns};s=Line1.V{i}"} for i in range(20)]
        source, got = make_source(port, tmp_path, tags), Parts()
        async with running(source.run(got)):
            await got.wait_for(lambda: got.latest("v19") is not None)
            await plant.set_all(2.5)
            await got.wait_for(lambda: all((r := got.latest(f"v{i}")) and r.value == 2.5 for i in range(20)))
        assert source.ctx.status.counters["publish_decoded_fast"] > 0
        assert any(isinstance(part, ReadingBatch) for emit in got.emits for part in parts(emit))
        assert all(r.quality is Quality.GOOD for r in got.readings)


def test_corrupted_responses_never_raise_from_the_fast_path() -> None:
    """Whatever a server (or a broken link) sends, ``decode`` answers a response or ``None``."""
    rng = random.Random(17)
    buf = bytearray(_response([_notification(rng), _notification(rng)]))
    for _ in range(2000):
        mutated = bytearray(buf)
        for _ in range(rng.choice([1, 2, 5])):
            mutated[rng.randrange(len(mutated))] = rng.randrange(256)
        decoded = decode(bytes(mutated))
        if decoded is not None:
            for changes in decoded.Parameters.NotificationMessage.NotificationData:
                ChangeReader(TAGS)(changes, NOW)
