"""The real node as separate processes for e2e tests: ``ctnode serve`` and ``ctnode worker``.

``NodeHarness`` writes a settings file and a rules file into a temporary folder, starts the
processes through the ``ctnode`` entry point (as an admin would), sends studies with DCMTK
``storescu`` and reads outcomes from the job store the processes share.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import yaml

from dicom_node.contracts import JobState
from dicom_node.jobs.records import JobRecord
from dicom_node.jobs.store import JobStore
from tests.support.dcmtk import require
from tests.support.processes import ManagedProcess, free_port, port_open, wait_until

VIEWER_TOKEN = "e2e-viewer-token-not-a-secret"
FINAL = (JobState.DELIVERED, JobState.FAILED, JobState.DEAD, JobState.SKIPPED, JobState.SUPERSEDED)
REPO = Path(__file__).resolve().parents[2]


class NodeHarness:
    def __init__(
        self,
        work: Path,
        *,
        pacs_port: int,
        broker_url: str = "",
        pipeline: str = "ct-anatomy-basic",
        prompts: Sequence[str] = ("body", "left lung", "right lung", "bone"),
        extra_settings: dict[str, Any] | None = None,
    ) -> None:
        self.work = work
        work.mkdir(parents=True, exist_ok=True)
        self.dicom_port = free_port()
        self.api_port = free_port()
        rules = work / "routing.yaml"
        rule = {
            "name": "e2e-ct",
            "when": {"modality": "CT", "image_count": {"min": 10}},
            "select": "largest",
            "pipeline": pipeline,
            "prompts": list(prompts),
            "destinations": ["pacs"],
        }
        rules.write_text(yaml.safe_dump({"version": 1, "rules": [rule]}, sort_keys=False))
        settings: dict[str, Any] = {
            "storage": {"root": str(work / "var"), "min_free_bytes": 16 * 1024**2},
            "rules_file": str(rules),
            "completion": {"quiet_period_s": 2.0},
            "dicom": {"port": self.dicom_port},
            "api": {"port": self.api_port},
            # fast retries so "destination down, then up" settles within the test
            "queue": {"retry_backoff_base_s": 0.5, "retry_backoff_max_s": 2.0, "max_retries": 30},
            "destinations": {
                "pacs": {"kind": "dicom", "ae_title": "PACS", "host": "127.0.0.1", "port": pacs_port}
            },
        }
        if broker_url:
            settings["queue"]["broker_url"] = broker_url
        for key, value in (extra_settings or {}).items():
            settings[key] = {**settings.get(key, {}), **value} if isinstance(value, dict) else value
        self.config = work / "node.yaml"
        self.config.write_text(yaml.safe_dump(settings, sort_keys=False))
        self.processes: list[ManagedProcess] = []
        self._store: JobStore | None = None

    # -- processes ----------------------------------------------------------------------------

    def _ctnode(self, *args: str, log: str) -> ManagedProcess:
        argv = [sys.executable, "-m", "worker.cli.main", *args, "--config", str(self.config)]
        env = {**os.environ, "CTNODE_VIEWER_TOKEN": VIEWER_TOKEN}
        proc = ManagedProcess(argv, log_path=self.work / log, cwd=REPO, env=env)
        self.processes.append(proc)
        return proc

    def start_serve(self, *, with_worker: bool) -> ManagedProcess:
        proc = self._ctnode("serve", "--with-worker" if with_worker else "--no-worker", log="serve.log")
        wait_until(lambda: port_open(self.dicom_port) or not proc.alive(), timeout_s=60, what="ctnode serve")
        assert proc.alive(), proc.log_text()
        return proc

    def start_worker(self, name: str = "worker") -> ManagedProcess:
        proc = self._ctnode("worker", log=f"{name}-{len(self.processes)}.log")
        wait_until(
            lambda: " ready." in proc.log_text() or not proc.alive(), timeout_s=120, what="ctnode worker"
        )
        assert proc.alive(), proc.log_text()
        return proc

    def stop(self) -> None:
        for proc in reversed(self.processes):
            proc.stop(timeout_s=30)
        if self._store is not None:
            self._store.close()

    def logs(self, *, full: bool = False) -> str:
        """The processes' output (the last 6000 characters of each unless ``full``)."""
        return "\n".join(
            f"===== {p.log_path.name}\n{p.log_text() if full else p.log_text()[-6000:]}"
            for p in self.processes
        )

    # -- admin API -----------------------------------------------------------------------------

    def api_get(self, path: str) -> object:
        """GET from the serve process's admin API with the viewer token; JSON or text."""
        request = urllib.request.Request(
            f"http://127.0.0.1:{self.api_port}{path}", headers={"Authorization": f"Bearer {VIEWER_TOKEN}"}
        )
        with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310 (loopback)
            body = response.read().decode()
            if response.headers.get_content_type() == "application/json":
                return json.loads(body)
            return body

    # -- DICOM --------------------------------------------------------------------------------

    def storescu(
        self, paths: Sequence[Path], *, calling_ae: str = "STORESCU"
    ) -> subprocess.CompletedProcess[str]:
        argv = [
            require("storescu"),
            "-aet",
            calling_ae,
            "-aec",
            "CTAINODE",
            "127.0.0.1",
            str(self.dicom_port),
        ]
        return subprocess.run([*argv, *map(str, paths)], capture_output=True, text=True, timeout=300)

    # -- job store ----------------------------------------------------------------------------

    @property
    def store(self) -> JobStore:
        if self._store is None:
            from dicom_node.settings import load_settings

            self._store = JobStore.open(load_settings(self.config).database_url)
        return self._store

    def jobs(self, study_instance_uid: str) -> list[JobRecord]:
        try:
            return self.store.jobs_for_study(study_instance_uid)
        except Exception:  # the serve process may still be creating the schema
            return []

    def wait_for_job(
        self,
        study_instance_uid: str,
        *,
        timeout_s: float = 300,
        done: Callable[[JobRecord], bool] = lambda j: j.state in FINAL,
    ) -> JobRecord:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            jobs = self.jobs(study_instance_uid)
            if jobs and done(jobs[-1]):
                return jobs[-1]
            time.sleep(0.3)
        jobs = self.jobs(study_instance_uid)
        raise AssertionError(
            f"job of {study_instance_uid} not done after {timeout_s} s: "
            f"{[(j.state.value, j.reason) for j in jobs]}\n{self.logs()}"
        )
