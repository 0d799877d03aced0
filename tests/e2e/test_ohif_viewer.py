"""The node's results in a real viewer: OHIF 3.13 (headless Chromium) on Orthanc.

A synthetic CT with two organs is written by the node's CT writer; its BINARY SEG and its
viewer-safe TID 1500 SR (planar key-slice groups, the profile OHIF can show) are built by
``dicom_node.results``; everything goes into a real Orthanc and is opened through
``worker.cli.viewer.ViewerServer`` (what ``ctnode viewer`` serves).

Checked:
* each segment's colour appears where that segment is: at the projection of the segment's centre
  (on its own key slice) the overlay has *that* segment's recommended display colour, not just
  "some colour" (a LABELMAP SEG misread by one segment would show the neighbour's colour); a
  point outside every segment stays grey;
* the SR's planar measurements are shown on the CT: the extents of the lesion box and of the liver
  on its key slice, as OHIF writes them ("Width: 13.20 mm"; cornerstone's SVG annotation layer,
  text in the DOM), computed here from the box and the label map.
Screenshots and the browser console stay in ``test-artifacts/ohif/`` (gitignored).
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import numpy as np
import pytest
from pydicom import dcmread

from dicom_node.contracts import (
    AnalysisResult,
    BoxFinding,
    CodedConcept,
    ResultRole,
    SegmentDescription,
    SegmentMeasurement,
)
from dicom_node.identity import job_id_for
from dicom_node.imaging.writer import PatientInfo, write_ct_series
from dicom_node.results.bundle import encode_results
from tests.support.ohif import ARTIFACTS, cielab_to_rgb, closest_colour, mean_rgb, ohif_session
from tests.support.orthanc import orthanc

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

UID_ROOT = "1.2.826.0.1.3680043.10.1111."
SCT = "SCT"
ORGAN = CodedConcept(value="91772007", scheme_designator=SCT, meaning="Organ")
LESION_CATEGORY = CodedConcept(
    value="49755003", scheme_designator=SCT, meaning="Morphologically Abnormal Structure"
)
LIVER = CodedConcept(value="10200004", scheme_designator=SCT, meaning="Liver")
SPLEEN = CodedConcept(value="78961009", scheme_designator=SCT, meaning="Spleen")
LESION = CodedConcept(value="52988006", scheme_designator=SCT, meaning="Lesion")
AI = CodedConcept(value="123110", scheme_designator="DCM", meaning="Artificial Intelligence")
SEGMENTS = (
    SegmentDescription(
        segment_number=1,
        label="Liver",
        category=ORGAN,
        type=LIVER,
        tracking_id="liver",
        color_rgb=(220, 40, 40),
    ),
    SegmentDescription(
        segment_number=2,
        label="Spleen",
        category=ORGAN,
        type=SPLEEN,
        tracking_id="spleen",
        color_rgb=(40, 200, 60),
    ),
)
FINDING = BoxFinding(
    label="Liver lesion",
    text="Hypodense liver lesion, 12 mm",
    score=0.9,
    category=LESION_CATEGORY,
    type=LESION,
    box_voxels=(14, 60, 55, 18, 70, 65),  # slice, row, column bounds, inclusive
    key_slice_index=16,
    size_mm=(15.0, 13.2, 13.2),
    finding_site=LIVER,
)
SHAPE = (32, 192, 192)  # slices, rows, columns
SPACING_MM = (3.0, 1.2, 1.2)


def synthetic_study(tmp_path: Path) -> tuple[list[Path], np.ndarray, np.ndarray, list[Path]]:
    """CT files (slice order), its affine, the label map, and the result files."""
    n, rows, cols = SHAPE
    # (slice, row, column, 1) -> LPS mm: column along +x (L), row along +y (P), slice along +z (S)
    affine = np.array(
        [
            [0.0, 0.0, SPACING_MM[2], -cols * SPACING_MM[2] / 2],
            [0.0, SPACING_MM[1], 0.0, -rows * SPACING_MM[1] / 2],
            [SPACING_MM[0], 0.0, 0.0, 0.0],
            [0.0, 0.0, 0.0, 1.0],
        ]
    )
    zz, yy, xx = np.mgrid[0:n, 0:rows, 0:cols].astype(np.float32)
    body = ((yy - rows / 2) / (rows * 0.42)) ** 2 + ((xx - cols / 2) / (cols * 0.45)) ** 2 <= 1
    hu = np.where(body, 30.0, -1000.0).astype(np.float32)
    labelmap = np.zeros(SHAPE, dtype=np.uint8)
    liver = (((zz - 16) / 9) ** 2 + ((yy - 70) / 28) ** 2 + ((xx - 65) / 30) ** 2) <= 1
    spleen = (((zz - 15) / 7) ** 2 + ((yy - 125) / 18) ** 2 + ((xx - 135) / 16) ** 2) <= 1
    labelmap[liver], labelmap[spleen] = 1, 2
    hu[liver], hu[spleen] = 60.0, 45.0
    study_uid, series_uid = UID_ROOT + "77.1", UID_ROOT + "77.1.1"
    ct = write_ct_series(
        hu,
        affine,
        tmp_path / "ct",
        study_instance_uid=study_uid,
        series_instance_uid=series_uid,
        uid_root=UID_ROOT,
        patient=PatientInfo(name="VIEWER^TEST", id="VIEW-0001", birth_date="19700101"),
        series_description="SYNTHETIC CT",
        body_part_examined="ABDOMEN",
    )
    sources = [dcmread(p, stop_before_pixels=True) for p in ct]
    voxel_ml = float(np.prod(SPACING_MM)) / 1000
    measurements = []
    for number in (1, 2):
        mask = labelmap == number
        idx = np.argwhere(mask)
        lo, hi = idx.min(axis=0), idx.max(axis=0)
        corner0, corner1 = affine @ [*lo, 1.0], affine @ [*hi, 1.0]
        measurements.append(
            SegmentMeasurement(
                segment_number=number,
                volume_ml=float(mask.sum()) * voxel_ml,
                mean_hu=float(hu[mask].mean()),
                std_hu=float(hu[mask].std()),
                voxel_count=int(mask.sum()),
                bbox_voxels=(*map(int, lo), *map(int, hi)),  # type: ignore[arg-type]
                bbox_lps_mm=(*map(float, corner0[:3]), *map(float, corner1[:3])),  # type: ignore[arg-type]
            )
        )
    job_id = job_id_for(
        study_instance_uid=study_uid,
        series_instance_uids=[series_uid],
        pipeline="viewer-test",
        model_version="1",
        ruleset_digest="none",
        sop_digest="none",
    )
    analysis = AnalysisResult(
        job_id=job_id,
        algorithm_name="viewer-test",
        algorithm_version="1.0",
        algorithm_family=AI,
        segments=SEGMENTS,
        measurements=tuple(measurements),
        findings=(FINDING,),
        descriptions=("Liver segmented", "Spleen segmented"),
    )
    bundle = encode_results(
        job_id=job_id,
        study_instance_uid=study_uid,
        sources=sources,
        labelmap=labelmap,
        analysis=analysis,
        out_dir=tmp_path / "results",
        uid_root=UID_ROOT,
        manufacturer="ct-ai-node",
        roles={ResultRole.SEG, ResultRole.SR_PLANAR},  # the viewer-safe SR profile (OHIF issue 3390)
        content_datetime=datetime(2026, 11, 23, 12, 0, 0),
    )
    return ct, affine, labelmap, [Path(f.path) for f in bundle.files]


def test_seg_colours_and_sr_measurements_in_ohif(tmp_path: Path) -> None:
    ct, affine, labelmap, results = synthetic_study(tmp_path)
    seg_path = next(p for p in results if dcmread(p, stop_before_pixels=True).Modality == "SEG")
    sr_path = next(p for p in results if dcmread(p, stop_before_pixels=True).Modality == "SR")
    seg = dcmread(seg_path, stop_before_pixels=True)
    expected_rgb = {
        int(s.SegmentNumber): cielab_to_rgb([int(v) for v in s.RecommendedDisplayCIELabValue])
        for s in seg.SegmentSequence
    }
    study_uid = str(dcmread(ct[0]).StudyInstanceUID)
    sops = [str(dcmread(p, stop_before_pixels=True).SOPInstanceUID) for p in ct]
    with orthanc(tmp_path / "orthanc", credentials=("viewer", "test-only")) as server:
        for path in [*ct, *results]:
            server.upload(path)
        with ohif_session(server, artifacts=ARTIFACTS / "seg-sr") as viewer:
            viewer.open_study(study_uid)
            viewer.screenshot("01-ct.png")
            viewer.load_series(str(seg.SeriesDescription))
            assert viewer.wait_for_segmentation() == 2

            for number, colour in expected_rgb.items():
                mask = labelmap == number
                key_slice = int(np.argmax(mask.sum(axis=(1, 2))))
                rows, cols = np.nonzero(mask[key_slice])
                centre = affine @ [key_slice, float(rows.mean()), float(cols.mean()), 1.0]
                x, y = viewer.show_point(sops[key_slice], centre[:3])
                image = viewer.screenshot(f"02-segment-{number}.png")
                observed = mean_rgb(image, x, y)
                index, similarity = closest_colour(observed, [expected_rgb[n] for n in sorted(expected_rgb)])
                assert sorted(expected_rgb)[index] == number, (number, observed, expected_rgb)
                assert similarity > 0.8, (number, observed, colour, similarity)
                # A point inside the body but outside every segment stays grey.
                outside = affine @ [key_slice, SHAPE[1] * 0.5, SHAPE[2] * 0.85, 1.0]
                assert labelmap[key_slice, int(SHAPE[1] * 0.5), int(SHAPE[2] * 0.85)] == 0
                ox, oy = viewer.show_point(sops[key_slice], outside[:3])
                grey = np.asarray(mean_rgb(viewer.screenshot(f"03-outside-{number}.png"), ox, oy))
                assert np.ptp(grey) < 12, grey

            # The SR: OHIF draws its planar groups on the CT (annotation text is SVG in the DOM).
            sr_description = str(dcmread(sr_path, stop_before_pixels=True).SeriesDescription)
            viewer.load_series(sr_description)
            lesion_slice = FINDING.key_slice_index
            s0, r0, c0, s1, r1, c1 = FINDING.box_voxels
            lesion_texts = [
                f"Width: {(c1 - c0 + 1) * SPACING_MM[2]:.2f} mm",
                f"Depth: {(r1 - r0 + 1) * SPACING_MM[1]:.2f} mm",
                f"Height: {(s1 - s0 + 1) * SPACING_MM[0]:.2f} mm",
            ]
            rows, cols = np.nonzero(labelmap[lesion_slice] == 1)
            liver_texts = [
                f"Width: {(cols.max() - cols.min() + 1) * SPACING_MM[2]:.2f} mm",
                f"Depth: {(rows.max() - rows.min() + 1) * SPACING_MM[1]:.2f} mm",
            ]
            svg_text = (
                "() => Array.from(document.querySelectorAll('svg text')).map(t => t.textContent).join(' | ')"
            )
            # The annotations exist in the DOM only while their key slice is shown; on a loaded
            # machine OHIF may not have jumped there (or may have dropped the double-click).
            for attempt in range(4):
                viewer.show_point(sops[lesion_slice], affine[:3, 3])
                try:
                    has_width = f"() => ({svg_text})().includes('Width:')"
                    viewer.wait_for(has_width, timeout_s=40, what="SR annotations")
                    break
                except TimeoutError:
                    if attempt == 3:
                        raise
                    viewer.load_series(sr_description)
            viewer.show_point(sops[lesion_slice], affine[:3, 3])
            shown = str(viewer.page.evaluate(svg_text))
            viewer.screenshot("04-sr.png")
            for text in lesion_texts + liver_texts:
                assert text in shown, (text, shown)
