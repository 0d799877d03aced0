"""docs/extending.md's worked examples, exercised the way a site or a plugin adds them, so the
examples cannot rot: an output object (a toy KOS), a destination kind (the folder kind), a
pipeline from an installed package's entry point."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pydicom

from dicom_node.constants import KEY_OBJECT_SELECTION_DOCUMENT_STORAGE
from dicom_node.delivery import deliver
from dicom_node.result_kinds import ResultKind, register_kind
from dicom_node.settings import FolderDestinationSettings
from tests.support.dcmtk import dciodvfy_errors
from tests.unit.dicom_node.imaging.cases import axial_head_first, phantom_hu, write_case
from tests.unit.dicom_node.results.cases import make_case
from tests.unit.dicom_node.results.conftest import encode

REPO = Path(__file__).resolve().parents[2]
DOC = REPO / "docs" / "extending.md"
SITE = REPO / "tests" / "support" / "extending" / "site"  # the toy pipeline package, as installed
CTNODE = Path(sys.executable).parent / "ctnode"

TOY_KOS = ResultKind(
    role="toy-kos",
    title="KOS (key slices, toy)",
    sop_class_uid=KEY_OBJECT_SELECTION_DOCUMENT_STORAGE,
    series_number=909,
    builder="tests.support.extending.toy_kos:encode_toy_kos",
    series_label="AI KEY IMAGES",
)


def test_an_output_object_is_a_builder_and_a_row(tmp_path: Path) -> None:
    register_kind(TOY_KOS)
    encoded = encode(
        make_case(tmp_path, geometry="axial", shape=(7, 24, 32)), tmp_path / "out", roles=("seg", "toy-kos")
    )
    (kos_file,) = [f for f in encoded.bundle.files if f.role == "toy-kos"]
    kos = pydicom.dcmread(kos_file.path)
    assert kos.SOPClassUID == KEY_OBJECT_SELECTION_DOCUMENT_STORAGE
    assert kos.SeriesNumber == 909
    referenced = {
        item.ReferencedSOPSequence[0].ReferencedSOPInstanceUID
        for item in kos.ContentSequence
        if item.ValueType == "IMAGE"
    }
    assert referenced and referenced <= {str(ds.SOPInstanceUID) for ds in encoded.case.sources}
    assert dciodvfy_errors(Path(kos_file.path)) == []
    # ... and a destination takes it by its role, like any built-in kind.
    export = tmp_path / "export"
    export.mkdir()
    folder = FolderDestinationSettings(kind="folder", path=export, objects=["toy-kos"])
    report = deliver(encoded.bundle, "share", folder, calling_ae_title="CTAINODE")
    assert report.delivered_sop_instance_uids == (kos_file.sop_instance_uid,) and report.confirmed


def test_a_pipeline_is_a_package_with_an_entry_point(tmp_path: Path) -> None:
    """The toy pipeline "installed" (its dist-info on the path) runs through ``ctnode infer``,
    the worker's pipeline and encoders, and names itself in the SEG."""
    ct = tmp_path / "ct"
    write_case(ct, phantom_hu((6, 32, 32)), axial_head_first())
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(SITE), str(REPO)])}
    listed = subprocess.run(
        [str(CTNODE), "pipelines", "list"], capture_output=True, text=True, env=env, timeout=120
    )
    assert listed.returncode == 0, listed.stderr
    assert "toy-bone" in listed.stdout
    out = tmp_path / "out"
    run = subprocess.run(
        [str(CTNODE), "infer", str(ct), "--out", str(out), "--pipeline", "toy-bone", "--prompt", "osseous"],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert run.returncode == 0, run.stderr
    seg = pydicom.dcmread(out / "seg.dcm")
    (segment,) = seg.SegmentSequence
    assert segment.SegmentedPropertyTypeCodeSequence[0].CodeMeaning == "Bone"
    algorithm = segment.SegmentationAlgorithmIdentificationSequence[0]
    assert (algorithm.AlgorithmName, algorithm.AlgorithmVersion) == ("toy-bone", "toy-bone@0.1")


def test_the_docs_show_the_toys_as_they_are() -> None:
    """Every ```python block in docs/extending.md headed by a file path is that file's text."""
    text = DOC.read_text(encoding="utf-8")
    blocks = re.findall(r"<!-- file: (\S+) -->\n```python\n(.*?)```", text, flags=re.S)
    assert {path for path, _ in blocks} >= {
        "tests/support/extending/toy_kos.py",
        "tests/support/extending/site/ctnode_toy_pipeline.py",
    }
    for path, code in blocks:
        assert code == (REPO / path).read_text(encoding="utf-8"), f"docs/extending.md shows an old {path}"
    for mentioned in re.findall(r"`((?:dicom_node|worker|inference|tests)/[\w/]+\.py)`", text):
        assert (REPO / mentioned).exists(), f"docs/extending.md names {mentioned}, which does not exist"
