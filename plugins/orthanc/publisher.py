"""Submit a StudyStable to the routing task by name, over the node's Celery broker.

The plugin does not import the worker (import-linter: the plugin is thin glue); it only needs the
task's *name* and its JSON argument, the contract the SCP path uses too::

    send_task("worker.tasks.route_study", args=[StudyStable.model_dump(mode="json")], queue="routing")

Publishing fails fast (no kombu retry loop, short connect timeout) so that a broker outage never
blocks the dispatcher thread: the spool keeps the submission and retries it with backoff. A broker
that cannot be reached raises :class:`TransientError`; anything else (a wrong broker URL, a
transport that refuses an option) raises :class:`PermanentError` — still kept and retried by the
spool (nothing is dropped), but logged as an error an operator must fix.

Transport options are per broker: Redis gets the workers' ``visibility_timeout`` and socket
timeouts; kombu's SQLAlchemy transport (the embedded SQLite default) passes its options to
``create_engine``, which refuses unknown keywords, so it gets none.
"""

from __future__ import annotations

import logging
import threading
from typing import Any, Protocol

from dicom_node.constants import QUEUE_ROUTING, TASK_ROUTE_STUDY
from dicom_node.contracts import StudyStable
from dicom_node.errors import PermanentError, TransientError

log = logging.getLogger(__name__)


class RoutingPublisher(Protocol):
    def publish(self, study: StudyStable, *, task_id: str) -> None:
        """Hand the study to the routing queue; raise TransientError when the broker is unreachable."""


class CeleryRoutingPublisher:
    """A minimal Celery producer (JSON only); the app is created on first use, in the caller's thread."""

    def __init__(
        self, broker_url: str, *, connect_timeout_s: float = 3.0, visibility_timeout_s: int = 3600
    ) -> None:
        self._broker_url = broker_url
        self._connect_timeout_s = connect_timeout_s
        self._visibility_timeout_s = visibility_timeout_s
        self._app: Any = None
        self._lock = threading.Lock()

    def _celery(self) -> Any:
        with self._lock:
            if self._app is None:
                from celery import Celery  # heavy import: only once the first study is ready

                app = Celery("ctnode-orthanc-plugin", broker=self._broker_url, set_as_current=False)
                app.conf.update(
                    task_serializer="json",
                    accept_content=["json"],
                    result_backend=None,
                    broker_connection_timeout=self._connect_timeout_s,
                    broker_connection_retry=False,
                    broker_connection_max_retries=0,
                    broker_transport_options=transport_options(
                        self._broker_url,
                        connect_timeout_s=self._connect_timeout_s,
                        visibility_timeout_s=self._visibility_timeout_s,
                    ),
                )
                self._app = app
            return self._app

    def publish(self, study: StudyStable, *, task_id: str) -> None:
        try:
            self._celery().send_task(
                TASK_ROUTE_STUDY,
                args=[study.model_dump(mode="json")],
                queue=QUEUE_ROUTING,
                task_id=task_id,
                retry=False,
            )
        except Exception as exc:  # kombu/redis/sqlalchemy errors differ by transport: all mean "not sent"
            message = f"broker did not accept the message: {type(exc).__name__}: {exc}"
            if is_unreachable(exc):
                raise TransientError(message) from exc
            raise PermanentError(message) from exc


def transport_options(
    broker_url: str, *, connect_timeout_s: float, visibility_timeout_s: int
) -> dict[str, Any]:
    """``broker_transport_options`` suitable for the broker URL's transport."""
    scheme = broker_url.split(":", 1)[0].lower()
    if scheme in ("redis", "rediss", "redis+socket", "sentinel"):
        return {
            # Same as the workers' (worker.tasks.app): Redis redelivers after it.
            "visibility_timeout": visibility_timeout_s,
            "socket_connect_timeout": connect_timeout_s,
            "socket_timeout": max(5.0, connect_timeout_s),
            "max_retries": 0,
        }
    return {}


def is_unreachable(exc: BaseException) -> bool:
    """True when the error (or its cause chain) says the broker could not be reached."""
    from kombu.exceptions import OperationalError

    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, OSError | TimeoutError | OperationalError):
            return True
        if type(seen).__name__ in ("ConnectionError", "TimeoutError", "OperationalError"):
            return True  # redis-py and SQLAlchemy name theirs so without subclassing OSError
        seen = seen.__cause__ or seen.__context__
    return False
