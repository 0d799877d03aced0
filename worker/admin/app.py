"""The admin REST API and dashboard of ``ctnode serve`` (FastAPI; OpenAPI at ``/api/openapi.json``).

::

    app = create_app(ctx, celery_app, extra_routers=[("/dicomweb", stow_router)], node_status=scp.status)
    AdminServer(app, host=settings.api.host, port=settings.api.port).start()   # worker.admin.server

Anonymous: ``/healthz`` (the process answers), ``/readyz`` (job store, broker, rules, staging
disk: 200 or 503 with each check), the dashboard page itself (it holds no data; it asks for a
token and keeps it in sessionStorage). Everything under ``/api`` and ``/metrics`` needs a bearer
token (``worker.admin.auth``): the viewer token for reads, including validating and replaying a
*draft* rule set (dry runs: nothing changes, nothing is sent); the admin token for requeue,
cancel, re-routing a study and C-ECHO. Each write names its principal (``admin@<address>``) in the
job's audit trail.

All handlers are plain ``def``: FastAPI runs them in its thread pool, so a slow job store or
broker never blocks the event loop (and the STOW-RS router mounted beside them).
"""

from __future__ import annotations

import logging
import shutil
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from importlib import resources
from pathlib import Path
from typing import Any, Literal

from fastapi import APIRouter, Depends, FastAPI, HTTPException, Query, Response
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse
from pydantic import BaseModel, ConfigDict, Field

from dicom_node.constants import QUEUES
from dicom_node.contracts import JobState
from dicom_node.delivery.destination import open_destination
from dicom_node.errors import NodeError
from dicom_node.jobs import JobNotFound, JobRecord
from worker.admin.auth import Principal, TokenAuth
from worker.admin.broker import BrokerUnavailable, inspect_broker, ping_workers
from worker.admin.metrics import StoreMetrics
from worker.admin.rules_api import DraftRules, ReplayRequest, RulesWatch, replay_draft, validate_draft
from worker.context import WorkerContext
from worker.node.destinations import destination_overview
from worker.node.requeue import RequeueRefused, cancel, requeue
from worker.node.reroute import RerouteRefused, reroute
from worker.pipeline_choice import readiness_detail

logger = logging.getLogger(__name__)

API_PREFIX = "/api"
_PROMETHEUS_TEXT = "text/plain; version=0.0.4; charset=utf-8"


class RequeueBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    stage: Literal["inference", "delivery"] | None = Field(
        default=None, description="What to redo; default delivery when the job has results, else inference."
    )
    destinations: list[str] = Field(default_factory=list, description="Delivery only: these destinations.")
    reason: str = Field(default="", max_length=500, description="Why (goes into the audit trail).")


class RerouteBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reason: str = Field(default="", max_length=500, description="Why (goes into the audit trail).")


class CancelBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reason: str = Field(default="", max_length=500)


def job_summary(record: JobRecord) -> dict[str, Any]:
    """A job for lists: no contract blobs, with its per-stage timings."""
    out = record.model_dump(mode="json", exclude={"job", "result_bundle"})
    out["series_instance_uids"] = list(record.job.series_instance_uids)
    out["result_files"] = len(record.result_bundle.files) if record.result_bundle else 0
    return out


def _free_bytes(root: Path) -> int:
    probe = root
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent  # the storage root may not exist before the first study
    return shutil.disk_usage(probe).free


def readiness(ctx: WorkerContext, rules: RulesWatch) -> dict[str, Any]:
    """Each check with ok and detail; ``ready`` when all pass."""
    checks: dict[str, dict[str, Any]] = {}

    def check(name: str, fn: Callable[[], str]) -> None:
        started = time.monotonic()
        try:
            checks[name] = {"ok": True, "detail": fn()}
        except Exception as exc:  # a readiness probe reports, never raises
            checks[name] = {"ok": False, "detail": f"{type(exc).__name__}: {exc}"}
        checks[name]["elapsed_s"] = round(time.monotonic() - started, 4)

    def store() -> str:
        counts = ctx.store.count_by_state()
        return f"{sum(counts.values())} jobs"

    def broker() -> str:
        view = inspect_broker(ctx.settings.broker_url, QUEUES, timeout_s=2.0)
        return f"{view.kind}: {sum(view.depths.values())} waiting"

    def rules_loaded() -> str:
        in_force = ctx.rules()
        status = rules.status()
        note = "; the file on disk has problems (previous rules kept)" if status["file_problems"] else ""
        return f"{len(in_force.rules)} rules, digest {in_force.digest[:12]}{note}"

    def disk() -> str:
        free = _free_bytes(ctx.settings.storage.root)
        need = ctx.settings.storage.min_free_bytes
        if free < need:
            raise OSError(
                f"{free / 1e9:.2f} GB free on the staging disk, below the watermark {need / 1e9:.2f} GB"
            )
        return f"{free / 1e9:.2f} GB free (watermark {need / 1e9:.2f} GB)"

    check("job_store", store)
    check("broker", broker)
    check("rules", rules_loaded)
    check("staging_disk", disk)
    check("pipelines", lambda: readiness_detail(ctx.rules()))
    return {"ready": all(c["ok"] for c in checks.values()), "checks": checks}


