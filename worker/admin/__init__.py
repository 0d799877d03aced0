"""Operating the node: admin REST API, dashboard, Prometheus metrics (served by ``ctnode serve``).

* :func:`worker.admin.app.create_app` — the FastAPI app (OpenAPI at ``/api/openapi.json``)
* :class:`worker.admin.server.AdminServer` — uvicorn in a background thread (start/stop/port)
* :mod:`worker.admin.auth` — bearer tokens, roles viewer/admin
* :mod:`worker.admin.metrics` — ``/metrics`` from the job store's audit trail
* :mod:`worker.admin.broker` — queue depths and waiting task ids, read from Redis or SQLite
* :mod:`worker.admin.rules_api` — rules in force, validate and replay a draft

Modules are imported by path (nothing re-exported here) so that importing the broker helpers
(the sweeper does) does not import FastAPI.
"""
