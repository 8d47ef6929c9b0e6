"""The demo at the top: the simulator, record, train and the runtime chained into one command.

Owns: ``command`` (``edge-agent demo``), ``broker`` (find or start an MQTT broker), ``config`` (the agent
config it writes). May import everything in ``agent``; reaches the simulator plugin only through the
``edge_agent.tools`` entry point (``agent.registry.tool``).
"""
