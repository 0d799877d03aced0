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

from dicom_node.contracts import (
    Job,
    JobState,
    LateSeriesPolicy,
    Priority,
    StudyManifest,
    StudySource,
    StudyStable,
)
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


def route_study(
    ctx: WorkerContext, stable: StudyStable, *, now: datetime | None = None, rerouted_by: str | None = None
) -> RoutingOutcome:
    """Route ``stable``: record the study and its manifest, evaluate the rules in force, create
    the jobs. ``rerouted_by`` (an operator re-routing the study, ``worker.node.reroute``): every
    earlier job of the study that the rules in force do not recreate is superseded by the new job
    of the same rule (else pipeline, else kind), whatever the late-series policy says."""
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
        policy = LateSeriesPolicy.RERUN if rerouted_by else _policy(job, policies)
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
            why = (
                f"study re-routed by {rerouted_by}; superseded by job {job.job_id}"
                if rerouted_by
                else f"late instances: study re-run as job {job.job_id} (late_series: rerun)"
            )
            store.mark_superseded([r.job_id for r in earlier], by_job_id=job.job_id, reason=why)
        # A known job travels as stored (its created_at dates the results: same job, same bytes).
        if created:
            to_enqueue.append(job)
        elif record.state == JobState.QUEUED:
            to_enqueue.append(record.job)
        else:
            existing.append(record.job)
    if rerouted_by and jobs:
        _supersede_the_rest(ctx, stable.study_instance_uid, jobs, rerouted_by)
    # Real work first, STAT before routine; shadow jobs last (they also have their own lane).
    to_enqueue.sort(key=lambda j: (j.shadow, j.priority != Priority.STAT))
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


def _supersede_the_rest(ctx: WorkerContext, study_instance_uid: str, jobs: tuple[Job, ...], who: str) -> None:
    """A re-route: earlier jobs of other rules, not recreated, are superseded by the closest new job."""
    new_ids = {j.job_id for j in jobs}
    for old in ctx.store.jobs_for_study(study_instance_uid):
        if old.job_id in new_ids or old.state not in ACTIVE | {JobState.FAILED, JobState.DEAD}:
            continue
        successor = (
            next((j for j in jobs if j.rule_name == old.rule_name), None)
            or next((j for j in jobs if j.pipeline == old.pipeline and j.shadow == old.shadow), None)
            or next((j for j in jobs if j.shadow == old.shadow), None)
        )
        if successor is None:
            continue  # e.g. only shadow rules fire now: delivered results are not replaced by nothing
        ctx.store.mark_superseded(
            [old.job_id],
            by_job_id=successor.job_id,
            reason=f"study re-routed by {who}; rule {old.rule_name!r} replaced by job {successor.job_id} "
            f"(rule {successor.rule_name!r})",
        )


def _policy(job: Job, policies: dict[str, LateSeriesPolicy]) -> LateSeriesPolicy:
    # A merged job ("a+b") ignores late images only if every rule in it says so.
    names = job.rule_name.split("+")
    if all(policies.get(n) == LateSeriesPolicy.IGNORE for n in names):
        return LateSeriesPolicy.IGNORE
    return LateSeriesPolicy.RERUN


def _created_reason(job: Job, stable: StudyStable, decision: RoutingDecision) -> str:
    reasons = [r for m in decision.matches if m.rule_name in job.rule_name.split("+") for r in m.reasons]
    why = "; ".join(reasons[:6])
    how = (
        stable.reason_detail
        if stable.reason_detail and stable.reason.value == "manual"
        else stable.reason.value
    )
    return f"study stable ({how}); rule {job.rule_name!r} fired: {why}"
