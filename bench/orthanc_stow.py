"""Orthanc plugin latency, STOW-RS ingest, Orthanc fetch (engineer H). Prints a Markdown table.

    .venv/bin/python bench/orthanc_stow.py [--slices 100] [--size 512] [--repeat 3]

1. Plugin: DCMTK storescu sends an N-slice CT to Orthanc (with the ct-ai-node plugin, real
   redis-server); latency = end of storescu → the ``route_study`` message readable on Redis.
   (a) series announces its size (ImagesInAcquisition): early completion by counts;
   (b) no announcement: Orthanc's STABLE_STUDY timer (StableAge 2 s).
2. STOW-RS ingest: the same series as one STOW request by dicomweb-client to (a) our endpoint
   (uvicorn, validation + durable staging with fsync) and (b) Orthanc's DICOMweb plugin.
3. Fetch for the worker: the study from Orthanc into the staging layout, by REST and WADO-RS.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import uvicorn  # noqa: E402
from dicomweb_client.api import DICOMwebClient  # noqa: E402
from fastapi import FastAPI  # noqa: E402
from pydicom import dcmread  # noqa: E402

from dicom_node.ingest.orthanc_source import OrthancSource  # noqa: E402
from dicom_node.ingest.receive import InstanceReceiver  # noqa: E402
from dicom_node.ingest.staging import Staging  # noqa: E402
from dicom_node.ingest.stow import make_bearer_auth, make_stow_router  # noqa: E402
from dicom_node.ingest.validation import ImageLimits  # noqa: E402
from tests.support.ct_series import make_ct_series  # noqa: E402
from tests.support.orthanc import orthanc, orthanc_with_plugin, routing_messages  # noqa: E402
from tests.support.processes import free_port, port_open, wait_until  # noqa: E402
from tests.support.redis import redis_server  # noqa: E402


def storescu(port: int, files: list[Path]) -> None:
    subprocess.run(
        ["storescu", "-R", "-aet", "BENCH", "-aec", "ORTHANC", "127.0.0.1", str(port), *map(str, files)],
        check=True,
        capture_output=True,
        timeout=600,
    )


def plugin_latency(work: Path, files: list[Path], *, stable_age_s: int) -> float:
    with (
        redis_server(work / "redis") as redis,
        orthanc_with_plugin(work / "orthanc", redis.url, stable_age_s=stable_age_s) as server,
    ):
        storescu(server.dicom_port, files)
        sent = time.perf_counter()
        [(_headers, stable)] = routing_messages(redis.url, expect=1, timeout_s=120)
        latency = time.perf_counter() - sent
        assert stable.instance_count == len(files)
        return latency


def stow_ours(work: Path, datasets: list[object]) -> float:
    staging = Staging(work / "staging", min_free_bytes=0)
    app = FastAPI()
    app.include_router(
        make_stow_router(
            receiver=InstanceReceiver(staging, limits=ImageLimits(), uid_root="1.2.826.0.1.3680043.10.1111."),
            on_instance=lambda _i: None,
            on_request_complete=lambda _r: None,
            auth=make_bearer_auth(lambda: ["bench"]),
        )
    )
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        wait_until(lambda: port_open(port), timeout_s=10)
        client = DICOMwebClient(
            f"http://127.0.0.1:{port}/dicom-web", headers={"Authorization": "Bearer bench"}
        )
        started = time.perf_counter()
        response = client.store_instances(datasets=datasets)
        elapsed = time.perf_counter() - started
        assert len(response.ReferencedSOPSequence) == len(datasets)
        return elapsed
    finally:
        server.should_exit = True
        thread.join(10)


def stow_orthanc(work: Path, datasets: list[object]) -> float:
    with orthanc(work / "orthanc-stow") as server:
        client = DICOMwebClient(server.dicomweb_url)
        started = time.perf_counter()
        client.store_instances(datasets=datasets)
        return time.perf_counter() - started


def fetch(work: Path, files: list[Path]) -> tuple[float, float, int]:
    with orthanc(work / "orthanc-fetch", credentials=("w", "bench")) as server:
        for f in files:
            server.upload(f)
        [study_id] = server.get("/studies")
        with OrthancSource(server.url, auth=("w", "bench")) as source:
            started = time.perf_counter()
            rest = source.fetch_study(study_id, work / "rest")
            rest_s = time.perf_counter() - started
            started = time.perf_counter()
            source.fetch_study(study_id, work / "wado", method="wado-rs")
            wado_s = time.perf_counter() - started
        return rest_s, wado_s, rest.bytes_fetched


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--slices", type=int, default=100)
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    n = args.slices
    rows: list[tuple[str, str]] = []
    with tempfile.TemporaryDirectory(prefix="bench-orthanc-") as tmp:
        work = Path(tmp)
        counted = make_ct_series(
            work / "counted", n_slices=n, rows=args.size, cols=args.size, images_in_acquisition=True
        )
        plain = make_ct_series(work / "plain", n_slices=n, rows=args.size, cols=args.size)
        mb = sum(f.stat().st_size for f in plain) / 1e6
        early = [plugin_latency(work / f"early{i}", counted, stable_age_s=60) for i in range(args.repeat)]
        stable = [plugin_latency(work / f"stable{i}", plain, stable_age_s=2) for i in range(args.repeat)]
        rows.append(
            ("plugin: storescu end → route_study on Redis, announced counts (StableAge 60 s)", _s(early))
        )
        rows.append(("plugin: same, no announcement (STABLE_STUDY, StableAge 2 s)", _s(stable)))
        datasets = [dcmread(f) for f in plain]
        ours = [stow_ours(work / f"ours{i}", datasets) for i in range(args.repeat)]
        theirs = [stow_orthanc(work / f"theirs{i}", datasets) for i in range(args.repeat)]
        rows.append(
            (
                f"STOW-RS {n} images ({mb:.0f} MB) → our endpoint (validate + fsync staging)",
                _rate(ours, n, mb),
            )
        )
        rows.append((f"STOW-RS {n} images → Orthanc DICOMweb plugin", _rate(theirs, n, mb)))
        fetches = [fetch(work / f"fetch{i}", plain) for i in range(args.repeat)]
        rows.append(
            ("fetch study from Orthanc by REST (/instances/{id}/file)", _rate([f[0] for f in fetches], n, mb))
        )
        rows.append(
            ("fetch study from Orthanc by WADO-RS (transfer-syntax=*)", _rate([f[1] for f in fetches], n, mb))
        )
    print(f"\n{n} slices {args.size}×{args.size} int16, {args.repeat} runs each (median)\n")
    print("| measurement | result |\n|---|---|")
    for name, value in rows:
        print(f"| {name} | {value} |")


def _s(values: list[float]) -> str:
    return f"median {statistics.median(values):.2f} s (min {min(values):.2f}, max {max(values):.2f})"


def _rate(values: list[float], n: int, mb: float) -> str:
    median = statistics.median(values)
    return f"{median:.2f} s = {n / median:.0f} img/s, {mb / median:.0f} MB/s (min {min(values):.2f} s)"


if __name__ == "__main__":
    main()
