"""The config: one TOML file (plus ``EDGE_AGENT__...`` overrides) as typed pydantic models.

Owns: ``base`` (shared field types, ``SourceConfig``/``SinkConfig``, outbox settings), ``sections``
(``[agent]``, ``[bus]``, ``[health]``, ``[[pipelines]]``), ``recording`` (``[recording]``), ``load`` (read, validate, explain errors with
file, key path and fix) and ``reference`` (docs/config-reference.md, generated from the models).

May import: ``agent.errors`` and ``agent.records``; ``load`` and ``reference`` also ``agent.plugin`` (for
the registry of plugin config models). Nothing from stream, delivery, ops, runtime or learn.
"""
