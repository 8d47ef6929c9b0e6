"""The runtime: wires one config into sources -> bus -> pipelines -> outboxes -> sinks in a TaskGroup.

Owns: ``core`` (``Runtime``: start order, the pipeline loop, shutdown and flush), ``reload`` (applying
a changed config on SIGHUP without losing buffered data), ``resume`` (naming the window span a
restart missed) and ``recording`` (the agent's own bounded rolling recording, written in a thread).

May import: everything below it (contracts, config, stream, delivery, ops). Never ``agent.learn``, the
CLI or plugins (plugins are built through ``agent.registry.build``).
"""
