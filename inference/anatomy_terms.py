"""More CT anatomy for the vocabulary: every class TotalSegmentator's CT models segment.

TotalSegmentator (v1 "total_v1", v2 "total", and the vessels of its aorta/pulmonary tasks)
names 117+ structures: vertebrae by level, ribs by side and number, lung lobes, muscles and
vessels by side. Each becomes a :class:`~inference.vocabulary.Structure` with its SNOMED CT code,
and groups a user asks for ("vertebrae", "lumbar spine", "ribs", "left ribs", "lungs") are unions
of those (``parts``), so a prompt reaches whichever installed model segments the finer classes.

Codes are TotalSegmentator's own (``totalsegmentator/resources/totalsegmentator_snomed_mapping.csv``,
Apache-2.0), used as data and checked against DICOM PS3.16 as pydicom ships it
(``tests/unit/inference/test_vocabulary.py``). Where the two differ we follow DICOM:

* meanings as CID 7151 spells them ("Innominate artery" for the brachiocephalic trunk, "Thyroid",
  "Small intestine", "Left ventricle");
* the left atrial appendage is CID 7151's pre-coordinated "Left auricular appendage" (33626005),
  not "Auricular appendage" + Left (68786006 is in no DICOM context group);
* TotalSegmentator codes both subclavian arteries 29700009, which SNOMED CT (and DICOM CID 12291)
  names *right* subclavian artery; we use "Subclavian artery" 36765005 (CID 7151) + laterality;
* "Gluteus minimus muscle" (TotalSegmentator's meaning has a typo, "minius").

Codes outside every DICOM segmentation context group (CID 7151 is extensible, PS3.16) are listed
in :data:`CODES_OUTSIDE_CID_7151` with the meaning we write; the test checks their SNOMED CT check
digit and that TotalSegmentator's mapping has the same code for the class.

Laterality is post-coordinated (type + Segmented Property Type Modifier Left/Right, CID 244) as in
the rest of the vocabulary, except where CID 7151 has a pre-coordinated concept ("Left atrium",
"Middle lobe of right lung").
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the vocabulary builds these entries while it loads (see vocabulary._extra)
    from inference.vocabulary import Structure

__all__ = ["CLASS_ALIASES", "CODES_OUTSIDE_CID_7151", "EXTRA_PARTS", "extra_structures"]

# Codes we write that no DICOM segmentation context group contains, with the meaning we write.
CODES_OUTSIDE_CID_7151: dict[str, str] = {
    "48535007": "First rib",
    "78247007": "Second rib",
    "25888004": "Third rib",
    "25523003": "Fourth rib",
    "15339008": "Fifth rib",
    "59558009": "Sixth rib",
    "24915002": "Seventh rib",
    "5953002": "Eighth rib",
    "22565002": "Ninth rib",
    "77644006": "Tenth rib",
    "58830002": "Eleventh rib",
    "43993008": "Twelfth rib",
    "65985001": "S1 vertebra",
    "181674001": "Gluteus maximus muscle",
    "78333006": "Gluteus medius muscle",
    "75297007": "Gluteus minimus muscle",
    "68455001": "Iliopsoas muscle",
    "244849004": "Deep muscle of back",
    "74281007": "Myocardium",
}

# Class names models use for a structure the core vocabulary already names under another phrase
# (normalised as vocabulary.normalise does). Kept apart from synonyms: the research model is
# trained on the core entries' synonyms, and these names must not change what it learns.
CLASS_ALIASES: dict[str, str] = {
    "portal vein and splenic vein": "portal vein",  # TotalSegmentator's class includes the splenic vein
    "clavicula": "clavicle",
    "kidney cyst left": "kidney cyst",
    "kidney cyst right": "kidney cyst",
}

# Subdivisions given to entries of the core vocabulary (``Structure.subdivisions``: the finer
# classes models segment; the core entries' ``parts`` stay as they were).
EXTRA_PARTS: dict[str, tuple[str, ...]] = {
    "vertebrae": ("cervical spine", "thoracic spine", "lumbar spine", "s1 vertebra"),
    "ribs": ("left ribs", "right ribs"),
    "left lung": ("left upper lobe", "left lower lobe"),
    "right lung": ("right upper lobe", "right middle lobe", "right lower lobe"),
    "heart": ("myocardium", "left atrium", "right atrium", "left ventricle", "right ventricle"),
    "hip": ("left hip", "right hip"),
    "femur": ("left femur", "right femur"),
    "scapula": ("left scapula", "right scapula"),
    "clavicle": ("left clavicle", "right clavicle"),
    "humerus": ("left humerus", "right humerus"),
}

RGB = tuple[int, int, int]

_ORDINALS = (
    "first",
    "second",
    "third",
    "fourth",
    "fifth",
    "sixth",
    "seventh",
    "eighth",
    "ninth",
    "tenth",
    "eleventh",
    "twelfth",
)
_NUMBERED = ("1st", "2nd", "3rd", *(f"{i}th" for i in range(4, 13)))

# SNOMED CT codes of the vertebrae (CID 7151) and ribs (TotalSegmentator's mapping).
_VERTEBRA_CODES: dict[str, str] = {
    "c1": "14806007",
    "c2": "39976000",
    "c3": "113205007",
    "c4": "5329002",
    "c5": "36978003",
    "c6": "36054005",
    "c7": "87391001",
    "t1": "64864005",
    "t2": "53733008",
    "t3": "1626008",
    "t4": "73071006",
    "t5": "56401006",
    "t6": "45296009",
    "t7": "62487009",
    "t8": "11068009",
    "t9": "82687006",
    "t10": "7610001",
    "t11": "12989004",
    "t12": "23215003",
    "l1": "66794005",
    "l2": "14293000",
    "l3": "36470004",
    "l4": "11994002",
    "l5": "49668003",
    "s1": "65985001",
}
# TotalSegmentator's display colours (its mapping's DicomRGBColor column).
_VERTEBRA_RGB: dict[str, RGB] = {
    "c1": (242, 217, 182),
    "c2": (23, 254, 219),
    "c3": (60, 35, 0),
    "c4": (97, 72, 37),
    "c5": (134, 109, 74),
    "c6": (171, 146, 111),
    "c7": (208, 183, 148),
    "t1": (174, 149, 114),
    "t2": (211, 186, 151),
    "t3": (248, 223, 188),
    "t4": (29, 4, 225),
    "t5": (66, 41, 6),
    "t6": (103, 78, 43),
    "t7": (140, 115, 80),
    "t8": (177, 152, 117),
    "t9": (214, 189, 154),
    "t10": (251, 226, 191),
    "t11": (32, 7, 228),
    "t12": (69, 44, 9),
    "l1": (245, 220, 185),
    "l2": (26, 1, 222),
    "l3": (63, 38, 3),
    "l4": (100, 75, 40),
    "l5": (137, 112, 77),
    "s1": (205, 180, 145),
}
_REGION_WORDS = {"c": "cervical", "t": "thoracic", "l": "lumbar", "s": "sacral"}
_RIB_CODES = (
    "48535007",
    "78247007",
    "25888004",
    "25523003",
    "15339008",
    "59558009",
    "24915002",
    "5953002",
    "22565002",
    "77644006",
    "58830002",
    "43993008",
)
_RIB_RGB_LEFT: tuple[RGB, ...] = (
    (214, 54, 216),
    (181, 54, 216),
    (216, 54, 162),
    (54, 121, 216),
    (54, 216, 146),
    (121, 216, 54),
    (149, 54, 216),
    (216, 81, 54),
    (216, 54, 167),
    (54, 146, 216),
    (158, 253, 91),
    (216, 54, 86),
)
_RIB_RGB_RIGHT: tuple[RGB, ...] = (
    (91, 158, 253),
    (211, 216, 54),
    (216, 54, 59),
    (216, 54, 67),
    (157, 216, 54),
    (216, 54, 189),
    (216, 54, 132),
    (216, 203, 54),
    (216, 197, 54),
    (216, 159, 54),
    (54, 135, 216),
    (181, 216, 54),
)


def _vertebrae() -> list[Structure]:
    from inference.vocabulary import _s

    out = []
    for level, code in _VERTEBRA_CODES.items():
        region, number = _REGION_WORDS[level[0]], int(level[1:])
        synonyms = [
            f"vertebrae {level}",  # TotalSegmentator's class name
            f"vertebra {level}",
            level,
            f"{region} vertebra {number}",
            f"{_ORDINALS[number - 1]} {region} vertebra",
            f"{level} vertebral level",
        ]
        synonyms += {"c1": ["atlas"], "c2": ["axis"]}.get(level, [])
        out.append(
            _s(
                f"{level} vertebra",
                (code, f"{level.upper()} vertebra"),
                _VERTEBRA_RGB[level],
                synonyms=synonyms,
                description=f"the {_ORDINALS[number - 1]} {region} vertebra",
            )
        )
    spans = {
        "cervical spine": ("122494005", "Cervical spine", "c", 7, (180, 155, 120), ("c spine", "neck spine")),
        "thoracic spine": (
            "122495006",
            "Thoracic spine",
            "t",
            12,
            (143, 118, 83),
            ("t spine", "dorsal spine"),
        ),
        "lumbar spine": ("122496007", "Lumbar spine", "l", 5, (106, 81, 46), ("l spine", "lumbar")),
    }
    for name, (code, meaning, letter, count, rgb, extra) in spans.items():
        region = _REGION_WORDS[letter]
        out.append(
            _s(
                name,
                (code, meaning),
                rgb,
                parts=[f"{letter}{i} vertebra" for i in range(1, count + 1)],
                synonyms=(
                    f"{region} vertebrae",
                    f"vertebrae {region}",  # TotalSegmentator's grouped class name
                    f"{region} vertebral column",
                    f"{letter}1 {letter}{count}",
                    *extra,
                ),
                description=f"the {count} {region} vertebrae",
            )
        )
    return out


def _ribs() -> list[Structure]:
    from inference.vocabulary import _s

    out = []
    for i, code in enumerate(_RIB_CODES):
        n, ordinal = _NUMBERED[i], _ORDINALS[i]
        meaning = CODES_OUTSIDE_CID_7151[code]
        for side, rgb in (("left", _RIB_RGB_LEFT[i]), ("right", _RIB_RGB_RIGHT[i])):
            out.append(
                _s(
                    f"{side} {n} rib",
                    (code, meaning),
                    rgb,
                    laterality=side,  # type: ignore[arg-type]
                    synonyms=(f"{side} {ordinal} rib", f"{side} rib {i + 1}"),
                    description=f"the {ordinal} rib on the {side}",
                )
            )
        out.append(
            _s(
                f"{n} rib",
                (code, meaning),
                _RIB_RGB_LEFT[i],
                parts=(f"left {n} rib", f"right {n} rib"),
                synonyms=(f"{ordinal} rib", f"rib {i + 1}", f"{n} ribs", f"{ordinal} ribs"),
                description=f"the {ordinal} ribs on both sides",
            )
        )
    for side in ("left", "right"):
        out.append(
            _s(
                f"{side} ribs",
                ("113197003", "Rib"),
                (230, 210, 180),
                laterality=side,  # type: ignore[arg-type]
                parts=[f"{side} {n} rib" for n in _NUMBERED],
                synonyms=(f"{side} rib cage",),
                description=f"the twelve ribs on the {side}",
            )
        )
    return out


def _pair(
    base: str,
    code: tuple[str, str],
    rgb: tuple[RGB, RGB, RGB],  # base, left, right
    *,
    synonyms: Sequence[str] = (),
    left: str | None = None,
    right: str | None = None,
    description: str = "",
) -> list[Structure]:
    """A paired structure: the bilateral group (named ``base``) and its left and right parts."""
    from inference.vocabulary import _s

    names = {"left": left or f"left {base}", "right": right or f"right {base}"}
    out = [
        _s(
            names[side],
            code,
            rgb[1 if side == "left" else 2],
            laterality=side,
            description=f"{description} on the {side}" if description else "",
        )
        for side in ("left", "right")
    ]
    out.append(
        _s(
            base,
            code,
            rgb[0],
            parts=(names["left"], names["right"]),
            synonyms=synonyms,
            description=f"{description} on both sides" if description else "",
        )
    )
    return out


def _laterals_of_core() -> list[Structure]:
    """Left/right parts of paired bones the core vocabulary names without a side."""
    from inference.vocabulary import _s

    rgb = {
        "hip": ((230, 248, 62), (184, 46, 184)),
        "femur": ((248, 212, 62), (46, 184, 60)),
        "scapula": ((253, 230, 195), (187, 170, 144)),
        "clavicle": ((255, 236, 201), (191, 174, 149)),
        "humerus": ((71, 62, 248), (115, 46, 184)),
    }
    codes = {
        "hip": ("29836001", "Hip"),
        "femur": ("71341001", "Femur"),
        "scapula": ("79601000", "Scapula"),
        "clavicle": ("51299004", "Clavicle"),
        "humerus": ("85050009", "Humerus"),
    }
    out = []
    for name, (left_rgb, right_rgb) in rgb.items():
        for side, colour in (("left", left_rgb), ("right", right_rgb)):
            out.append(_s(f"{side} {name}", codes[name], colour, laterality=side))  # type: ignore[arg-type]
    return out


def _lungs_and_heart() -> list[Structure]:
    from inference.vocabulary import _s

    upper, lower = ("45653009", "Upper lobe of lung"), ("90572001", "Lower lobe of lung")
    out = [
        _s(
            "left upper lobe",
            upper,
            (71, 232, 244),
            laterality="left",
            synonyms=("lul", "left upper lung lobe"),
        ),
        _s(
            "left lower lobe",
            lower,
            (34, 195, 207),
            laterality="left",
            synonyms=("lll", "left lower lung lobe"),
        ),
        _s(
            "right upper lobe",
            upper,
            (100, 218, 227),
            laterality="right",
            synonyms=("rul", "right upper lung lobe"),
        ),
        _s(
            "right lower lobe",
            lower,
            (26, 144, 153),
            laterality="right",
            synonyms=("rll", "right lower lung lobe"),
        ),
        _s(
            "right middle lobe",
            ("72481006", "Middle lobe of right lung"),
            (63, 181, 190),
            laterality="right",
            precoordinated=True,
            synonyms=(
                "middle lobe",
                "lung middle lobe",
                "middle lobe of right lung",
                "rml",
                "right middle lung lobe",
            ),
        ),
        _s(
            "upper lobes",
            upper,
            (71, 232, 244),
            parts=("left upper lobe", "right upper lobe"),
            synonyms=(
                "upper lobe",
                "lung upper lobe",
                "upper lobe of lung",
                "upper lung lobes",
                "upper lung lobe",
            ),
        ),
        _s(
            "lower lobes",
            lower,
            (34, 195, 207),
            parts=("left lower lobe", "right lower lobe"),
            synonyms=(
                "lower lobe",
                "lung lower lobe",
                "lower lobe of lung",
                "lower lung lobes",
                "lower lung lobe",
            ),
        ),
        _s(
            "myocardium",
            ("74281007", "Myocardium"),
            (200, 0, 20),
            synonyms=("heart myocardium", "myocardial", "cardiac muscle"),
        ),
        _s("left atrium", ("82471001", "Left atrium"), (184, 0, 69), laterality="left", precoordinated=True),
        _s(
            "right atrium",
            ("73829009", "Right atrium"),
            (136, 0, 51),
            laterality="right",
            precoordinated=True,
        ),
        _s(
            "cardiac atria",
            ("59652004", "Atrium"),
            (184, 0, 69),
            parts=("left atrium", "right atrium"),
            synonyms=("atria", "atrium", "heart atrium", "heart atria", "atria of heart"),
        ),
        _s(
            "left ventricle",
            ("87878005", "Left ventricle"),
            (161, 0, 92),
            laterality="left",
            precoordinated=True,
        ),
        _s(
            "right ventricle",
            ("53085002", "Right ventricle"),
            (119, 0, 68),
            laterality="right",
            precoordinated=True,
        ),
        _s(
            "cardiac ventricles",
            ("21814001", "Ventricle"),
            (161, 0, 92),
            parts=("left ventricle", "right ventricle"),
            synonyms=("heart ventricle", "heart ventricles", "ventricles of heart", "cardiac ventricle"),
        ),
        _s(
            "left atrial appendage",
            ("33626005", "Left auricular appendage"),
            (68, 248, 62),
            laterality="left",
            precoordinated=True,
            synonyms=("atrial appendage left", "left auricular appendage", "laa"),
        ),
    ]
    return out


def _organs() -> list[Structure]:
    from inference.vocabulary import _s

    single = [
        ("thyroid gland", ("69748006", "Thyroid"), (250, 210, 60), ("thyroid",)),
        (
            "small intestine",
            ("30315005", "Small intestine"),
            (160, 60, 180),
            ("small bowel", "small intestines", "small bowel loops", "jejunum and ileum"),
        ),
        ("duodenum", ("38848004", "Duodenum"), (170, 80, 190), ("duodenal",)),
        ("colon", ("71854001", "Colon"), (150, 40, 170), ("large bowel", "large intestine", "colonic")),
        ("prostate", ("41216001", "Prostate"), (91, 253, 156), ("prostate gland", "prostatic")),
        ("spinal cord", ("2748008", "Spinal cord"), (255, 215, 0), ("medulla spinalis",)),
        ("brain", ("12738006", "Brain"), (216, 54, 149), ("cerebrum", "encephalon")),
        ("skull", ("89546000", "Skull"), (245, 225, 200), ("cranium",)),
        ("face", ("89545001", "Face"), (192, 216, 54), ("facial region",)),
        (
            "costal cartilages",
            ("50016007", "Costal Cartilage"),
            (250, 220, 190),
            ("costal cartilage", "rib cartilages", "rib cartilage"),
        ),
        ("pulmonary vein", ("122972007", "Pulmonary vein"), (37, 107, 237), ("pulmonary veins",)),
        ("pulmonary artery", ("81040000", "Pulmonary artery"), (180, 0, 0), ("pulmonary arteries",)),
        (
            "brachiocephalic trunk",
            ("12691009", "Innominate artery"),
            (190, 10, 10),
            ("innominate artery", "brachiocephalic artery"),
        ),
        (
            "superior vena cava",
            ("48345005", "Superior vena cava"),
            (74, 144, 18),
            ("svc", "superior caval vein"),
        ),
        (
            "celiac trunk",
            ("57850000", "Truncus coeliacus"),
            (200, 40, 40),
            (
                "coeliac trunk",
                "celiac artery",
                "coeliac artery",
                "celiac axis",
                "coeliac axis",
                "truncus coeliacus",
            ),
        ),
        ("superior mesenteric artery", ("42258001", "Superior mesenteric artery"), (210, 30, 30), ("sma",)),
    ]
    out = [_s(name, code, rgb, synonyms=syn) for name, code, rgb, syn in single]
    out += _pair(
        "adrenal glands",
        ("23451007", "Adrenal gland"),
        ((210, 150, 30), (241, 172, 34), (178, 128, 26)),
        left="left adrenal gland",
        right="right adrenal gland",
        synonyms=("adrenal gland", "adrenals", "adrenal", "suprarenal glands", "suprarenal gland"),
    )
    out += _pair(
        "subclavian arteries",
        ("36765005", "Subclavian artery"),
        ((190, 30, 30), (218, 34, 34), (162, 26, 26)),
        left="left subclavian artery",
        right="right subclavian artery",
        synonyms=("subclavian artery",),
    )
    out += _pair(
        "common carotid arteries",
        ("32062004", "Common carotid artery"),
        ((200, 20, 20), (230, 23, 23), (170, 17, 17)),
        left="left common carotid artery",
        right="right common carotid artery",
        synonyms=("common carotid artery", "carotid arteries", "common carotids", "carotids"),
    )
    out += _pair(
        "brachiocephalic veins",
        ("8887007", "Innominate vein"),
        ((0, 80, 210), (0, 92, 241), (0, 68, 178)),
        left="left brachiocephalic vein",
        right="right brachiocephalic vein",
        synonyms=("brachiocephalic vein", "innominate vein", "innominate veins"),
    )
    out += _pair(
        "common iliac arteries",
        ("73634005", "Common iliac artery"),
        ((190, 0, 0), (218, 0, 0), (162, 0, 0)),
        left="left common iliac artery",
        right="right common iliac artery",
        synonyms=("common iliac artery", "iliac artery", "iliac arteries"),
    )
    out += _pair(
        "common iliac veins",
        ("46027005", "Common iliac vein"),
        ((0, 80, 200), (0, 92, 230), (0, 68, 170)),
        left="left common iliac vein",
        right="right common iliac vein",
        synonyms=("common iliac vein", "iliac vein", "iliac veins", "iliac vena"),
    )
    out += _pair(
        "renal arteries",
        ("2841007", "Renal artery"),
        ((200, 30, 60), (220, 40, 70), (180, 30, 50)),
        left="left renal artery",
        right="right renal artery",
        synonyms=("renal artery",),
    )
    muscles = [
        (
            "gluteus maximus",
            ("181674001", "Gluteus maximus muscle"),
            ((220, 100, 30), (253, 115, 34), (187, 85, 26)),
        ),
        (
            "gluteus medius",
            ("78333006", "Gluteus medius muscle"),
            ((230, 110, 40), (255, 126, 46), (196, 94, 34)),
        ),
        (
            "gluteus minimus",
            ("75297007", "Gluteus minimus muscle"),
            ((240, 120, 50), (255, 138, 57), (204, 102, 42)),
        ),
        ("iliopsoas", ("68455001", "Iliopsoas muscle"), ((200, 100, 40), (230, 115, 46), (170, 85, 34))),
    ]
    for name, code, rgb in muscles:
        out += _pair(
            name,
            code,
            rgb,
            synonyms=(f"{name} muscle", f"{name} muscles"),
        )
    out += _pair(
        "autochthonous back muscles",
        ("244849004", "Deep muscle of back"),
        ((210, 110, 50), (241, 126, 57), (178, 94, 42)),
        synonyms=(
            "autochthon",
            "autochthonous muscles",
            "autochthonous back muscle",
            "deep back muscles",
            "deep muscles of back",
            "deep muscle of back",
            "paraspinal muscles",
        ),
    )
    return out


def extra_structures() -> tuple[Structure, ...]:
    """Every entry this module adds to the vocabulary (built once, by ``inference.vocabulary``)."""
    return (
        *_vertebrae(),
        *_ribs(),
        *_laterals_of_core(),
        *_lungs_and_heart(),
        *_organs(),
    )
