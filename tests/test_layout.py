"""The layout holds: imports point one way (no cycles, no import up the data flow), protocol libraries are
imported only inside ``plugins/``, and ``agent/`` reaches ``plugins/`` only through entry points.

The graph is read with ``ast`` from the source files, every import counted: module level, inside
functions and under ``TYPE_CHECKING`` alike, since a cycle hidden in a function is still a cycle.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("agent", "plugins")
PROTOCOL_LIBRARIES = ("asyncua", "pymodbus", "paho")

# Lower layers first. A module may import its own layer and the layers before it, never a later one.
LAYERS: tuple[tuple[str, ...], ...] = (
    (
        "agent",
        "agent.errors",
        "agent.records",
        "agent.batch",
        "agent.config",
        "agent.config.base",
        "agent.config.sections",
    ),
    ("agent.plugin", "agent.registry", "agent.supervise"),
    ("agent.config.load", "agent.config.reference"),
    ("agent.stream",),
    ("agent.delivery",),
    ("agent.ops",),
    ("agent.runtime",),
    ("agent.learn",),
    ("agent.cli", "agent.checks", "agent.demo"),
)
MAX_MODULE_LINES = 300
MAX_FUNCTION_LINES = 60


def modules() -> dict[str, Path]:
    found: dict[str, Path] = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            found[".".join(parts)] = path
    return found


def imports_of(path: Path, name: str, known: set[str]) -> set[str]:
    """Every module ``path`` imports: project modules by name, others by their top-level name."""
    is_package = path.name == "__init__.py"
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            out.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = name.split(".")
                anchor = anchor if is_package else anchor[:-1]
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join([*anchor, base] if base else anchor)
            for alias in node.names:
                full = f"{base}.{alias.name}"
                out.add(full if full in known else base)
    return out


def graph() -> dict[str, set[str]]:
    mods = modules()
    known = set(mods)
    return {name: imports_of(path, name, known) for name, path in mods.items()}


def layer_of(module: str) -> int | None:
    best: tuple[int, int] | None = None  # (prefix length, layer)
    for rank, prefixes in enumerate(LAYERS):
        for prefix in prefixes:
            matches = module == prefix or (prefix != "agent" and module.startswith(prefix + "."))
            if matches and (best is None or len(prefix) > best[0]):
                best = (len(prefix), rank)
    return None if best is None else best[1]


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan), or a module importing itself."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in edges.get(v, ()):
            if w not in edges:
                continue
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1 or v in edges.get(v, ()):
                found.append(sorted(component))

    for v in edges:
        if v not in index:
            visit(v)
    return found


def test_no_import_cycles() -> None:
    assert cycles(graph()) == []


def test_cycle_finder_finds_a_cycle() -> None:
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_imports_point_down_the_layers() -> None:
    upward = []
    for module, targets in graph().items():
        if not module.startswith("agent"):
            continue
        mine = layer_of(module)
        assert mine is not None, f"{module} is in no layer of LAYERS: add it"
        for target in targets:
            theirs = layer_of(target) if target.startswith("agent") else None
            if theirs is not None and theirs > mine:
                upward.append(f"{module} -> {target}")
    assert upward == []


def test_agent_reaches_plugins_only_through_entry_points() -> None:
    offending = [
        f"{module} -> {target}"
        for module, targets in graph().items()
        if module.startswith("agent")
        for target in targets
        if target == "plugins" or target.startswith("plugins.")
    ]
    assert offending == []


def test_protocol_libraries_only_in_plugins() -> None:
    offending = [
        f"{module} -> {target}"
        for module, targets in graph().items()
        if not module.startswith("plugins")
        for target in targets
        if target.split(".")[0] in PROTOCOL_LIBRARIES
    ]
    assert offending == []


def test_modules_and_functions_stay_small() -> None:
    too_long = []
    for name, path in modules().items():
        text = path.read_text(encoding="utf-8")
        lines = text.count("\n")
        if lines > MAX_MODULE_LINES:
            too_long.append(f"{name}: {lines} lines")
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                length = (node.end_lineno or node.lineno) - node.lineno + 1
                if length > MAX_FUNCTION_LINES:
                    too_long.append(f"{name}.{node.name}: {length} lines")
    assert too_long == []


def test_every_package_says_what_it_owns() -> None:
    for name, path in modules().items():
        if path.name == "__init__.py" and name.count(".") == 1 and name.startswith("agent."):
            doc = ast.get_docstring(ast.parse(path.read_text(encoding="utf-8"))) or ""
            assert "May import" in doc, f"{name}: the package docstring says what it owns and may import"


LINT_EXCEPTION = re.compile(r"#\s*(?:noqa|type:\s*ignore)(?:\[[^\]]*\]|:\s*[A-Z0-9, ]+)?(?P<why>.*)")


def test_every_lint_exception_says_why() -> None:
    bare = []
    for name, path in modules().items():
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            found = LINT_EXCEPTION.search(line)
            if found and len(re.findall(r"[A-Za-z]{2,}", found["why"])) < 2:
                bare.append(f"{name}:{n}: {line.strip()}")
    assert bare == []
