"""MQTT sink: UNS-style topics, JSON payloads with per-topic seq, TLS and a retained birth / last will.

Imports only its config here, so ``edge-agent check`` does not import paho.
"""

from agent.registry import PluginSpec
from plugins.mqtt.config import MqttSinkConfig

SPEC = PluginSpec(
    type="mqtt",
    kind="sink",
    config=MqttSinkConfig,
    impl="plugins.mqtt.sink:MqttSink",
    summary="Publish alerts, status, features and raw readings to an MQTT 3.1.1 / 5 broker, with TLS.",
    sample="plugins.mqtt:sample.toml",
)
