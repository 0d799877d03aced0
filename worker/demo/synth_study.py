"""A synthetic CT study on disk: a DICOM CT series with its ground truth, report and UIDs.

``ctnode synth-study``, ``ctnode demo`` and the end-to-end tests all make their input here, so the
same seed and options always give the same pixels *and* the same UIDs (a PACS re-sending a study is
then the same study to the node). The volume comes from :func:`inference.synth.make_case` (the
generator the model is trained on); this module only fixes the geometry, writes the series with
:func:`dicom_node.imaging.writer.write_ct_series` and records what is true about it:

* ``dicom/IM00001.dcm …``: CT Image Storage, 512×512, InstanceNumber = slice index + 1;
* ``truth.npz``: ``labels`` (uint8 ``[slice, row, column]``, slice k = the k-th written instance;
  values and names in ``label_values``/``label_names``), ``lesions`` (instance map, kinds in
  ``lesion_kinds``), ``affine_lps`` and ``sop_instance_uids``;
* ``report.txt``: the report text (findings and impression, lesions cited as "series S, image I")
  and the snippets that point at single images;
* ``study.json``: seed, options, UIDs, geometry, labels, lesion boxes and snippets.

The patient is obviously fake (``SYNTHETIC^PHANTOM``); nothing here logs patient attributes.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydicom.uid import generate_uid

from dicom_node.imaging.writer import PatientInfo, write_ct_series
from inference.synth import SynthCase, make_case, structure_mask
from inference.synth.records import Lesion

__all__ = [
    "ANATOMY_BASIC_STRUCTURES",
    "DEFAULT_UID_ROOT",
    "SyntheticStudy",
    "make_synthetic_study",
    "paint_truth",
]

# pydicom's root: every UID below is a hash of the options, unique without a registered root.
DEFAULT_UID_ROOT = "1.2.826.0.1.3680043.8.498."
# A fixed date: the files are byte-for-byte reproducible (the writer would use today).
STUDY_DATE = date(2026, 1, 5)
# The field of view: 461 mm (0.9 mm pixels at 512) holds every phantom body (at most ≈ 400 mm
# wide, ±15 mm off centre) and the table. It is fixed, not fitted to the body as the generator
# would, because the generator fits it only when it also picks the slice spacing.
FIELD_OF_VIEW_MM = 460.8
DEFAULT_SLICE_SPACING_MM = 2.5
# What ``ct-anatomy-basic`` segments, in the names it gives them (default of ``truth()``).
ANATOMY_BASIC_STRUCTURES: tuple[str, ...] = ("body", "left lung", "right lung", "airway", "bone")
# BodyPartExamined per generator protocol (the values configs/routing.yaml matches).
_BODY_PART = {
    "chest": "CHEST",
    "abdomen": "ABDOMEN",
    "abdomen-pelvis": "ABDOMENPELVIS",
    "chest-abdomen-pelvis": "CHESTABDPELVIS",  # PS3.16 CID 4031 (CS: at most 16 characters)
}

Mode = Literal["phantom", "template"]


@dataclass(frozen=True)
class SyntheticStudy:
    """What :func:`make_synthetic_study` wrote, and what is true about it."""

    out_dir: Path
    dicom_paths: tuple[Path, ...]  # in slice order: dicom_paths[k] holds truth slice k
    truth_path: Path
    report_path: Path
    study_json_path: Path
    study_instance_uid: str
    series_instance_uid: str
    frame_of_reference_uid: str
    sop_instance_uids: tuple[str, ...]  # same order as dicom_paths
    seed: int
    shape: tuple[int, int, int]  # (slices, rows, columns)
    spacing_mm: tuple[float, float, float]  # (slice, row, column)
    affine_lps: np.ndarray  # 4×4, (slice, row, column, 1) -> LPS mm
    label_names: dict[int, str]  # value in the truth labels -> canonical structure name
    lesions: tuple[Lesion, ...]
    report: str
    protocol: str
    seconds: dict[str, float] = field(default_factory=dict)  # generate, write, truth

    def labels(self) -> np.ndarray:
        """The atomic truth label map (uint8 ``[slice, row, column]``; names in ``label_names``)."""
        with np.load(self.truth_path) as npz:
            out: np.ndarray = npz["labels"]
        return out

    def lesion_labels(self) -> np.ndarray:
        """Lesion instance map (uint8; value = ``Lesion.label_value``)."""
        with np.load(self.truth_path) as npz:
            out: np.ndarray = npz["lesions"]
        return out

    def truth(self, structures: Sequence[str] | None = None) -> tuple[np.ndarray, dict[int, str]]:
        """A one-label-per-voxel truth map for ``structures``, comparable with a pipeline's label map.

        Default: what ``ct-anatomy-basic`` segments (body, left lung, right lung, airway, bone).
        Composite names ("body", "bone", "lungs") are unions of the atomic labels. Structures are
        painted largest first, as the pipelines paint theirs, so "body" keeps only the voxels no
        other listed structure has. Names without voxels in this study are left out.
        """
        return paint_truth(self.labels(), structures or ANATOMY_BASIC_STRUCTURES)


def paint_truth(labels: np.ndarray, structures: Sequence[str]) -> tuple[np.ndarray, dict[int, str]]:
    """Label map (uint16) of the named structures of an atomic synthetic label map, largest first.

    Raises KeyError for a name the synthetic labels cannot express (see
    :func:`inference.synth.atomic_parts`).
    """
    masks = []
    for name in dict.fromkeys(structures):
        mask = structure_mask(labels, name)
        count = int(np.count_nonzero(mask))
        if count:
            masks.append((count, name, mask))
    masks.sort(key=lambda item: -item[0])
    out = np.zeros(labels.shape, dtype=np.uint16)
    names: dict[int, str] = {}
    for value, (_count, name, mask) in enumerate(masks, start=1):
        out[mask] = value
        names[value] = name
    return out, names


def _uid(uid_root: str, key: str, role: str) -> str:
    return str(generate_uid(prefix=uid_root, entropy_srcs=["ct-ai-node synth-study", key, role]))


def make_synthetic_study(
    out_dir: Path,
    *,
    seed: int = 7,
    slices: int | None = None,
    slice_spacing_mm: float = DEFAULT_SLICE_SPACING_MM,
    pixel_spacing_mm: float | None = None,
    matrix: int = 512,
    lesions: bool = True,
    mode: Mode = "phantom",
    series_number: int = 3,
    patient_name: str | None = None,
    patient_id: str | None = None,
    uid_root: str = DEFAULT_UID_ROOT,
) -> SyntheticStudy:
    """Write a reproducible synthetic CT study under ``out_dir`` (see the module docstring).

    ``slices`` None covers the body region the seed draws (chest, abdomen, abdomen-pelvis or
    chest-abdomen-pelvis) at ``slice_spacing_mm``: 140–310 slices at 2.5 mm; a number centres
    that many slices on it. ``matrix`` is rows = columns (512 for a realistic study; smaller
    only for quick tests, with ``slices`` given); ``pixel_spacing_mm`` None keeps a 461 mm field
    of view. ``mode="template"`` renders
    the TotalSegmentator example label map instead of the procedural phantom. Patient name and ID
    default to obviously synthetic values derived from the seed. The same arguments always give
    the same UIDs and pixels; any argument that changes the pixels changes the UIDs.
    """
    if slices is not None and slices < 1:
        raise ValueError(f"slices must be at least 1, got {slices}")
    if slice_spacing_mm <= 0 or (pixel_spacing_mm is not None and pixel_spacing_mm <= 0):
        raise ValueError("slice and pixel spacing must be positive (mm)")
    if not 16 <= matrix <= 1024:
        raise ValueError(f"matrix must be 16…1024 pixels, got {matrix}")
    if not 1 <= series_number <= 99999:
        raise ValueError(f"series number must be 1…99999, got {series_number}")
    out_dir = Path(out_dir)
    seconds: dict[str, float] = {}
    t = time.perf_counter()
    if slices is None and matrix != 512:
        raise ValueError("give the number of slices for a matrix other than 512")
    shape = None if slices is None else (slices, matrix, matrix)
    pixel_mm = pixel_spacing_mm if pixel_spacing_mm is not None else FIELD_OF_VIEW_MM / matrix
    case = make_case(
        seed,
        mode=mode,
        shape=shape,
        spacing_mm=(slice_spacing_mm, pixel_mm, pixel_mm),
        lesions=lesions,
        series_number=series_number,
    )
    if case.hu.shape[1:] != (matrix, matrix):
        raise ValueError(f"the generator made {case.hu.shape[1:]} slices, not {matrix}×{matrix}")
    seconds["generate"] = time.perf_counter() - t

    key = json.dumps(
        {
            "seed": seed,
            "mode": mode,
            "shape": list(case.hu.shape),
            "spacing_mm": [slice_spacing_mm, pixel_mm],
            "lesions": lesions,
        },
        sort_keys=True,
    )
    study_uid = _uid(uid_root, key, "study")
    series_uid = _uid(uid_root, f"{key}|series {series_number}", "series")
    frame_uid = _uid(uid_root, key, "frame-of-reference")
    patient = PatientInfo(
        name=patient_name if patient_name is not None else f"SYNTHETIC^PHANTOM{seed}",
        id=patient_id if patient_id is not None else f"SYN{seed:08d}",
        birth_date=None,
        sex="O",
    )
    t = time.perf_counter()
    paths = write_ct_series(
        case.hu,
        case.affine_lps,
        out_dir / "dicom",
        study_instance_uid=study_uid,
        series_instance_uid=series_uid,
        uid_root=uid_root,
        patient=patient,
        series_number=series_number,
        series_description=_series_description(case, slice_spacing_mm),
        body_part_examined=_BODY_PART.get(case.protocol, ""),
        study_description="Synthetic CT (ct-ai-node)",
        accession_number=f"SYN{seed:08d}",
        study_date=STUDY_DATE,
        frame_of_reference_uid=frame_uid,
    )
    seconds["write"] = time.perf_counter() - t
    # the writer derives instance UIDs from (series UID, slice index); recompute them, not re-read
    sop_uids = tuple(
        str(generate_uid(prefix=uid_root, entropy_srcs=[series_uid, str(k)])) for k in range(len(paths))
    )

    t = time.perf_counter()
    truth_path = out_dir / "truth.npz"
    _write_truth(truth_path, case, sop_uids)
    report_path = out_dir / "report.txt"
    report_path.write_text(_report_text(case), encoding="utf-8")
    study = SyntheticStudy(
        out_dir=out_dir,
        dicom_paths=tuple(paths),
        truth_path=truth_path,
        report_path=report_path,
        study_json_path=out_dir / "study.json",
        study_instance_uid=study_uid,
        series_instance_uid=series_uid,
        frame_of_reference_uid=frame_uid,
        sop_instance_uids=sop_uids,
        seed=seed,
        shape=(int(case.hu.shape[0]), int(case.hu.shape[1]), int(case.hu.shape[2])),
        spacing_mm=case.spacing_mm,
        affine_lps=case.affine_lps.copy(),
        label_names=dict(case.label_names),
        lesions=case.lesions,
        report=case.report,
        protocol=case.protocol,
        seconds=seconds,
    )
    study.study_json_path.write_text(
        json.dumps(_study_record(study, case, mode=mode), indent=1, ensure_ascii=False), encoding="utf-8"
    )
    seconds["truth"] = time.perf_counter() - t
    return study


def _series_description(case: SynthCase, slice_spacing_mm: float) -> str:
    phase = f" {case.phase}" if case.phase else ""
    return f"Synthetic {case.protocol}{phase} {slice_spacing_mm:g} mm"[:64]


def _write_truth(path: Path, case: SynthCase, sop_uids: Sequence[str]) -> None:
    values = sorted(case.label_names)
    tmp = path.with_name(path.name + ".tmp.npz")
    np.savez_compressed(
        tmp,
        labels=case.labels.astype(np.uint8, copy=False),
        label_values=np.array(values, dtype=np.int32),
        label_names=np.array([case.label_names[v] for v in values], dtype=np.str_),
        lesions=case.lesion_labels.astype(np.uint8, copy=False),
        lesion_values=np.array([lesion.label_value for lesion in case.lesions], dtype=np.int32),
        lesion_kinds=np.array([lesion.kind for lesion in case.lesions], dtype=np.str_),
        affine_lps=case.affine_lps,
        sop_instance_uids=np.array(list(sop_uids), dtype=np.str_),
    )
    tmp.replace(path)


def _report_text(case: SynthCase) -> str:
    lines = [case.report.rstrip(), ""]
    if case.snippets:
        lines.append("Snippets (each refers to one image):")
        lines += [f"- {snippet.text}" for snippet in case.snippets]
    return "\n".join(lines) + "\n"


def _study_record(study: SyntheticStudy, case: SynthCase, *, mode: str) -> dict[str, Any]:
    return {
        "generator": "inference.synth.make_case",
        "seed": study.seed,
        "mode": mode,
        "source": case.source,
        "protocol": case.protocol,
        "phase": case.phase,
        "patient_position": case.patient_position,
        "series_number": case.series_number,
        "shape": list(study.shape),
        "spacing_mm": list(study.spacing_mm),
        "affine_lps": study.affine_lps.tolist(),
        "study_instance_uid": study.study_instance_uid,
        "series_instance_uid": study.series_instance_uid,
        "frame_of_reference_uid": study.frame_of_reference_uid,
        "sop_instance_uids": list(study.sop_instance_uids),
        "files": [p.relative_to(study.out_dir).as_posix() for p in study.dicom_paths],
        "labels": {str(v): name for v, name in sorted(study.label_names.items())},
        "structures_present": list(case.structures_present),
        "lesions": [
            {
                "kind": lesion.kind,
                "organ": lesion.organ,
                "label_value": lesion.label_value,
                "subtype": lesion.subtype,
                "location": lesion.location,
                "diameter_mm": lesion.diameter_mm,
                "mean_hu": lesion.mean_hu,
                "box_voxels": list(lesion.box_voxels),
                "center_lps_mm": list(lesion.center_lps_mm),
                "slice_index": lesion.slice_index,
                "image_number": lesion.slice_index + 1,
            }
            for lesion in case.lesions
        ],
        "snippets": [
            {
                "text": snippet.text,
                "target": snippet.target,
                "slice_index": snippet.slice_index,
                "image_number": snippet.slice_index + 1,
                "z_mm": snippet.z_mm,
                "point_lps_mm": list(snippet.point_lps_mm),
            }
            for snippet in case.snippets
        ],
        "report": case.report,
    }
