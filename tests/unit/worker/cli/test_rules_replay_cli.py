"""`ctnode rules replay DRAFT`: what a draft would fire on the studies the node already routed."""

from __future__ import annotations

import json
from pathlib import Path

import yaml
from click.testing import CliRunner

from dicom_node.settings import load_settings
from tests.unit.worker.steps.test_routing_step import RULES, _stage
from worker.cli.rules import rules
from worker.context import WorkerContext
from worker.steps.routing import route_study


def test_replay_reports_the_studies_a_draft_routes_differently(tmp_path: Path) -> None:
    rules_file = tmp_path / "routing.yaml"
    rules_file.write_text(RULES.format(policy="rerun"))
    config = tmp_path / "node.yaml"
    settings = {"storage": {"root": str(tmp_path / "var")}, "rules_file": str(rules_file)}
    config.write_text(yaml.safe_dump(settings))
    (tmp_path / "var").mkdir()
    ctx = WorkerContext.open(load_settings(config))
    try:
        route_study(ctx, _stage(ctx, 12))  # keeps the study's manifest in the job store
    finally:
        ctx.close()
    draft = tmp_path / "draft.yaml"
    draft.write_text(RULES.format(policy="rerun").replace("name: chest", "name: chest-v2"))

    result = CliRunner().invoke(rules, ["replay", str(draft), "--config", str(config), "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert report["studies_replayed"] == 1 and report["studies_changed"] == 1
    (study,) = report["studies"]
    assert [f["rule"] for f in study["draft"]["fired"]] == ["chest-v2"]
    assert [f["rule"] for f in study["current"]["fired"]] == ["chest"]

    bad = tmp_path / "bad.yaml"
    bad.write_text(RULES.format(policy="sometimes"))
    result = CliRunner().invoke(rules, ["replay", str(bad), "--config", str(config)])
    assert result.exit_code == 1
    assert f"{bad}:7:" in result.output  # the late_series line
