"""An nnU-Net v2 model end to end: zipped as nnU-Net exports it, `ctnode model import`,
`ctnode pipelines list`, `ctnode infer --pipeline nnunet:NAME` on a DICOM CT series → SEG with
SNOMED CT coded segments and SR/GSPS, dciodvfy clean. Real subprocesses of the installed
``ctnode``; the model is made with nnU-Net's own planner and network code (random weights)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pydicom
import pytest

from inference.vocabulary import lookup
from tests.support.ct_series import make_ct_series
from tests.support.dcmtk import dciodvfy_errors

pytest.importorskip("nnunetv2")

from tests.support.nnunet_models import make_nnunet_model

pytestmark = [pytest.mark.integration, pytest.mark.model, pytest.mark.slow]

CTNODE = str(Path(sys.executable).parent / "ctnode")
LABELS = {"liver": 1, "spleen": 2, "vertebrae_L3": 3, "kidney_left": 4}


def _ctnode(*args: str, model_dir: Path, timeout: int = 600) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "CTNODE_MODEL_DIR": str(model_dir)}
    return subprocess.run([CTNODE, *args], capture_output=True, text=True, timeout=timeout, env=env)


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("nnunet-e2e")
    folder = make_nnunet_model(root / "make", labels=LABELS, dataset_id=903, dataset_name="Abdomen", seed=11)
    archive = shutil.make_archive(
        str(root / "Dataset903_Abdomen"), "zip", folder.parents[1], folder.parent.name
    )
    model_dir = root / "models"
    done = _ctnode(
        "model", "import", archive, "--name", "abdomen", "--licence", "CC0-1.0", model_dir=model_dir
    )
    assert done.returncode == 0, done.stderr
    assert "installed nnunet:abdomen" in done.stdout
    return model_dir


def test_pipelines_list_shows_the_installed_model(installed: Path) -> None:
    done = _ctnode("pipelines", "list", "--json", model_dir=installed)
    assert done.returncode == 0, done.stderr
    rows = {row["name"]: row for row in json.loads(done.stdout)}
    row = rows["nnunet:abdomen"]
    assert row["installed"] is True and row["source"] == "nnunet"
    assert set(row["answers"]) == {"liver", "spleen", "l3 vertebra", "left kidney"}
    assert row["version"].startswith("abdomen@")
    assert rows["totalsegmentator"]["installed"] is False
    assert "ctnode model import" in rows["totalsegmentator"]["missing"]


def test_infer_writes_coded_segments_dciodvfy_clean(installed: Path, tmp_path: Path) -> None:
    ct = tmp_path / "ct"
    make_ct_series(ct, n_slices=24, rows=64, cols=64, spacing_mm=(2.5, 3.0, 3.0))
    out = tmp_path / "out"
    done = _ctnode("infer", str(ct), "--out", str(out), "--pipeline", "nnunet:abdomen", model_dir=installed)
    assert done.returncode == 0, done.stdout + done.stderr
    seg_path = next(
        p for p in out.glob("*.dcm") if pydicom.dcmread(p, stop_before_pixels=True).Modality == "SEG"
    )
    seg = pydicom.dcmread(seg_path)
    assert len(seg.SegmentSequence) >= 1
    for item in seg.SegmentSequence:
        structure = lookup(item.SegmentLabel)
        assert structure is not None, item.SegmentLabel
        code = item.SegmentedPropertyTypeCodeSequence[0]
        assert (code.CodeValue, code.CodingSchemeDesignator) == (structure.type.value, "SCT")
        category = item.SegmentedPropertyCategoryCodeSequence[0]
        assert category.CodeValue == structure.category.value
    for path in out.glob("*.dcm"):
        assert dciodvfy_errors(path) == [], path.name


def test_unknown_model_name_says_how_to_install(installed: Path, tmp_path: Path) -> None:
    ct = tmp_path / "ct"
    make_ct_series(ct, n_slices=4, rows=32, cols=32)
    done = _ctnode(
        "infer", str(ct), "--out", str(tmp_path / "o"), "--pipeline", "nnunet:other", model_dir=installed
    )
    assert done.returncode != 0
    assert "ctnode model import PATH --name other" in done.stderr


def test_corrupt_zip_is_one_clear_error(installed: Path, tmp_path: Path) -> None:
    bad = tmp_path / "weights.zip"
    bad.write_bytes(b"PK\x03\x04 this is not really a zip")
    done = _ctnode("model", "import", str(bad), "--name", "bad", model_dir=installed)
    assert done.returncode != 0
    assert "not a readable zip" in done.stderr and "Traceback" not in done.stderr


def _text_values(ds: pydicom.Dataset, concept: str) -> set[str]:
    """TEXT values of every content item named ``concept`` in an SR tree."""
    out: set[str] = set()
    for item in getattr(ds, "ContentSequence", []):
        name = item.get("ConceptNameCodeSequence")
        if name and name[0].CodeMeaning == concept and "TextValue" in item:
            out.add(str(item.TextValue))
        out |= _text_values(item, concept)
    return out


def test_auto_mixes_two_models_in_one_seg_each_segment_naming_its_model(
    installed: Path, tmp_path: Path
) -> None:
    second = make_nnunet_model(
        tmp_path / "make",
        labels={"stomach": 1, "kidney_right": 2},
        dataset_id=904,
        dataset_name="More",
        seed=2,
    )
    done = _ctnode("model", "import", str(second.parent), "--name", "more", model_dir=installed)
    assert done.returncode == 0, done.stderr
    ct = tmp_path / "ct"
    make_ct_series(ct, n_slices=24, rows=64, cols=64, spacing_mm=(2.5, 3.0, 3.0))
    out = tmp_path / "out"
    prompts = ["hepatic", "splenic", "L3 vertebra", "left renal organ", "stomach", "right kidney", "banana"]
    args = [a for p in prompts for a in ("--prompt", p)]
    done = _ctnode("infer", str(ct), "--out", str(out), "--pipeline", "auto", *args, model_dir=installed)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "'banana': no match" in done.stdout
    files = {pydicom.dcmread(p, stop_before_pixels=True).Modality: p for p in out.glob("*.dcm")}
    seg = pydicom.dcmread(files["SEG"])
    algorithms = {str(item.SegmentAlgorithmName) for item in seg.SegmentSequence}
    assert algorithms == {"abdomen", "more"}, [
        (i.SegmentLabel, i.SegmentAlgorithmName) for i in seg.SegmentSequence
    ]
    for item in seg.SegmentSequence:
        structure = lookup(item.SegmentLabel)
        assert structure is not None
        assert str(item.SegmentAlgorithmName) == (
            "more" if structure.name in {"stomach", "right kidney"} else "abdomen"
        )
        modifier = item.SegmentedPropertyTypeCodeSequence[0].get("SegmentedPropertyTypeModifierCodeSequence")
        if structure.type_modifier is None:
            assert modifier is None
        else:
            assert modifier[0].CodeValue == structure.type_modifier.value
    sr = pydicom.dcmread(files["SR"])
    assert {"abdomen", "more"} <= _text_values(sr, "Algorithm Name")
    for path in files.values():
        assert dciodvfy_errors(path) == [], path.name


def test_bundles_segment_and_detect_through_ctnode_infer(tmp_path: Path) -> None:
    from tests.support.monai_bundles import make_detection_bundle, make_segmentation_bundle

    model_dir = tmp_path / "models"
    for bundle, name in (
        (make_segmentation_bundle(tmp_path / "s", classes={1: "liver", 2: "spleen"}), "organs"),
        (make_detection_bundle(tmp_path / "d"), "nodules"),
    ):
        done = _ctnode("model", "import", str(bundle), "--name", name, model_dir=model_dir)
        assert done.returncode == 0, done.stderr
        assert f"installed bundle:{name}" in done.stdout
    ct = tmp_path / "ct"
    make_ct_series(ct, n_slices=24, rows=64, cols=64, spacing_mm=(2.5, 3.0, 3.0))

    out = tmp_path / "seg-out"
    done = _ctnode("infer", str(ct), "--out", str(out), "--pipeline", "bundle:organs", model_dir=model_dir)
    assert done.returncode == 0, done.stdout + done.stderr
    seg = next(pydicom.dcmread(p) for p in out.glob("*.dcm") if pydicom.dcmread(p).Modality == "SEG")
    assert {str(i.SegmentLabel).lower() for i in seg.SegmentSequence} <= {"liver", "spleen"}
    assert {str(i.SegmentAlgorithmName) for i in seg.SegmentSequence} == {"organs"}
    for path in out.glob("*.dcm"):
        assert dciodvfy_errors(path) == [], path.name

    out = tmp_path / "det-out"
    done = _ctnode("infer", str(ct), "--out", str(out), "--pipeline", "bundle:nodules", model_dir=model_dir)
    assert done.returncode == 0, done.stdout + done.stderr
    files = {pydicom.dcmread(p, stop_before_pixels=True).Modality: p for p in out.glob("*.dcm")}
    assert {"SR", "PR"} <= set(files), files
    gsps = pydicom.dcmread(files["PR"])
    boxes = [g for a in gsps.GraphicAnnotationSequence for g in a.get("GraphicObjectSequence", [])]
    assert boxes, "every detection is drawn as a box on its key slice"
    assert "Lung nodule" in done.stdout
    for path in files.values():
        assert dciodvfy_errors(path) == [], path.name
    checked = subprocess.run(["dcmpschk", str(files["PR"])], capture_output=True, text=True, timeout=120)
    text = checked.stdout + checked.stderr
    assert checked.returncode == 0 and "Test passed" in text, text
    assert not [line for line in text.splitlines() if line.startswith(("E:", "F:"))], text
