"""From a routing decision to the jobs it creates (deterministic ids; nothing is sent here).

One job per selected series of each fired rule: a pipeline runs on one volume. The job id is
``dicom_node.identity.job_id_for`` of (study, series, pipeline, model version, rule-set digest,
SOP-set digest), so the same study routed twice gives the same jobs and a late image a new one.

Two fired rules can select the same series for the same pipeline, which gives the same job id
(the id does not include the rule). Such matches become ONE job: destinations of the non-shadow
rules together, shadow only if every one is shadow, STAT if any is, prompts together (in order,
without repeats), rule names joined with ``+``.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime

from dicom_node.contracts import Job, Priority, RouteMatch, StudyManifest
from dicom_node.errors import ConfigError
from dicom_node.identity import job_id_for, sop_set_digest
from dicom_node.routing.match import RoutingDecision


def plan_jobs(
    manifest: StudyManifest,
    decision: RoutingDecision,
    *,
    ruleset_digest: str,
    model_versions: Mapping[str, str],
    created_at: datetime,
) -> tuple[Job, ...]:
    """The jobs ``decision`` asks for, in rule order. ``model_versions``: pipeline name → version."""
    by_uid = {s.series_instance_uid: s for s in manifest.series}
    jobs: dict[str, Job] = {}
    for match in decision.matches:
        try:
            model_version = model_versions[match.pipeline]
        except KeyError:
            raise ConfigError(f"no model version known for pipeline {match.pipeline!r}") from None
        for series_uid in match.series_instance_uids:
            series = by_uid[series_uid]
            digest = sop_set_digest(series.sop_instance_uids)
            job_id = job_id_for(
                study_instance_uid=manifest.study_instance_uid,
                series_instance_uids=[series_uid],
                pipeline=match.pipeline,
                model_version=model_version,
                ruleset_digest=ruleset_digest,
                sop_digest=digest,
            )
            job = Job(
                job_id=job_id,
                study_instance_uid=manifest.study_instance_uid,
                series_instance_uids=(series_uid,),
                sop_set_digest=digest,
                sop_instance_uids=series.sop_instance_uids,
                pipeline=match.pipeline,
                model_version=model_version,
                ruleset_digest=ruleset_digest,
                rule_name=match.rule_name,
                prompts=match.prompts,
                priority=match.priority,
                destinations=() if match.shadow else match.destinations,
                shadow=match.shadow,
                source=manifest.source,
                calling_ae_title=manifest.calling_ae_title,
                created_at=created_at,
            )
            earlier = jobs.get(job_id)
            jobs[job_id] = job if earlier is None else _merge(earlier, job, match)
    return tuple(jobs.values())


def _merge(earlier: Job, later: Job, match: RouteMatch) -> Job:
    return earlier.model_copy(
        update={
            "rule_name": f"{earlier.rule_name}+{match.rule_name}",
            "prompts": _union(earlier.prompts, later.prompts),
            "priority": Priority.STAT
            if Priority.STAT in (earlier.priority, later.priority)
            else Priority.ROUTINE,
            "destinations": _union(earlier.destinations, later.destinations),
            "shadow": earlier.shadow and later.shadow,
        }
    )


def _union(first: tuple[str, ...], second: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(dict.fromkeys((*first, *second)))
