"""The pure-ish steps behind the Celery tasks: route a stable study, run a job, deliver a result.

Each step takes a :class:`~worker.context.WorkerContext` and contracts, does its work against the
stores, and raises the node's errors; the Celery shells in :mod:`worker.tasks` only decode, call,
map errors to retry/fail and enqueue the next step. ``ctnode infer`` calls the same steps.
"""
