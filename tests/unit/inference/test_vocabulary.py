"""The vocabulary: lookup by name and synonym, and every code checked against DICOM PS3.16.

The reference is the context-group tables pydicom ships (generated from the DICOM standard),
not our own file: a mistyped code or meaning fails here.
"""

from __future__ import annotations

import numpy as np
import pytest
from pydicom.sr import _concepts_dict

from inference.anatomy_terms import CODES_OUTSIDE_CID_7151
from inference.vocabulary import (
    LEFT,
    LESIONS,
    RIGHT,
    STRUCTURES,
    all_entries,
    captions_for,
    leaves,
    lookup,
    normalise,
    resolve,
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
        # TotalSegmentator's class names, levels, groups and sides
        ("vertebrae_L3", "l3 vertebra"),
        ("L3 vertebra", "l3 vertebra"),
        ("third lumbar vertebra", "l3 vertebra"),
        ("lumbar spine", "lumbar spine"),
        ("rib_left_1", "left 1st rib"),
        ("right 12th rib", "right 12th rib"),
        ("left ribs", "left ribs"),
        ("lung_middle_lobe_right", "right middle lobe"),
        ("lung_upper_lobe_left", "left upper lobe"),
        ("portal_vein_and_splenic_vein", "portal vein"),
        ("clavicula_right", "right clavicle"),
        ("heart_atrium_left", "left atrium"),
        ("iliac_vena_right", "right common iliac vein"),
        ("kidney_cyst_left", "kidney cyst"),
        ("hip_left", "left hip"),
        ("small_bowel", "small intestine"),
        ("trachea", "airway"),
    ],
)
def test_lookup_names_synonyms_and_laterality(text: str, expected: str) -> None:
    hit = lookup(text)
    assert hit is not None, text
    assert hit.name == expected


@pytest.mark.parametrize(
    "text",
    ["", "banana", "left liver", "left right lung", "segment something", "left heart", "left renal organ"],
)
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
        # PS3.16 CID 7151 Segmentation Property Types (extensible: the few codes outside it are
        # listed, and checked below against their source and the SNOMED CT check digit)
        if entry.type.value in CODES_OUTSIDE_CID_7151:
            assert not _sct_cids(entry.type.value), (entry.name, "now in a DICOM table: check it there")
            assert entry.type.meaning == CODES_OUTSIDE_CID_7151[entry.type.value], entry.name
        else:
            assert 7151 in _sct_cids(entry.type.value), (entry.name, entry.type)
            assert entry.type.meaning in _sct_meanings(entry.type.value, 7151), (entry.name, entry.type)
        if entry.type_modifier is not None:  # CID 244 Laterality
            assert 244 in _sct_cids(entry.type_modifier.value)


# Verhoeff check digit (SNOMED CT identifiers end in one; the two digits before it are the
# partition identifier, "00" for a concept): catches a mistyped code that no table lists.
_VERHOEFF_D = [
    [0, 1, 2, 3, 4, 5, 6, 7, 8, 9],
    [1, 2, 3, 4, 0, 6, 7, 8, 9, 5],
    [2, 3, 4, 0, 1, 7, 8, 9, 5, 6],
    [3, 4, 0, 1, 2, 8, 9, 5, 6, 7],
    [4, 0, 1, 2, 3, 9, 5, 6, 7, 8],
    [5, 9, 8, 7, 6, 0, 4, 3, 2, 1],
    [6, 5, 9, 8, 7, 1, 0, 4, 3, 2],
    [7, 6, 5, 9, 8, 2, 1, 0, 4, 3],
    [8, 7, 6, 5, 9, 3, 2, 1, 0, 4],
    [9, 8, 7, 6, 5, 4, 3, 2, 1, 0],
]
_VERHOEFF_P = [
    [0, 1, 2, 3, 4, 5, 6, 7, 8, 9],
    [1, 5, 7, 6, 2, 8, 3, 0, 9, 4],
    [5, 8, 0, 3, 7, 9, 6, 1, 4, 2],
    [8, 9, 1, 6, 0, 4, 3, 5, 2, 7],
    [9, 4, 5, 3, 1, 2, 6, 8, 7, 0],
    [4, 2, 8, 6, 5, 7, 3, 9, 0, 1],
    [2, 7, 9, 3, 8, 0, 6, 4, 1, 5],
    [7, 0, 4, 6, 9, 1, 3, 2, 5, 8],
]


def _verhoeff_ok(code: str) -> bool:
    c = 0
    for i, digit in enumerate(reversed(code)):
        c = _VERHOEFF_D[c][_VERHOEFF_P[i % 8][int(digit)]]
    return c == 0


def test_verhoeff_check_rejects_a_mistyped_code() -> None:
    assert _verhoeff_ok("10200004")  # Liver
    assert not _verhoeff_ok("10200005")
    assert not _verhoeff_ok("10200040")


