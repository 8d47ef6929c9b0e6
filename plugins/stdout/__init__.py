"""Sinks that write messages as JSON lines: to standard output, or appended to a file."""

from agent.registry import PluginSpec
from plugins.stdout.config import JsonlConfig, StdoutConfig

STDOUT = PluginSpec(
    type="stdout",
    kind="sink",
    config=StdoutConfig,
    impl="plugins.stdout.sink:StdoutSink",
    summary="Every message as a JSON line on standard output (or a readable line on a terminal)",
    sample="plugins.stdout:sample.toml",
)
JSONL = PluginSpec(
    type="jsonl",
    kind="sink",
    config=JsonlConfig,
    impl="plugins.stdout.sink:JsonlSink",
    summary="Every message appended as a JSON line to a file, flushed and fsynced per batch",
    sample="plugins.stdout:sample.toml",
)
