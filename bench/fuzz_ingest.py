"""Fuzz the ingest of a live ``ctnode serve`` (issue 12): ≥ 2,000 generated C-STORE cases
(tests/support/fuzz_cases.py) over raw associations, and a share of them again as STOW-RS parts.

A fresh ``ctnode serve`` (settings, storage and ``TMPDIR`` under the work folder; a minimal
rules file; no worker) receives every case; each answer is judged (tests/support/fuzz_runner.py:
ok / accepted-bad / refused-good / wrong-status / crash / aborted). Afterwards: C-ECHO must
answer (DCMTK echoscu), staging's ``.incoming`` and ``TMPDIR`` must be empty, exactly the
instances answered Success must be staged, the serve log must hold no traceback, and the
process's memory (VmRSS, VmHWM) is reported. Exit status 1 on any problem. Usage::

    nice -n 19 .venv/bin/python bench/fuzz_ingest.py [--cases 2400] [--stow 600] [--seed N]
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

from tests.support.fuzz_cases import generate_cases  # noqa: E402
from tests.support.fuzz_runner import run_cases, run_stow_cases  # noqa: E402
from tests.support.processes import ManagedProcess, free_port, port_open, wait_until  # noqa: E402

TOKEN = "fuzz-stow-token-not-a-secret"  # noqa: S105


def status_kib(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise KeyError(field)


def start_serve(ctnode: str, work: Path) -> tuple[ManagedProcess, int, int]:
    dicom_port, api_port = free_port(), free_port()
    rule = {
        "name": "bench",
        "when": {"modality": "CT"},
        "pipeline": "ct-anatomy-basic",
        "prompts": ["body"],
        "destinations": ["pacs"],
    }
    (work / "routing.yaml").write_text(yaml.safe_dump({"version": 1, "rules": [rule]}, sort_keys=False))
    settings = {
        "storage": {"root": str(work / "var"), "min_free_bytes": 0},
        "dicom": {"port": dicom_port, "allowed_peers": [{"ae_title": "PYSCU"}, {"ae_title": "ECHOSCU"}]},
        "api": {"port": api_port},
        "rules_file": str(work / "routing.yaml"),
        "destinations": {"pacs": {"kind": "dicom", "ae_title": "PACS", "host": "127.0.0.1", "port": 9}},
    }
    config = work / "node.yaml"
    config.write_text(yaml.safe_dump(settings))
    (work / "tmp").mkdir(exist_ok=True)
    env = {**os.environ, "TMPDIR": str(work / "tmp"), "CTNODE_STOW_TOKEN": TOKEN}
    process = ManagedProcess(
        [ctnode, "serve", "--config", str(config)], log_path=work / "serve.log", env=env, cwd=work
    )
    wait_until(
        lambda: (port_open(dicom_port) and port_open(api_port)) or not process.alive(),
        timeout_s=120,
        what="ctnode serve",
    )
    if not process.alive():
        raise RuntimeError(f"serve exited:\n{process.log_text()[-3000:]}")
    return process, dicom_port, api_port


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--cases", type=int, default=2400)
    parser.add_argument("--stow", type=int, default=600, help="how many of the cases also go by STOW-RS")
    parser.add_argument("--seed", type=int, default=12)
    parser.add_argument("--ctnode", default=str(REPO / ".venv" / "bin" / "ctnode"))
    parser.add_argument("--workdir", type=Path, default=None, help="default: a temp folder, removed after")
    args = parser.parse_args()
    work = args.workdir or Path(tempfile.mkdtemp(prefix="fuzz-ingest-"))
    work.mkdir(parents=True, exist_ok=True)
    print(f"{datetime.now(UTC):%Y-%m-%d} {platform.machine()}, {os.cpu_count()} CPUs, seed {args.seed}")
    problems = 0
    try:
        cases = generate_cases(args.cases, seed=args.seed)
        process, dicom_port, api_port = start_serve(args.ctnode, work)
        try:
            time.sleep(2.0)
            rss_before = status_kib(process.pid, "VmRSS")
            report = run_cases(dicom_port, cases)
            print("C-STORE:", report.describe())
            stow = run_stow_cases(f"http://127.0.0.1:{api_port}/dicom-web/studies", TOKEN, cases[: args.stow])
            print("STOW-RS:", stow.describe())
            problems += len(report.problems()) + len(stow.problems())
            time.sleep(2.0)
            echo = subprocess.run(
                ["echoscu", "-aet", "ECHOSCU", "-aec", "CTAINODE", "127.0.0.1", str(dicom_port)],
                capture_output=True,
                text=True,
                timeout=60,
            )
            print(f"C-ECHO after: {'answered' if echo.returncode == 0 else 'FAILED ' + echo.stderr[-300:]}")
            problems += echo.returncode != 0
            rss_after, rss_peak = status_kib(process.pid, "VmRSS"), status_kib(process.pid, "VmHWM")
            print(
                f"serve RSS: {rss_before / 1024:.0f} MiB before, {rss_after / 1024:.0f} after, "
                f"peak {rss_peak / 1024:.0f}"
            )
        finally:
            process.stop()
        staging = work / "var" / "staging"
        leftovers = sorted((staging / ".incoming").iterdir()) + sorted((work / "tmp").iterdir())
        print(f"left in staging/.incoming and TMPDIR: {len(leftovers)}")
        problems += len(leftovers)
        accepted = {r.case.sop_instance_uid for r in report.results + stow.results if r.status == 0x0000}
        staged = {p.stem for p in staging.rglob("*.dcm") if ".incoming" not in p.parts}
        print(f"staged {len(staged)} instances; answered Success for {len(accepted)} distinct instances")
        problems += staged != accepted
        log = (work / "serve.log").read_text(errors="replace")
        tracebacks = log.count("Traceback")
        print(f"serve log: {tracebacks} tracebacks, {log.count('failed unexpectedly')} 'failed unexpectedly'")
        problems += tracebacks
        print(f"load average after: {os.getloadavg()[0]:.2f}; problems: {problems}")
    finally:
        if args.workdir is None:
            shutil.rmtree(work, ignore_errors=True)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
