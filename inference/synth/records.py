"""What a synthetic case is made of: the volume, its truth, its lesions and its words."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from inference.synth.labels import structure_mask


@dataclass(frozen=True)
class Lesion:
    kind: str  # "liver lesion" | "lung nodule" | "kidney cyst"
    organ: str  # canonical organ name it sits in (a label-map name, e.g. "right lung")
    label_value: int  # its value in SynthCase.lesion_labels (1..n, instance id)
    box_voxels: tuple[int, int, int, int, int, int]  # inclusive [slice0,row0,col0,slice1,row1,col1]
    center_lps_mm: tuple[float, float, float]  # centroid of its voxels
    diameter_mm: float  # nominal longest diameter (the size the report states)
    mean_hu: float  # mean of the rendered volume over its voxels
    subtype: str = ""  # "solid" | "ground-glass" | "hypodense" | "simple"
    location: str = ""  # e.g. "right lower lobe", "upper pole of the left kidney"
    slice_index: int = 0  # slice of its centroid in the sorted volume (InstanceNumber − 1)


@dataclass(frozen=True)
class Snippet:
    text: str  # e.g. "series 3, image 87: 8 mm nodule in the right lower lobe"
    slice_index: int  # sorted-volume slice it refers to; the image number is slice_index + 1
    z_mm: float  # LPS z of that slice's centre
    target: str  # lesion kind or structure it describes
    point_lps_mm: tuple[float, float, float] = (0.0, 0.0, 0.0)  # where in that slice


@dataclass(frozen=True)
class SynthCase:
    hu: np.ndarray  # float32 [slice,row,column] HU
    affine_lps: np.ndarray  # 4x4, (slice,row,column,1)->LPS mm
    labels: np.ndarray  # uint8 [slice,row,column]; values = STRUCTURE_LABELS
    label_names: dict[int, str]  # value -> canonical vocabulary name present in this case
    lesion_labels: np.ndarray  # uint8 instance map of lesions (0 = none)
    lesions: tuple[Lesion, ...]
    snippets: tuple[Snippet, ...]
    report: str  # findings + impression, lesions cited as "series S, image I"
    captions: dict[str, tuple[str, ...]]  # structure -> organ captions with synonyms
    seed: int
    source: str  # "phantom" | "template:<name>"
    series_number: int = 3
    phase: str = ""  # "non-contrast" | "arterial" | "portal venous"
    protocol: str = ""  # e.g. "chest-abdomen-pelvis"
    patient_position: str = "HFS"
    structures_present: tuple[str, ...] = field(default=())  # atomic and composite names with voxels

    @property
    def spacing_mm(self) -> tuple[float, float, float]:
        cols = np.linalg.norm(self.affine_lps[:3, :3], axis=0)
        return (float(cols[0]), float(cols[1]), float(cols[2]))

    def mask(self, name: str) -> np.ndarray:
        """Boolean truth mask of a structure by canonical name, composites included
        ("lungs", "kidneys", "bone", "body"), or of a lesion kind ("lung nodule": all of them)."""
        kinds = {lesion.kind for lesion in self.lesions}
        if name in ("liver lesion", "lung nodule", "kidney cyst"):
            values = [lesion.label_value for lesion in self.lesions if lesion.kind == name]
            if not values or name not in kinds:
                return np.zeros(self.labels.shape, dtype=bool)
            return np.isin(self.lesion_labels, values)
        return structure_mask(self.labels, name)

    @staticmethod
    def image_number(slice_index: int) -> int:
        """The InstanceNumber a writer gives the slice (1-based, in sorted order)."""
        return slice_index + 1
