"""Celery on both brokers with a real worker process: round trip, and kill -9 mid-task.

The worker is ``python <script>`` running ``app.worker_main`` (``--pool=solo``) on the app that
``worker.tasks.app.make_celery`` builds. Its test tasks: ``ctnode_test.echo`` and a stand-in for
``worker.tasks.run_pipeline`` that claims the job in a real job store, sleeps, and records a result:
the same claim → work → record shape as the real task, so redelivery is checked end to end.
"""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from celery import Celery
from click.testing import CliRunner

from dicom_node.contracts import JobState, Priority
from dicom_node.jobs import JobStore
from dicom_node.settings import Settings, load_settings
from tests.support.processes import ManagedProcess, wait_until
from tests.support.redis import redis_server
from tests.unit.dicom_node.jobs.builders import make_job
from worker.tasks.app import make_celery

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]

WORKER_SCRIPT = """
import json, os, socket, time
from pathlib import Path

from dicom_node.contracts import ResultBundle
from dicom_node.jobs import JobStore
from dicom_node.settings import load_settings
from worker.tasks.app import make_celery

settings = load_settings(os.environ["CTNODE_CONFIG"])
app = make_celery(settings, include=[])
OUT = Path(os.environ["CTNODE_TEST_OUT"])
SLEEP_S = float(os.environ.get("CTNODE_TEST_SLEEP_S", "1.0"))


@app.task(name="ctnode_test.echo", bind=True)
def echo(self, value):
    info = {"value": value, "pid": os.getpid(), "queue": self.request.delivery_info.get("routing_key")}
    (OUT / f"echo-{self.request.id}.json").write_text(json.dumps(info))


@app.task(name="worker.tasks.run_pipeline", bind=True)
def run_pipeline(self, job):
    job_id = job["job_id"]
    worker = f"{socket.gethostname()}:{os.getpid()}"
    with JobStore.open(settings.database_url) as store:
        if not store.claim(job_id, worker, stale_after_s=settings.queue.task_time_limit_s):
            (OUT / f"not-claimed-{job_id}-{os.getpid()}").write_text("")
            return
        (OUT / f"started-{job_id}-{os.getpid()}").write_text("")
        time.sleep(SLEEP_S)
        bundle = ResultBundle(job_id=job_id, study_instance_uid=job["study_instance_uid"], files=())
        store.record_result(job_id, bundle, timings_s={"inference": SLEEP_S})
    (OUT / f"done-{job_id}").write_text(str(os.getpid()))


if __name__ == "__main__":
    queues = "routing,inference,inference-stat,delivery"
    app.worker_main(["worker", "--pool=solo", "--loglevel=INFO", "-Q", queues,
                     "--without-mingle", "--without-gossip", "-n", f"test{os.getpid()}@localhost"])
"""


class Harness:
    def __init__(self, tmp_path: Path, broker_url: str, *, queue: dict[str, object]) -> None:
        self.tmp = tmp_path
        self.out = tmp_path / "out"
        self.out.mkdir()
        self.config = tmp_path / "node.yaml"
        data = {
            "storage": {"root": str(tmp_path / "var")},
            "queue": {"broker_url": broker_url, **queue},
            "jobs": {"database_url": f"sqlite:///{tmp_path / 'jobs.sqlite'}"},
        }
        self.config.write_text(yaml.safe_dump(data))
        (tmp_path / "var").mkdir()
        self.settings: Settings = load_settings(self.config)
        self.app = make_celery(self.settings, include=[])
        self.script = tmp_path / "test_worker.py"
        self.script.write_text(WORKER_SCRIPT)
        self.workers: list[ManagedProcess] = []

    def start_worker(self, *, sleep_s: float = 1.0) -> ManagedProcess:
        env = dict(os.environ)
        env.update(
            CTNODE_CONFIG=str(self.config),
            CTNODE_TEST_OUT=str(self.out),
            CTNODE_TEST_SLEEP_S=str(sleep_s),
            PYTHONPATH=str(REPO),
        )
        log = self.tmp / f"worker-{len(self.workers)}.log"
        proc = ManagedProcess([sys.executable, str(self.script)], log_path=log, env=env, cwd=REPO)
        self.workers.append(proc)
        wait_until(
            lambda: " ready." in proc.log_text() or not proc.alive(), timeout_s=60, what="celery worker ready"
        )
        assert proc.alive(), proc.log_text()[-3000:]
        return proc

    def wait_file(self, pattern: str, *, timeout_s: float) -> Path:
        found: list[Path] = []

        def present() -> bool:
            found[:] = sorted(self.out.glob(pattern))
            return bool(found)

        try:
            wait_until(present, timeout_s=timeout_s, interval_s=0.05, what=pattern)
        except TimeoutError:
            logs = "\n".join(w.log_text()[-2000:] for w in self.workers)
            raise AssertionError(f"no {pattern} after {timeout_s} s; worker logs:\n{logs}") from None
        return found[0]

    def stop(self) -> None:
        for proc in self.workers:
            proc.stop()


