"""``worker.demo.synth_study`` and ``ctnode synth-study``: a synthetic CT study written as DICOM with its
truth, read back through the node's own series reader. Small matrices keep it fast; the 512×512
default is exercised by the demo and the end-to-end tests (and timed in bench/RESULTS.md)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from pydicom import dcmread

from dicom_node.imaging.reader import load_series
from inference.synth import structure_mask
from worker.cli.synth import synth_study
from worker.demo.synth_study import SyntheticStudy, make_synthetic_study, paint_truth

SMALL = {"slices": 40, "matrix": 64, "slice_spacing_mm": 10.0}


@pytest.fixture(scope="module")
def study(tmp_path_factory: pytest.TempPathFactory) -> SyntheticStudy:
    return make_synthetic_study(tmp_path_factory.mktemp("synth") / "a", seed=3, **SMALL)  # type: ignore[arg-type]


def test_files_and_series_read_back(study: SyntheticStudy) -> None:
    assert [p.name for p in study.dicom_paths] == [f"IM{k:05d}.dcm" for k in range(1, 41)]
    assert all(p.parent == study.out_dir / "dicom" for p in study.dicom_paths)
    series = load_series(list(study.dicom_paths))
    assert series.hu.shape == study.shape == (40, 64, 64)
    # the reader's sorted order is the truth's slice order, instance by instance
    assert series.sop_instance_uids == study.sop_instance_uids
    assert series.study_instance_uid == study.study_instance_uid
    assert series.series_instance_uid == study.series_instance_uid
    assert series.frame_of_reference_uid == study.frame_of_reference_uid
    np.testing.assert_allclose(series.affine_lps, study.affine_lps, atol=1e-3)
    labels = study.labels()
    assert labels.shape == series.hu.shape and labels.dtype == np.uint8
    # lungs are air-filled and bones dense where the truth says so (truth and pixels aligned)
    lungs = structure_mask(labels, "lungs")
    bone = structure_mask(labels, "bone")
    assert lungs.any() and bone.any()
    assert float(np.median(series.hu[lungs])) < -600
    assert float(np.median(series.hu[bone])) > 150
    assert float(np.median(series.hu[labels == 0])) < -900  # outside the body: air (or table)


def test_headers(study: SyntheticStudy) -> None:
    ds = dcmread(study.dicom_paths[0])
    assert ds.Modality == "CT" and ds.Rows == 64 and ds.Columns == 64
    assert ds.InstanceNumber == 1 and ds.SeriesNumber == 3
    assert str(ds.PatientName) == "SYNTHETIC^PHANTOM3" and ds.PatientID == "SYN00000003"
    assert ds.StudyDate == "20260105"
    assert ds.Manufacturer == "ct-ai-node synthetic"  # never mistaken for a node result
    assert float(ds.SliceThickness) == pytest.approx(10.0)
    assert ds.BodyPartExamined in ("CHEST", "ABDOMEN", "ABDOMENPELVIS", "CHESTABDPELVIS")


def test_truth_npz_report_and_json(study: SyntheticStudy) -> None:
    with np.load(study.truth_path) as npz:
        assert set(npz.files) >= {"labels", "label_values", "label_names", "lesions", "affine_lps"}
        names = dict(zip(npz["label_values"].tolist(), npz["label_names"].tolist(), strict=True))
        assert names == study.label_names
        assert tuple(npz["sop_instance_uids"].tolist()) == study.sop_instance_uids
        assert set(np.unique(npz["labels"]).tolist()) - {0} == set(names)
        lesion_values = set(npz["lesion_values"].tolist())
    assert lesion_values == {lesion.label_value for lesion in study.lesions}
    record = json.loads(study.study_json_path.read_text())
    assert record["seed"] == 3
    assert record["study_instance_uid"] == study.study_instance_uid
    assert record["sop_instance_uids"] == list(study.sop_instance_uids)
    assert record["files"][0] == "dicom/IM00001.dcm"
    assert len(record["lesions"]) == len(study.lesions)
    for lesion, row in zip(study.lesions, record["lesions"], strict=True):
        assert row["box_voxels"] == list(lesion.box_voxels)
        assert row["image_number"] == lesion.slice_index + 1
    report = study.report_path.read_text()
    assert report.startswith(study.report.rstrip())
    assert "SYNTHETIC" not in report  # the report names no patient


def test_same_seed_same_bytes_other_seed_other_uids(study: SyntheticStudy, tmp_path: Path) -> None:
    again = make_synthetic_study(tmp_path / "b", seed=3, **SMALL)  # type: ignore[arg-type]
    assert again.study_instance_uid == study.study_instance_uid
    assert again.sop_instance_uids == study.sop_instance_uids
    for a, b in zip(study.dicom_paths, again.dicom_paths, strict=True):
        assert a.read_bytes() == b.read_bytes()
    assert np.array_equal(again.labels(), study.labels())
    other = make_synthetic_study(tmp_path / "c", seed=4, **SMALL)  # type: ignore[arg-type]
    assert other.study_instance_uid != study.study_instance_uid
    assert not set(other.sop_instance_uids) & set(study.sop_instance_uids)
    # a different series number is another series of the same study
    renumbered = make_synthetic_study(tmp_path / "d", seed=3, series_number=5, **SMALL)  # type: ignore[arg-type]
    assert renumbered.study_instance_uid == study.study_instance_uid
    assert renumbered.series_instance_uid != study.series_instance_uid


def test_truth_painted_like_a_pipeline_label_map(study: SyntheticStudy) -> None:
    labels = study.labels()
    truth, names = study.truth()
    by_name = {name: value for value, name in names.items()}
    assert set(by_name) <= {"body", "left lung", "right lung", "airway", "bone"}
    assert {"body", "bone"} <= set(by_name)
    # body is painted first (largest): it keeps what no other structure has
    assert np.array_equal(truth > 0, labels > 0)
    assert np.array_equal(truth == by_name["bone"], structure_mask(labels, "bone"))
    assert not np.any((truth == by_name["body"]) & structure_mask(labels, "bone"))
    custom, custom_names = paint_truth(labels, ["lungs", "liver", "pancreas"])
    present = set(custom_names.values())
    assert present <= {"lungs", "liver", "pancreas"}
    for value, name in custom_names.items():
        assert np.array_equal(custom == value, structure_mask(labels, name))
    with pytest.raises(KeyError):
        paint_truth(labels, ["brain"])


def test_bad_arguments(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="slices"):
        make_synthetic_study(tmp_path / "x", seed=1, matrix=64)
    with pytest.raises(ValueError, match="spacing"):
        make_synthetic_study(tmp_path / "x", seed=1, slices=10, matrix=64, slice_spacing_mm=0.0)
    assert not (tmp_path / "x").exists()


def test_cli(tmp_path: Path) -> None:
    out = tmp_path / "study"
    args = [str(out), "--seed", "5", "--slices", "24", "--matrix", "48", "--slice-spacing", "12"]
    result = CliRunner().invoke(synth_study, [*args, "--patient-name", "DOE^JANE", "--no-lesions"])
    assert result.exit_code == 0, result.output
    assert "24 CT images 48×48" in result.output
    assert "DOE" not in result.output  # the patient is never printed
    assert "lesion:" not in result.output
    assert len(list((out / "dicom").glob("*.dcm"))) == 24
    assert str(dcmread(out / "dicom" / "IM00001.dcm").PatientName) == "DOE^JANE"
    assert json.loads((out / "study.json").read_text())["lesions"] == []
    # a second run into the same folder is refused, nothing overwritten
    before = (out / "dicom" / "IM00001.dcm").read_bytes()
    again = CliRunner().invoke(synth_study, args)
    assert again.exit_code != 0 and "not empty" in again.output
    assert (out / "dicom" / "IM00001.dcm").read_bytes() == before
    bad = CliRunner().invoke(synth_study, [str(tmp_path / "y"), "--matrix", "48"])
    assert bad.exit_code != 0 and "slices" in bad.output
