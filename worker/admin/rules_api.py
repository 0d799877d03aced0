"""Rules in the admin API: the rule set in force, validating a draft, replaying a draft on past studies.

Replay answers "what would this draft have done?" without sending anything: it evaluates the
draft (and, for comparison, the rules in force) on the routing manifests the job store kept for
the last N studies (``JobStore.record_manifest``, called by the routing step). Manifests hold
headers only, with patient identifiers left out, so nothing here touches pixels or PHI.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from dicom_node.contracts import StudyManifest
from dicom_node.errors import ConfigError
from dicom_node.routing import (
    RoutingDecision,
    RulesConfigError,
    RuleSet,
    evaluate,
    load_rules,
    parse_rules_text,
)
from dicom_node.routing.plan import plan_jobs
from worker.context import WorkerContext

DRAFT_SOURCE = "<draft>"
MAX_DRAFT_CHARS = 1_000_000
MAX_REPLAY_STUDIES = 1000


class DraftRules(BaseModel):
    model_config = ConfigDict(extra="forbid")

    text: str = Field(max_length=MAX_DRAFT_CHARS, description="The draft rules file (YAML).")


class ReplayRequest(DraftRules):
    limit: int = Field(default=50, ge=1, le=MAX_REPLAY_STUDIES, description="Last N routed studies.")


def problem_dicts(error: ConfigError) -> list[dict[str, Any]]:
    if isinstance(error, RulesConfigError):
        return [
            {"line": p.line, "path": p.path, "message": p.message, "text": str(p)} for p in error.problems
        ]
    return [{"line": None, "path": "", "message": str(error), "text": str(error)}]


def ruleset_dict(rules: RuleSet) -> dict[str, Any]:
    return {
        "digest": rules.digest,
        "source": rules.source_name,
        "version": rules.version,
        "rules": [
            {"line": rules.line_of(r.name), **r.model_dump(mode="json", exclude_defaults=False)}
            for r in rules.rules
        ],
    }


@dataclass
class RulesWatch:
    """The rules in force (``ctx.rules()``, hot-reloaded) plus the last error of the file on disk.

    ``WorkerContext.rules`` keeps the old rules when the file turns bad and only logs why; the
    dashboard needs the why, so the file is re-validated here whenever its mtime changes.
    """

    ctx: WorkerContext
    _checked_mtime_ns: int = -1
    _last_error: list[dict[str, Any]] | None = None
    _checked_at: datetime | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def status(self) -> dict[str, Any]:
        in_force: RuleSet | None = None
        load_error: list[dict[str, Any]] | None = None
        try:
            in_force = self.ctx.rules()
        except ConfigError as exc:
            load_error = problem_dicts(exc)
        path = self.ctx.settings.rules_file
        with self._lock:
            try:
                mtime = path.stat().st_mtime_ns
            except OSError as exc:
                self._last_error = [{"line": None, "path": "", "message": str(exc), "text": str(exc)}]
                mtime = -2
            if mtime not in (-2, self._checked_mtime_ns):
                try:
                    load_rules(
                        path,
                        known_pipelines=self.ctx.known_pipelines(),
                        known_destinations=self.ctx.settings.destinations.keys(),
                    )
                    self._last_error = None
                except ConfigError as exc:
                    self._last_error = problem_dicts(exc)
                self._checked_mtime_ns = mtime
                self._checked_at = datetime.now(UTC)
            file_error = self._last_error
        return {
            "file": str(path),
            "in_force": ruleset_dict(in_force) if in_force is not None else None,
            # problems of the file on disk; when set, the rules in force are the previous good ones
            "file_problems": file_error or load_error,
            "checked_at": self._checked_at.isoformat() if self._checked_at else None,
        }


def validate_draft(ctx: WorkerContext, text: str) -> dict[str, Any]:
    try:
        rules = parse_draft(ctx, text)
    except ConfigError as exc:
        return {"valid": False, "problems": problem_dicts(exc)}
    enabled = sum(1 for r in rules.rules if r.enabled)
    return {
        "valid": True,
        "problems": [],
        "digest": rules.digest,
        "rule_count": len(rules.rules),
        "enabled": enabled,
    }


def parse_draft(ctx: WorkerContext, text: str) -> RuleSet:
    return parse_rules_text(
        text,
        source_name=DRAFT_SOURCE,
        known_pipelines=ctx.known_pipelines(),
        known_destinations=ctx.settings.destinations.keys(),
    )


def _fired(manifest: StudyManifest, decision: RoutingDecision, rules: RuleSet) -> dict[str, Any]:
    versions = {m.pipeline: "replay" for m in decision.matches}
    jobs = plan_jobs(
        manifest, decision, ruleset_digest=rules.digest, model_versions=versions, created_at=datetime.now(UTC)
    )
    return {
        "fired": [
            {
                "rule": m.rule_name,
                "line": m.rule_line,
                "pipeline": m.pipeline,
                "priority": m.priority.value,
                "destinations": list(m.destinations),
                "shadow": m.shadow,
                "series": list(m.series_instance_uids),
                "reasons": list(m.reasons),
            }
            for m in decision.matches
        ],
        "missed": [
            {"rule": m.rule_name, "line": m.rule_line, "reasons": list(m.reasons)} for m in decision.misses
        ],
        "jobs": [
            {
                "rule": j.rule_name,
                "pipeline": j.pipeline,
                "series": list(j.series_instance_uids),
                "shadow": j.shadow,
            }
            for j in jobs
        ],
    }


def replay_draft(
    ctx: WorkerContext,
    text: str,
    *,
    limit: int,
    progress: Callable[[list[StudyManifest]], Iterable[StudyManifest]] = iter,
) -> dict[str, Any]:
    """Evaluate the draft on the last ``limit`` stored manifests; nothing is queued or sent.

    ``progress`` wraps the list of studies (the CLI passes a progress bar)."""
    try:
        draft = parse_draft(ctx, text)
    except ConfigError as exc:
        return {"valid": False, "problems": problem_dicts(exc), "studies": []}
    try:
        current: RuleSet | None = ctx.rules()
    except ConfigError:
        current = None
    manifests = ctx.store.recent_manifests(limit=limit)
    studies = []
    changed = 0
    for manifest in progress(manifests):
        draft_result = _fired(manifest, evaluate(manifest, draft), draft)
        entry: dict[str, Any] = {
            "study_instance_uid": manifest.study_instance_uid,
            "calling_ae_title": manifest.calling_ae_title,
            "series_count": len(manifest.series),
            "draft": draft_result,
        }
        if current is not None:
            current_result = _fired(manifest, evaluate(manifest, current), current)
            entry["current"] = current_result
            before = sorted((f["rule"], f["pipeline"], tuple(f["series"])) for f in current_result["fired"])
            after = sorted((f["rule"], f["pipeline"], tuple(f["series"])) for f in draft_result["fired"])
            entry["changed"] = before != after
            changed += int(entry["changed"])
        studies.append(entry)
    return {
        "valid": True,
        "problems": [],
        "digest": draft.digest,
        "current_digest": current.digest if current is not None else None,
        "studies_replayed": len(studies),
        "studies_changed": changed,
        "studies": studies,
    }
