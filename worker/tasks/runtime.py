"""What a worker's tasks run with: settings loaded once by the entry point, one context per process.

``ctnode worker`` builds a :class:`WorkerRuntime` from the settings it loaded and registers the
tasks with it (:func:`worker.tasks.shells.register`). Celery's prefork pool forks children after that;
each child opens its own :class:`~worker.context.WorkerContext` (its own database engine, never
shared across a fork) on its first task and keeps it, with its warm pipelines, between tasks.
"""

from __future__ import annotations

import os
import threading

from dicom_node.settings import Settings
from worker.context import WorkerContext


class WorkerRuntime:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._contexts: dict[int, WorkerContext] = {}
        self._lock = threading.Lock()

    def context(self) -> WorkerContext:
        """This process's context, opened on first use (after a prefork fork: never shared)."""
        pid = os.getpid()
        with self._lock:
            ctx = self._contexts.get(pid)
            if ctx is None:
                ctx = WorkerContext.open(self.settings)
                self._contexts[pid] = ctx
            return ctx

    def close(self) -> None:
        with self._lock:
            ctx = self._contexts.pop(os.getpid(), None)
        if ctx is not None:
            ctx.close()
