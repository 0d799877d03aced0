"""Synthetic CT cases with ground truth, shared by ``ctnode synth-study`` and model training.

numpy/scipy only (no torch, no DICOM). Every case is reproducible from its seed::

    from inference.synth import make_case, SynthCase, Lesion, Snippet, STRUCTURE_LABELS
    case = make_case(7, mode="phantom", shape=(64, 128, 128), spacing_mm=(4.0, 3.0, 3.0))
    case.mask("lungs")       # truth for a composite name ("lungs", "kidneys", "bone", "body")
"""

from __future__ import annotations

from inference.synth.case import make_case
from inference.synth.labels import LABEL_NAMES, STRUCTURE_LABELS, atomic_parts, structure_mask
from inference.synth.records import Lesion, Snippet, SynthCase

__all__ = [
    "LABEL_NAMES",
    "STRUCTURE_LABELS",
    "Lesion",
    "Snippet",
    "SynthCase",
    "atomic_parts",
    "make_case",
    "structure_mask",
]
