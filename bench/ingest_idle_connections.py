"""Idle TCP connections against a real ``ctnode serve`` (issue 12 item 7): can a sender still
store while N sockets sit open without a byte?

A fresh ``ctnode serve`` (default connection settings, STORESCU allowed from 127.0.0.0/8) gets N
idle TCP connections from 127.0.0.2 (an allowed address) and N from 127.0.0.3 (also allowed by
the default networks), then DCMTK ``storescu`` sends one CT slice from 127.0.0.1 while they stay
open; reported: whether it was stored, storescu's wall time, and how long until the server closed
the idle sockets. ``--ctnode`` runs another checkout (before/after). Usage::

    nice -n 19 .venv/bin/python bench/ingest_idle_connections.py [--idle 16] [--ctnode PATH]
"""

from __future__ import annotations

import argparse
import os
import platform
import select
import socket
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.support.ct_series import make_ct_series  # noqa: E402
from tests.support.processes import ManagedProcess, free_port, port_open, wait_until  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--idle", type=int, default=16, help="idle connections per source address")
    parser.add_argument("--ctnode", default=str(REPO / ".venv" / "bin" / "ctnode"))
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="idle-bench-"))
    port = free_port()
    rule = {"name": "b", "when": {"modality": "CT"}, "pipeline": "ct-anatomy-basic", "destinations": ["pacs"]}
    (work / "routing.yaml").write_text(yaml.safe_dump({"version": 1, "rules": [rule]}))
    settings = {
        "storage": {"root": str(work / "var"), "min_free_bytes": 0},
        "dicom": {"port": port},
        "api": {"enabled": False},
        "rules_file": str(work / "routing.yaml"),
        "destinations": {"pacs": {"kind": "dicom", "ae_title": "PACS", "host": "127.0.0.1", "port": 9}},
    }
    (work / "node.yaml").write_text(yaml.safe_dump(settings))
    [ct] = make_ct_series(work / "ct", n_slices=1, rows=128, cols=128)
    env = {**os.environ, "TMPDIR": str(work)}
    serve = ManagedProcess(
        [args.ctnode, "serve", "--config", str(work / "node.yaml")],
        log_path=work / "serve.log",
        env=env,
        cwd=work,
    )
    print(f"{datetime.now(UTC):%Y-%m-%d} {platform.machine()}, {os.cpu_count()} CPUs, ctnode: {args.ctnode}")
    try:
        wait_until(lambda: port_open(port), timeout_s=120, what="ctnode serve")
        time.sleep(1.0)
        idle = []
        for source in ("127.0.0.2", "127.0.0.3"):
            for _ in range(args.idle):
                s = socket.socket()
                s.bind((source, 0))
                s.connect(("127.0.0.1", port))
                idle.append(s)
        opened = time.monotonic()
        time.sleep(0.5)
        start = time.perf_counter()
        result = subprocess.run(
            ["storescu", "-v", "-aet", "STORESCU", "-aec", "CTAINODE", "127.0.0.1", str(port), str(ct)],
            capture_output=True,
            text=True,
            timeout=300,
        )
        elapsed = time.perf_counter() - start
        log = result.stdout + result.stderr
        stored = "Received Store Response (Success)" in log
        rejected = next(
            (line for line in log.splitlines() if "Association Rejected" in line or "Reason" in line), ""
        )
        verdict = "STORED" if stored else "NOT stored"
        print(f"  {2 * args.idle} idle sockets open: storescu {verdict} in {elapsed:.2f} s {rejected}")
        # when does the server close the idle sockets?
        pending = set(idle)
        closed_at: list[float] = []
        deadline = time.monotonic() + 120
        while pending and time.monotonic() < deadline:
            readable, _, _ = select.select(list(pending), [], [], 1.0)
            for s in readable:
                try:
                    data = s.recv(4096)
                except OSError:
                    data = b""
                if not data:
                    closed_at.append(time.monotonic() - opened)
                    pending.discard(s)
        if closed_at:
            print(
                f"  idle sockets closed by the server: {len(closed_at)} of {len(idle)}, "
                f"after {min(closed_at):.1f}-{max(closed_at):.1f} s"
            )
        else:
            print(f"  idle sockets closed by the server: 0 of {len(idle)} within 120 s")
        for s in idle:
            s.close()
    finally:
        serve.stop()
    print(f"load average after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