def _dashboard_html() -> str:
    return resources.files("worker.admin").joinpath("dashboard.html").read_text(encoding="utf-8")


def create_app(
    ctx: WorkerContext,
    celery_app: Any,
    *,
    extra_routers: Sequence[tuple[str, APIRouter]] = (),
    node_status: Callable[[], dict[str, Any]] | None = None,
    auth: TokenAuth | None = None,
) -> FastAPI:
    """The admin app over ``ctx`` (settings, job store, rules) and ``celery_app`` (for requeues).

    ``extra_routers``: (prefix, router) pairs mounted as they are (e.g. the STOW-RS router at
    "/dicomweb"); they bring their own auth. ``node_status``: extra facts for the overview (e.g.
    the SCP's associations), called per request. ``auth``: default from ``ctx.settings.api``.
    """
    settings = ctx.settings
    auth = auth or TokenAuth(settings.api)
    for warning in auth.configuration_warnings():
        logger.warning("admin API: %s", warning)
    viewer = Depends(auth.require("viewer"))
    admin = Depends(auth.require("admin"))
    rules = RulesWatch(ctx)
    metrics = StoreMetrics(ctx.store, broker_url=settings.broker_url)
    app = FastAPI(
        title="ct-ai-node admin API",
        version="1",
        description="Operate the node: studies, jobs, requeue, rules, replay, C-ECHO. Bearer tokens: "
        "viewer reads, admin writes.",
        openapi_url=f"{API_PREFIX}/openapi.json",
        docs_url=f"{API_PREFIX}/docs",
        redoc_url=None,
    )
    app.state.ctx = ctx
    app.state.metrics = metrics

    # -- anonymous ------------------------------------------------------------------------------

    @app.get("/healthz", tags=["health"])
    def healthz() -> dict[str, str]:
        """Liveness: the process answers."""
        return {"status": "ok"}

    @app.get("/readyz", tags=["health"])
    def readyz() -> JSONResponse:
        """Readiness: job store, broker, rules loaded, staging disk above its watermark."""
        result = readiness(ctx, rules)
        return JSONResponse(result, status_code=200 if result["ready"] else 503)

    @app.get("/", include_in_schema=False)
    def root() -> RedirectResponse:
        return RedirectResponse("/dashboard")

    @app.get("/dashboard", response_class=HTMLResponse, include_in_schema=False)
    def dashboard() -> HTMLResponse:
        # Self-contained (no CDN: the node is offline); no data until a token is entered.
        return HTMLResponse(
            _dashboard_html(),
            headers={
                "Content-Security-Policy": "default-src 'self'; style-src 'self' 'unsafe-inline'; "
                "script-src 'self' 'unsafe-inline'; frame-ancestors 'none'",
                "Cache-Control": "no-store",
            },
        )

    @app.get("/metrics", tags=["health"], dependencies=[viewer])
    def prometheus() -> Response:
        """Prometheus text format (viewer token: ``authorization: {credentials: ...}`` in the scrape)."""
        return Response(metrics.render(), media_type=_PROMETHEUS_TEXT)

    # -- reads ------------------------------------------------------------------------------------

    api = APIRouter(prefix=API_PREFIX)

    @api.get("/overview", tags=["node"], dependencies=[viewer])
    def overview() -> dict[str, Any]:
        """Everything the dashboard's header shows: counts, queues, workers, rules, readiness."""
        counts = ctx.store.count_by_state()
        rules_status = rules.status()
        return {
            "node_name": settings.node_name,
            "now": datetime.now(UTC).isoformat(),
            "jobs_by_state": {s.value: counts.get(s, 0) for s in JobState},
            "queues": queues(),
            "workers": workers(),
            "readiness": readiness(ctx, rules),
            "destinations": destination_overview(ctx.store, settings),
            "rules": {k: v for k, v in rules_status.items() if k != "in_force"}
            | {"digest": (rules_status["in_force"] or {}).get("digest")},
            "node": node_status() if node_status is not None else {},
        }

    @api.get("/queues", tags=["node"], dependencies=[viewer])
    def queues() -> dict[str, Any]:
        """Messages waiting per queue, read from the broker."""
        try:
            view = inspect_broker(settings.broker_url, QUEUES, timeout_s=2.0)
        except BrokerUnavailable as exc:
            return {"ok": False, "error": str(exc), "depths": {}}
        return {"ok": True, "kind": view.kind, "depths": view.depths, "unacked": view.unacked}

    @api.get("/workers", tags=["node"], dependencies=[viewer])
    def workers() -> dict[str, Any]:
        """Celery ping (Redis broker only) and the workers that touched jobs in the last hour."""
        recent = ctx.store.recent_workers(since=datetime.now(UTC) - timedelta(hours=1))
        return {
            "ping": ping_workers(celery_app, timeout_s=1.0),
            "recent": [{"worker": w, "last_seen": at.isoformat()} for w, at in sorted(recent.items())],
        }

    @api.get("/studies", tags=["studies"], dependencies=[viewer])
    def list_studies(limit: int = Query(50, ge=1, le=1000)) -> list[dict[str, Any]]:
        """Most recently updated studies, each with its jobs' states."""
        out = []
        for study in ctx.store.list_studies(limit=limit):
            jobs = ctx.store.jobs_for_study(study.study_instance_uid)
            out.append(study.model_dump(mode="json") | {"jobs": [job_summary(j) for j in jobs]})
        return out

    @api.get("/studies/{study_instance_uid}", tags=["studies"], dependencies=[viewer])
    def get_study(study_instance_uid: str) -> dict[str, Any]:
        study = ctx.store.get_study(study_instance_uid)
        if study is None:
            raise HTTPException(404, f"no study {study_instance_uid} in the job store")
        manifest = ctx.store.get_manifest(study_instance_uid)
        return study.model_dump(mode="json") | {
            "jobs": [job_summary(j) for j in ctx.store.jobs_for_study(study_instance_uid)],
            "manifest": manifest.model_dump(mode="json") if manifest else None,
        }

    @api.get("/jobs", tags=["jobs"], dependencies=[viewer])
    def list_jobs(
        state: list[JobState] | None = Query(None),  # noqa: B008
        study: str | None = None,
        since_minutes: float | None = Query(None, gt=0),
        limit: int = Query(100, ge=1, le=5000),
    ) -> list[dict[str, Any]]:
        """Jobs, newest first, with per-stage timings (seconds)."""
        since = datetime.now(UTC) - timedelta(minutes=since_minutes) if since_minutes else None
        records = ctx.store.list_jobs(state=state or None, study_instance_uid=study, since=since, limit=limit)
        return [job_summary(r) for r in records]

    @api.get("/jobs/{job_id}", tags=["jobs"], dependencies=[viewer])
    def get_job(job_id: str) -> dict[str, Any]:
        """One job with every audited state change and its deliveries."""
        detail = ctx.store.job_detail(job_id)
        if detail is None:
            raise HTTPException(404, f"no job {job_id}")
        return detail.model_dump(mode="json")

    @api.get("/dead-letters", tags=["jobs"], dependencies=[viewer])
    def dead_letters(limit: int = Query(100, ge=1, le=5000)) -> list[dict[str, Any]]:
        """Jobs whose retries ran out (state DEAD)."""
        return [job_summary(r) for r in ctx.store.dead_letters(limit=limit)]

    @api.get("/failures", tags=["jobs"], dependencies=[viewer])
    def failures(limit: int = Query(100, ge=1, le=5000)) -> list[dict[str, Any]]:
        """Failed and dead jobs with their reasons: what the requeue buttons act on."""
        return [
            job_summary(r) for r in ctx.store.list_jobs(state=[JobState.FAILED, JobState.DEAD], limit=limit)
        ]

    @api.get("/config-changes", tags=["node"], dependencies=[viewer])
    def config_changes(limit: int = Query(100, ge=1, le=1000)) -> list[dict[str, Any]]:
        return [c.model_dump(mode="json") for c in ctx.store.config_changes(limit=limit)]

    @api.get("/rules", tags=["rules"], dependencies=[viewer])
    def current_rules() -> dict[str, Any]:
        """The rule set in force (with its digest) and the problems of the file on disk, if any."""
        return rules.status()

    @api.post("/rules/validate", tags=["rules"], dependencies=[viewer])
    def validate(body: DraftRules) -> dict[str, Any]:
        """Validate a draft rule set: every problem with its line number. Changes nothing."""
        return validate_draft(ctx, body.text)

    @api.post("/rules/replay", tags=["rules"], dependencies=[viewer])
    def replay(body: ReplayRequest) -> dict[str, Any]:
        """What a draft would have fired on the last N routed studies, beside the rules in force."""
        return replay_draft(ctx, body.text, limit=body.limit)

    # -- writes (admin) ---------------------------------------------------------------------------

    def _requeue(job_id: str, body: RequeueBody, who: Principal) -> dict[str, Any]:
        try:
            outcome = requeue(
                ctx.store,
                celery_app,
                settings,
                job_id,
                stage=body.stage,
                destinations=body.destinations,
                reason=body.reason,
                who=who.who,
            )
        except JobNotFound as exc:
            raise HTTPException(404, str(exc)) from exc
        except (RequeueRefused, NodeError) as exc:
            raise HTTPException(409, str(exc)) from exc
        return outcome.as_dict()

    @api.post("/jobs/{job_id}/requeue", tags=["jobs"])
    def requeue_job(job_id: str, body: RequeueBody | None = None, who: Principal = admin) -> dict[str, Any]:
        """Requeue a failed, dead or abandoned job (audited); 409 when its state does not allow it."""
        return _requeue(job_id, body or RequeueBody(), who)

    @api.post("/jobs/{job_id}/retry", tags=["jobs"])
    def retry_job(job_id: str, body: RequeueBody | None = None, who: Principal = admin) -> dict[str, Any]:
        """Same as requeue (the name ``ctnode jobs retry`` uses)."""
        return _requeue(job_id, body or RequeueBody(), who)

    @api.post("/jobs/{job_id}/cancel", tags=["jobs"])
    def cancel_job(job_id: str, body: CancelBody | None = None, who: Principal = admin) -> dict[str, Any]:
        """A queued, failed or dead job → skipped, with who and why; 409 otherwise."""
        try:
            record = cancel(ctx.store, job_id, reason=(body or CancelBody()).reason, who=who.who)
        except JobNotFound as exc:
            raise HTTPException(404, str(exc)) from exc
        except (RequeueRefused, NodeError) as exc:
            raise HTTPException(409, str(exc)) from exc
        return job_summary(record)

    @api.post("/studies/{study_instance_uid}/reroute", tags=["studies"])
    def reroute_study(
        study_instance_uid: str, body: RerouteBody | None = None, who: Principal = admin
    ) -> dict[str, Any]:
        """Route a study again with the rules in force (after a rules change), audited: new jobs are
        queued, earlier ones they replace superseded (their results withdrawn once the new ones are
        delivered); the same rules give the same jobs. 404 unknown study, 409 files gone."""
        try:
            outcome = reroute(
                ctx, celery_app, study_instance_uid, who=who.who, reason=(body or RerouteBody()).reason
            )
        except RerouteRefused as exc:
            status = 404 if ctx.store.get_study(study_instance_uid) is None else 409
            raise HTTPException(status, str(exc)) from exc
        except NodeError as exc:
            raise HTTPException(409, str(exc)) from exc
        return outcome.as_dict()

    @api.post("/destinations/{name}/echo", tags=["destinations"])
    def echo(name: str, who: Principal = admin) -> dict[str, Any]:
        """Health check of a destination: C-ECHO a DICOM peer, a QIDO-RS probe of a DICOMweb server."""
        dest = settings.destinations.get(name)
        if dest is None:
            known = ", ".join(sorted(settings.destinations)) or "none configured"
            raise HTTPException(404, f"no destination {name!r} (known: {known})")
        destination = open_destination(
            name, dest, calling_ae_title=settings.dicom.ae_title, environ=ctx.environ
        )
        result = destination.health()
        logger.info("echo %s by %s: %s", name, who.role, "ok" if result.ok else "failed")
        # what the destination monitor sees too: a destination back up resumes its waiting deliveries
        ctx.store.record_destination_health(name, up=result.ok, detail=result.detail)
        return {
            "destination": name,
            "ok": result.ok,
            "detail": result.detail,
            "status": result.status,
            "elapsed_s": round(result.elapsed_s, 4),
        }

    @api.get("/destinations/status", tags=["destinations"], dependencies=[viewer])
    def destinations_status() -> list[dict[str, Any]]:
        """Each destination's state: up/down and since when (the serve process's health checks),
        deliveries waiting for it, and when the oldest one's retry window ends."""
        return destination_overview(ctx.store, settings)

    @api.get("/destinations", tags=["destinations"], dependencies=[viewer])
    def destinations() -> dict[str, Any]:
        # Every setting of the destination but secrets (tokens are never in settings, only the
        # name of the environment variable holding one).
        return {name: d.model_dump(mode="json") for name, d in sorted(settings.destinations.items())}

    app.include_router(api)
    for prefix, router in extra_routers:
        app.include_router(router, prefix=prefix)
    return app
