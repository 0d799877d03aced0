"""Routing: study manifests from headers, YAML rules validated at load, matching, job planning.

* :mod:`~dicom_node.routing.manifest` — ``build_manifest`` / ``build_manifest_from_headers``
* :mod:`~dicom_node.routing.rules` — the rule model, ``RuleSet`` (with ``digest``), JSON Schema
* :mod:`~dicom_node.routing.loader` — ``load_rules`` / ``parse_rules_text`` (errors with file:line)
* :mod:`~dicom_node.routing.match` — pure ``evaluate(manifest, rules) -> RoutingDecision``
* :mod:`~dicom_node.routing.plan` — ``plan_jobs``: the jobs a decision creates
"""

from __future__ import annotations

from dicom_node.routing.loader import RuleProblem, RulesConfigError, load_rules, parse_rules_text
from dicom_node.routing.manifest import (
    HeaderScan,
    SkippedFile,
    build_manifest,
    build_manifest_from_headers,
    group_by_study,
    is_node_result,
    read_headers,
)
from dicom_node.routing.match import RoutingDecision, evaluate, is_input_series, quiet_period_override
from dicom_node.routing.plan import plan_jobs
from dicom_node.routing.rules import Rule, RulesDocument, RuleSet, rules_json_schema

__all__ = [
    "HeaderScan",
    "RoutingDecision",
    "Rule",
    "RuleProblem",
    "RuleSet",
    "RulesConfigError",
    "RulesDocument",
    "SkippedFile",
    "build_manifest",
    "build_manifest_from_headers",
    "evaluate",
    "group_by_study",
    "is_input_series",
    "is_node_result",
    "load_rules",
    "parse_rules_text",
    "plan_jobs",
    "quiet_period_override",
    "read_headers",
    "rules_json_schema",
]
