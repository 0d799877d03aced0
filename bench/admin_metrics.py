"""Cost of /metrics (tailing the job store's audit trail) and of the sweeper, on SQLite.

    PYTHONPATH=. .venv/bin/python bench/admin_metrics.py [--jobs 1000]

Creates N delivered jobs (6 audit events each) after the metrics object starts, then times the
first scrape (observes every new event), a steady scrape (nothing new) and one sweeper pass with
N queued jobs whose messages are on the SQLite broker. Results: bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from dicom_node.contracts import DeliveryReport, JobState
from dicom_node.jobs import DeliveryState, JobStore
from tests.unit.dicom_node.jobs.builders import make_bundle, make_job
from tests.unit.worker.admin.conftest import make_manifest, record_routed_study, settings_for
from worker.admin.metrics import StoreMetrics
from worker.context import WorkerContext
from worker.node.requeue import send_pipeline_task
from worker.node.sweeper import sweep
from worker.tasks.app import make_celery


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--jobs", type=int, default=1000)
    n = parser.parse_args().jobs
    root = Path(tempfile.mkdtemp(prefix="bench-admin-"))
    settings = settings_for(root)
    store = JobStore.open(settings.database_url)
    metrics = StoreMetrics(store, broker_url=settings.broker_url)
    started = time.perf_counter()
    for i in range(n):
        uid = f"1.2.826.0.1.3680043.8.498.9{i:06d}"
        record_routed_study(store, make_manifest(uid))
        job = make_job(study_instance_uid=uid, destinations=("pacs",))
        store.create_job(job)
        store.claim(job.job_id, "w")
        store.record_result(job.job_id, make_bundle(job), timings_s={"inference": 1.0, "encode": 0.1})
        store.transition(job.job_id, JobState.DELIVERING, reason="deliver")
        store.start_delivery(job.job_id, "pacs")
        report = DeliveryReport(job_id=job.job_id, destination="pacs", finished_at=datetime.now(UTC))
        store.record_delivery(report, state=DeliveryState.DELIVERED)
        store.settle_deliveries(job.job_id)
    print(f"setup: {n} delivered jobs in {time.perf_counter() - started:.1f} s")

    t0 = time.perf_counter()
    first = metrics.render()
    t1 = time.perf_counter()
    metrics.render()
    t2 = time.perf_counter()
    print(f"first scrape ({store.last_event_id()} events): {t1 - t0:.2f} s, {len(first)} bytes")
    print(f"steady scrape (no new events): {(t2 - t1) * 1000:.1f} ms")

    app = make_celery(settings, include=[])
    for i in range(n):
        job = make_job(study_instance_uid=f"1.2.826.0.1.3680043.8.498.8{i:06d}", pipeline="q")
        store.create_job(job)
        send_pipeline_task(app, job)
    ctx = WorkerContext(settings=settings, store=store)
    t3 = time.perf_counter()
    report = sweep(ctx, app, now=datetime.now(UTC) + timedelta(hours=2))
    print(
        f"sweeper pass, {n} queued jobs with their messages waiting: {time.perf_counter() - t3:.2f} s, "
        f"{report.changed} changed"
    )


if __name__ == "__main__":
    main()
