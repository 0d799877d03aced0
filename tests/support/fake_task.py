"""The two things the task shells use of a bound Celery task: ``request.retries`` and ``retry()``.

A unit-test stand-in for Celery itself (the broker and worker are tested for real in
tests/integration/test_celery_brokers.py and the e2e tests)."""

from __future__ import annotations

from typing import Any


class Retry(Exception):
    pass


class FakeTask:
    def __init__(self, retries: int = 0, app: Any = None) -> None:
        self.request = type("Request", (), {"retries": retries})()
        self.app = app
        self.countdowns: list[float] = []

    def retry(self, *, exc: BaseException, countdown: float) -> Retry:
        self.countdowns.append(countdown)
        return Retry(str(exc))
