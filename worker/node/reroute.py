"""Re-route a study with the rules in force now: ``ctnode studies reroute`` and the admin API.

After a rules change a study already routed is not routed again by itself (a re-sent study is all
duplicates; ``jobs retry`` only requeues failed jobs). :func:`reroute` routes it again, as the
routing task would, from what the node still holds (the staged files, or Orthanc), with the
rules in force:

- jobs the rules in force create anew are queued; jobs they give again (same rules, same input:
  the same deterministic job ids) stand as they are: nothing is recomputed for nothing;
- every earlier job of the study they do not recreate is superseded by the new job of the same
  rule (else pipeline, else kind), whatever its late-series policy; once the new results reach
  a destination, the earlier ones are withdrawn there (``worker.steps.withdraw``), as after a
  late series;
- who and why go into each job's audit trail and into the configuration audit
  (``JobStore.record_config_change``: the re-route is recorded even when it changes nothing).

Refused (:class:`RerouteRefused`) for a study the job store does not know, or whose staged files
retention has already removed.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from dicom_node.contracts import CompletionReason, StudyStable
from dicom_node.errors import PermanentError
from worker.context import WorkerContext
from worker.node.requeue import send_pipeline_task
from worker.steps.routing import route_study

logger = logging.getLogger(__name__)


class RerouteRefused(PermanentError):
    """The study cannot be re-routed (unknown, or its files are gone)."""


@dataclass
class RerouteOutcome:
    study_instance_uid: str
    ruleset_digest: str
    rules_fired: list[str] = field(default_factory=list)
    queued: list[str] = field(default_factory=list)  # new jobs (or still queued ones) sent
    known: list[str] = field(default_factory=list)  # the rules in force give these again
    superseded: list[tuple[str, str]] = field(default_factory=list)  # (earlier job, by job)

    def as_dict(self) -> dict[str, Any]:
        return {
            "study_instance_uid": self.study_instance_uid,
            "ruleset_digest": self.ruleset_digest,
            "rules_fired": self.rules_fired,
            "queued": self.queued,
            "known": self.known,
            "superseded": [{"job_id": old, "by": new} for old, new in self.superseded],
        }


def reroute(
    ctx: WorkerContext, celery_app: Any, study_instance_uid: str, *, who: str, reason: str = ""
) -> RerouteOutcome:
    """Route ``study_instance_uid`` again with the rules in force; see the module docstring."""
    store = ctx.store
    study = store.get_study(study_instance_uid)
    if study is None:
        raise RerouteRefused(f"no study {study_instance_uid} in the job store")
    source = study.source
    if source.kind == "staging" and not (source.staging_path and Path(source.staging_path).is_dir()):
        raise RerouteRefused(
            f"study {study_instance_uid}: its staged files are gone (retention after "
            f"{ctx.settings.storage.retention_days:g} days?): send the study again instead"
        )
    before = {j.job_id: j.state for j in store.jobs_for_study(study_instance_uid)}
    now = datetime.now(UTC)
    by = who + (f", reason: {reason}" if reason else "")
    stable = StudyStable(
        study_instance_uid=study_instance_uid,
        source=source,
        reason=CompletionReason.MANUAL,
        reason_detail=f"re-routed by {by}",
        calling_ae_title=study.calling_ae_title,
        called_ae_title=ctx.settings.dicom.ae_title,
        instance_count=study.instance_count,
        first_received_at=study.first_received_at or now,
        last_received_at=study.last_received_at or now,
        stable_at=now,
    )
    routed = route_study(ctx, stable, now=now, rerouted_by=by)
    for job in routed.to_enqueue:
        send_pipeline_task(celery_app, job)
    outcome = RerouteOutcome(
        study_instance_uid=study_instance_uid,
        ruleset_digest=routed.decision.ruleset_digest,
        rules_fired=[m.rule_name for m in routed.decision.matches],
        queued=[j.job_id for j in routed.to_enqueue],
        known=[j.job_id for j in routed.existing],
    )
    for record in store.jobs_for_study(study_instance_uid):
        if record.job_id in before and record.superseded_by and before[record.job_id] != record.state:
            outcome.superseded.append((record.job_id, record.superseded_by))
    store.record_config_change(
        who=who,
        what=f"study {study_instance_uid} re-routed",
        diff={"reason": reason, **outcome.as_dict()},
    )
    logger.info(
        "study re-routed by %s: %d rule(s) fired, %d job(s) queued, %d known, %d superseded",
        who,
        len(outcome.rules_fired),
        len(outcome.queued),
        len(outcome.known),
        len(outcome.superseded),
        extra={"study": study_instance_uid, "stage": "routing"},
    )
    return outcome
