"""End-to-end latency of the node: last instance received → results acknowledged at the PACS.

Runs ``ctnode demo`` (the real node: SCP, completion, SQLite broker, a worker process, C-STORE to
a PACS SCP) on a synthetic 512×512×N study and reads its ``demo-result.json``. The completion wait
(association release + its grace, or the quiet period) is reported separately: the issue's target
excludes it. Usage::

    .venv/bin/python bench/e2e_latency.py [--pipeline ct-anatomy-basic] [--slices 300]
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
from datetime import date
from pathlib import Path

OUT = Path(__file__).resolve().parent / "out" / "e2e"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--pipeline", default="ct-anatomy-basic")
    parser.add_argument("--slices", type=int, default=300)
    parser.add_argument("--prompt", action="append", default=[])
    args = parser.parse_args()
    out = OUT / args.pipeline
    argv = [sys.executable, "-m", "worker.cli.main", "demo", "--out", str(out), "--pipeline", args.pipeline]
    argv += ["--slices", str(args.slices)]
    for prompt in args.prompt:
        argv += ["--prompt", prompt]
    subprocess.run(argv, check=True)
    result = json.loads((out / "demo-result.json").read_text())
    latency = result["last_instance_to_delivered_s"]
    wait = result["completion_wait_s"]
    print(f"\n{date.today()} {platform.node()} {result['pipeline']} {result['slices']} slices 512x512")
    for stage, seconds in result["stages_s"].items():
        print(f"  {stage:<32} {'-' if seconds is None else f'{seconds:7.2f}'}")
    print(f"  last instance → delivered        {latency:7.2f}")
    print(f"  of which completion wait         {wait:7.2f}")
    print(f"  latency excluding the wait       {latency - wait:7.2f}")


if __name__ == "__main__":
    main()
