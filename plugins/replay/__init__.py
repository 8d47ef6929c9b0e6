"""Replay source: recorded readings from CSV or JSONL, as fast as possible or paced."""

from agent.registry import PluginSpec
from plugins.replay.config import ReplayConfig

SPEC = PluginSpec(
    type="replay",
    kind="source",
    config=ReplayConfig,
    impl="plugins.replay.source:ReplaySource",
    summary="Recorded readings from a CSV or JSONL file, as fast as possible or at N x real time",
    sample="plugins.replay:sample.toml",
)
