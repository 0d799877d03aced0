"""When does a real ``ctnode serve`` judge a study complete, for the senders hospitals have?

Each scenario starts ``ctnode serve --no-worker`` (the real SCP and study tracker, default
completion settings unless the scenario says otherwise), sends a two-series CT study with DCMTK
``storescu`` and watches the serve log for "study stable (...)". Reported per scenario: how many
times the study was handed to routing, with how many instances each time (a partial study is a
wrong result set), and the seconds from the end of the last ``storescu`` to the last hand-off.

Scenarios:

- ``series-by-series``: each series in its own association, 3 s apart, sender STORESCU (not
  "one association per study"): the quiet period decides.
- ``series-by-series, old default``: the same with ``completion.association_release: true`` (the
  default before issue 12): the release of the first association completes the study.
- ``one association, marked``: the whole study in one association from a sender marked
  ``one_association_per_study``: the release (+1 s grace) completes it.
- ``serve killed mid-study``: series 1, ``kill -9`` of serve, restart 12 s later (more than the
  8 s quiet period), series 2 right after the restart.

Usage::

    nice -n 10 .venv/bin/python bench/completion_split_study.py [--slices 60]
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import yaml  # noqa: E402

from tests.support.ct_series import make_ct_series  # noqa: E402
from tests.support.processes import free_port, port_open, wait_until  # noqa: E402

STABLE = re.compile(r"study stable \(([a-z-]+), (\d+) instances\)")


@dataclass
class Serve:
    work: Path
    port: int
    env: dict[str, str]
    proc: subprocess.Popen[bytes] | None = None
    log: Path = field(init=False)

    def __post_init__(self) -> None:
        self.log = self.work / "serve.log"

    def start(self) -> None:
        out = self.log.open("ab")
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "worker.cli.main",
                "serve",
                "--no-worker",
                "--config",
                str(self.work / "node.yaml"),
            ],
            cwd=REPO,
            env=self.env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        wait_until(lambda: port_open(self.port), timeout_s=60, what="ctnode serve")

    def kill9(self) -> None:
        assert self.proc is not None
        os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            self.proc.wait(30)

    def stables(self) -> list[tuple[str, int]]:
        text = self.log.read_text(errors="replace") if self.log.exists() else ""
        return [(m.group(1), int(m.group(2))) for m in STABLE.finditer(text)]


def _serve(work: Path, *, completion: dict[str, object], one_association: bool, env: dict[str, str]) -> Serve:
    work.mkdir(parents=True)
    port = free_port()
    (work / "routing.yaml").write_text("version: 1\nrules: []\n")
    peer: dict[str, object] = {"ae_title": "STORESCU"}
    if one_association:
        peer["one_association_per_study"] = True
    settings = {
        "storage": {"root": str(work / "var"), "min_free_bytes": 16 * 1024**2},
        "rules_file": str(work / "routing.yaml"),
        "dicom": {"port": port, "allowed_peers": [peer]},
        "api": {"enabled": False},
        "completion": completion,
    }
    (work / "node.yaml").write_text(yaml.safe_dump(settings))
    return Serve(work, port, env)


def _send(serve: Serve, files: list[Path]) -> None:
    subprocess.run(
        ["storescu", "-aec", "CTAINODE", "127.0.0.1", str(serve.port), *map(str, files)],
        check=True,
        capture_output=True,
        timeout=300,
    )


def _settle(serve: Serve, *, expect_total: int, quiet_s: float = 20.0) -> tuple[list[tuple[str, int]], float]:
    """Wait until the whole study was handed on and nothing more came for ``quiet_s``."""
    sent_at = time.monotonic()
    last_change, seen, first_full = time.monotonic(), serve.stables(), None
    while time.monotonic() - last_change < quiet_s:
        time.sleep(0.1)
        now = serve.stables()
        if now != seen:
            seen, last_change = now, time.monotonic()
            if first_full is None and now and now[-1][1] >= expect_total:
                first_full = time.monotonic() - sent_at
        if time.monotonic() - sent_at > 300:
            break
    return seen, first_full if first_full is not None else float("nan")


def scenario(
    name: str,
    root: Path,
    series: list[list[Path]],
    *,
    old_default: bool = False,
    one_association: bool = False,
    kill: bool = False,
) -> tuple[str, list[tuple[str, int]], float]:
    env = {**os.environ}
    completion: dict[str, object] = {"association_release": True} if old_default else {}
    serve = _serve(
        root / name.replace(" ", "-").replace(",", ""),
        completion=completion,
        one_association=one_association,
        env=env,
    )
    total = sum(len(s) for s in series)
    try:
        serve.start()
        if one_association:
            _send(serve, [f for s in series for f in s])
        elif kill:
            _send(serve, series[0])
            serve.kill9()
            time.sleep(12.0)
            serve.start()
            _send(serve, series[1])
        else:
            _send(serve, series[0])
            time.sleep(3.0)
            _send(serve, series[1])
        stables, latency = _settle(serve, expect_total=total)
    finally:
        serve.stop()
    return name, stables, latency


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--slices", type=int, default=60)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="ctnode-completion-") as tmp:
        root = Path(tmp)
        study_uid = "1.2.826.0.1.3680043.8.498.7" + str(int(time.time()))
        series = [
            make_ct_series(
                root / "s1", n_slices=args.slices, rows=256, cols=256, study_uid=study_uid, series_number=1
            ),
            make_ct_series(
                root / "s2",
                n_slices=args.slices,
                rows=256,
                cols=256,
                study_uid=study_uid,
                series_number=2,
                seed=1,
            ),
        ]
        runs = [
            scenario("series-by-series", root, series),
            scenario("series-by-series, old default", root, series, old_default=True),
            scenario("one association, marked", root, series, one_association=True),
            scenario("serve killed mid-study", root, series, kill=True),
        ]
    total = 2 * args.slices
    print(
        f"\n{date.today()} {platform.node()} ({os.cpu_count()} cores), "
        f"2 series x {args.slices} slices 256x256"
    )
    print(f"{'scenario':<32} {'hand-offs (reason, instances)':<58} {'complete study after (s)':>24}")
    for name, stables, latency in runs:
        shown = ", ".join(f"{r} {n}" for r, n in stables) or "none"
        partial = sum(1 for _, n in stables if n < total)
        flag = f"  <- {partial} partial" if partial else ""
        print(f"{name:<32} {shown + flag:<58} {latency:>24.1f}")


if __name__ == "__main__":
    main()
