"""Walk a server's address space and print ``[[sources.tags]]`` entries ready to paste.

Node ids are written in the ``nsu=<namespace uri>;...`` form, which keeps working when the server
renumbers its namespaces. Namespace 0 (the server's own diagnostics) is skipped. Variables whose
type the agent does not carry (arrays, structures, dates, byte strings) are listed as comments.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass

from asyncua import Client, ua

from plugins.opcua import nodeid

SUPPORTED = {
    "Boolean", "SByte", "Byte", "Int16", "UInt16", "Int32", "UInt32", "Int64", "UInt64",
    "Float", "Double", "String", "LocalizedText", "Number", "Integer", "UInteger", "Enumeration",
}  # fmt: skip
BATCH = 500


@dataclass(frozen=True)
class Variable:
    """One variable found by ``browse``.

    Attributes:
        path: browse names from the root, joined by ``/``.
        node: node id in the ``nsu=`` form (or plain for namespace 0).
        data_type: the data type's name, e.g. ``Double``.
        array: True when the value is an array (ValueRank 0 or more).
    """

    path: str
    node: str
    data_type: str
    array: bool

    @property
    def supported(self) -> bool:
        return not self.array and self.data_type in SUPPORTED


def node_text(node: ua.NodeId, namespaces: list[str]) -> str:
    """``nsu=<uri>;<id>`` for namespaces other than 0, so the id survives index changes."""
    plain = node.to_string()
    if node.NamespaceIndex == 0 or node.NamespaceIndex >= len(namespaces):
        return plain
    return f"nsu={namespaces[node.NamespaceIndex]};{plain.split(';', 1)[1]}"


async def browse(client: Client, root: str = "i=85", depth: int = 3) -> list[Variable]:
    """Every variable up to ``depth`` levels below ``root`` (default: the Objects folder)."""
    namespaces = await client.get_namespace_array()
    start = ua.NodeId.from_string(nodeid.parse(root).resolve(namespaces))
    found: list[tuple[str, ua.NodeId]] = []
    level: list[tuple[str, ua.NodeId]] = [("", start)]
    for _ in range(depth):
        nxt: list[tuple[str, ua.NodeId]] = []
        for path, node in level:
            for ref in await client.get_node(node).get_children_descriptions():
                child = ref.NodeId
                if child.NamespaceIndex == 0:
                    continue
                name = ref.BrowseName.Name or child.to_string()
                child_path = f"{path}/{name}" if path else name
                if ref.NodeClass == ua.NodeClass.Variable:
                    found.append((child_path, child))
                elif ref.NodeClass == ua.NodeClass.Object:
                    nxt.append((child_path, child))
        level = nxt
    return await _describe(client, found, namespaces)


async def _describe(
    client: Client, found: list[tuple[str, ua.NodeId]], namespaces: list[str]
) -> list[Variable]:
    out: list[Variable] = []
    type_names: dict[ua.NodeId, str] = {}
    for start in range(0, len(found), BATCH):
        chunk = found[start : start + BATCH]
        ids = [node for _, node in chunk]
        types = await client.uaclient.read_attributes(ids, ua.AttributeIds.DataType)
        ranks = await client.uaclient.read_attributes(ids, ua.AttributeIds.ValueRank)
        for (path, node), dtype, rank in zip(chunk, types, ranks, strict=True):
            type_id = dtype.Value.Value if dtype.Value is not None else None
            name = await _type_name(client, type_id, type_names)
            is_array = rank.Value is not None and isinstance(rank.Value.Value, int) and rank.Value.Value >= 0
            out.append(Variable(path, node_text(node, namespaces), name, is_array))
    return out


async def _type_name(client: Client, type_id: ua.NodeId | None, cache: dict[ua.NodeId, str]) -> str:
    if type_id is None:
        return "Unknown"
    if type_id not in cache:
        ident = type_id.Identifier
        if type_id.NamespaceIndex == 0 and isinstance(ident, int) and ident in ua.ObjectIdNames:
            cache[type_id] = ua.ObjectIdNames[ident]
        else:
            try:
                cache[type_id] = (await client.get_node(type_id).read_browse_name()).Name
            except Exception:  # a type we cannot name is still listed, as its node id
                cache[type_id] = type_id.to_string()
    return cache[type_id]


def tag_name(path: str) -> str:
    """A valid tag name from a browse path: ``Line 1/Speed`` -> ``Line_1.Speed``."""
    name = re.sub(r"[^A-Za-z0-9_.\-]", "_", path.replace("/", "."))
    return name if re.match(r"^[A-Za-z0-9_]", name) else f"_{name}"


def to_toml(variables: list[Variable]) -> str:
    """``[[sources.tags]]`` entries; unsupported variables appear commented out with the reason."""
    lines = ['# Paste under your [[sources]] type = "opcua" section.', ""]
    used: set[str] = set()
    for var in variables:
        name = base = tag_name(var.path)
        n = 2
        while name in used:
            name, n = f"{base}_{n}", n + 1
        used.add(name)
        kind = f"{var.data_type}[]" if var.array else var.data_type
        prefix = "" if var.supported else "# "
        lines.append(f"# {var.path} ({kind})" + ("" if var.supported else ": type not supported, skipped"))
        lines.append(f"{prefix}[[sources.tags]]")
        lines.append(f"{prefix}name = {json.dumps(name)}")
        lines.append(f"{prefix}node = {json.dumps(var.node)}")
        lines.append("")
    return "\n".join(lines)
