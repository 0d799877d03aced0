"""The vocabulary: lookup by name and synonym, and every code checked against DICOM PS3.16.

The reference is the context-group tables pydicom ships (generated from the DICOM standard),
not our own file: a mistyped code or meaning fails here.
"""

from __future__ import annotations

import numpy as np
import pytest
from pydicom.sr import _concepts_dict

from inference.vocabulary import (
    LEFT,
    LESIONS,
    RIGHT,
    STRUCTURES,
    all_entries,
    captions_for,
    lookup,
    normalise,
)


def _sct_cids(code: str) -> set[int]:
    cids: set[int] = set()
    for concepts in _concepts_dict.concepts["SCT"].values():
        if code in concepts:
            cids.update(concepts[code][1])
    return cids


def _sct_meanings(code: str, cid: int) -> set[str]:
    out = set()
    for concepts in _concepts_dict.concepts["SCT"].values():
        if code in concepts and cid in concepts[code][1]:
            out.add(concepts[code][0])
    return out


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Liver", "liver"),
        ("  the LIVER ", "liver"),
        ("hepatic", "liver"),
        ("renal", "kidneys"),
        ("pulmonary", "lungs"),
        ("osseous", "bone"),
        ("skeleton", "bone"),
        ("windpipe", "airway"),
        ("trachea", "airway"),
        ("left renal", "left kidney"),
        ("Kidney, right", "right kidney"),
        ("rt lung", "right lung"),
        ("LEFT-LUNG", "left lung"),
        ("right_kidney", "right kidney"),
        ("IVC", "inferior vena cava"),
        ("spine", "vertebrae"),
        ("pulmonary nodule", "lung nodule"),
        ("hepatic lesion", "liver lesion"),
        ("renal cyst", "kidney cyst"),
        ("body outline", "body"),
    ],
)
def test_lookup_names_synonyms_and_laterality(text: str, expected: str) -> None:
    hit = lookup(text)
    assert hit is not None, text
    assert hit.name == expected


@pytest.mark.parametrize("text", ["", "banana", "left liver", "left right lung", "segment something"])
def test_lookup_returns_none_for_unknown_text(text: str) -> None:
    assert lookup(text) is None


def test_normalise() -> None:
    assert normalise("The  Left-Kidney!") == "left kidney"


def test_lateral_structures_are_post_coordinated() -> None:
    left, right, both = STRUCTURES["left kidney"], STRUCTURES["right kidney"], STRUCTURES["kidneys"]
    assert left.type == right.type == both.type
    assert left.type_modifier == LEFT
    assert right.type_modifier == RIGHT
    assert both.type_modifier is None
    assert set(both.parts) == {"left kidney", "right kidney"}


def test_every_code_is_in_its_dicom_context_group() -> None:
    for entry in all_entries():
        assert entry.category.scheme == "SCT"
        assert entry.type.scheme == "SCT"
        assert entry.type.value.isdigit()
        # PS3.16 CID 7150 Segmentation Property Categories
        assert 7150 in _sct_cids(entry.category.value), entry.name
        assert entry.category.meaning in _sct_meanings(entry.category.value, 7150), entry.name
        # PS3.16 CID 7151 Segmentation Property Types
        assert 7151 in _sct_cids(entry.type.value), (entry.name, entry.type)
        assert entry.type.meaning in _sct_meanings(entry.type.value, 7151), (entry.name, entry.type)
        if entry.type_modifier is not None:  # CID 244 Laterality
            assert 244 in _sct_cids(entry.type_modifier.value)


def test_lesion_types_use_cid_7159_and_have_finding_sites() -> None:
    assert set(LESIONS) == {"liver lesion", "lung nodule", "kidney cyst"}
    for lesion in LESIONS.values():
        assert 7159 in _sct_cids(lesion.type.value), lesion.name
        assert lesion.category.value == "49755003"
        assert lesion.finding_site is not None
    assert LESIONS["lung nodule"].type.value == "27925004"
    assert LESIONS["liver lesion"].type.value == "52988006"
    assert LESIONS["kidney cyst"].type.value == "367643001"
    assert LESIONS["liver lesion"].finding_site == STRUCTURES["liver"].type


def test_colours_are_rgb_bytes() -> None:
    for entry in all_entries():
        assert len(entry.color_rgb) == 3
        assert all(0 <= c <= 255 for c in entry.color_rgb)


def test_composite_parts_exist() -> None:
    for entry in STRUCTURES.values():
        for part in entry.parts:
            assert part in STRUCTURES, (entry.name, part)


def test_captions_are_seeded_and_name_the_structure() -> None:
    liver = STRUCTURES["liver"]
    a = captions_for(liver, np.random.default_rng(1), n=6)
    b = captions_for(liver, np.random.default_rng(1), n=6)
    assert a == b
    assert len(set(a)) == 6
    names = [liver.name, *liver.synonyms]
    assert all(any(n in caption for n in names) for caption in a)
