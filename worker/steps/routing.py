"""Route a stable study: manifest (headers only) → rules → jobs in the store.

Idempotent: the same study routed twice (a resend, Orthanc re-firing STABLE_STUDY after our own
results landed in the study) yields the same job ids, which the store already holds, so nothing
new is queued. A late series changes the SOP set and hence the job id; the rule's late-series
policy then either supersedes the earlier job (``rerun``) or records the new one as skipped
(``ignore``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from dicom_node.contracts import Job, JobState, LateSeriesPolicy, StudyManifest, StudySource, StudyStable
from dicom_node.errors import PermanentError
from dicom_node.ingest.orthanc_source import OrthancSource, credentials_from_env
from dicom_node.jobs.states import ACTIVE
from dicom_node.routing.manifest import build_manifest, build_manifest_from_headers
from dicom_node.routing.match import RoutingDecision, evaluate
from dicom_node.routing.plan import plan_jobs
from inference.registry import pipeline_version
from worker.context import WorkerContext
from worker.pipeline_choice import with_fallbacks

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class RoutingOutcome:
    manifest: StudyManifest
    decision: RoutingDecision
    to_enqueue: tuple[Job, ...]  # new jobs, or queued ones whose message may have been lost
    skipped: tuple[Job, ...]
    existing: tuple[Job, ...]  # already known, not queued again


def study_manifest(ctx: WorkerContext, stable: StudyStable) -> StudyManifest:
    settings = ctx.settings
    source: StudySource = stable.source

    def build(builder: Callable[..., StudyManifest], instances: object) -> StudyManifest:
        return builder(
            instances,
            source=source,
            calling_ae_title=stable.calling_ae_title,
            called_ae_title=stable.called_ae_title,
            completion_reason=stable.reason,
            uid_root=settings.uid_root,
            manufacturer=settings.manufacturer,
        )

    if source.kind == "orthanc":
        # Headers only: a study that matches no rule never has its pixels fetched.
        if source.orthanc_study_id is None:
            raise PermanentError("Orthanc source without a study id")
        with OrthancSource.for_source(source, auth=credentials_from_env(ctx.environ)) as orthanc:
            headers = orthanc.fetch_headers(source.orthanc_study_id)
        return build(build_manifest_from_headers, headers)
    if source.staging_path is None:
        raise PermanentError("staging source without a path")
    return build(build_manifest, Path(source.staging_path))


def route_study(ctx: WorkerContext, stable: StudyStable, *, now: datetime | None = None) -> RoutingOutcome:
    now = now or datetime.now(UTC)
    store = ctx.store
    store.record_study(stable, state="stable")
    manifest = study_manifest(ctx, stable)
    store.record_manifest(manifest)  # headers only: lets an admin replay draft rules on it
    rules = ctx.rules()
    decision = with_fallbacks(evaluate(manifest, rules))
    versions = {m.pipeline: pipeline_version(m.pipeline) for m in decision.matches}
    jobs = plan_jobs(manifest, decision, ruleset_digest=rules.digest, model_versions=versions, created_at=now)
    policies = {m.rule_name: m.late_series for m in decision.matches}

    to_enqueue: list[Job] = []
    skipped: list[Job] = []
    existing: list[Job] = []
    for job in jobs:
        earlier = [
            r
            for r in store.jobs_for_study(job.study_instance_uid, rule_name=job.rule_name)
            if r.job_id != job.job_id and r.state in ACTIVE and r.pipeline == job.pipeline
        ]
        policy = _policy(job, policies)
        if earlier and policy == LateSeriesPolicy.IGNORE:
            reason = (
                f"late instances ignored by rule {job.rule_name!r} (late_series: ignore); "
                f"earlier job {earlier[-1].job_id} stands"
            )
            _record, created = store.create_job(job, state=JobState.SKIPPED, reason=reason)
            if created:
                skipped.append(job)
            continue
        record, created = store.create_job(job, reason=_created_reason(job, stable, decision))
        if earlier and created:
            store.mark_superseded(
                [r.job_id for r in earlier],
                by_job_id=job.job_id,
                reason=f"late instances: study re-run as job {job.job_id} (late_series: rerun)",
            )
        # A known job travels as stored (its created_at dates the results: same job, same bytes).
        if created:
            to_enqueue.append(job)
        elif record.state == JobState.QUEUED:
            to_enqueue.append(record.job)
        else:
            existing.append(record.job)
    store.record_study(stable, state="routed" if jobs else "no-rule")
    logger.info(
        "study routed: %d rule(s) fired, %d job(s) queued, %d known, %d skipped (rules %s)",
        len(decision.matches),
        len(to_enqueue),
        len(existing),
        len(skipped),
        rules.digest[:12],
        extra={"study": stable.study_instance_uid, "stage": "routing"},
    )
    return RoutingOutcome(manifest, decision, tuple(to_enqueue), tuple(skipped), tuple(existing))


def _policy(job: Job, policies: dict[str, LateSeriesPolicy]) -> LateSeriesPolicy:
    # A merged job ("a+b") ignores late images only if every rule in it says so.
    names = job.rule_name.split("+")
    if all(policies.get(n) == LateSeriesPolicy.IGNORE for n in names):
        return LateSeriesPolicy.IGNORE
    return LateSeriesPolicy.RERUN


def _created_reason(job: Job, stable: StudyStable, decision: RoutingDecision) -> str:
    reasons = [r for m in decision.matches if m.rule_name in job.rule_name.split("+") for r in m.reasons]
    why = "; ".join(reasons[:6])
    return f"study stable ({stable.reason.value}); rule {job.rule_name!r} fired: {why}"
