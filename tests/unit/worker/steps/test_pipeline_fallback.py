"""A rule naming TotalSegmentator on a node without its weights runs ct-anatomy-basic, and the
job's reason says so; with the weights installed the rule runs TotalSegmentator."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from dicom_node.settings import Settings
from inference.installed.card import CARD_FILENAME, ModelCard, installed_dir
from tests.unit.worker.steps.test_routing_step import _stage
from worker.context import WorkerContext
from worker.steps.routing import route_study

RULES = """version: 1
rules:
  - name: chest-abdomen
    when: {modality: CT, image_count: {min: 10}}
    pipeline: totalsegmentator-fast
    prompts: [liver, lungs]
    shadow: true
"""


@pytest.fixture
def ctx(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[WorkerContext]:
    models = tmp_path / "models"
    models.mkdir()
    monkeypatch.setenv("CTNODE_MODEL_DIR", str(models))
    rules = tmp_path / "routing.yaml"
    rules.write_text(RULES)
    (tmp_path / "var").mkdir()
    settings = Settings(storage={"root": tmp_path / "var"}, rules_file=rules, model={"directory": models})  # type: ignore[arg-type]
    context = WorkerContext.open(settings)
    yield context
    context.close()


def test_missing_weights_fall_back_and_the_reason_says_so(ctx: WorkerContext) -> None:
    outcome = route_study(ctx, _stage(ctx, 12))
    (job,) = outcome.to_enqueue
    assert job.pipeline == "ct-anatomy-basic"
    record = ctx.store.require_job(job.job_id)
    assert "totalsegmentator-fast not installed, ran ct-anatomy-basic instead" in record.reason
    assert "ctnode model import" in record.reason


def test_installed_weights_run_the_named_pipeline(ctx: WorkerContext) -> None:
    # A card is all routing reads (no torch at routing): dataset 297 = TotalSegmentator 3 mm.
    folder = installed_dir() / "totalseg-297"
    folder.mkdir(parents=True)
    card = ModelCard(
        name="totalseg-297",
        kind="nnunet",
        source="Dataset297_TotalSegmentator_total_3mm_1559subj.zip",
        licence="Apache-2.0",
        version="v2.0.0-weights",
        description="",
        classes={"1": "spleen"},
        files={"x/fold_0/checkpoint_final.pth": "0" * 64},
        imported_at="2026-12-03T00:00:00+00:00",
        nnunet={"dataset_id": 297, "model_folder": "x", "folds": ["0"], "checkpoint": "checkpoint_final.pth"},
    )
    (folder / CARD_FILENAME).write_text(card.to_json())
    (job,) = route_study(ctx, _stage(ctx, 12)).to_enqueue
    assert job.pipeline == "totalsegmentator-fast"
    assert job.model_version == card.version_tag
    assert "not installed" not in ctx.store.require_job(job.job_id).reason


def test_problems_name_the_import_command_and_the_fallback(ctx: WorkerContext) -> None:
    from worker.pipeline_choice import pipeline_problems, readiness_detail

    (problem,) = pipeline_problems(ctx.rules())
    assert (problem.rule_name, problem.pipeline, problem.fallback) == (
        "chest-abdomen",
        "totalsegmentator-fast",
        "ct-anatomy-basic",
    )
    assert "ctnode model import" in str(problem) and "it runs ct-anatomy-basic" in str(problem)
    assert "it runs ct-anatomy-basic" in readiness_detail(ctx.rules())


def test_a_pipeline_without_fallback_fails_readiness(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from dicom_node.routing.loader import parse_rules_text
    from worker.pipeline_choice import readiness_detail

    monkeypatch.setenv("CTNODE_MODEL_DIR", str(tmp_path / "models"))
    # unified-ct's card is not in this model directory: its rule cannot run, and nothing replaces it
    rules = parse_rules_text(
        "version: 1\nrules:\n  - name: research\n    pipeline: unified-ct\n    shadow: true\n",
        source_name="r.yaml",
        known_pipelines={"unified-ct"},
        known_destinations=(),
    )
    expected = r"unified-ct cannot run here .*card not found.*its jobs will fail"
    with pytest.raises(RuntimeError, match=expected):
        readiness_detail(rules)
