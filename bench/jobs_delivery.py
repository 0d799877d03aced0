"""Job store, delivery and broker timings (engineer E's area). Prints a Markdown table.

    .venv/bin/python bench/jobs_delivery.py [--jobs 300] [--objects 20] [--rounds 20]

- job store: one job's life (create, claim, record result, 2 transitions, a delivery row) on
  SQLite (WAL, file) and PostgreSQL (a temp schema on the local server, or a private one);
- delivery: C-STORE of N result objects (8×8 stand-ins plus one ~5 MB object) to DCMTK storescp;
  STOW-RS of the same to Orthanc and the QIDO-RS query-back;
- broker: task round trip (send → a real solo worker ran it) on the embedded SQLite broker and
  on Redis, median and p95 over sequential tasks.

Everything runs on loopback; servers are started and stopped by PID (tests/support).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import numpy as np
from pydicom import dcmread
from pydicom.uid import generate_uid

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from dicom_node.contracts import ResultBundle, ResultFile  # noqa: E402
from dicom_node.delivery import confirm_qido, deliver  # noqa: E402
from dicom_node.jobs import DeliveryState, JobStore  # noqa: E402
from dicom_node.settings import DicomDestinationSettings, DicomwebDestinationSettings  # noqa: E402
from tests.support.dcmtk import storescp  # noqa: E402
from tests.support.orthanc import orthanc  # noqa: E402
from tests.support.postgres import postgres_url  # noqa: E402
from tests.support.redis import redis_server  # noqa: E402
from tests.unit.dicom_node.delivery.objects import make_result_bundle  # noqa: E402
from tests.unit.dicom_node.jobs.builders import make_bundle, make_job  # noqa: E402


def _pct(values: list[float], q: float) -> float:
    return float(np.percentile(np.array(values), q))


def bench_store(url: str, n_jobs: int) -> tuple[float, float]:
    """(jobs per second, p95 ms per job life) for ``n_jobs`` sequential job lives."""
    from dicom_node.contracts import DeliveryReport, JobState

    with JobStore.open(url) as store:
        per_job: list[float] = []
        started = time.perf_counter()
        for i in range(n_jobs):
            job = make_job(sop_uids=(f"1.2.3.{i}",))
            t0 = time.perf_counter()
            store.create_job(job)
            store.claim(job.job_id, "bench")
            store.record_result(job.job_id, make_bundle(job))
            store.transition(job.job_id, JobState.DELIVERING, reason="bench")
            store.start_delivery(job.job_id, "PACS")
            report = DeliveryReport(
                job_id=job.job_id,
                destination="PACS",
                delivered_sop_instance_uids=("1.2",),
                finished_at=__import__("datetime").datetime.now(__import__("datetime").UTC),
            )
            store.record_delivery(report, state=DeliveryState.DELIVERED)
            store.settle_deliveries(job.job_id)
            per_job.append(time.perf_counter() - t0)
        total = time.perf_counter() - started
    return n_jobs / total, _pct(per_job, 95) * 1000


def big_object(folder: Path, bundle: ResultBundle) -> ResultFile:
    """A ~5 MB stand-in (like a binary SEG of a 512×512×160 mask, bit-packed) of the bundle's study."""
    template = bundle.files[0]
    ds = dcmread(template.path)
    ds.Rows, ds.Columns = 512, 512
    ds.NumberOfFrames = 20
    ds.PixelData = np.zeros(512 * 512 * 20, dtype=np.uint8).tobytes()
    ds.SOPInstanceUID = generate_uid(prefix="1.2.826.0.1.3680043.10.2222.")
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    path = folder / "big.dcm"
    ds.save_as(path)
    return template.model_copy(update={"path": str(path), "sop_instance_uid": str(ds.SOPInstanceUID)})


