"""Which pipeline a fired rule runs here: the one it names, or its fallback when that one's
weights are not installed (TotalSegmentator → ct-anatomy-basic). The fallback is recorded in the
match's reasons, so the job's reason and the audit trail say what ran and why."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from dicom_node.routing.match import RoutingDecision
from dicom_node.routing.rules import RuleSet
from dicom_node.settings import Settings
from inference.registry import runnable

logger = logging.getLogger(__name__)


def with_fallbacks(decision: RoutingDecision) -> RoutingDecision:
    matches = []
    for match in decision.matches:
        pipeline, why = runnable(match.pipeline)
        if why is None:
            matches.append(match)
            continue
        logger.warning("rule %s: %s", match.rule_name, why, extra={"stage": "routing"})
        # first, so the job's reason (the first few reasons) always carries it
        matches.append(match.model_copy(update={"pipeline": pipeline, "reasons": (why, *match.reasons)}))
    return decision.model_copy(update={"matches": tuple(matches)})


@dataclass(frozen=True)
class PipelineProblem:
    rule_name: str
    pipeline: str
    reason: str
    fallback: str | None  # what runs instead; None: the rule's jobs will fail

    def __str__(self) -> str:
        then = f"it runs {self.fallback}" if self.fallback else "its jobs will fail"
        return f"rule {self.rule_name!r}: {self.pipeline} cannot run here ({self.reason}); {then}"


def pipeline_problems(rules: RuleSet) -> list[PipelineProblem]:
    """Pipelines named by enabled rules that cannot run here (weights not installed), with the
    fix in the reason (the import command): said at worker start and in the admin API."""
    from inference.registry import info

    out = []
    for rule in rules.rules:
        if not rule.enabled:
            continue
        try:
            pipeline_info = info(rule.pipeline)
            reason = pipeline_info.missing()
        except (KeyError, OSError, ValueError) as exc:
            out.append(PipelineProblem(rule.name, rule.pipeline, str(exc), None))
            continue
        if reason is not None:
            out.append(PipelineProblem(rule.name, rule.pipeline, reason, pipeline_info.fallback))
    return out


def problems_for_settings(settings: Settings) -> list[PipelineProblem]:
    """:func:`pipeline_problems` of the rules file ``settings`` names (none when it does not load:
    the rules check reports that)."""
    from dicom_node.errors import ConfigError
    from dicom_node.routing.loader import load_rules
    from inference.registry import available

    try:
        rules = load_rules(
            settings.rules_file, known_pipelines=available(), known_destinations=settings.destinations
        )
    except ConfigError:
        return []
    return pipeline_problems(rules)


def readiness_detail(rules: RuleSet) -> str:
    """The admin API's ``pipelines`` readiness check: raises when a rule's pipeline cannot run and
    has no fallback (its jobs would fail), else says what runs instead of what."""
    problems = pipeline_problems(rules)
    failing = [p for p in problems if p.fallback is None]
    if failing:
        raise RuntimeError("; ".join(str(p) for p in failing))
    if problems:
        return "; ".join(str(p) for p in problems)
    names = sorted({r.pipeline for r in rules.rules if r.enabled})
    return f"{len(names)} pipeline(s) of the rules can run: {', '.join(names)}"
