"""``ctnode model distill`` with ct-anatomy-basic as teacher over a small synthetic study."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest
from click.testing import CliRunner

pytest.importorskip("nibabel")

from worker.cli.main import main
from worker.demo.synth_study import make_synthetic_study

NAME = "DOE^JANE"
PATIENT_ID = "PID-7731-XQ"


def test_distill_writes_a_valid_nnunet_dataset_without_patient_identifiers(tmp_path: Path) -> None:
    from inference.datasets.nnunet import read_nnunet
    from inference.registry import pipeline_version

    study = make_synthetic_study(
        tmp_path / "study", seed=3, slices=24, matrix=96, patient_name=NAME, patient_id=PATIENT_ID
    )
    accession = "SYN00000003"  # what make_synthetic_study writes for seed 3
    out = tmp_path / "distilled"
    args = ["model", "distill", "--teacher", "ct-anatomy-basic", "--studies", str(study.out_dir / "dicom")]
    result = CliRunner().invoke(main, [*args, "--out", str(out), "--quiet"])
    assert result.exit_code == 0, result.output
    assert "1 case(s) written, 0 already there" in result.output

    meta = json.loads((out / "dataset.json").read_text())
    assert meta["channel_names"] == {"0": "CT"} and meta["file_ending"] == ".nii.gz"
    assert meta["numTraining"] == 1
    assert {"body", "left lung", "right lung", "bone"} <= set(meta["labels"])
    assert meta["teacher"] == {"name": "ct-anatomy-basic", "version": pipeline_version("ct-anatomy-basic")}
    (case_id,) = meta["cases"]
    assert case_id.startswith("ct_") and len(case_id) == 3 + 16
    assert meta["cases"][case_id]["teacher"] == "ct-anatomy-basic"

    index = read_nnunet(out)
    assert [c.case_id for c in index.cases] == [case_id] and index.unknown == ()
    masks = dict(index.cases[0].load().masks())
    assert masks["left lung"].any() and masks["right lung"].any()
    card = json.loads((out / "dataset_card.json").read_text())
    assert card["cases"][0]["teacher"] == "ct-anatomy-basic" and card["n_cases"] == 1

    # No patient identifier in any path, file name or content (NIfTI decompressed).
    secrets = [NAME, NAME.replace("^", " "), PATIENT_ID, accession]
    for path in out.rglob("*"):
        assert not any(s in str(path.relative_to(tmp_path)) for s in secrets)
        if path.is_file():
            raw = path.read_bytes()
            content = gzip.decompress(raw) if path.name.endswith(".gz") else raw
            assert not any(s.encode() in content for s in secrets), path.name

    # Resumable: a second run finds the case written and writes nothing.
    again = CliRunner().invoke(main, [*args, "--out", str(out), "--quiet"])
    assert again.exit_code == 0 and "0 case(s) written, 1 already there" in again.output
    assert json.loads((out / "dataset.json").read_text())["labels"] == meta["labels"]


def test_distill_refuses_an_unknown_teacher(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    args = ["model", "distill", "--teacher", "no-such-pipeline", "--studies", str(tmp_path / "empty")]
    result = CliRunner().invoke(main, [*args, "--out", str(tmp_path / "o")])
    assert result.exit_code != 0 and "no-such-pipeline" in result.output