def timed(fn: Callable[[], object]) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def bench_delivery(work: Path, n_objects: int) -> dict[str, float]:
    kinds = tuple(["sr"] * n_objects)
    bundle = make_result_bundle(work / "r", kinds=kinds)
    bundle = bundle.model_copy(update={"files": (*bundle.files, big_object(work / "r", bundle))})
    out: dict[str, float] = {}
    with storescp(work / "pacs" / "in") as (_proc, port):
        dest = DicomDestinationSettings(ae_title="PACS", port=port, objects=["sr"])
        out["cstore_s"] = timed(lambda: deliver(bundle, "PACS", dest, calling_ae_title="BENCH"))
    with orthanc(work / "orthanc") as server:
        web = DicomwebDestinationSettings(
            kind="dicomweb", url=server.dicomweb_url, objects=["sr"], timeout_s=60
        )
        out["stow_qido_s"] = timed(lambda: deliver(bundle, "WEB", web, calling_ae_title="BENCH"))
        out["qido_s"] = timed(
            lambda: confirm_qido(bundle.files, web, study_instance_uid=bundle.study_instance_uid)
        )
    return out


def bench_broker(work: Path, broker_url: str, rounds: int) -> tuple[float, float, float]:
    """(median, p95 s) send → task ran, and worker start-up s, with a real solo worker."""
    from tests.integration.test_celery_brokers import Harness

    work.mkdir(parents=True, exist_ok=True)
    h = Harness(work, broker_url, queue={})
    try:
        t0 = time.perf_counter()
        h.start_worker()
        startup = time.perf_counter() - t0
        latencies = []
        for _ in range(rounds):
            task_id = str(uuid.uuid4())
            t1 = time.perf_counter()
            h.app.send_task("ctnode_test.echo", args=[1], task_id=task_id, queue="routing")
            h.wait_file(f"echo-{task_id}.json", timeout_s=30)
            latencies.append(time.perf_counter() - t1)
    finally:
        h.stop()
    return statistics.median(latencies), _pct(latencies, 95), startup


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--jobs", type=int, default=300)
    parser.add_argument("--objects", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=20)
    args = parser.parse_args()
    rows: list[tuple[str, str]] = []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        rate, p95 = bench_store(f"sqlite:///{work / 'jobs.sqlite'}", args.jobs)
        rows.append((f"job store SQLite: {args.jobs} job lives", f"{rate:.0f} jobs/s, p95 {p95:.1f} ms/job"))
        with postgres_url(work / "pg") as url:
            rate, p95 = bench_store(url, args.jobs)
        rows.append(
            (f"job store PostgreSQL: {args.jobs} job lives", f"{rate:.0f} jobs/s, p95 {p95:.1f} ms/job")
        )
        d = bench_delivery(work / "delivery", args.objects)
        what = f"{args.objects} small objects + one 5.2 MB object"
        rows.append((f"C-STORE to storescp: {what}", f"{d['cstore_s']:.2f} s"))
        rows.append((f"STOW-RS to Orthanc + QIDO-RS confirm: {what}", f"{d['stow_qido_s']:.2f} s"))
        rows.append(("QIDO-RS query-back alone", f"{d['qido_s'] * 1000:.0f} ms"))
        med, p95, startup = bench_broker(work / "sqlite-broker", "", args.rounds)
        rows.append(
            (
                f"SQLite broker round trip ({args.rounds} tasks)",
                f"median {med * 1000:.0f} ms, p95 {p95 * 1000:.0f} ms",
            )
        )
        rows.append(("worker start-up (SQLite broker)", f"{startup:.1f} s"))
        with redis_server(work / "redis") as redis:
            med, p95, startup = bench_broker(work / "redis-broker", redis.url, args.rounds)
        rows.append(
            (
                f"Redis broker round trip ({args.rounds} tasks)",
                f"median {med * 1000:.0f} ms, p95 {p95 * 1000:.0f} ms",
            )
        )
        rows.append(("worker start-up (Redis broker)", f"{startup:.1f} s"))
    print("| measurement | result |\n|---|---|")
    for name, value in rows:
        print(f"| {name} | {value} |")


if __name__ == "__main__":
    main()
