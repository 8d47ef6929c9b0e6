"""Sparkplug B sink: the agent as a Sparkplug 3.0 edge node, sources and pipelines as its devices.

Imports only its config here, so ``edge-agent check`` does not import paho or protobuf.
"""

from agent.registry import PluginSpec
from plugins.sparkplug.config import SparkplugSinkConfig

SPEC = PluginSpec(
    type="sparkplug",
    kind="sink",
    config=SparkplugSinkConfig,
    impl="plugins.sparkplug.sink:SparkplugSink",
    summary="Publish as a Sparkplug B 3.0 edge node (NBIRTH/DBIRTH/DDATA, bdSeq, rebirth) over MQTT, with TLS.",
    sample="plugins.sparkplug:sample.toml",
)
