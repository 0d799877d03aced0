"""``ctnode model train|info|publish`` with the tiny config (the CLI lives in worker/cli/model.py)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from tests.unit.inference.model.conftest import TINY_CONFIG
from worker.cli.model import model

pytestmark = pytest.mark.model


def test_train_exports_a_loadable_checkpoint_with_card(tiny_cfg, tiny_cache, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    runner = CliRunner()
    run = tmp_path / "run"
    args = [
        "train",
        "--config",
        str(TINY_CONFIG),
        "--cache",
        str(tiny_cfg.data.cache_dir),
        "--out",
        str(run),
        "--steps",
        "2",
        "--quiet",
    ]
    result = runner.invoke(model, args)
    assert result.exit_code == 0, result.output
    assert "trained to step 2/2" in result.output
    card_file = run / "unified-ct.card.json"
    card = json.loads(card_file.read_text())
    assert card["intended_use"] == "research use; not validated for diagnosis"
    assert card["training"]["steps"] == 2 and len(card["sha256"]) == 64
    # Resuming a finished run does no more steps.
    again = runner.invoke(model, args)
    assert again.exit_code == 0 and "trained to step 2/2" in again.output

    info = runner.invoke(model, ["info", "--card", str(card_file), "--load"])
    assert info.exit_code == 0, info.output
    assert f"unified-ct@{card['sha256'][:12]}" in info.output and "hash verified" in info.output

    dest = tmp_path / "published"
    pub = runner.invoke(model, ["publish", "--src", str(run), "--dest", str(dest)])
    assert pub.exit_code == 0, pub.output
    assert (dest / "unified-ct.safetensors").read_bytes() == (run / "unified-ct.safetensors").read_bytes()

    # A second stage warm-started from the export: its card names the checkpoint it began from.
    stage2 = tmp_path / "stage2"
    init = str(dest / "unified-ct.safetensors")
    args2 = [*args[:5], "--out", str(stage2), "--steps", "1", "--init-from", init, "--quiet"]
    result2 = runner.invoke(model, args2)
    assert result2.exit_code == 0, result2.output
    card2 = json.loads((stage2 / "unified-ct.card.json").read_text())
    assert card2["training"]["init_from"] == {"file": "unified-ct.safetensors", "sha256": card["sha256"]}
    assert card["training"]["init_from"] is None
    # Started again from scratch in the same directory: the card no longer claims the warm start.
    fresh = runner.invoke(model, [*args2[:-3], "--no-resume", "--quiet"])
    assert fresh.exit_code == 0, fresh.output
    assert json.loads((stage2 / "unified-ct.card.json").read_text())["training"]["init_from"] is None


def test_eval_rejects_partial_real_image_options(tmp_path: Path) -> None:
    image = tmp_path / "ct.nii.gz"
    image.write_bytes(b"x")
    result = CliRunner().invoke(model, ["eval", "--image", str(image)])
    assert result.exit_code != 0 and "go together" in result.output
