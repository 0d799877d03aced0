"""The node process (``ctnode serve``): receive, decide completion, hand studies to routing.

One process holds the DICOM SCP, the study tracker, the HTTP side (STOW-RS ingest, admin API,
dashboard, metrics) and a maintenance loop (sweeper for abandoned jobs, broker pruning,
retention). It never loads the model: stable studies go to the ``routing`` queue by task name.
``with_worker`` also supervises one ``ctnode worker`` child process: the embedded single-machine
setup (SQLite broker, no other service), used by ``ctnode demo``.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import IO, Any

from celery import Celery

from dicom_node.assembly.tracker import StudyTracker
from dicom_node.contracts import StudyStable
from dicom_node.errors import NodeError
from dicom_node.ingest.receive import InstanceReceiver
from dicom_node.ingest.scp import AssociationSummary, StoreSCP
from dicom_node.ingest.staging import Staging, read_staged_instance
from dicom_node.ingest.stow import StowRequestSummary, make_bearer_auth, make_stow_router
from dicom_node.ingest.validation import ImageLimits
from dicom_node.routing.match import quiet_period_override
from dicom_node.settings import Settings
from worker.admin.app import create_app
from worker.context import WorkerContext
from worker.node.retention import prune
from worker.node.sweeper import sweep
from worker.tasks.app import make_celery, prune_sqlite_broker
from worker.tasks.enqueue import enqueue_route

logger = logging.getLogger(__name__)

MAINTENANCE_INTERVAL_S = 15.0
HOURLY_S = 3600.0


class NodeService:
    def __init__(
        self,
        settings: Settings,
        *,
        dicom_port: int | None = None,
        api_port: int | None = None,
        with_worker: bool = False,
        worker_args: tuple[str, ...] = (),
        config_path: str | None = None,
        worker_log: Path | None = None,
    ) -> None:
        self.settings = settings
        self.ctx = WorkerContext.open(settings)
        self.ctx.rules()  # a bad rules file stops the start here, with file:line
        self.celery: Celery = make_celery(settings, include=[])
        self.tracker = StudyTracker(
            settings, on_stable=self._on_stable, quiet_period_for=self._quiet_period_for
        )
        self.staging = Staging(settings.storage.staging_dir, min_free_bytes=settings.storage.min_free_bytes)
        self.scp = StoreSCP(
            settings,
            on_instance=self.tracker.instance_stored,
            on_association_released=self._on_released,
            staging=self.staging,
            port=dicom_port,
        )
        self._api_port = settings.api.port if api_port is None else api_port
        self._http: _HttpThread | None = None
        self._with_worker = with_worker
        self._worker_args = worker_args
        self._config_path = config_path
        self._worker_log = worker_log
        self._worker_log_file: IO[bytes] | None = None
        self.worker_process: subprocess.Popen[bytes] | None = None
        self._stop = threading.Event()
        self._maintenance: threading.Thread | None = None

    # -- wiring -------------------------------------------------------------------------------

    def _on_stable(self, stable: StudyStable) -> None:
        # Raising here keeps the study pending in the tracker: the next sweep tries again.
        enqueue_route(self.celery, stable)
        logger.info(
            "study stable (%s, %d instances): sent to routing",
            stable.reason.value,
            stable.instance_count,
            extra={"study": stable.study_instance_uid, "stage": "assembly"},
        )

    def _on_released(self, summary: AssociationSummary) -> None:
        self.tracker.association_released(summary.association_id, released=summary.released)

    def _on_stow_complete(self, summary: StowRequestSummary) -> None:
        self.tracker.association_released(summary.request_id, released=True)

    def _quiet_period_for(self, study_instance_uid: str, calling_ae_title: str) -> float | None:
        try:
            rules = self.ctx.rules()
        except NodeError:
            return None
        return quiet_period_override(
            rules, calling_ae_title=calling_ae_title, called_ae_title=self.settings.dicom.ae_title
        )

    def _stow_tokens(self) -> list[str]:
        api = self.settings.api
        return [t for t in (os.environ.get(api.stow_token_env), os.environ.get(api.admin_token_env)) if t]

    def http_app(self) -> Any:
        """The FastAPI app: admin API + dashboard + metrics when installed, STOW-RS always."""
        receiver = InstanceReceiver(
            self.staging,
            limits=ImageLimits.from_settings(self.settings.dicom),
            uid_root=self.settings.uid_root,
            manufacturer=self.settings.manufacturer,
        )
        stow = make_stow_router(
            receiver=receiver,
            on_instance=self.tracker.instance_stored,
            on_request_complete=self._on_stow_complete,
            auth=make_bearer_auth(self._stow_tokens),
            called_ae_title=self.settings.dicom.ae_title,
        )
        return create_app(self.ctx, self.celery, extra_routers=[("", stow)], node_status=self.status)

    def status(self) -> dict[str, Any]:
        return {
            "ae_title": self.settings.dicom.ae_title,
            "dicom_port": self.scp.port,
            "api_port": self.api_port,
            "pending_studies": len(self.tracker.pending_studies()),
            "worker_pid": self.worker_process.pid if self.worker_process else None,
        }

    @property
    def api_port(self) -> int | None:
        return self._http.port if self._http else None

    # -- lifecycle ----------------------------------------------------------------------------

    def start(self) -> None:
        report = self.tracker.recover(
            self.settings.storage.staging_dir,
            read_instance=partial(
                read_staged_instance,
                uid_root=self.settings.uid_root,
                manufacturer=self.settings.manufacturer,
            ),
        )
        if report.studies_pending:
            logger.info("recovered %d staged studies not yet routed", report.studies_pending)
        self.tracker.start()
        self.scp.start()
        if self.settings.api.enabled:
            self._http = _HttpThread(self.http_app(), self.settings.api.host, self._api_port)
            self._http.start()
        if self._with_worker:
            self.worker_process = self._spawn_worker()
        self._maintenance = threading.Thread(target=self._maintain, name="maintenance", daemon=True)
        self._maintenance.start()
        logger.info(
            "node serving: DICOM %s on port %s, HTTP on port %s",
            self.settings.dicom.ae_title,
            self.scp.port,
            self.api_port,
        )

    def _spawn_worker(self) -> subprocess.Popen[bytes]:
        cmd = [sys.executable, "-m", "worker.cli.main", "worker", *self._worker_args]
        env = dict(os.environ)
        if self._config_path:
            env["CTNODE_CONFIG"] = str(Path(self._config_path).resolve())
        output = None
        if self._worker_log is not None:
            self._worker_log.parent.mkdir(parents=True, exist_ok=True)
            output = self._worker_log_file = self._worker_log.open("ab")
        # Own session: a Ctrl-C in the terminal reaches serve, which then stops the worker cleanly.
        return subprocess.Popen(
            cmd, env=env, start_new_session=True, stdout=output, stderr=subprocess.STDOUT if output else None
        )

    def _maintain(self) -> None:
        """Every MAINTENANCE_INTERVAL_S: the sweeper; hourly: retention and broker pruning."""
        last_hourly = 0.0
        while not self._stop.wait(MAINTENANCE_INTERVAL_S):
            self._guarded("sweeper", lambda: sweep(self.ctx, self.celery))
            if time.monotonic() - last_hourly < HOURLY_S and last_hourly:
                continue
            last_hourly = time.monotonic()
            self._guarded("retention", lambda: prune(self.settings, self.ctx.store))
            if self.settings.broker_url.startswith("sqla+sqlite"):
                self._guarded("broker prune", lambda: prune_sqlite_broker(self.settings.broker_url))

    @staticmethod
    def _guarded(name: str, step: Callable[[], object]) -> None:
        try:
            step()
        except Exception:  # the loop must survive one bad pass; the next one tries again
            logger.exception("maintenance: %s failed", name)

    def stop(self) -> None:
        self._stop.set()
        self.scp.stop()
        self.tracker.stop()
        if self._http is not None:
            self._http.stop()
        if self.worker_process is not None and self.worker_process.poll() is None:
            # SIGTERM to the main process only: Celery's warm shutdown stops its pool children
            # and gives unacknowledged messages back to the broker.
            self.worker_process.terminate()
            try:
                self.worker_process.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(self.worker_process.pid, signal.SIGKILL)
                self.worker_process.wait(10)
        if self._worker_log_file is not None:
            self._worker_log_file.close()
        self.ctx.close()

    def __enter__(self) -> NodeService:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


class _HttpThread:
    """uvicorn in a daemon thread (port 0 picks a free port)."""

    def __init__(self, app: Any, host: str, port: int) -> None:
        import uvicorn

        self._server = uvicorn.Server(
            uvicorn.Config(app, host=host, port=port, log_level="warning", access_log=False, lifespan="off")
        )
        # uvicorn >= 0.29 installs handlers only in the main thread; this one never is.
        self._thread = threading.Thread(target=self._server.run, name="http", daemon=True)
        self.port: int | None = None

    def start(self, timeout_s: float = 20.0) -> None:
        self._thread.start()
        deadline = time.monotonic() + timeout_s
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise NodeError("HTTP server did not start (port in use?)")
            time.sleep(0.05)
        sockets = [s for srv in self._server.servers for s in srv.sockets]
        self.port = int(sockets[0].getsockname()[1]) if sockets else None

    def stop(self) -> None:
        self._server.should_exit = True
        self._thread.join(10)
