"""The stream: readings -> windows -> features -> score -> alert state -> messages.

Owns: ``windows`` (time and count windowers), ``features`` (vectorised window statistics), ``inference``
(ONNX model loading, hot swap), ``contract`` (the one reading of a model's metadata), ``alerts``
(raise/clear state and plant-words explanations), ``rows`` (readings as the wide rows a recording
holds) and ``pipeline`` (one ``[[pipelines]]`` entry wiring them). Pure, synchronous and
clock-injected: time comes in as an argument, nothing here awaits, sleeps or reads the clock.

May import: ``agent.errors``, ``agent.records``, ``agent.config``. Never delivery, ops, runtime, learn or
any protocol library.
"""
