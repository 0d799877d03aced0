"""Label values of the synthetic label maps, and masks of composite structures.

One value per voxel, so the map holds the finest structures; the names users ask for that are
unions ("lungs", "kidneys", "bone") or everything ("body") are computed by :func:`structure_mask`.
The values are fixed: the model is trained on them, so never renumber, only append.

Conventions shared by the phantom and the template mode (so both teach the same thing):
* "soft tissue" (1) is everything inside the body that no other label names: fat, muscle,
  bowel, cartilage, skin, spinal canal, vessels other than those listed.
* "airway" is the lumen of the trachea and main bronchi (what region growing from the trachea
  finds); smaller bronchi and lung vessels belong to their lung.
* "portal vein" includes the splenic vein (as TotalSegmentator's class does).
* "body" is every voxel with a label (> 0): the patient outline.
"""

from __future__ import annotations

import numpy as np

from inference.vocabulary import STRUCTURES

STRUCTURE_LABELS: dict[str, int] = {
    "soft tissue": 1,
    "left lung": 2,
    "right lung": 3,
    "airway": 4,
    "vertebrae": 5,
    "ribs": 6,
    "sternum": 7,
    "sacrum": 8,
    "hip": 9,
    "femur": 10,
    "scapula": 11,
    "clavicle": 12,
    "humerus": 13,
    "liver": 14,
    "spleen": 15,
    "left kidney": 16,
    "right kidney": 17,
    "aorta": 18,
    "inferior vena cava": 19,
    "portal vein": 20,
    "heart": 21,
    "stomach": 22,
    "pancreas": 23,
    "urinary bladder": 24,
    "gallbladder": 25,
    "esophagus": 26,
}

LABEL_NAMES: dict[int, str] = {v: k for k, v in STRUCTURE_LABELS.items()}


def atomic_parts(name: str) -> tuple[str, ...]:
    """The label-map structures whose union is ``name`` (a canonical vocabulary name).

    ``"body"`` is every labelled voxel. Raises KeyError for a name with no label-map meaning.
    """
    if name == "body":
        return tuple(STRUCTURE_LABELS)
    if name in STRUCTURE_LABELS:
        return (name,)
    structure = STRUCTURES.get(name)
    if structure is None or not structure.parts:
        raise KeyError(f"{name!r} has no synthetic label (known: body, {', '.join(STRUCTURE_LABELS)})")
    out: list[str] = []
    for part in structure.parts:
        out.extend(atomic_parts(part))
    return tuple(dict.fromkeys(out))


def label_values(name: str) -> tuple[int, ...]:
    return tuple(STRUCTURE_LABELS[p] for p in atomic_parts(name))


def structure_mask(labels: np.ndarray, name: str) -> np.ndarray:
    """Boolean mask of ``name`` (atomic, composite or "body") in a synthetic label map."""
    if name == "body":
        body: np.ndarray = labels > 0
        return body
    values = label_values(name)
    if len(values) == 1:
        single: np.ndarray = labels == values[0]
        return single
    lut = np.zeros(256, dtype=bool)
    lut[list(values)] = True
    mask: np.ndarray = lut[labels]
    return mask


def names_present(labels: np.ndarray) -> dict[int, str]:
    """``{value: name}`` for every label value present in ``labels``."""
    counts = np.bincount(labels.ravel(), minlength=256)
    return {int(v): LABEL_NAMES[int(v)] for v in np.flatnonzero(counts) if int(v) in LABEL_NAMES}


def composites_present(present: dict[int, str]) -> tuple[str, ...]:
    """Names of composite structures (plus "body") with at least one part in ``present``."""
    names = set(present.values())
    out = ["body"] if names else []
    for structure in STRUCTURES.values():
        # A label of its own is no composite here, even where the vocabulary splits it finer
        # (vertebrae by level, lungs by lobe); a group of structures these maps do not label
        # (lumbar spine, ribs by number) has no meaning on them.
        if not structure.parts or structure.name in STRUCTURE_LABELS:
            continue
        try:
            parts = atomic_parts(structure.name)
        except KeyError:
            continue
        if any(p in names for p in parts):
            out.append(structure.name)
    return tuple(out)
