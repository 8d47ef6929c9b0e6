"""edge-agent: read PLCs, window and score the readings on the device, publish over MQTT.

The contracts every package imports live at this level: ``errors`` (the one error hierarchy),
``records`` (readings, messages, envelopes), ``plugin`` (source and sink interfaces and the registry) and
``supervise`` (the one reconnect loop). ``cli``, ``checks`` (what ``check`` and ``once`` report) and ``demo`` wire everything at the top.
See docs/architecture.md for the flow.
"""

__version__ = "0.1.0"
