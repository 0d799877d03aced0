"""The configuration files the project ships load, and agree with each other."""

from __future__ import annotations

from pathlib import Path

import pytest

from dicom_node.errors import ConfigError
from dicom_node.routing.loader import load_rules
from dicom_node.settings import load_settings
from inference.registry import available

REPO = Path(__file__).resolve().parents[3]


def test_node_yaml_loads_with_paths_resolved_against_the_project() -> None:
    settings = load_settings(REPO / "configs" / "node.yaml")
    assert settings.storage.root == REPO / "var"
    assert settings.rules_file == REPO / "configs" / "routing.yaml"
    assert settings.dicom.require_known_peers
    assert "pacs" in settings.destinations


def test_shipped_rules_validate_against_the_shipped_settings() -> None:
    settings = load_settings(REPO / "configs" / "node.yaml")
    rules = load_rules(
        settings.rules_file, known_pipelines=available(), known_destinations=settings.destinations
    )
    names = [rule.name for rule in rules.rules]
    assert names == ["er-ct-stat", "shadow-contrast-vessels", "ct-chest-abdomen", "ct-any-fallback"]
    for rule in rules.rules:
        assert set(rule.destinations) <= set(settings.destinations)


def test_an_unknown_key_in_node_yaml_is_refused_with_the_file(tmp_path: Path) -> None:
    bad = tmp_path / "node.yaml"
    text = (REPO / "configs" / "node.yaml").read_text()
    bad.write_text(text.replace("quiet_period_s: 8", "quiet_periods: 8"))
    with pytest.raises(ConfigError) as info:
        load_settings(bad)
    assert str(bad) in str(info.value)
    assert "quiet_periods" in str(info.value)


@pytest.mark.parametrize("name", sorted(p.name for p in (REPO / "configs" / "models").glob("*.yaml")))
def test_model_configs_load(name: str) -> None:
    from inference.model.config import load_config

    cfg = load_config(REPO / "configs" / "models" / name)
    assert cfg.train.steps > 0 and cfg.data.train_cases > 0


def test_stage2_warm_starts_from_stage1_with_the_same_network() -> None:
    # Warm start needs the same network; stage 2 must also read stage 1's export location.
    from inference.model.config import load_config

    stage1 = load_config(REPO / "configs" / "models" / "unified-ct.yaml")
    stage2 = load_config(REPO / "configs" / "models" / "unified-ct-stage2.yaml")
    assert stage2.network == stage1.network and stage2.inference == stage1.inference
    assert stage2.train.init_from == Path(stage1.train.out_dir) / "unified-ct.safetensors"
    assert stage2.train.seed != stage1.train.seed  # new crops
