"""C-STORE ingest throughput: our SCP vs DCMTK storescp, same sender, same machine, same run.

A synthetic 512×512×300 CT (int16, Explicit VR Little Endian) is sent by DCMTK ``storescu`` (one
association, as a modality sends a series) to each receiver in turn; each run is timed from
storescu's start to its exit and every run's files are counted. Receivers:

* ``ours``              StoreSCP as in service: pynetdicom streams each data set to a temporary
                        file (STORE_RECV_CHUNKED_DATASET), validation through a memory map, PHI
                        registration, kernel copy to tmp → fsync → link → dir fsync
* ``ours-no-fsync``     the same without fsync (what durability costs; never used in service)
* ``ours-in-memory``    the handler's in-memory path (data set in pynetdicom's buffer, as before
                        issue 12 item 8): what streaming to disk costs per image
* ``storescp``          DCMTK storescp, default options (writes files, no fsync)
* ``storescp-nodelay``  storescp with TCP_NODELAY=1 in its environment (DCMTK reads it; without
                        it a 40 ms delayed-ACK stall per image dominates on loopback)

Runs are interleaved (round robin) and the median is reported. Usage::

    nice -n 10 .venv/bin/python bench/ingest_cstore.py [--slices 300] [--runs 3]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from pydicom import dcmread  # noqa: E402
from pynetdicom import _config  # noqa: E402

from dicom_node.ingest.scp import StoreSCP  # noqa: E402
from dicom_node.ingest.staging import Staging  # noqa: E402
from dicom_node.settings import load_settings  # noqa: E402
from tests.support.ct_series import make_ct_series  # noqa: E402
from tests.support.processes import free_port, managed, port_open  # noqa: E402

NODE_AE = "CTAINODE"


def send(port: int, data_dir: Path) -> float:
    """storescu the whole folder on one association; seconds from start to exit."""
    argv = [
        "storescu",
        "-nh",
        "-aet",
        "STORESCU",
        "-aec",
        NODE_AE,
        "127.0.0.1",
        str(port),
        str(data_dir),
        "+sd",
    ]
    start = time.perf_counter()
    result = subprocess.run(argv, capture_output=True, text=True, timeout=900)
    elapsed = time.perf_counter() - start
    if result.returncode != 0 or "Store Failed" in result.stderr:
        raise RuntimeError(f"storescu failed: {result.stderr[-2000:]}")
    return elapsed


def count_files(folder: Path) -> int:
    return sum(1 for p in folder.rglob("*") if p.is_file() and ".incoming" not in p.parts)


@contextlib.contextmanager
def our_scp(out: Path, *, fsync: bool, streamed: bool = True) -> Iterator[int]:
    settings = load_settings(overrides={"storage": {"root": str(out), "min_free_bytes": 0}})
    staging = Staging(settings.storage.staging_dir, min_free_bytes=0, fsync=fsync)
    scp = StoreSCP(
        settings, on_instance=lambda e: None, on_association_released=lambda s: None, staging=staging, port=0
    )
    scp.start()  # turns pynetdicom's STORE_RECV_CHUNKED_DATASET on (the service's mode)
    if not streamed:
        # The handler's in-memory fallback: what streaming to disk costs per image.
        _config.STORE_RECV_CHUNKED_DATASET = False
    try:
        assert scp.port is not None
        yield scp.port
    finally:
        scp.stop()
        _config.STORE_RECV_CHUNKED_DATASET = True


@contextlib.contextmanager
def storescp(out: Path, *, nodelay: bool) -> Iterator[int]:
    port = free_port()
    out.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ)
    if nodelay:
        env["TCP_NODELAY"] = "1"
    argv = ["storescp", "-aet", NODE_AE, "-od", str(out), str(port)]
    with managed(argv, log_path=out.parent / f"{out.name}.log", ready=lambda: port_open(port), env=env):
        yield port


RECEIVERS: dict[str, Callable[[Path], contextlib.AbstractContextManager[int]]] = {
    "ours": lambda out: our_scp(out, fsync=True),
    "ours-no-fsync": lambda out: our_scp(out, fsync=False),
    "ours-in-memory": lambda out: our_scp(out, fsync=True, streamed=False),
    "storescp": lambda out: storescp(out, nodelay=False),
    "storescp-nodelay": lambda out: storescp(out, nodelay=True),
}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--slices", type=int, default=300)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--receivers", default=",".join(RECEIVERS))
    parser.add_argument("--workdir", type=Path, default=None, help="default: a temp folder, removed after")
    args = parser.parse_args()
    receivers = args.receivers.split(",")

    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="ingest-bench-"))
    data_dir = workdir / "series"
    if not data_dir.exists() or count_files(data_dir) != args.slices:
        shutil.rmtree(data_dir, ignore_errors=True)
        make_ct_series(data_dir, n_slices=args.slices)
    size_mb = sum(p.stat().st_size for p in data_dir.iterdir()) / 1e6
    ts = dcmread(next(data_dir.iterdir()), stop_before_pixels=True).file_meta.TransferSyntaxUID
    print(f"series: {args.slices} slices 512x512 int16, {ts.name}, {size_mb:.0f} MB; sender: DCMTK storescu")
    print(f"machine: {platform.machine()}, {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f}")

    times: dict[str, list[float]] = {name: [] for name in receivers}
    try:
        for run in range(args.runs):
            for name in receivers:
                out = workdir / f"{name}-{run}"
                with RECEIVERS[name](out) as port:
                    elapsed = send(port, data_dir)
                    time.sleep(0.3)  # let the receiver finish its last file before counting
                    received = count_files(out)
                if received != args.slices:
                    raise RuntimeError(f"{name}: {received} files, expected {args.slices}")
                times[name].append(elapsed)
                shutil.rmtree(out, ignore_errors=True)
                print(f"  run {run + 1} {name:17s} {args.slices / elapsed:7.1f} images/s  ({elapsed:.2f} s)")
    finally:
        if args.workdir is None:
            shutil.rmtree(workdir, ignore_errors=True)

    print(f"\nmedian of {args.runs} runs (images/s, MB/s):")
    rate = {name: args.slices / statistics.median(values) for name, values in times.items()}
    for name in receivers:
        print(f"  {name:17s} {rate[name]:7.1f}  {rate[name] * size_mb / args.slices:6.1f}")
    if "ours" in rate:
        for baseline in ("storescp", "storescp-nodelay"):
            if baseline in rate:
                print(f"ratio ours / {baseline}: {rate['ours'] / rate[baseline]:.2f}x")
    print(f"load average after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