@contextlib.contextmanager
def harness(tmp_path: Path, broker_url: str, **queue: object) -> Iterator[Harness]:
    h = Harness(tmp_path, broker_url, queue=dict(queue))
    try:
        yield h
    finally:
        h.stop()


def _round_trip(h: Harness) -> float:
    h.start_worker()
    task_id = str(uuid.uuid4())
    started = time.monotonic()
    h.app.send_task("ctnode_test.echo", args=[{"n": 1}], task_id=task_id, queue="routing")
    path = h.wait_file(f"echo-{task_id}.json", timeout_s=20)
    elapsed = time.monotonic() - started
    info = json.loads(path.read_text())
    assert info["value"] == {"n": 1}
    assert info["pid"] == h.workers[0].pid

    # A plain Celery producer on the settings' broker URL (as the Orthanc plugin sends route_study:
    # Celery defaults, queue by name) reaches the same worker.
    plain = Celery("plain-producer", broker=h.settings.broker_url, set_as_current=False)
    plain.conf.update(task_serializer="json", accept_content=["json"])
    other_id = str(uuid.uuid4())
    plain.send_task("ctnode_test.echo", args=[{"n": 2}], task_id=other_id, queue="routing")
    assert json.loads(h.wait_file(f"echo-{other_id}.json", timeout_s=20).read_text())["value"] == {"n": 2}
    return elapsed


def _job_round_trip(h: Harness, *, priority: Priority = Priority.ROUTINE) -> None:
    job = make_job().model_copy(update={"priority": priority})
    with JobStore.open(h.settings.database_url) as store:
        store.create_job(job)
    h.app.send_task("worker.tasks.run_pipeline", args=[job.model_dump(mode="json")], task_id=job.job_id)
    h.wait_file(f"done-{job.job_id}", timeout_s=20)
    with JobStore.open(h.settings.database_url) as store:
        record = store.require_job(job.job_id)
    assert record.state == JobState.ENCODED and record.attempts == 1


def test_round_trip_sqlite_broker(tmp_path: Path) -> None:
    with harness(tmp_path, "") as h:  # "" = the embedded default, sqla+sqlite under storage.root
        assert h.settings.broker_url.startswith("sqla+sqlite:///")
        elapsed = _round_trip(h)
        _job_round_trip(h, priority=Priority.STAT)  # routed to inference-stat by the job's priority
    # polling every 0.1 s: a hop costs well under kombu's default 1 s poll
    assert elapsed < 1.0, f"SQLite broker round trip took {elapsed:.2f} s"


def test_round_trip_redis_broker(tmp_path: Path) -> None:
    with redis_server(tmp_path / "redis") as redis, harness(tmp_path, redis.url) as h:
        _round_trip(h)
        _job_round_trip(h)


