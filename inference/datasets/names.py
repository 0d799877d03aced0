"""Dataset label names → vocabulary names → the label values the model is trained on.

A dataset names its classes its own way ("kidney_left", "lung_upper_lobe_left", "heart_myocardium").
:func:`map_names` looks each up in :mod:`inference.vocabulary` (which knows TotalSegmentator's
classes, ``inference.anatomy_terms``); a name it does not find is returned in ``unknown`` and
used for nothing: guessing ("cyst" → "kidney cyst"?) would teach the model a wrong answer.

:func:`training_label` places a vocabulary name on the training label maps
(``inference.synth.labels``): itself when the maps have it, else the label it is part of ("left
upper lobe" → "left lung", "l1 vertebra" → "vertebrae", "myocardium" → "heart"). Known names the
maps have no label for (adrenal glands, muscles, bowel) stay None: their voxels are body, not
background, and no query asks for them.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import cache

import numpy as np

from inference.synth.labels import STRUCTURE_LABELS
from inference.vocabulary import STRUCTURES, lookup


@dataclass(frozen=True)
class NameMapping:
    """``mapped``: dataset name → canonical vocabulary name; ``unknown``: names not in it."""

    mapped: dict[str, str] = field(default_factory=dict)
    unknown: tuple[str, ...] = ()


def map_names(names: Iterable[str]) -> NameMapping:
    """Map each dataset label name into the vocabulary (background names are skipped)."""
    mapped: dict[str, str] = {}
    unknown: list[str] = []
    for raw in dict.fromkeys(names):
        if raw.strip().lower() in {"background", "bg", ""}:
            continue
        hit = lookup(raw)
        if hit is None:
            unknown.append(raw)
        else:
            mapped[raw] = hit.name
    return NameMapping(mapped=mapped, unknown=tuple(unknown))


@cache
def _finer_to_label() -> dict[str, str]:
    """Every vocabulary name below a training label (through parts and subdivisions) → the label."""
    out: dict[str, str] = {}

    def walk(name: str, label: str) -> None:
        entry = STRUCTURES.get(name)
        if entry is None:
            return
        for finer in (*entry.parts, *entry.subdivisions):
            if finer not in STRUCTURE_LABELS and finer not in out:
                out[finer] = label
                walk(finer, label)

    for label in STRUCTURE_LABELS:
        walk(label, label)
    return out


def training_label(canonical: str) -> str | None:
    """The training label map's structure that holds ``canonical``, or None when none does."""
    if canonical in STRUCTURE_LABELS and canonical != "soft tissue":
        return canonical
    return _finer_to_label().get(canonical)


@cache
def left_right_lut() -> np.ndarray:
    """Lookup table over training label values that swaps every left/right pair (identity
    elsewhere): a left-right mirrored image must call the mirrored left kidney "right kidney"."""
    lut = np.arange(256, dtype=np.uint8)
    for name, value in STRUCTURE_LABELS.items():
        if name.startswith("left "):
            other = STRUCTURE_LABELS.get("right " + name[len("left ") :])
            if other is not None:
                lut[value], lut[other] = other, value
    return lut
