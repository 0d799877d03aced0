"""Evaluation metrics, pure numpy (hand-checked in tests/unit/inference/model/test_metrics.py).

Definitions used in docs/model.md:
* Dice = 2|P∩T| / (|P| + |T|); both empty → 1.0 (nothing to find, nothing found).
* Lesion matching: a detection hits a true lesion of the same kind when its centre lies within
  ``max(diameter/2, min_radius_mm)`` of the lesion's centre; detections are taken by decreasing
  score and each lesion is hit at most once; every detection that hits nothing is a false
  positive. Sensitivity = hit lesions / all lesions; FP per scan = false positives / scans.
* Localisation error = |predicted z − true z| in mm along the patient axis (LPS z).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


def dice(pred: np.ndarray, truth: np.ndarray) -> float:
    p = np.asarray(pred, dtype=bool)
    t = np.asarray(truth, dtype=bool)
    if p.shape != t.shape:
        raise ValueError(f"shape mismatch {p.shape} vs {t.shape}")
    return dice_from_counts(int(np.count_nonzero(p & t)), int(np.count_nonzero(p)), int(np.count_nonzero(t)))


def dice_from_counts(intersection: int, pred_count: int, truth_count: int) -> float:
    if pred_count + truth_count == 0:
        return 1.0
    return 2.0 * intersection / (pred_count + truth_count)


@dataclass(frozen=True)
class TrueLesion:
    kind: str
    center_mm: tuple[float, float, float]
    diameter_mm: float


@dataclass(frozen=True)
class Detection:
    kind: str
    center_mm: tuple[float, float, float]
    score: float


@dataclass(frozen=True)
class LesionMatch:
    hits: int  # true lesions found
    misses: int  # true lesions not found
    false_positives: int
    hit_flags: tuple[bool, ...]  # per true lesion, in input order


def match_lesions(
    detections: Sequence[Detection], lesions: Sequence[TrueLesion], *, min_radius_mm: float = 5.0
) -> LesionMatch:
    hit = [False] * len(lesions)
    fp = 0
    for det in sorted(detections, key=lambda d: -d.score):
        best, best_dist = -1, np.inf
        for i, les in enumerate(lesions):
            if hit[i] or les.kind != det.kind:
                continue
            dist = float(np.linalg.norm(np.subtract(det.center_mm, les.center_mm)))
            if dist <= max(les.diameter_mm / 2.0, min_radius_mm) and dist < best_dist:
                best, best_dist = i, dist
        if best >= 0:
            hit[best] = True
        else:
            fp += 1
    hits = sum(hit)
    return LesionMatch(hits=hits, misses=len(lesions) - hits, false_positives=fp, hit_flags=tuple(hit))


def sensitivity(matches: Sequence[LesionMatch]) -> float:
    total = sum(m.hits + m.misses for m in matches)
    return float(sum(m.hits for m in matches) / total) if total else float("nan")


def false_positives_per_scan(matches: Sequence[LesionMatch]) -> float:
    return float(sum(m.false_positives for m in matches) / len(matches)) if matches else float("nan")


def localisation_errors_mm(predicted_z_mm: Sequence[float], true_z_mm: Sequence[float]) -> np.ndarray:
    p = np.asarray(predicted_z_mm, dtype=np.float64)
    t = np.asarray(true_z_mm, dtype=np.float64)
    if p.shape != t.shape:
        raise ValueError("predicted and true positions differ in count")
    out: np.ndarray = np.abs(p - t)
    return out


def mean_absolute_error(errors: Sequence[float] | np.ndarray) -> float:
    e = np.asarray(errors, dtype=np.float64)
    return float(e.mean()) if e.size else float("nan")


def summarise(values_by_key: dict[str, list[float]]) -> dict[str, dict[str, float]]:
    """Mean, standard deviation, min and count per key (NaNs dropped)."""
    out = {}
    for key, values in values_by_key.items():
        v = np.asarray([x for x in values if not np.isnan(x)], dtype=np.float64)
        out[key] = {
            "mean": float(v.mean()) if v.size else float("nan"),
            "std": float(v.std()) if v.size else float("nan"),
            "min": float(v.min()) if v.size else float("nan"),
            "n": int(v.size),
        }
    return out
