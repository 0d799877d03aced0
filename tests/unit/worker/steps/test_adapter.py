"""The adapter: inference outputs → the node's contracts, with one definition per structure."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from dicom_node.results.labels import label_stats
from inference.contracts import Request, Task, VolumeInput
from inference.registry import get_pipeline
from inference.synth import make_case
from worker.steps.adapter import is_diffuse, to_analysis


@pytest.fixture(scope="module")
def chest() -> tuple[VolumeInput, object]:
    case = make_case(1, shape=(40, 128, 128), lesions=False)
    volume = VolumeInput(case.hu, case.affine_lps)
    names = ["body", "lungs", "left lung", "right lung", "airway", "bone"]
    return volume, get_pipeline("ct-anatomy-basic").run(volume, [Request(Task.SEG, n) for n in names])


def test_segments_keep_what_lies_inside_them_and_the_numbers_match_the_seg_voxels(
    chest: tuple[VolumeInput, object], tmp_path: Path
) -> None:
    volume, outputs = chest
    analysis = to_analysis(outputs, volume, job_id="j", labelmap_path=tmp_path / "l.npz", ai_model=False)  # type: ignore[arg-type]
    labelmap = np.load(tmp_path / "l.npz")["labelmap"]
    by_label = {s.label: s for s in analysis.segments}
    body = by_label["body"]
    assert body.diffuse and by_label["bone"].diffuse and by_label["lungs"].diffuse
    assert not by_label["left lung"].diffuse and not by_label["airway"].diffuse
    assert body.tracking_id == "Body" and by_label["left lung"].tracking_id == "Left lung"
    assert analysis.research_grade is False  # classical: no "not for diagnosis" needed
    stats = label_stats(
        labelmap, len(analysis.segments), {s.segment_number: s.contains for s in analysis.segments}
    )
    measured = {m.segment_number: m for m in analysis.measurements}
    for segment in analysis.segments:
        # what the SEG will hold is what the pipeline measured: the same voxel count
        assert stats.voxel_count(segment.segment_number) == measured[segment.segment_number].voxel_count
    assert stats.voxel_count(body.segment_number) == int((labelmap > 0).sum())
    # the pipeline's own line for a structure says the numbers the encoders will write
    line = next(d for d in analysis.descriptions if d.startswith("Body: "))
    voxel_ml = abs(float(np.linalg.det(volume.affine_lps[:3, :3]))) / 1000
    assert line.startswith(f"Body: {stats.voxel_count(body.segment_number) * voxel_ml:.0f} mL")


def test_which_structures_are_whole_body() -> None:
    assert is_diffuse("body", contains=False) and is_diffuse("kidneys", contains=False)
    assert is_diffuse("vertebrae", contains=False) and is_diffuse("ribs", contains=False)
    assert not is_diffuse("liver", contains=False) and not is_diffuse("left kidney", contains=False)
    assert is_diffuse("liver", contains=True)
    assert not is_diffuse("something unknown", contains=False)
