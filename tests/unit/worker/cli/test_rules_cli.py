"""`ctnode rules check|test|schema` through click's CliRunner, with the real rules loader and manifests."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

import worker.cli.rules as rules_cli
from tests.unit.dicom_node.routing.dicom_headers import (
    SEG_STORAGE,
    SOURCE_ROOT,
    ct_header,
    write,
    write_axial_series,
)
from worker.cli.main import main

REPO = Path(__file__).resolve().parents[4]
STUDY = SOURCE_ROOT + "500"


@pytest.fixture(autouse=True)
def _pipelines(monkeypatch: pytest.MonkeyPatch) -> None:
    # The inference registry lists only pipelines whose implementation is importable; these tests
    # are about rules, so they name the pipelines the product ships.
    shipped = ["ct-anatomy-basic", "unified-ct", "totalsegmentator", "totalsegmentator-fast"]
    monkeypatch.setattr(rules_cli, "known_pipelines", lambda: shipped)
    monkeypatch.setattr(rules_cli, "model_version", lambda name: f"{name}-v1")
    monkeypatch.delenv("CTNODE_CONFIG", raising=False)


@pytest.fixture
def node_config(tmp_path: Path) -> Path:
    config = tmp_path / "node.yaml"
    config.write_text(
        "rules_file: routing.yaml\n"
        "destinations:\n"
        "  pacs: {kind: dicom, ae_title: PACS, host: 127.0.0.1, port: 11112}\n"
    )
    (tmp_path / "routing.yaml").write_text((REPO / "configs" / "routing.yaml").read_text())
    return config


def run(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, ["rules", *args])
    return result.exit_code, result.stdout, result.stderr


def test_check_ok_prints_count_and_digest(node_config: Path) -> None:
    code, out, _ = run("check", "--config", str(node_config))
    assert code == 0, out
    assert out.startswith(f"OK {node_config.parent / 'routing.yaml'}: 4 rules (4 enabled), digest ")
    digest = out.splitlines()[0].rsplit(" ", 1)[1]
    assert len(digest) == 64 and int(digest, 16) >= 0
    assert out.splitlines()[1].strip() == f"pipelines and destinations checked against {node_config}"


def test_check_the_shipped_example_as_the_readme_shows_it(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """`ctnode rules check configs/routing.yaml`, no --config: the node.yaml beside it is used."""
    code, out, err = run("check", str(REPO / "configs" / "routing.yaml"))
    assert code == 0, out + err
    assert f"checked against {REPO / 'configs' / 'node.yaml'}" in out
    monkeypatch.chdir(REPO)
    code, out, err = run("check")  # the default rules file, from the project folder
    assert code == 0, out + err
    # a rules file with no node settings beside it: the built-in defaults, and the hint says so
    alone = tmp_path / "rules.yaml"
    alone.write_text((REPO / "configs" / "routing.yaml").read_text())
    monkeypatch.chdir(tmp_path)
    code, _, err = run("check", str(alone))
    assert code == 1 and "unknown destination 'pacs' (known: none" in err
    assert "checked against the built-in default settings (no destinations; give --config NODE_YAML)" in err


def test_check_errors_exit_1_with_file_and_line(node_config: Path, tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "rules:\n"
        "  - name: a\n"
        "    pipeline: unified-ct\n"
        "    destinations: [pacs, archive]\n"
        "  - name: b\n"
        "    when: {series_description: '(('}\n"
        "    pipeline: unified-ct\n"
        "    destinations: [pacs]\n"
    )
    code, out, err = run("check", str(bad), "--config", str(node_config))
    assert code == 1
    assert out == ""
    assert f"{bad}:4: rules[0].destinations: rule 'a': unknown destination 'archive'" in err
    assert f"{bad}:6: rules[1].when.series_description: rule 'b': invalid regular expression" in err
    assert "2 error(s)" in err


def test_check_reports_bad_node_settings(tmp_path: Path) -> None:
    config = tmp_path / "node.yaml"
    config.write_text("no_such_setting: 1\n")
    code, _, err = run("check", "--config", str(config))
    assert code == 1
    assert "invalid node settings" in err


def _study(folder: Path) -> None:
    thin = SOURCE_ROOT + "501"
    thick = SOURCE_ROOT + "502"
    write_axial_series(
        folder / "a" / "b", study=STUDY, series=thin, z_positions_mm=[float(z) for z in range(45)]
    )
    write_axial_series(
        folder / "c",
        study=STUDY,
        series=thick,
        z_positions_mm=[float(z) for z in range(0, 225, 5)],
        slice_thickness=5.0,
        series_number=3,
        series_description="Thorax 5.0",
    )
    seg = ct_header(
        study=STUDY,
        series=SOURCE_ROOT + "503",
        sop=SOURCE_ROOT + "503.1",
        sop_class=SEG_STORAGE,
        modality="SEG",
    )
    write(seg, folder / "seg.dcm")
    (folder / "README.txt").write_text("not dicom")


def test_test_prints_the_fired_rule_and_the_job(node_config: Path, tmp_path: Path) -> None:
    _study(tmp_path / "study")
    code, out, _ = run("test", str(tmp_path / "study"), "--config", str(node_config))
    assert code == 0, out
    lines = out.splitlines()
    fired = lines.index(
        "FIRES    ct-chest-abdomen (line 75) → pipeline totalsegmentator, routine, destinations [pacs]"
    )
    assert lines[fired + 1].strip() == f"series 2 'Thorax 1.0 B31f' [{SOURCE_ROOT}501]"
    assert "✓ modality CT ∈ [CT]" in lines[fired + 2]
    assert "✓ slice thickness 1.0 mm within [0.5, 5.0]" in out
    # rules are listed in file order, fired or not
    assert (
        lines.index("no match er-ct-stat (line 42)")
        < fired
        < lines.index("no match ct-any-fallback (line 91)")
    )
    assert f"selected series 2 'Thorax 1.0 B31f' [{SOURCE_ROOT}501]: thinnest (1.0 mm) of 2 passing" in out
    # the STAT rule needs the ER calling AE: it says so
    assert "no match er-ct-stat" in out
    assert "calling AE (empty) does not match exact [ER_CT]" in out
    assert "not tried: rule 'ct-chest-abdomen' fired before it" in out
    assert "node result, not input" in out
    assert "Skipped 1 files" in out and "README.txt" in out
    assert f"totalsegmentator (model totalsegmentator-v1) on series {SOURCE_ROOT}501" in out
    assert "Dry run: nothing was queued or sent." in out


def test_test_with_calling_ae_and_json(node_config: Path, tmp_path: Path) -> None:
    _study(tmp_path / "study")
    code, out, _ = run(
        "test", str(tmp_path / "study"), "--config", str(node_config), "--calling-ae", "ER_CT", "--json"
    )
    assert code == 0, out
    payload = json.loads(out)
    (study,) = payload["studies"]
    assert study["manifest"]["calling_ae_title"] == "ER_CT"
    assert study["manifest"]["called_ae_title"] == "CTAINODE"  # the node's own AE title by default
    assert [m["rule_name"] for m in study["decision"]["matches"]] == ["er-ct-stat"]
    (job,) = study["jobs"]
    assert job["priority"] == "stat"
    assert job["series_instance_uids"] == [SOURCE_ROOT + "501"]
    assert job["ruleset_digest"] == payload["rules"]["digest"]
    assert payload["dry_run"] is True
    assert [s["path"] for s in payload["skipped_files"]] == ["README.txt"]


def test_test_with_explicit_rules_file_and_no_dicom(node_config: Path, tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    code, _, err = run(
        "test", str(empty), "--config", str(node_config), "--rules", str(node_config.parent / "routing.yaml")
    )
    assert code == 1
    assert "no DICOM instance found" in err


def test_schema_command_prints_the_committed_schema() -> None:
    code, out, _ = run("schema")
    assert code == 0
    assert out == (REPO / "configs" / "routing.schema.json").read_text()


def test_check_notes_a_registered_pipeline_that_is_not_installed(
    node_config: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(rules_cli, "known_pipelines", lambda: ["ct-anatomy-basic"])
    code, _, err = run("check", "--config", str(node_config))
    assert code == 1
    assert "unknown pipeline 'unified-ct' (known: ct-anatomy-basic)" in err
    assert "note: pipeline 'unified-ct' is registered but its implementation is not installed here" in err
