"""Re-routing a study after a rules change (issue 12 item 14): the routing step on a real staged
study, a real SQLite job store and the embedded broker, through the function, the CLI and the
admin API."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest
from click.testing import CliRunner

from dicom_node.contracts import CompletionReason, JobState, StudySource, StudyStable
from tests.support.ct_series import make_ct_series
from tests.unit.worker.admin.conftest import ADMIN, VIEWER, running_node, settings_for
from worker.cli.main import main
from worker.context import WorkerContext
from worker.node.reroute import RerouteRefused, reroute
from worker.steps.routing import route_study

STUDY = "1.2.826.0.1.3680043.10.1111.88.1"
SERIES = "1.2.826.0.1.3680043.10.1111.88.2"

NEW_RULES = """\
version: 1
rules:
  - name: ct-thin-v2
    when:
      modality: CT
      slice_thickness_mm: {max: 3.0}
    pipeline: ct-anatomy-basic
    prompts: [body, bone]
    destinations: [pacs]
"""


def _routed_study(ctx: WorkerContext) -> str:
    """A staged study, routed once with the rules of settings_for (rule ct-thin): one job."""
    study_dir = ctx.settings.storage.staging_dir / STUDY
    make_ct_series(study_dir / SERIES, n_slices=12, rows=32, cols=32, study_uid=STUDY, series_uid=SERIES)
    now = datetime.now(UTC)
    stable = StudyStable(
        study_instance_uid=STUDY,
        source=StudySource(kind="staging", staging_path=str(study_dir)),
        reason=CompletionReason.QUIET_PERIOD,
        calling_ae_title="STORESCU",
        called_ae_title="CTAINODE",
        instance_count=12,
        first_received_at=now,
        last_received_at=now,
        stable_at=now,
    )
    (job,) = route_study(ctx, stable).to_enqueue
    return job.job_id


def test_reroute_after_a_rules_change_supersedes_and_audits(tmp_path: Path) -> None:
    with running_node(settings_for(tmp_path)) as node:
        first = _routed_study(node.ctx)
        same = reroute(node.ctx, node.celery, STUDY, who="alice@host (cli)", reason="nothing changed")
        assert same.queued == [first] and same.superseded == []  # same rules: the same job, re-sent
        assert node.store.require_job(first).state == JobState.QUEUED

        node.settings.rules_file.write_text(NEW_RULES)  # the admin edits the rules
        outcome = reroute(node.ctx, node.celery, STUDY, who="alice@host (cli)", reason="rule v2")
        assert outcome.rules_fired == ["ct-thin-v2"]
        (second,) = outcome.queued
        assert outcome.superseded == [(first, second)]
        old = node.store.require_job(first)
        assert old.state == JobState.SUPERSEDED and old.superseded_by == second
        assert "study re-routed by alice@host (cli), reason: rule v2; rule 'ct-thin' replaced" in old.reason
        new = node.store.require_job(second)
        assert "(re-routed by alice@host (cli), reason: rule v2)" in node.store.events(second)[0].reason
        assert new.rule_name == "ct-thin-v2"
        assert [m["id"] for m in node.messages()][-1] == second  # its task is on the broker
        (change, *_) = node.store.config_changes()
        assert change.who == "alice@host (cli)" and change.what == f"study {STUDY} re-routed"
        assert change.diff["reason"] == "rule v2" and change.diff["queued"] == [second]


def test_reroute_refuses_what_it_cannot_route(tmp_path: Path) -> None:
    with running_node(settings_for(tmp_path)) as node:
        with pytest.raises(RerouteRefused, match="no study"):
            reroute(node.ctx, node.celery, "1.2.3.404", who="x")
        _routed_study(node.ctx)
        import shutil

        shutil.rmtree(node.settings.storage.staging_dir / STUDY)  # retention removed the files
        with pytest.raises(RerouteRefused, match="staged files are gone"):
            reroute(node.ctx, node.celery, STUDY, who="x")


def test_reroute_from_the_admin_api(tmp_path: Path) -> None:
    with running_node(settings_for(tmp_path)) as node:
        first = _routed_study(node.ctx)
        node.settings.rules_file.write_text(NEW_RULES)
        path = f"/api/studies/{STUDY}/reroute"
        assert node.client.post(path, headers=VIEWER, json={"reason": "r"}).status_code == 403
        assert node.client.post("/api/studies/1.2.3.404/reroute", headers=ADMIN).status_code == 404
        response = node.client.post(path, headers=ADMIN, json={"reason": "new rules"})
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["superseded"] == [{"job_id": first, "by": body["queued"][0]}]
        assert node.store.config_changes()[0].who.startswith("admin@")


def test_reroute_from_the_cli(tmp_path: Path) -> None:
    settings = settings_for(tmp_path)
    ctx = WorkerContext.open(settings)
    try:
        first = _routed_study(ctx)
    finally:
        ctx.close()
    settings.rules_file.write_text(NEW_RULES)
    config = str(tmp_path / "node.yaml")
    result = CliRunner().invoke(
        main, ["studies", "reroute", STUDY, "--reason", "rule v2", "--json", "--config", config]
    )
    assert result.exit_code == 0, result.output
    out = json.loads(result.output)
    assert out["rules_fired"] == ["ct-thin-v2"] and out["superseded"][0]["job_id"] == first
    listed = CliRunner().invoke(main, ["studies", "list", "--config", config])
    assert listed.exit_code == 0 and STUDY in listed.output and "ct-thin-v2:queued" in listed.output
    missing = CliRunner().invoke(main, ["studies", "reroute", "1.2.3.404", "--config", config])
    assert missing.exit_code == 1 and "no study 1.2.3.404" in missing.output
