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
BODY = CodedConcept(value="38266002", scheme_designator=SCT, meaning="Entire body")
BONE = CodedConcept(value="3138006", scheme_designator=SCT, meaning="Bone")
TISSUE = CodedConcept(value="85756007", scheme_designator=SCT, meaning="Tissue")
SEGMENTS = (
    SegmentDescription(
        segment_number=1,
        label="liver",
        category=ORGAN,
        type=LIVER,
        tracking_id="Liver",
        color_rgb=(220, 40, 40),
    ),
    SegmentDescription(
        segment_number=2,
        label="spleen",
        category=ORGAN,
        type=SPLEEN,
        tracking_id="Spleen",
        color_rgb=(40, 200, 60),
    ),
    # whole-body structures: the body holds everything inside it (a BINARY SEG with overlapping
    # segments); neither is drawn as a region in the SR
    SegmentDescription(
        segment_number=3,
        label="body",
        category=ORGAN,
        type=BODY,
        tracking_id="Body",
        color_rgb=(60, 90, 220),
        contains=(1, 2, 4),
        diffuse=True,
    ),
    SegmentDescription(
        segment_number=4,
        label="bone",
        category=TISSUE,
        type=BONE,
        tracking_id="Bone",
        color_rgb=(240, 220, 60),
        diffuse=True,
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
    labelmap[body] = 3
    spine = (((yy - rows * 0.78) / 10) ** 2 + ((xx - cols / 2) / 10) ** 2) <= 1  # a vertebra-like bone
    labelmap[spine] = 4
    hu[spine] = 700.0
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
    whole = {1: labelmap == 1, 2: labelmap == 2, 3: labelmap > 0, 4: labelmap == 4}
    for number in (1, 2, 3, 4):
        mask = whole[number]
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
        descriptions=(),
        summary="1 liver lesion; liver, spleen, body and bone measured",
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
            assert viewer.wait_for_segmentation() == 4

            # The segmentation panel lists every segment by its name (issue 14 item 2).
            viewer.page.evaluate("() => document.querySelector('[data-cy=panelSegmentation-btn]').click()")
            panel = viewer.wait_for(
                "() => { const t = document.body.innerText; return t.includes('Segmentations') && t; }",
                timeout_s=30,
                what="segmentation panel",
            )
            viewer.screenshot("02-segmentation-panel.png")
            for name in ("Liver", "Spleen", "Body", "Bone"):
                assert name in str(panel).splitlines(), (name, str(panel)[-400:])

            # Each compact segment has its own colour at its centre: on top of the body segment
            # that holds it (overlapping BINARY segments); the body shows its colour elsewhere.
            for number in (1, 2, 3):
                mask = labelmap == number
                key_slice = int(np.argmax(mask.sum(axis=(1, 2))))
                rows, cols = np.nonzero(mask[key_slice])
                if number == 3:  # a point of the body outside every organ and the bone
                    rows, cols = np.array([int(SHAPE[1] * 0.5)]), np.array([int(SHAPE[2] * 0.85)])
                    assert labelmap[key_slice, rows[0], cols[0]] == 3
                centre = affine @ [key_slice, float(rows.mean()), float(cols.mean()), 1.0]
                x, y = viewer.show_point(sops[key_slice], centre[:3])
                observed = mean_rgb(viewer.screenshot(f"03-segment-{number}.png"), x, y)
                index, similarity = closest_colour(observed, [expected_rgb[n] for n in sorted(expected_rgb)])
                assert sorted(expected_rgb)[index] == number, (number, observed, expected_rgb)
                if number == 3:
                    assert similarity > 0.8, (number, observed, similarity)
                else:
                    # OHIF draws overlapping segments on top of each other, both half transparent:
                    # an organ inside the body shows the blend of its colour and the body's.
                    blend = (np.asarray(expected_rgb[number]) + np.asarray(expected_rgb[3])) / 2
                    _, blended = closest_colour(observed, [blend])
                    assert blended > 0.8, (number, observed, blend, blended)
            # Outside the body (air) the CT stays grey.
            key_slice = FINDING.key_slice_index
            air = affine @ [key_slice, SHAPE[1] / 2, 4.0, 1.0]  # left of the body, mid-height
            assert labelmap[key_slice, SHAPE[1] // 2, 4] == 0
            ax, ay = viewer.show_point(sops[key_slice], air[:3])
            grey = np.asarray(mean_rgb(viewer.screenshot("04-outside.png"), ax, ay))
            assert np.ptp(grey) < 12, grey

            # The SR: findings first, each compact structure named on its key slice; no region
            # for the whole-body structures (issue 14 item 1).
            sr_description = str(dcmread(sr_path, stop_before_pixels=True).SeriesDescription)
            viewer.load_series(sr_description)
            measurements_js = (
                "() => { const d = window.services.displaySetService.getActiveDisplaySets()"
                ".find(s => s.Modality === 'SR' && s.measurements && s.measurements.length);"
                " return d ? d.measurements.map(m => ({id: m.TrackingIdentifier,"
                " labels: (m.labels || []).map(l => `${l.label}: ${l.value}`),"
                " points: (m.coords[0] || {}).GraphicData || []})) : null; }"
            )
            listed = viewer.wait_for(measurements_js, timeout_s=60, what="SR measurements")
            ids = [m["id"] for m in listed]
            assert ids == ["Liver lesion 1", "Liver", "Spleen"], ids  # findings first, then organs
            sites = {
                m["id"]: [label for label in m["labels"] if label.startswith("363698007: ")] for m in listed
            }
            assert sites == {
                "Liver lesion 1": ["363698007: Liver"],
                "Liver": ["363698007: Liver"],
                "Spleen": ["363698007: Spleen"],
            }, sites
            body_columns = np.nonzero(labelmap.max(axis=0) > 0)[1]
            body_width_px = body_columns.max() - body_columns.min() + 1
            for m in listed:  # no region as wide as the body (the old box from arm to arm)
                xs = np.asarray(m["points"], dtype=float)[0::2]
                assert xs.size and np.ptp(xs) < 0.6 * body_width_px, (m["id"], np.ptp(xs), body_width_px)

            lesion_slice = FINDING.key_slice_index
            s0, r0, c0, s1, r1, c1 = FINDING.box_voxels
            lesion_texts = [
                f"Width: {(c1 - c0 + 1) * SPACING_MM[2]:.2f} mm",
                f"Depth: {(r1 - r0 + 1) * SPACING_MM[1]:.2f} mm",
                f"Height: {(s1 - s0 + 1) * SPACING_MM[0]:.2f} mm",
                "363698007: Liver",
            ]
            liver_ml = float((labelmap == 1).sum()) * float(np.prod(SPACING_MM)) / 1000
            liver_texts = [f"Volume: {round(liver_ml, 3):.2f} ml"]
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
            viewer.screenshot("05-sr.png")
            liver_key = int(np.argmax((labelmap == 1).sum(axis=(1, 2))))
            if liver_key != lesion_slice:
                viewer.show_point(sops[liver_key], affine[:3, 3])
                shown += " | " + str(viewer.page.evaluate(svg_text))
            for text in lesion_texts + liver_texts:
                assert text in shown, (text, shown)
            assert "Body" not in shown and "Bone" not in shown and "Entire body" not in shown, shown