def test_redis_kill9_mid_task_is_redelivered_and_completes(tmp_path: Path) -> None:
    """acks_late + kill -9: the message stays unacked in Redis; once the visibility timeout passes
    the restarted worker restores it, and the job store's stale claim lets it run to the end."""
    limits = {"task_time_limit_s": 3, "task_soft_time_limit_s": 2, "visibility_timeout_s": 4}
    with redis_server(tmp_path / "redis") as redis, harness(tmp_path, redis.url, **limits) as h:
        first = h.start_worker(sleep_s=1.5)
        job = make_job()
        with JobStore.open(h.settings.database_url) as store:
            store.create_job(job)
        h.app.send_task("worker.tasks.run_pipeline", args=[job.model_dump(mode="json")], task_id=job.job_id)
        h.wait_file(f"started-{job.job_id}-{first.pid}", timeout_s=20)
        first.kill9()
        killed_at = time.monotonic()
        assert not list(h.out.glob(f"done-{job.job_id}"))
        second = h.start_worker(sleep_s=0.2)
        h.wait_file(f"done-{job.job_id}", timeout_s=45)
        waited = time.monotonic() - killed_at
        assert (h.out / f"done-{job.job_id}").read_text() == str(second.pid)
        with JobStore.open(h.settings.database_url) as store:
            record = store.require_job(job.job_id)
            events = store.events(job.job_id)
    assert record.state == JobState.ENCODED and record.attempts == 2
    assert "stale" in events[-2].reason  # the second claim took over the dead worker's
    assert waited >= 4 - 0.5  # not before the visibility timeout: a running task is never doubled
    print(f"redelivered and completed {waited:.1f} s after kill -9 (visibility timeout 4 s)")


def _message_rows(broker_db: Path) -> list[tuple[str, int]]:
    with contextlib.closing(sqlite3.connect(broker_db)) as db:
        return db.execute(
            "SELECT q.name, m.visible FROM kombu_message m JOIN kombu_queue q ON q.id = m.queue_id"
        ).fetchall()


def test_sqlite_kill9_mid_task_needs_the_job_store_to_recover(tmp_path: Path) -> None:
    """Documents the embedded broker's limit (worker/celery_app.py): a message fetched by a worker
    that is then killed -9 is not redelivered. The job stays RUNNING; after the hard time limit
    the job store reports it stale and ``ctnode jobs retry`` requeues it, which completes it."""
    from worker.cli.jobs import jobs as jobs_cli

    limits = {"task_time_limit_s": 2, "task_soft_time_limit_s": 1, "visibility_timeout_s": 3}
    with harness(tmp_path, "", **limits) as h:
        first = h.start_worker(sleep_s=1.5)
        job = make_job()
        with JobStore.open(h.settings.database_url) as store:
            store.create_job(job)
        h.app.send_task("worker.tasks.run_pipeline", args=[job.model_dump(mode="json")], task_id=job.job_id)
        h.wait_file(f"started-{job.job_id}-{first.pid}", timeout_s=20)
        first.kill9()
        h.start_worker(sleep_s=0.2)
        time.sleep(3.0)  # > time limit; a redelivery would have started by now
        assert not list(h.out.glob(f"done-{job.job_id}"))
        broker_db = tmp_path / "var" / "broker.sqlite"
        assert _message_rows(broker_db) == [("inference", 0)]  # fetched, invisible, never restored
        with JobStore.open(h.settings.database_url) as store:
            assert [r.job_id for r in store.stale_running(older_than_s=2)] == [job.job_id]

        result = CliRunner().invoke(jobs_cli, ["--config", str(h.config), "retry", job.job_id])
        assert result.exit_code == 0, result.output
        h.wait_file(f"done-{job.job_id}", timeout_s=20)
        with JobStore.open(h.settings.database_url) as store:
            record = store.require_job(job.job_id)
            reasons = [e.reason for e in store.events(job.job_id)]
    assert record.state == JobState.ENCODED and record.attempts == 2
    assert any("requeued" in r for r in reasons)
