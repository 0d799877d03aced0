"""Template mode: label-to-image synthesis from subject_a's TotalSegmentator label map."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from inference.synth import STRUCTURE_LABELS, make_case
from inference.synth.labels import atomic_parts
from inference.synth.template import map_class

TEMPLATE_DIR = (
    Path(__file__).resolve().parents[4] / ".." / "shared" / "data" / "totalseg-examples" / "subject_a"
)
needs_template = pytest.mark.skipif(
    not (TEMPLATE_DIR / "labels.nii.gz").is_file(),
    reason=f"shared template data not found at {TEMPLATE_DIR} (../shared/data beside the repo)",
)


def test_class_mapping_covers_the_organs_we_name() -> None:
    assert map_class("lung_lower_lobe_left")[0] == "left lung"  # type: ignore[index]
    assert map_class("lung_middle_lobe_right")[0] == "right lung"  # type: ignore[index]
    assert map_class("vertebrae_L3")[0] == "vertebrae"  # type: ignore[index]
    assert map_class("rib_right_7")[0] == "ribs"  # type: ignore[index]
    assert map_class("portal_vein_and_splenic_vein")[0] == "portal vein"  # type: ignore[index]
    assert map_class("gluteus_maximus_left")[0] == "soft tissue"  # type: ignore[index]
    assert map_class("not_a_class") is None
    for name in (
        "spleen",
        "kidney_left",
        "kidney_right",
        "aorta",
        "inferior_vena_cava",
        "pancreas",
        "stomach",
        "urinary_bladder",
        "gallbladder",
        "trachea",
        "esophagus",
        "sacrum",
        "hip_left",
        "femur_right",
    ):
        mapped = map_class(name)
        assert mapped is not None and mapped[0] in STRUCTURE_LABELS, name


@needs_template
def test_template_case_is_deterministic_and_anatomical() -> None:
    kwargs = {
        "mode": "template",
        "shape": (40, 80, 80),
        "spacing_mm": (5.0, 4.5, 4.5),
        "template_dir": TEMPLATE_DIR,
    }
    case = make_case(5, **kwargs)  # type: ignore[arg-type]
    again = make_case(5, **kwargs)  # type: ignore[arg-type]
    assert np.array_equal(case.hu, again.hu) and np.array_equal(case.labels, again.labels)
    assert case.source == "template:subject_a"
    names = set(case.label_names.values())
    assert {"liver", "spleen", "left kidney", "right kidney", "vertebrae"} <= names
    idx = np.c_[np.argwhere(case.mask("liver")), np.ones(int(case.mask("liver").sum()))]
    liver_x = (case.affine_lps @ idx.T)[0].mean()
    idx = np.c_[np.argwhere(case.mask("spleen")), np.ones(int(case.mask("spleen").sum()))]
    spleen_x = (case.affine_lps @ idx.T)[0].mean()
    assert liver_x < spleen_x  # LPS: the liver on the patient's right (−x)
    assert np.median(case.hu[case.labels == 0]) < -900
    assert np.median(case.hu[case.mask("vertebrae")]) > 150
    for lesion in case.lesions:
        mask = case.lesion_labels == lesion.label_value
        allowed = {STRUCTURE_LABELS[p] for p in atomic_parts(lesion.organ)}
        assert set(np.unique(case.labels[mask])) <= allowed


@needs_template
def test_template_missing_directory_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"labels\.nii\.gz"):
        make_case(1, mode="template", shape=(8, 16, 16), spacing_mm=(5.0, 5.0, 5.0), template_dir=tmp_path)
