"""The admin API over real HTTP (uvicorn in a thread) on both backends: SQLite job store + SQLite
broker (embedded), and PostgreSQL + Redis (production). Auth (401/403), dead letters, requeue
(a task message really lands on the broker), cancel, replay; and no token ever reaches a log."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from dicom_node.contracts import JobState
from dicom_node.jobs import JobStore
from dicom_node.settings import Settings
from tests.support.postgres import postgres_url
from tests.support.redis import redis_server
from tests.unit.dicom_node.jobs.builders import make_job
from tests.unit.worker.admin.conftest import (
    ADMIN,
    ADMIN_TOKEN,
    RULES,
    VIEWER,
    VIEWER_TOKEN,
    make_manifest,
    record_routed_study,
    settings_for,
)
from worker.admin.app import create_app
from worker.admin.auth import TokenAuth
from worker.admin.broker import inspect_broker, pending_task_ids
from worker.admin.server import AdminServer
from worker.context import WorkerContext
from worker.tasks.app import make_celery

pytestmark = pytest.mark.integration


@contextlib.contextmanager
def backend(kind: str, tmp_path: Path) -> Iterator[Settings]:
    if kind == "embedded":
        yield settings_for(tmp_path)
        return
    with postgres_url(tmp_path) as db, redis_server(tmp_path / "redis") as redis:
        yield settings_for(tmp_path, broker_url=redis.url, database_url=db)


@contextlib.contextmanager
def served(settings: Settings) -> Iterator[tuple[httpx.Client, WorkerContext]]:
    ctx = WorkerContext(settings=settings, store=JobStore.open(settings.database_url))
    environ = {"CTNODE_ADMIN_TOKEN": ADMIN_TOKEN, "CTNODE_VIEWER_TOKEN": VIEWER_TOKEN}
    app = create_app(ctx, make_celery(settings, include=[]), auth=TokenAuth(settings.api, environ=environ))
    server = AdminServer(app, host="127.0.0.1", port=0, log_level="debug")
    try:
        with server, httpx.Client(base_url=server.url, timeout=30) as client:
            yield client, ctx
    finally:
        ctx.close()


@pytest.mark.parametrize("kind", ["embedded", "postgres+redis"])
def test_admin_api_end_to_end(
    kind: str, tmp_path: Path, caplog: pytest.LogCaptureFixture, capfd: pytest.CaptureFixture[str]
) -> None:
    caplog.set_level(logging.DEBUG)
    with backend(kind, tmp_path) as settings, served(settings) as (client, ctx):
        store = ctx.store
        assert store.engine.dialect.name == ("sqlite" if kind == "embedded" else "postgresql")
        assert client.get("/readyz").json()["ready"] is True

        dead = make_job(pipeline="organs")
        queued = make_job(pipeline="lesions")
        for job in (dead, queued):
            store.create_job(job)
        store.claim(dead.job_id, "w1")
        store.transition(
            dead.job_id, JobState.DEAD, reason="TransientError: PACS down (gave up after 6 retries)"
        )

        # auth: no token, a wrong one, a token in the wrong scheme; viewer may not write
        requeue_url = f"/api/jobs/{dead.job_id}/requeue"
        assert client.get("/api/dead-letters").status_code == 401
        assert client.get("/api/dead-letters", headers={"Authorization": "Bearer guess"}).status_code == 401
        assert (
            client.get("/api/dead-letters", headers={"Authorization": f"Basic {ADMIN_TOKEN}"}).status_code
            == 401
        )
        assert client.post(requeue_url).status_code == 401
        assert client.post(requeue_url, headers=VIEWER).status_code == 403
        assert store.require_job(dead.job_id).state == JobState.DEAD

        letters = client.get("/api/dead-letters", headers=VIEWER).json()
        assert [j["job_id"] for j in letters] == [dead.job_id]

        out = client.post(requeue_url, headers=ADMIN, json={"reason": "PACS back"})
        assert out.status_code == 200, out.text
        assert out.json()["messages"][0]["queue"] == "inference"
        assert store.require_job(dead.job_id).state == JobState.QUEUED
        assert dead.job_id in pending_task_ids(settings.broker_url)  # really on the broker
        assert inspect_broker(settings.broker_url).depths["inference"] == 1

        cancelled = client.post(
            f"/api/jobs/{queued.job_id}/cancel", headers=ADMIN, json={"reason": "duplicate"}
        )
        assert cancelled.status_code == 200 and cancelled.json()["state"] == "skipped"
        assert client.post(f"/api/jobs/{queued.job_id}/cancel", headers=ADMIN).status_code == 409

        for uid, thickness in (
            ("1.2.826.0.1.3680043.8.498.7001", 1.0),
            ("1.2.826.0.1.3680043.8.498.7002", 5.0),
        ):
            record_routed_study(store, make_manifest(uid, thickness_mm=thickness))
        replay = client.post(
            "/api/rules/replay", headers=VIEWER, json={"text": RULES.replace("{max: 3.0}", "{max: 6.0}")}
        ).json()
        assert replay["studies_replayed"] == 2 and replay["studies_changed"] == 1
        assert store.list_jobs(state=JobState.QUEUED) and len(store.list_jobs()) == 2  # replay made no job

        metrics = client.get("/metrics", headers=VIEWER)
        assert 'ctnode_queue_depth{queue="inference"} 1.0' in metrics.text

    logged = "\n".join(r.getMessage() for r in caplog.records) + "\n".join(
        str(r.args) for r in caplog.records
    )
    captured = capfd.readouterr()
    everything = logged + captured.out + captured.err
    assert caplog.records  # the API did log (requeue, cancel, refused write)...
    assert ADMIN_TOKEN not in everything and VIEWER_TOKEN not in everything  # ...but never a token
    assert "guess" not in everything
