"""Operations: what the outside world sees of a running agent and how it talks to it.

Owns: ``logs`` (structlog setup), ``health`` (the HTTP endpoint: /healthz, /readyz, /metrics),
``metrics`` (the metric families), ``sdnotify`` (systemd readiness and watchdog), ``observe`` (reads a
runtime through ``RuntimeView`` and builds snapshots and readiness) and the status page (``status_api``,
``status_card``, ``http``, files in ``web/``).

May import: contracts, ``agent.config``, ``agent.stream`` and ``agent.delivery`` (to read their
statistics). Never ``agent.runtime`` (the runtime hands itself in), ``agent.learn`` or plugins.
"""
