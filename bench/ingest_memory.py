"""Memory of a real ``ctnode serve`` receiving large instances (issue 12 item 8).

For each instance size a fresh ``ctnode serve`` process is started (its own settings file,
storage and ``TMPDIR`` under the work folder, API off); one multi-frame CT instance of that size
(Enhanced CT header, 512×512 int16 frames, Explicit VR Little Endian; tests/support/multiframe.py)
is sent by DCMTK ``storescu`` (or ``--sender pynetdicom``); the server's resident memory is read
from /proc: ``VmRSS`` before the transfer, ``VmHWM`` (the peak over the process's life) and
``VmRSS`` after it. The staged file is checked (its size), the sender must report Success, and
the process is stopped.

``--ctnode`` runs another checkout's entry point (e.g. the lead's main before this change) for a
before/after comparison. Usage::

    nice -n 19 .venv/bin/python bench/ingest_memory.py [--sizes-mb 64,512] [--ctnode PATH]
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.support.multiframe import write_multiframe_ct  # noqa: E402
from tests.support.processes import ManagedProcess, free_port, port_open, wait_until  # noqa: E402

FRAME_BYTES = 512 * 512 * 2


def status_kib(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise KeyError(field)


def serve(ctnode: str, work: Path) -> tuple[ManagedProcess, int]:
    port = free_port()
    settings = {
        "storage": {"root": str(work / "var"), "min_free_bytes": 0},
        "dicom": {"port": port, "allowed_peers": [{"ae_title": "STORESCU", "networks": ["127.0.0.0/8"]}]},
        "api": {"enabled": False},
        "rules_file": str(work / "routing.yaml"),
        "destinations": {"pacs": {"kind": "dicom", "ae_title": "PACS", "host": "127.0.0.1", "port": 9}},
    }
    rule = {
        "name": "bench",
        "when": {"modality": "CT"},
        "pipeline": "ct-anatomy-basic",
        "prompts": ["body"],
        "destinations": ["pacs"],
    }
    (work / "routing.yaml").write_text(yaml.safe_dump({"version": 1, "rules": [rule]}, sort_keys=False))
    config = work / "node.yaml"
    config.write_text(yaml.safe_dump(settings))
    tmp = work / "tmp"
    tmp.mkdir(exist_ok=True)
    env = {**os.environ, "TMPDIR": str(tmp), "CTNODE_CONFIG": str(config)}
    process = ManagedProcess(
        [ctnode, "serve", "--config", str(config)], log_path=work / "serve.log", env=env, cwd=work
    )
    wait_until(lambda: port_open(port) or not process.alive(), timeout_s=120, what="ctnode serve")
    if not process.alive():
        raise RuntimeError(f"serve exited:\n{process.log_text()[-3000:]}")
    time.sleep(2.0)  # let start-up allocations settle before the baseline
    return process, port


def pynetdicom_send(port: int, source: Path) -> None:
    """The pynetdicom sender: the file as it is on disk (STORE_SEND_CHUNKED_DATASET), PDUs as
    large as the node's A-ASSOCIATE-AC allows."""
    from pydicom import dcmread
    from pynetdicom import AE, _config

    _config.STORE_SEND_CHUNKED_DATASET = True
    meta = dcmread(source, stop_before_pixels=True).file_meta
    ae = AE(ae_title="STORESCU")
    ae.add_requested_context(meta.MediaStorageSOPClassUID, meta.TransferSyntaxUID)
    assoc = ae.associate("127.0.0.1", port, ae_title="CTAINODE")
    status = assoc.send_c_store(source)
    assoc.release()
    if int(status.get("Status", -1)) == 0:
        print("Received Store Response (Success)")


def measure(ctnode: str, source: Path, work: Path, *, sender: str) -> dict[str, float]:
    process, port = serve(ctnode, work)
    try:
        pid = process.pid
        before = status_kib(pid, "VmRSS")
        start = time.perf_counter()
        if sender == "storescu":
            argv = [
                "storescu",
                "-v",
                "-aet",
                "STORESCU",
                "-aec",
                "CTAINODE",
                "127.0.0.1",
                str(port),
                str(source),
            ]
        else:  # pynetdicom in a child process (its own memory is not the server's)
            argv = [sys.executable, str(Path(__file__).resolve()), "--send", str(port), str(source)]
        result = subprocess.run(argv, capture_output=True, text=True, timeout=1800)
        elapsed = time.perf_counter() - start
        log = result.stdout + result.stderr
        if "Received Store Response (Success)" not in log:
            raise RuntimeError(f"store failed:\n{log[-3000:]}")
        time.sleep(1.0)
        peak, after = status_kib(pid, "VmHWM"), status_kib(pid, "VmRSS")
        staged = [p for p in (work / "var" / "staging").rglob("*.dcm") if ".incoming" not in p.parts]
        if len(staged) != 1 or abs(staged[0].stat().st_size - source.stat().st_size) > 4096:
            raise RuntimeError(f"staged {staged}")
        return {
            "before_mb": before / 1024,
            "peak_mb": peak / 1024,
            "after_mb": after / 1024,
            "seconds": elapsed,
        }
    finally:
        process.stop()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes-mb", default="64,512")
    parser.add_argument("--ctnode", default=str(REPO / ".venv" / "bin" / "ctnode"))
    parser.add_argument("--workdir", type=Path, default=None, help="default: a temp folder, removed after")
    parser.add_argument("--sender", choices=["storescu", "pynetdicom"], default="storescu")
    parser.add_argument("--send", nargs=2, metavar=("PORT", "FILE"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.send:
        pynetdicom_send(int(args.send[0]), Path(args.send[1]))
        return
    if shutil.which("storescu") is None:
        raise SystemExit("storescu not found (Debian dcmtk)")
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="ingest-memory-"))
    workdir.mkdir(parents=True, exist_ok=True)
    print(
        f"{datetime.now(UTC):%Y-%m-%d} {platform.machine()}, {os.cpu_count()} CPUs, "
        f"ctnode: {args.ctnode}, sender: {args.sender}"
    )
    try:
        rows = []
        for size_mb in (int(s) for s in args.sizes_mb.split(",")):
            frames = size_mb * 2**20 // FRAME_BYTES
            source = workdir / f"mf-{size_mb}.dcm"
            if not source.exists():
                write_multiframe_ct(source, frames=frames)
            run = workdir / f"run-{size_mb}"
            shutil.rmtree(run, ignore_errors=True)
            run.mkdir()
            result = measure(args.ctnode, source, run, sender=args.sender)
            mb = source.stat().st_size / 2**20
            rows.append((mb, result))
            print(
                f"  {mb:6.0f} MiB instance: serve RSS {result['before_mb']:6.0f} MiB before, "
                f"peak {result['peak_mb']:6.0f}, after {result['after_mb']:6.0f}; "
                f"{mb / result['seconds']:5.1f} MiB/s"
            )
            shutil.rmtree(run, ignore_errors=True)
        print(f"load average after: {os.getloadavg()[0]:.2f}")
    finally:
        if args.workdir is None:
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
