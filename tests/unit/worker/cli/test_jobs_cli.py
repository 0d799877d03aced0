"""``ctnode jobs`` on a real SQLite job store and the embedded SQLite broker (messages read back)."""

from __future__ import annotations

import base64
import contextlib
import json
import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner, Result

from dicom_node.contracts import DeliveryReport, Job, JobState
from dicom_node.identity import delivery_id_for
from dicom_node.jobs import DeliveryState, JobStore
from dicom_node.settings import load_settings
from tests.unit.dicom_node.jobs.builders import make_bundle, make_job
from worker.cli.jobs import jobs, parse_since


@pytest.fixture
def config(tmp_path: Path) -> Path:
    path = tmp_path / "node.yaml"
    path.write_text(yaml.safe_dump({"storage": {"root": str(tmp_path / "var")}}))
    return path


@pytest.fixture
def store(config: Path) -> JobStore:
    return JobStore.open(load_settings(config).database_url)


def run(config: Path, *args: str) -> Result:
    return CliRunner().invoke(jobs, ["--config", str(config), *args], catch_exceptions=False)


def broker_messages(config: Path) -> list[dict[str, Any]]:
    """Messages waiting in the embedded broker: queue, task name, task id, args."""
    db = load_settings(config).storage.root / "broker.sqlite"
    if not db.exists():
        return []
    out = []
    with contextlib.closing(sqlite3.connect(db)) as conn:
        rows = conn.execute(
            "SELECT q.name, m.payload FROM kombu_message m JOIN kombu_queue q ON q.id = m.queue_id "
            "WHERE m.visible = 1 ORDER BY m.id"
        ).fetchall()
    for queue, payload in rows:
        message = json.loads(payload)
        body = json.loads(base64.b64decode(message["body"]))
        headers = message["headers"]
        out.append({"queue": queue, "task": headers["task"], "id": headers["id"], "args": body[0]})
    return out


def _failed_in_delivery(store: JobStore, job: Job) -> None:
    store.create_job(job)
    store.claim(job.job_id, "w1")
    store.record_result(job.job_id, make_bundle(job), timings_s={"inference": 2.0})
    store.transition(job.job_id, JobState.DELIVERING, reason="deliver")
    for dest in job.destinations:
        store.start_delivery(job.job_id, dest)
    bundle = make_bundle(job)
    uid = bundle.files[0].sop_instance_uid
    report = DeliveryReport(
        job_id=job.job_id,
        destination=job.destinations[0],
        delivered_sop_instance_uids=tuple(f.sop_instance_uid for f in bundle.files[1:]),
        failed={uid: "permanent: 0xA900 Error: Data Set does not match SOP Class"},
        finished_at=datetime.now(UTC),
    )
    store.record_delivery(report, state=DeliveryState.FAILED, error="rejected")
    if len(job.destinations) > 1:
        ok = report.model_copy(
            update={
                "destination": job.destinations[1],
                "failed": {},
                "delivered_sop_instance_uids": tuple(f.sop_instance_uid for f in bundle.files),
            }
        )
        store.record_delivery(ok, state=DeliveryState.DELIVERED)
    store.settle_deliveries(job.job_id)


def test_list_show_dead(config: Path, store: JobStore) -> None:
    a = make_job(pipeline="organs")
    b = make_job(pipeline="lesions")
    store.create_job(a)
    store.create_job(b)
    store.claim(b.job_id, "w1")
    store.transition(b.job_id, JobState.DEAD, reason="TransientError: PACS down (gave up after 6 retries)")

    table = run(config, "list")
    assert table.exit_code == 0
    assert a.job_id in table.output and b.job_id in table.output and "dead" in table.output

    only_dead = run(config, "list", "--state", "dead", "--json")
    assert [r["job_id"] for r in json.loads(only_dead.output)] == [b.job_id]
    assert run(config, "list", "--since", "1h", "--study", "1.2.999").output.strip() == "no jobs"

    dead = run(config, "dead")
    assert b.job_id in dead.output and a.job_id not in dead.output

    shown = run(config, "show", b.job_id)
    assert shown.exit_code == 0
    assert "gave up after 6 retries" in shown.output
    assert "queued → running" in shown.output and "running → dead" in shown.output
    events = json.loads(run(config, "show", b.job_id, "--json").output)["events"]
    assert [e["to_state"] for e in events] == ["queued", "running", "dead"]
    assert all(e["at"] for e in events)


