"""A small CT with organs and findings for the result-object tests.

The CT is written by the node's own writer and read back as headers, exactly as a job sees it. The
label map holds three segments: a block spanning several slices (with a gap slice in the middle), a
small blob, and one described segment with no voxel at all.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import numpy as np
import pydicom
from pydicom.dataset import Dataset

from dicom_node.contracts import (
    AnalysisResult,
    BoxFinding,
    CodedConcept,
    SegmentDescription,
    SegmentMeasurement,
    SnippetLocation,
)
from dicom_node.results.inputs import AlgorithmIdentity
from tests.unit.dicom_node.imaging.cases import GEOMETRIES, phantom_hu, write_case

JOB_ID = "4f1c2a57-0c1e-5d1b-9a53-3f4b8f0f9e11"
UID_ROOT = "1.2.826.0.1.3680043.10.1111."
WHEN = datetime(2026, 11, 23, 10, 30, 0)

SCT = "SCT"
ORGAN = CodedConcept(value="91772007", scheme_designator=SCT, meaning="Organ")
MORPHOLOGY = CodedConcept(
    value="49755003", scheme_designator=SCT, meaning="Morphologically Abnormal Structure"
)
LIVER = CodedConcept(value="10200004", scheme_designator=SCT, meaning="Liver")
SPLEEN = CodedConcept(value="78961009", scheme_designator=SCT, meaning="Spleen")
KIDNEY = CodedConcept(value="64033007", scheme_designator=SCT, meaning="Kidney")
LESION = CodedConcept(value="52988006", scheme_designator=SCT, meaning="Lesion")
AI_FAMILY = CodedConcept(value="123110", scheme_designator="DCM", meaning="Artificial Intelligence")
ALGORITHM = AlgorithmIdentity(name="ct-anatomy-basic", version="1.0.0", family=AI_FAMILY)

SEGMENTS = (
    SegmentDescription(
        segment_number=1,
        label="Liver",
        category=ORGAN,
        type=LIVER,
        tracking_id="liver",
        color_rgb=(221, 130, 101),
        description="Liver: block",
    ),
    SegmentDescription(segment_number=2, label="Spleen", category=ORGAN, type=SPLEEN, tracking_id="spleen"),
    SegmentDescription(segment_number=3, label="Kidney", category=ORGAN, type=KIDNEY, tracking_id="kidney"),
)


@dataclass
class Case:
    hu: np.ndarray
    affine: np.ndarray
    labelmap: np.ndarray
    sources: list[Dataset]  # headers in slice order
    paths: list[Path]


def make_case(
    tmp_path: Path,
    *,
    geometry: str = "oblique",
    shape: tuple[int, int, int] = (7, 24, 32),
    body_part_examined: str = "ABDOMEN",
    **write_kwargs: object,
) -> Case:
    affine = GEOMETRIES[geometry]()
    hu = phantom_hu(shape)
    paths = write_case(tmp_path / "ct", hu, affine, body_part_examined=body_part_examined, **write_kwargs)
    _, rows, columns = shape
    labelmap = np.zeros(shape, dtype=np.uint8)
    labelmap[1:5, 3 : rows // 2, 4 : columns // 2] = 1  # liver block ...
    labelmap[3] = 0  # ... with an empty slice in the middle
    labelmap[2:4, rows // 2 + 2 : rows // 2 + 5, columns - 7 : columns - 3] = 2  # spleen blob
    # segment 3 (kidney) is described but absent
    sources = [pydicom.dcmread(p, stop_before_pixels=True) for p in paths]
    return Case(hu=hu, affine=affine, labelmap=labelmap, sources=sources, paths=paths)


def measurements(case: Case) -> tuple[SegmentMeasurement, ...]:
    """Measurements as a pipeline would report them (mean/SD from the HU; volume from the map)."""
    out = []
    voxel_ml = abs(float(np.linalg.det(case.affine[:3, :3]))) / 1000.0
    for segment in SEGMENTS:
        mask = case.labelmap == segment.segment_number
        if not mask.any():
            continue
        idx = np.argwhere(mask)
        lo, hi = idx.min(axis=0), idx.max(axis=0)
        corners = [case.affine @ [*lo, 1.0], case.affine @ [*hi, 1.0]]
        out.append(
            SegmentMeasurement(
                segment_number=segment.segment_number,
                volume_ml=float(mask.sum()) * voxel_ml,
                mean_hu=float(case.hu[mask].mean()),
                std_hu=float(case.hu[mask].std()),
                voxel_count=int(mask.sum()),
                bbox_voxels=(*map(int, lo), *map(int, hi)),  # type: ignore[arg-type]
                bbox_lps_mm=(*[float(v) for v in corners[0][:3]], *[float(v) for v in corners[1][:3]]),  # type: ignore[arg-type]
            )
        )
    return tuple(out)


def analysis(case: Case) -> AnalysisResult:
    rows, columns = case.labelmap.shape[1:]
    finding = BoxFinding(
        label="Liver lesion",
        text="Hypodense liver lesion, 6 × 5 × 4 mm, mean 20 HU, at image 3",
        score=0.91,
        category=MORPHOLOGY,
        type=LESION,
        box_voxels=(2, 5, 6, 3, 9, 12),
        key_slice_index=2,
        size_mm=(6.0, 5.0, 4.0),
        volume_ml=0.08,
        mean_hu=20.0,
        finding_site=LIVER,
    )
    snippet_point = case.affine @ [4.0, rows / 2, columns / 2, 1.0]
    return AnalysisResult(
        job_id=JOB_ID,
        algorithm_name=ALGORITHM.name,
        algorithm_version=ALGORITHM.version,
        algorithm_family=AI_FAMILY,
        segments=SEGMENTS,
        measurements=measurements(case),
        findings=(finding,),
        snippets=(
            SnippetLocation(
                text="series 1, image 5: small cyst",
                slice_index=4,
                z_mm=float(snippet_point[2]),
                point_lps_mm=(float(snippet_point[0]), float(snippet_point[1]), float(snippet_point[2])),
                score=0.7,
            ),
        ),
        descriptions=("Liver: block", "Spleen: blob", "Kidney: not found"),
        summary="Two structures segmented; one lesion.",
    )
