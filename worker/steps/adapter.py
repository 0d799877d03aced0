"""The one place that sees both sides: inference outputs → the node's DICOM-side contracts.

``inference`` speaks voxels, mm and codes; ``dicom_node.results`` wants ``AnalysisResult`` with
SEG segment numbers 1..n (PS3.3 C.8.20.2: SegmentNumber starts at 1 and increases by 1), so the
label map is renumbered here, once, and saved beside the analysis for the encoders.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from dicom_node.contracts import (
    AnalysisResult,
    BoxFinding,
    CodedConcept,
    SegmentDescription,
    SegmentMeasurement,
    SnippetLocation,
)
from inference.contracts import Code, Measurements, ModelOutputs, VolumeInput
from inference.vocabulary import STRUCTURES

# CID 7162 Surface Processing Algorithm Families
AI_FAMILY = CodedConcept(value="123110", scheme_designator="DCM", meaning="Artificial Intelligence")
MORPHOLOGY_FAMILY = CodedConcept(value="123104", scheme_designator="DCM", meaning="Morphological Operations")


# Structures that are whole-body or scattered whatever the vocabulary says of them: a region drawn
# around them (a box from arm to arm, one vertebra for the whole column) says nothing (issue 14).
WHOLE_BODY_NAMES = frozenset({"vertebrae", "ribs"})


def is_diffuse(name: str, *, contains: bool) -> bool:
    """Whether a structure is reported by its figures only (SegmentDescription.diffuse): the body
    and tissues (vocabulary kinds "region", "tissue"), unions of separate parts ("lungs",
    "kidneys", "bone"), anything with other structures inside it, the vertebral column, the ribs."""
    structure = STRUCTURES.get(name)
    if contains or name in WHOLE_BODY_NAMES:
        return True
    if structure is None:
        return False
    return structure.kind in ("region", "tissue") or structure.is_composite


def coded(code: Code) -> CodedConcept:
    return CodedConcept(value=code.value, scheme_designator=code.scheme, meaning=code.meaning)


def _bbox_lps(volume: VolumeInput, bbox: tuple[int, int, int, int, int, int]) -> tuple[float, ...]:
    """LPS-mm bounds of the 8 corners of an inclusive voxel box (voxel centres)."""
    k0, r0, c0, k1, r1, c1 = bbox
    corners = np.array(
        [[k, r, c, 1.0] for k in (k0, k1) for r in (r0, r1) for c in (c0, c1)], dtype=np.float64
    )
    lps = (volume.affine_lps @ corners.T).T[:, :3]
    lo, hi = lps.min(axis=0), lps.max(axis=0)
    return (float(lo[0]), float(lo[1]), float(lo[2]), float(hi[0]), float(hi[1]), float(hi[2]))


def _measurement(number: int, m: Measurements, volume: VolumeInput) -> SegmentMeasurement:
    return SegmentMeasurement(
        segment_number=number,
        volume_ml=round(m.volume_ml, 3),
        mean_hu=round(m.mean_hu, 2),
        std_hu=round(m.std_hu, 2),
        voxel_count=m.voxel_count,
        bbox_voxels=m.bbox_voxels,
        bbox_lps_mm=_bbox_lps(volume, m.bbox_voxels),
    )


def to_analysis(
    outputs: ModelOutputs,
    volume: VolumeInput,
    *,
    job_id: str,
    labelmap_path: Path,
    colors: dict[str, tuple[int, int, int]] | None = None,
    ai_model: bool = True,
) -> AnalysisResult:
    """Map ``outputs`` to an ``AnalysisResult`` and write the renumbered label map to ``labelmap_path``."""
    colors = colors or {}
    if outputs.labelmap.shape != volume.hu.shape:
        raise ValueError(f"label map shape {outputs.labelmap.shape} differs from volume {volume.hu.shape}")
    present = [s for s in outputs.segments if s.measurements.voxel_count > 0]
    dtype = np.uint8 if len(present) < 256 else np.uint16
    remap = np.zeros(int(outputs.labelmap.max(initial=0)) + 1, dtype=dtype)
    number_of = {seg.label_value: number for number, seg in enumerate(present, start=1)}
    segments: list[SegmentDescription] = []
    measurements: list[SegmentMeasurement] = []
    for number, seg in enumerate(present, start=1):
        remap[seg.label_value] = number
        contains = tuple(sorted(number_of[v] for v in seg.contains if v in number_of))
        segments.append(
            SegmentDescription(
                segment_number=number,
                label=seg.name,
                category=coded(seg.category),
                type=coded(seg.type),
                # the one name of the structure (results.figures.display_name), not "liver #3"
                tracking_id=seg.name[:1].upper() + seg.name[1:],
                color_rgb=colors.get(seg.name),
                description=seg.description,
                type_modifier=None if seg.type_modifier is None else coded(seg.type_modifier),
                algorithm_name=seg.algorithm_name,
                algorithm_version=seg.algorithm_version,
                contains=contains,
                diffuse=is_diffuse(seg.name, contains=bool(contains)),
            )
        )
        measurements.append(_measurement(number, seg.measurements, volume))
    labelmap = remap[outputs.labelmap]
    labelmap_path.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(labelmap_path, labelmap=labelmap)

    findings = []
    for det in outputs.detections:
        k0, _r0, _c0, k1, _r1, _c1 = det.box_voxels
        m = det.measurements
        findings.append(
            BoxFinding(
                label=det.name,
                text=det.description,
                score=round(float(det.score), 4),
                category=coded(det.category),
                type=coded(det.type),
                box_voxels=det.box_voxels,
                key_slice_index=(k0 + k1) // 2,
                size_mm=det.size_mm,
                volume_ml=None if m is None else round(m.volume_ml, 3),
                mean_hu=None if m is None else round(m.mean_hu, 2),
                finding_site=None if det.finding_site is None else coded(det.finding_site),
                algorithm_name=det.algorithm_name,
                algorithm_version=det.algorithm_version,
            )
        )
    snippets = [
        SnippetLocation(
            text=loc.text,
            slice_index=loc.slice_index,
            z_mm=round(loc.z_mm, 2),
            point_lps_mm=loc.point_lps_mm,
            score=round(float(loc.score), 4),
        )
        for loc in outputs.localisations
    ]
    # (The encoders write each structure's line again from the SEG's voxels and leave the
    # pipeline's line for it out of the report: results.figures, sr.build_sr.)
    descriptions = [s.description for s in present if s.description]
    descriptions += [d.description for d in outputs.detections if d.description]
    descriptions += [f"Prompt '{u.prompt}': {u.reason}" for u in outputs.unmatched]
    return AnalysisResult(
        job_id=job_id,
        algorithm_name=outputs.model_name,
        algorithm_version=outputs.model_version,
        algorithm_family=AI_FAMILY if ai_model else MORPHOLOGY_FAMILY,
        segments=tuple(segments),
        measurements=tuple(measurements),
        findings=tuple(findings),
        snippets=tuple(snippets),
        descriptions=tuple(descriptions),
        summary=outputs.summary,
        research_grade=ai_model,
        labelmap_path=str(labelmap_path),
        timings_s=dict(outputs.timings_s),
    )
