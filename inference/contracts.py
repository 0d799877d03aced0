"""What goes into and comes out of an inference pipeline. No DICOM, no queue, no torch here.

In: a float32 volume in Hounsfield units indexed ``[slice, row, column]`` with a 4×4 affine that
maps ``(slice, row, column, 1)`` to LPS millimetres, plus requests (task, text).
Out: a label map on the same grid, boxes, slice positions, scores and text, in voxel/mm terms.
The worker's adapter turns these into the node's DICOM-side contracts.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Protocol

import numpy as np


@dataclass(frozen=True)
class Code:
    """A coded concept, e.g. Code("10200004", "SCT", "Liver")."""

    value: str
    scheme: str
    meaning: str


@dataclass(frozen=True)
class VolumeInput:
    hu: np.ndarray  # float32 [slice, row, column], Hounsfield units
    affine_lps: np.ndarray  # 4×4 float64, (slice, row, column, 1) -> LPS mm

    def __post_init__(self) -> None:
        if self.hu.ndim != 3:
            raise ValueError(f"volume must be 3-D [slice,row,column], got shape {self.hu.shape}")
        if self.affine_lps.shape != (4, 4):
            raise ValueError("affine_lps must be 4×4")

    @property
    def spacing_mm(self) -> tuple[float, float, float]:
        """Voxel size along (slice, row, column) in mm."""
        cols = np.linalg.norm(self.affine_lps[:3, :3], axis=0)
        return (float(cols[0]), float(cols[1]), float(cols[2]))

    def index_to_lps(self, index: Sequence[float]) -> tuple[float, float, float]:
        p = self.affine_lps @ np.array([*index, 1.0], dtype=np.float64)
        return (float(p[0]), float(p[1]), float(p[2]))


class Task(StrEnum):
    SEG = "seg"  # segment the structure named by the text
    DET = "det"  # detect every instance (e.g. "liver lesion") as 3D boxes
    LOC = "loc"  # localise a report snippet to its slice


@dataclass(frozen=True)
class Request:
    task: Task
    text: str


@dataclass(frozen=True)
class Measurements:
    voxel_count: int
    volume_ml: float
    mean_hu: float
    std_hu: float
    # inclusive voxel bounds (slice0, row0, col0, slice1, row1, col1)
    bbox_voxels: tuple[int, int, int, int, int, int]
    # extent along (slice, row, column) in mm
    extent_mm: tuple[float, float, float]


@dataclass(frozen=True)
class SegmentOut:
    """A segmented structure: its value in ``ModelOutputs.labelmap`` and what it is."""

    label_value: int
    name: str  # canonical structure name, e.g. "liver"
    prompt: str  # the text that asked for it
    category: Code  # SNOMED CT segmented property category
    type: Code  # SNOMED CT segmented property type
    score: float
    measurements: Measurements
    description: str  # words grounded in the measurements
    # Segmented Property Type Modifier (laterality, PS3.3 C.8.20.2), e.g. Left for "left kidney"
    type_modifier: Code | None = None
    # The algorithm that produced this segment (PS3.3 C.8.20.2 Segment Algorithm Name/Version):
    # empty = the pipeline's own (ModelOutputs.model_name/version); set when a pipeline composes
    # the answers of several models (``pipeline: auto``, TotalSegmentator's parts).
    algorithm_name: str = ""
    algorithm_version: str = ""
    # label values of the structures lying inside this one (the lungs and bone inside the body):
    # the label map holds one label per voxel, so their voxels belong to this structure too, and
    # ``measurements`` count them (one definition per structure, issue 12 item 11)
    contains: tuple[int, ...] = ()


@dataclass(frozen=True)
class DetectionOut:
    prompt: str
    name: str  # e.g. "liver lesion"
    score: float
    box_voxels: tuple[int, int, int, int, int, int]  # inclusive
    center_lps_mm: tuple[float, float, float]
    size_mm: tuple[float, float, float]  # along (slice, row, column)
    category: Code
    type: Code
    finding_site: Code | None
    measurements: Measurements | None
    description: str
    algorithm_name: str = ""  # as SegmentOut: empty = the pipeline's own
    algorithm_version: str = ""


@dataclass(frozen=True)
class LocalisationOut:
    text: str
    slice_index: int
    z_mm: float  # LPS z of that slice's centre
    point_lps_mm: tuple[float, float, float]
    score: float


@dataclass(frozen=True)
class Unmatched:
    prompt: str
    reason: str  # e.g. "no match: best 'liver' similarity 0.21 < 0.45"


@dataclass
class ModelOutputs:
    model_name: str
    model_version: str
    labelmap: np.ndarray  # uint16 [slice,row,column], 0 = background, values = SegmentOut.label_value
    segments: list[SegmentOut] = field(default_factory=list)
    detections: list[DetectionOut] = field(default_factory=list)
    localisations: list[LocalisationOut] = field(default_factory=list)
    unmatched: list[Unmatched] = field(default_factory=list)
    summary: str = ""
    timings_s: dict[str, float] = field(default_factory=dict)


class Pipeline(Protocol):
    """A named, versioned analysis the worker runs by name."""

    name: str
    version: str
    default_prompts: tuple[str, ...]

    def run(self, volume: VolumeInput, requests: Sequence[Request]) -> ModelOutputs: ...


_TASK_PREFIXES: dict[str, Task] = {
    "seg": Task.SEG,
    "segment": Task.SEG,
    "det": Task.DET,
    "detect": Task.DET,
    "loc": Task.LOC,
    "locate": Task.LOC,
    "snippet": Task.LOC,
}


def parse_prompt(text: str) -> Request:
    """A routing rule's (or the CLI's) prompt string → a :class:`Request`.

    ``"detect: liver lesion"`` → DET, ``"loc: series 3, image 41: 2 cm hypodense lesion"`` → LOC,
    ``"seg: hepatic"`` or a bare ``"liver"`` → SEG. A bare lesion kind ("lung nodule", "renal
    cyst", ...) is a detection: a lesion is found as instances, not as one structure. Only the
    first colon can be a task prefix, so a snippet's own "image 41:" stays in its text.
    """
    from inference.vocabulary import lookup  # vocabulary is pure data; imported lazily

    head, sep, rest = text.partition(":")
    task = _TASK_PREFIXES.get(head.strip().lower()) if sep else None
    if task is not None:
        body = rest.strip()
        if not body:
            raise ValueError(f"prompt {text!r} has a task prefix but no text")
        return Request(task, body)
    body = text.strip()
    if not body:
        raise ValueError("empty prompt")
    structure = lookup(body)
    if structure is not None and structure.kind == "lesion":
        return Request(Task.DET, body)
    return Request(Task.SEG, body)
