"""Metrics on hand-made inputs (expected values worked out by hand in the comments)."""

from __future__ import annotations

import numpy as np
import pytest

from inference.model.metrics import (
    Detection,
    TrueLesion,
    dice,
    false_positives_per_scan,
    localisation_errors_mm,
    match_lesions,
    mean_absolute_error,
    sensitivity,
    summarise,
)

pytestmark = pytest.mark.model


def test_dice_hand_made() -> None:
    a = np.zeros((4, 4, 4), dtype=bool)
    b = np.zeros((4, 4, 4), dtype=bool)
    a[0, 0, :4] = True  # 4 voxels
    b[0, 0, 2:4] = True  # 2 voxels, both inside a
    assert dice(a, b) == pytest.approx(2 * 2 / (4 + 2))  # 0.666...
    assert dice(a, a) == 1.0
    assert dice(a, np.zeros_like(a)) == 0.0


def test_dice_both_empty_is_one_and_shapes_must_match() -> None:
    z = np.zeros((2, 2, 2), dtype=bool)
    assert dice(z, z) == 1.0
    with pytest.raises(ValueError):
        dice(z, np.zeros((2, 2, 3), dtype=bool))


def test_lesion_matching_by_distance_kind_and_score() -> None:
    lesions = [
        TrueLesion("lung nodule", (0.0, 0.0, 0.0), 8.0),  # radius 4 → 5 mm floor applies
        TrueLesion("liver lesion", (100.0, 0.0, 0.0), 30.0),  # radius 15
    ]
    dets = [
        Detection("lung nodule", (3.0, 4.0, 0.0), 0.9),  # 5.0 mm away: hit (≤ 5 mm)
        Detection("lung nodule", (1.0, 0.0, 0.0), 0.8),  # same nodule again: already hit → FP
        Detection("liver lesion", (0.0, 0.0, 0.0), 0.7),  # wrong place → FP
        Detection("lung nodule", (100.0, 0.0, 0.0), 0.6),  # right place, wrong kind → FP
    ]
    m = match_lesions(dets, lesions)
    assert (m.hits, m.misses, m.false_positives) == (1, 1, 3)
    assert m.hit_flags == (True, False)
    m2 = match_lesions([Detection("liver lesion", (114.0, 0.0, 0.0), 0.5)], lesions)
    assert m2.hit_flags == (False, True)  # 14 mm from a 30 mm lesion's centre: inside
    assert sensitivity([m, m2]) == pytest.approx(2 / 4)
    assert false_positives_per_scan([m, m2]) == pytest.approx(3 / 2)


def test_localisation_errors_and_summary() -> None:
    e = localisation_errors_mm([10.0, -5.0, 0.0], [12.0, -5.0, 3.0])
    assert e.tolist() == [2.0, 0.0, 3.0]
    assert mean_absolute_error(e) == pytest.approx(5 / 3)
    s = summarise({"liver": [0.9, 0.7, float("nan")]})
    assert s["liver"]["mean"] == pytest.approx(0.8)
    assert s["liver"]["n"] == 2
    assert s["liver"]["min"] == pytest.approx(0.7)
