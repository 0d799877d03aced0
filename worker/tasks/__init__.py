"""Celery: the app (:mod:`.app`), the task shells (:mod:`.shells`), the one error → outcome
mapping (:mod:`.outcomes`), enqueueing by task name (:mod:`.enqueue`) and the worker runtime
(:mod:`.runtime`). The steps the tasks call live in :mod:`worker.steps`."""
