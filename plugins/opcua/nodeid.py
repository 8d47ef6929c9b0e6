"""Node ids as people write them, parsed without importing asyncua.

Every standard form is accepted: ``i=85`` (namespace 0), ``ns=2;i=1001``, ``ns=2;s=Line1.Speed``,
``ns=2;g=72962B91-FA75-4AE6-8D28-B404DC7DAF63``, ``ns=2;b=M/RbKBsRVkePCePcx24oRA==`` (opaque, base64),
and the namespace-URI form ``nsu=urn:plc:line1;s=Speed``. The URI form is resolved against the
server's namespace array at every connect, because a server may hand out different indices after a
restart (OPC 10000-3 §8.2.4; OPC 10000-6 §5.3.1.10).
"""

from __future__ import annotations

import base64
import binascii
import re
import uuid
from collections.abc import Sequence
from dataclasses import dataclass

_KINDS = ("i", "s", "g", "b")
_NS = re.compile(r"^(ns|nsu)=([^;]*);(.*)$", re.DOTALL)


@dataclass(frozen=True, slots=True)
class NodeRef:
    """A parsed node id: the namespace (an index or a URI) and the identifier part.

    Attributes:
        index: the namespace index when written as ``ns=``; 0 when no namespace is given.
        uri: the namespace URI when written as ``nsu=``; ``None`` otherwise.
        ident: the identifier part, normalised, such as ``s=Line1.Speed`` or ``i=1001``.
    """

    index: int | None
    uri: str | None
    ident: str

    def resolve(self, namespaces: Sequence[str]) -> str:
        """The node id as ``ns=<index>;<ident>`` for the server's current namespace array.

        Raises:
            LookupError: the namespace URI is not in the server's namespace array.
        """
        if self.uri is None:
            index = self.index or 0
        else:
            try:
                index = list(namespaces).index(self.uri)
            except ValueError:
                raise LookupError(f"namespace {self.uri!r} is not on the server") from None
        return f"ns={index};{self.ident}" if index else self.ident

    def __str__(self) -> str:
        if self.uri is not None:
            return f"nsu={self.uri};{self.ident}"
        return f"ns={self.index};{self.ident}" if self.index else self.ident


def parse(text: str) -> NodeRef:
    """Parse one node id string.

    Raises:
        ValueError: with a message that shows the accepted forms.
    """
    raw = text.strip()
    index: int | None = None
    uri: str | None = None
    rest = raw
    match = _NS.match(raw)
    if match:
        key, value, rest = match.groups()
        if key == "ns":
            if not value.strip().isdigit() or int(value) > 65535:
                raise ValueError(f"bad node id {text!r}: ns= takes a namespace index 0..65535")
            index = int(value)
        else:
            if not value:
                raise ValueError(f"bad node id {text!r}: nsu= takes a namespace URI such as urn:plc:line1")
            uri = value
    return NodeRef(index, uri, _identifier(text, rest))


def _identifier(text: str, part: str) -> str:
    kind, sep, value = part.partition("=")
    kind = kind.strip()
    if not sep or kind not in _KINDS:
        raise ValueError(
            f"bad node id {text!r}: write ns=<index>;<id> or nsu=<uri>;<id> where <id> is "
            "i=<number>, s=<string>, g=<guid> or b=<base64>"
        )
    if kind == "s":
        if not value:
            raise ValueError(f"bad node id {text!r}: s= needs a non-empty string")
        return f"s={value}"
    if kind == "i":
        if not value.strip().isdigit() or int(value) > 2**32 - 1:
            raise ValueError(f"bad node id {text!r}: i= takes an unsigned 32-bit number")
        return f"i={int(value)}"
    if kind == "g":
        try:
            return f"g={uuid.UUID(value.strip())}"
        except ValueError:
            raise ValueError(f"bad node id {text!r}: g= takes a GUID like 72962b91-fa75-4ae6-...") from None
    try:
        base64.b64decode(value.strip().encode("ascii"), validate=True)
    except (binascii.Error, ValueError):
        raise ValueError(f"bad node id {text!r}: b= takes base64 bytes") from None
    return f"b={value.strip()}"