def test_every_sct_code_has_a_valid_check_digit_and_concept_partition() -> None:
    codes = {LEFT.value, RIGHT.value}
    for entry in all_entries():
        codes |= {entry.category.value, entry.type.value}
        if entry.finding_site is not None:
            codes.add(entry.finding_site.value)
    for code in codes:
        assert _verhoeff_ok(code), code
        assert code[-3:-1] == "00", code  # partition identifier of a concept


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
        for part in (*entry.parts, *entry.subdivisions):
            assert part in STRUCTURES, (entry.name, part)


def test_subdivided_core_entries_are_no_unions() -> None:
    # A lung split into lobes is still one organ (reported and drawn as one), unlike "lungs".
    assert not STRUCTURES["left lung"].is_composite and STRUCTURES["left lung"].subdivisions
    assert not STRUCTURES["heart"].is_composite and not STRUCTURES["hip"].is_composite
    assert STRUCTURES["lungs"].is_composite


def test_captions_are_seeded_and_name_the_structure() -> None:
    liver = STRUCTURES["liver"]
    a = captions_for(liver, np.random.default_rng(1), n=6)
    b = captions_for(liver, np.random.default_rng(1), n=6)
    assert a == b
    assert len(set(a)) == 6
    names = [liver.name, *liver.synonyms]
    assert all(any(n in caption for n in names) for caption in a)


def test_resolve_drops_generic_words_that_lookup_keeps() -> None:
    hit = resolve("left renal organ")
    assert hit is not None and hit.name == "left kidney"
    hepatic = resolve("hepatic tissue")
    assert hepatic is not None and hepatic.name == "liver"
    assert resolve("banana organ") is None


def test_groups_are_unions_of_their_finest_parts() -> None:
    lumbar = [s.name for s in leaves(STRUCTURES["lumbar spine"])]
    assert lumbar == [f"l{i} vertebra" for i in range(1, 6)]
    vertebrae = leaves(STRUCTURES["vertebrae"])
    assert len(vertebrae) == 7 + 12 + 5 + 1
    assert all(v.type.meaning.endswith("vertebra") for v in vertebrae)
    ribs = leaves(STRUCTURES["ribs"])
    assert len(ribs) == 24
    assert {r.laterality for r in leaves(STRUCTURES["left ribs"])} == {"left"}
    assert [s.name for s in leaves(STRUCTURES["right lung"])] == [
        "right upper lobe",
        "right middle lobe",
        "right lower lobe",
    ]
    assert leaves(STRUCTURES["liver"]) == (STRUCTURES["liver"],)


def test_pre_coordinated_sides_carry_no_modifier() -> None:
    # CID 7151 "Left atrium" says the side itself; a Left modifier on it would say it twice.
    assert STRUCTURES["left atrium"].type_modifier is None
    assert STRUCTURES["left atrium"].laterality == "left"
    assert STRUCTURES["left hip"].type_modifier == LEFT


def _totalseg_mapping() -> dict[str, dict[str, str]]:
    import csv
    from importlib.resources import files

    pytest.importorskip("totalsegmentator")
    path = files("totalsegmentator") / "resources" / "totalsegmentator_snomed_mapping.csv"
    with path.open() as f:
        return {row["Structure"]: row for row in csv.DictReader(f)}


# Where we code a TotalSegmentator class differently from its mapping, and why (anatomy_terms).
_TOTALSEG_DIFFERENCES = {
    "trachea": "our 'airway' (Trachea and bronchus): the core vocabulary's name for it",
    "portal_vein_and_splenic_vein": "our 'portal vein', which includes the splenic vein",
    "subclavian_artery_left": "29700009 is the right subclavian artery",
    "subclavian_artery_right": "29700009 is the right subclavian artery, pre-coordinated",
    "atrial_appendage_left": "68786006 is in no DICOM group; CID 7151 has Left auricular appendage",
}


def test_every_totalsegmentator_ct_class_has_our_structure_with_its_code() -> None:
    from totalsegmentator.map_to_binary import class_map

    mapping = _totalseg_mapping()
    names = set(class_map["total"].values()) | set(class_map["total_v1"].values())
    assert len(names) > 117
    for name in sorted(names):
        structure = lookup(name)
        assert structure is not None, name
        row = mapping.get(name)
        if row is None or name in _TOTALSEG_DIFFERENCES:
            continue
        assert structure.type.value == row["SegmentedPropertyTypeCodeSequence.CodeValue"], name
        modifier = row["SegmentedPropertyTypeModifierCodeSequence.CodeValue"] or None
        ours = structure.type_modifier.value if structure.type_modifier else None
        if structure.kind != "lesion":  # a kidney cyst's side is where it is, not what it is
            assert ours == modifier, name


def test_codes_outside_dicom_tables_are_totalsegmentators() -> None:
    mapping = _totalseg_mapping()
    theirs = {row["SegmentedPropertyTypeCodeSequence.CodeValue"] for row in mapping.values()}
    assert set(CODES_OUTSIDE_CID_7151) <= theirs
