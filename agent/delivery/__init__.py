"""Delivery: from the pipeline's messages to a sink's acknowledgement, losing nothing.

Owns: ``bus`` (the bounded queue between sources and pipelines, with its overflow policy), ``envelope``
(the wire form of a message), ``outbox`` (the outbox contract and the memory store), ``sqlite_store``
(the durable store) and ``deliver`` (the take -> publish -> ack transaction, and ``open_outbox``).

May import: ``agent.errors``, ``agent.records``, ``agent.config``, ``agent.plugin``. Never stream, ops,
runtime or learn.
"""
