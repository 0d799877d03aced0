"""Which pipeline a fired rule runs here: the one it names, or its fallback when that one's
weights are not installed (TotalSegmentator → ct-anatomy-basic). The fallback is recorded in the
match's reasons, so the job's reason and the audit trail say what ran and why."""

from __future__ import annotations

import logging

from dicom_node.routing.match import RoutingDecision
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
