"""edge-agent: read PLCs, window and score the readings on the device, publish over MQTT."""

__version__ = "0.1.0"
