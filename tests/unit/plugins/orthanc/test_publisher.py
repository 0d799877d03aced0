"""The plugin's Celery producer on the embedded SQLite broker (kombu's SQLAlchemy transport on a
local file: no server) and against an unreachable Redis; the real Redis path runs in
tests/integration/test_orthanc_plugin.py."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from pathlib import Path

import pytest

from dicom_node.constants import TASK_ROUTE_STUDY
from dicom_node.contracts import CompletionReason, StudySource, StudyStable
from dicom_node.errors import PermanentError, TransientError
from plugins.orthanc.publisher import (
    CeleryRoutingPublisher,
    is_unreachable,
    transport_options,
)
from tests.support.orthanc import routing_messages
from tests.support.processes import free_port

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
STUDY = StudyStable(
    study_instance_uid="1.2.3",
    source=StudySource(kind="orthanc", orthanc_url="http://127.0.0.1:8042", orthanc_study_id="abc"),
    reason=CompletionReason.ORTHANC_STABLE,
    instance_count=3,
    first_received_at=NOW,
    last_received_at=NOW,
    stable_at=NOW,
)


def test_publishes_route_study_on_the_embedded_sqlite_broker(tmp_path: Path) -> None:
    url = f"sqla+sqlite:///{tmp_path / 'broker.sqlite'}"
    CeleryRoutingPublisher(url).publish(STUDY, task_id="task-1")
    [(headers, received)] = routing_messages(url, expect=1, timeout_s=5)
    assert headers["task"] == TASK_ROUTE_STUDY and headers["id"] == "task-1"
    assert received == STUDY


def test_unreachable_redis_is_transient_and_fast() -> None:
    publisher = CeleryRoutingPublisher(f"redis://127.0.0.1:{free_port()}/0", connect_timeout_s=1.0)
    started = time.monotonic()
    with pytest.raises(TransientError, match="broker did not accept"):
        publisher.publish(STUDY, task_id="t")
    assert time.monotonic() - started < 5


def test_transport_options_per_broker() -> None:
    redis = transport_options("redis://h:6379/0", connect_timeout_s=2.0, visibility_timeout_s=3600)
    assert redis["visibility_timeout"] == 3600 and redis["socket_connect_timeout"] == 2.0
    # kombu's SQLAlchemy transport hands its options to create_engine, which refuses unknown ones.
    assert (
        transport_options("sqla+sqlite:////x.sqlite", connect_timeout_s=2.0, visibility_timeout_s=3600) == {}
    )


def test_error_classification() -> None:
    assert is_unreachable(ConnectionRefusedError())
    try:
        try:
            raise ConnectionRefusedError
        except OSError as inner:
            raise RuntimeError("wrapped") from inner
    except RuntimeError as outer:
        assert is_unreachable(outer)
    assert not is_unreachable(TypeError("Invalid argument(s) sent to create_engine()"))


def test_a_configuration_error_is_permanent_but_never_drops_the_message(tmp_path: Path) -> None:
    publisher = CeleryRoutingPublisher("nosuchtransport://x")
    with pytest.raises(PermanentError):
        publisher.publish(STUDY, task_id="t")
