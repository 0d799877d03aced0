from __future__ import annotations

import contextlib
import sqlite3
import time
from pathlib import Path
from typing import Any

import pytest

from dicom_node.constants import QUEUES, TASK_DELIVER, TASK_ROUTE_STUDY, TASK_RUN_PIPELINE
from dicom_node.settings import Settings, load_settings
from worker.tasks.app import (
    SQLITE_BROKER_TRANSPORT,
    SQLITE_POLLING_INTERVAL_S,
    SQLiteBrokerTransport,
    broker_connection_params,
    make_celery,
    prune_sqlite_broker,
    queue_for,
)


def _settings(tmp_path: Path, **queue: Any) -> Settings:
    return load_settings(overrides={"storage": {"root": str(tmp_path)}, "queue": queue})


def test_reliability_settings(tmp_path: Path) -> None:
    settings = _settings(
        tmp_path, task_time_limit_s=600, task_soft_time_limit_s=540, visibility_timeout_s=900
    )
    conf = make_celery(settings, include=[]).conf
    assert conf.task_acks_late is True
    assert conf.task_reject_on_worker_lost is True
    assert conf.worker_prefetch_multiplier == 1
    assert conf.task_time_limit == 600 and conf.task_soft_time_limit == 540
    assert conf.task_serializer == "json" and conf.result_serializer == "json"
    assert conf.accept_content == ["json"]
    assert conf.result_backend is None and conf.task_ignore_result is True
    assert {q.name for q in conf.task_queues} == set(QUEUES)
    assert conf.task_default_queue == "routing"
    assert conf.worker_send_task_events is True and conf.task_send_sent_event is True  # Flower


def test_result_backend_is_configurable(tmp_path: Path) -> None:
    conf = make_celery(_settings(tmp_path), include=[], result_backend="redis://127.0.0.1:1/1").conf
    assert conf.result_backend == "redis://127.0.0.1:1/1"
    assert conf.task_ignore_result is False


def test_redis_broker_options(tmp_path: Path) -> None:
    settings = _settings(
        tmp_path,
        broker_url="redis://127.0.0.1:6399/0",
        task_time_limit_s=60,
        task_soft_time_limit_s=50,
        visibility_timeout_s=120,
    )
    conf = make_celery(settings, include=[]).conf
    assert conf.broker_url == "redis://127.0.0.1:6399/0"
    assert conf.broker_transport is None
    options = conf.broker_transport_options
    assert options["visibility_timeout"] == 120 > conf.task_time_limit
    assert 1 <= options["unacked_restore_interval"] <= 10
    assert conf.worker_send_task_events is True and conf.task_send_sent_event is True


def test_embedded_sqlite_broker_uses_the_tuned_transport(tmp_path: Path) -> None:
    settings = _settings(tmp_path)
    assert settings.broker_url.startswith("sqla+sqlite:///")
    app = make_celery(settings, include=[])
    assert app.conf.broker_transport == SQLITE_BROKER_TRANSPORT
    assert app.conf.broker_url == settings.broker_url.removeprefix("sqla+")
    with app.connection_for_write() as conn:
        assert isinstance(conn.transport, SQLiteBrokerTransport)
        assert conn.transport.polling_interval == SQLITE_POLLING_INTERVAL_S
    # kombu passes transport options to create_engine: nothing here may break that
    app.send_task(TASK_ROUTE_STUDY, args=[{}], task_id="t-1")
    assert (tmp_path / "broker.sqlite").exists()


def test_broker_connection_params() -> None:
    assert broker_connection_params("redis://h:6379/0") == ("redis://h:6379/0", None)
    assert broker_connection_params("sqla+sqlite:////var/b.sqlite") == (
        "sqlite:////var/b.sqlite",
        SQLITE_BROKER_TRANSPORT,
    )
    assert broker_connection_params("sqla+postgresql://u@h/db") == ("sqla+postgresql://u@h/db", None)


@pytest.mark.parametrize(
    ("name", "args", "queue"),
    [
        (TASK_ROUTE_STUDY, [{}], "routing"),
        (TASK_RUN_PIPELINE, [{"job_id": "x", "priority": "routine"}], "inference"),
        (TASK_RUN_PIPELINE, [{"job_id": "x", "priority": "stat"}], "inference-stat"),
        (TASK_DELIVER, ["job", "PACS"], "delivery"),
        ("something.else", [], None),
    ],
)
def test_queue_for(name: str, args: list[Any], queue: str | None) -> None:
    assert queue_for(name, args) == queue


def test_router_applies_the_routes(tmp_path: Path) -> None:
    app = make_celery(_settings(tmp_path), include=[])
    router = app.amqp.router
    stat = router.route({}, TASK_RUN_PIPELINE, args=[{"priority": "stat"}], kwargs={})
    assert stat["queue"].name == "inference-stat"
    assert router.route({}, TASK_DELIVER, args=["j", "PACS"], kwargs={})["queue"].name == "delivery"
    explicit = router.route({"queue": "routing"}, TASK_DELIVER, args=["j", "PACS"], kwargs={})
    assert explicit["queue"].name == "routing"  # an explicit queue wins


def test_prune_sqlite_broker_deletes_only_fetched_messages(tmp_path: Path) -> None:
    settings = _settings(tmp_path)
    app = make_celery(settings, include=[])
    for n in range(3):
        app.send_task(TASK_ROUTE_STUDY, args=[{"n": n}], task_id=f"t-{n}")
    with app.connection_for_read() as conn:  # a consumer fetches one (kombu marks it invisible)
        queue = conn.SimpleQueue("routing")
        fetched = queue.get(timeout=5)
        assert fetched.headers["id"] == "t-0"
        fetched.ack()  # done (unacked, closing the channel would put a fresh copy back)
        queue.close()
    db = tmp_path / "broker.sqlite"

    def rows() -> list[tuple[int, int]]:
        with contextlib.closing(sqlite3.connect(db)) as conn:
            return conn.execute("SELECT id, visible FROM kombu_message ORDER BY id").fetchall()

    assert [v for _, v in rows()] == [0, 1, 1]
    assert prune_sqlite_broker(settings.broker_url, older_than_s=3600) == 0  # fetched too recently
    time.sleep(0.05)
    assert prune_sqlite_broker(settings.broker_url, older_than_s=0.01) == 1
    assert [v for _, v in rows()] == [1, 1]  # waiting messages are kept
    assert prune_sqlite_broker("redis://127.0.0.1:1/0") == 0
    assert prune_sqlite_broker(f"sqla+sqlite:///{tmp_path / 'none.sqlite'}") == 0