def test_retry_dead_job_requeues_inference_by_task_name(config: Path, store: JobStore) -> None:
    job = make_job()
    store.create_job(job)
    store.claim(job.job_id, "w1")
    store.transition(job.job_id, JobState.DEAD, reason="retries exhausted")

    result = run(config, "retry", job.job_id, "--reason", "PACS fixed")
    assert result.exit_code == 0, result.output
    record = store.require_job(job.job_id)
    assert record.state == JobState.QUEUED
    assert "requeued by operator (inference): PACS fixed" in store.events(job.job_id)[-1].reason
    (message,) = broker_messages(config)
    assert message == {
        "queue": "inference",
        "task": "worker.tasks.run_pipeline",
        "id": job.job_id,
        "args": [job.model_dump(mode="json")],
    }
    assert Job.model_validate(message["args"][0]) == job  # the contract: Job JSON round-trips


def test_retry_delivery_sends_only_undelivered_destinations(config: Path, store: JobStore) -> None:
    job = make_job(destinations=("PACS", "ARCHIVE"))
    _failed_in_delivery(store, job)
    assert store.require_job(job.job_id).state == JobState.FAILED

    result = run(config, "retry", job.job_id)  # has results: delivery by default
    assert result.exit_code == 0, result.output
    assert store.require_job(job.job_id).state == JobState.DELIVERING
    assert store.get_delivery(job.job_id, "PACS").state == DeliveryState.PENDING  # type: ignore[union-attr]
    assert store.get_delivery(job.job_id, "ARCHIVE").state == DeliveryState.DELIVERED  # type: ignore[union-attr]
    (message,) = broker_messages(config)
    assert message == {
        "queue": "delivery",
        "task": "worker.tasks.deliver",
        "id": delivery_id_for(job.job_id, "PACS"),
        "args": [job.job_id, "PACS"],
    }


def test_retry_refuses_jobs_that_are_not_failed(config: Path, store: JobStore) -> None:
    job = make_job(destinations=())
    store.create_job(job)
    store.claim(job.job_id, "w1")
    running = run(config, "retry", job.job_id)
    assert running.exit_code == 1 and "still running" in running.output
    store.record_result(job.job_id, make_bundle(job))
    store.settle_deliveries(job.job_id)
    delivered = run(config, "retry", job.job_id)
    assert delivered.exit_code == 1 and "is delivered" in delivered.output
    assert run(config, "retry", "00000000-0000-0000-0000-000000000000").exit_code == 1
    assert broker_messages(config) == []


def test_retry_unknown_destination(config: Path, store: JobStore) -> None:
    job = make_job(destinations=("PACS",))
    _failed_in_delivery(store, job)
    result = run(config, "retry", job.job_id, "--destination", "NOPE")
    assert result.exit_code == 1 and "NOPE" in result.output
    assert store.require_job(job.job_id).state == JobState.FAILED


def test_show_unknown_job(config: Path) -> None:
    result = run(config, "show", "nope")
    assert result.exit_code == 1 and "no job nope" in result.output


def test_parse_since() -> None:
    now = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
    assert parse_since("30m", now=now) == now - timedelta(minutes=30)
    assert parse_since("2h", now=now) == now - timedelta(hours=2)
    assert parse_since("2026-11-23T08:00", now=now) == datetime(2026, 11, 23, 8, 0, tzinfo=UTC)
    with pytest.raises(Exception, match="30m"):
        parse_since("yesterday", now=now)
