"""Canonical CT structures and lesion types, with their DICOM codes, synonyms and colours.

Codes are the ones DICOM PS3.16 lists for segmentations (checked against the context groups
bundled with pydicom 3.0.2; ``tests/unit/inference/test_vocabulary.py`` re-checks every code
against those tables so a typo cannot pass):

* Segmented Property Category, CID 7150: "Anatomical Structure" is SCT 91723000 in the current
  standard. Older tools (dcmqi, TotalSegmentator, 3D Slicer) still write 123037004 ("Body
  structure", CID 7150's value before SNOMED CT retired that meaning); we write the current code
  and keep the old one in :data:`LEGACY_CATEGORY_CODES` for readers. 49755003 is now named
  "Morphologically Abnormal Structure" (formerly "...Altered Structure").
* Segmented Property Type, CID 7151 (organs from CID 7192, tissues from CID 7166, lesions from
  CID 7159). Laterality is post-coordinated, as PS3.3 C.8.20.2 prefers: "left kidney" is type
  Kidney with the Segmented Property Type Modifier Left (SCT 7771000, CID 244), not a
  pre-coordinated "Left kidney" concept.
* "Cyst" is SCT 367643001 (the morphologic abnormality in CID 7159), not 441457006 (the
  clinical finding, which no DICOM segmentation context group contains).

Matching here is exact text after normalisation (case, punctuation, "the", laterality words).
Embedding-based matching of free text lives with the model (``inference.model``).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

from inference.anatomy_terms import CLASS_ALIASES
from inference.contracts import Code

__all__ = [
    "ANATOMICAL_STRUCTURE",
    "CAPTION_TEMPLATES",
    "LEFT",
    "LEGACY_CATEGORY_CODES",
    "LESIONS",
    "MORPHOLOGICALLY_ABNORMAL",
    "RIGHT",
    "STRUCTURES",
    "TISSUE",
    "Structure",
    "all_entries",
    "captions_for",
    "leaves",
    "lookup",
    "normalise",
    "resolve",
]

# ---------------------------------------------------------------------------------------------
# Codes (PS3.16 CID 7150 categories, CID 244 laterality)
# ---------------------------------------------------------------------------------------------

ANATOMICAL_STRUCTURE = Code("91723000", "SCT", "Anatomical Structure")
TISSUE = Code("85756007", "SCT", "Tissue")
MORPHOLOGICALLY_ABNORMAL = Code("49755003", "SCT", "Morphologically Abnormal Structure")
LEFT = Code("7771000", "SCT", "Left")
RIGHT = Code("24028007", "SCT", "Right")

# Category codes older writers use for the same meaning (read them, never write them).
LEGACY_CATEGORY_CODES: dict[str, Code] = {
    "123037004": ANATOMICAL_STRUCTURE,  # "Body structure": CID 7150 before SNOMED CT renamed it
}

Kind = Literal["organ", "tissue", "region", "lesion"]
Laterality = Literal["left", "right"]


@dataclass(frozen=True)
class Structure:
    """One thing a user may ask for by name, with how DICOM SEG codes it (PS3.3 C.8.20.2).

    ``parts`` names the structures it is the union of ("lungs" = left + right lung); an empty
    ``parts`` means it is a single structure. ``finding_site`` is set for lesion types (the organ
    a lesion of this kind sits in).
    """

    name: str  # canonical, lower case: "liver", "left kidney", "lung nodule"
    category: Code
    type: Code
    kind: Kind
    color_rgb: tuple[int, int, int]
    synonyms: tuple[str, ...] = ()
    type_modifier: Code | None = None  # laterality, Segmented Property Type Modifier
    laterality: Laterality | None = None
    parts: tuple[str, ...] = ()
    finding_site: Code | None = None
    description: str = ""  # one anatomical sentence used in captions
    # Finer structures a model may segment separately (a lung's lobes, the spine's levels, the two
    # sides of a bone the core vocabulary names once). Unlike ``parts`` they do not make this a
    # union of separate structures (``is_composite`` stays False): prompts resolve through them.
    subdivisions: tuple[str, ...] = ()

    @property
    def label(self) -> str:
        """Display label, e.g. "Left kidney"."""
        return self.name[:1].upper() + self.name[1:]

    @property
    def is_composite(self) -> bool:
        return bool(self.parts)


def _s(
    name: str,
    type_code: tuple[str, str],
    color: tuple[int, int, int],
    *,
    synonyms: Sequence[str] = (),
    kind: Kind = "organ",
    category: Code = ANATOMICAL_STRUCTURE,
    laterality: Laterality | None = None,
    parts: Sequence[str] = (),
    finding_site: Code | None = None,
    description: str = "",
    precoordinated: bool = False,
) -> Structure:
    # A pre-coordinated lateral concept ("Left atrium") carries its side in the type itself.
    modifier = None if precoordinated else {None: None, "left": LEFT, "right": RIGHT}[laterality]
    return Structure(
        name=name,
        category=category,
        type=_sct(type_code),
        kind=kind,
        color_rgb=color,
        synonyms=tuple(synonyms),
        type_modifier=modifier,
        laterality=laterality,
        parts=tuple(parts),
        finding_site=finding_site,
        description=description,
    )


LIVER = ("10200004", "Liver")
LUNG = ("39607008", "Lung")
KIDNEY = ("64033007", "Kidney")


def _sct(pair: tuple[str, str]) -> Code:
    return Code(pair[0], "SCT", pair[1])


# Canonical anatomy. Synonyms are whole phrases after normalise(); laterality words are handled
# by lookup() ("left renal" -> "left kidney"), so lateral entries list only their own phrasing.
_CORE_STRUCTURES: tuple[Structure, ...] = (
    _s(
        "body",
        ("38266002", "Entire body"),
        (177, 122, 101),
        kind="region",
        synonyms=(
            "entire body",
            "whole body",
            "body outline",
            "body contour",
            "patient outline",
            "external contour",
            "skin outline",
            "external",
        ),
        description="the outline of the patient's body, everything inside the skin",
    ),
    _s(
        "soft tissue",
        ("87784001", "Soft tissue"),
        (222, 198, 163),
        kind="tissue",
        category=TISSUE,
        synonyms=("soft tissues", "fat and muscle"),
        description="fat, muscle and other soft tissue inside the body not named as an organ",
    ),
    _s(
        "lungs",
        LUNG,
        (108, 180, 222),
        parts=("left lung", "right lung"),
        synonyms=(
            "lung",
            "both lungs",
            "pulmonary",
            "lung fields",
            "pulmonary parenchyma",
            "lung parenchyma",
            "bilateral lungs",
        ),
        description="the two air-filled lungs in the chest on either side of the heart",
    ),
    _s(
        "left lung",
        LUNG,
        (88, 166, 214),
        laterality="left",
        synonyms=("lung left", "left pulmonary"),
        description="the left lung, with an upper and a lower lobe, beside the heart",
    ),
    _s(
        "right lung",
        LUNG,
        (128, 194, 232),
        laterality="right",
        synonyms=("lung right", "right pulmonary"),
        description="the right lung, with upper, middle and lower lobes, above the liver",
    ),
    _s(
        "airway",
        ("110726009", "Trachea and bronchus"),
        (60, 220, 230),
        synonyms=(
            "airways",
            "trachea",
            "windpipe",
            "trachea and bronchi",
            "trachea and main bronchi",
            "tracheobronchial tree",
            "bronchial tree",
            "central airways",
            "bronchi",
            "main bronchi",
            "tracheal",
        ),
        description="the air-filled trachea in the midline and the main bronchi to each lung",
    ),
    _s(
        "bone",
        ("3138006", "Bone"),
        (241, 214, 145),
        kind="tissue",
        category=TISSUE,
        parts=("vertebrae", "ribs", "sternum", "sacrum", "hip", "femur", "scapula", "clavicle", "humerus"),
        synonyms=(
            "bones",
            "skeleton",
            "skeletal",
            "osseous",
            "osseous structures",
            "bony structures",
            "skeletal system",
            "bony",
            "bone tissue",
        ),
        description="all bone: the spine, ribs, sternum, pelvis and limb bones",
    ),
    _s(
        "vertebrae",
        ("51282000", "Vertebra"),
        (255, 224, 130),
        synonyms=(
            "vertebra",
            "vertebral bodies",
            "vertebral column",
            "spine",
            "spinal column",
            "backbone",
            "vertebral",
        ),
        description="the stack of vertebrae forming the spine at the back of the trunk",
    ),
    _s(
        "ribs",
        ("113197003", "Rib"),
        (252, 197, 112),
        synonyms=("rib", "rib cage", "costal", "ribcage"),
        description="the curved ribs encircling the chest from the spine to the front",
    ),
    _s(
        "sternum",
        ("56873002", "Sternum"),
        (245, 235, 178),
        synonyms=("breastbone", "sternal"),
        description="the flat breastbone at the front of the chest",
    ),
    _s(
        "sacrum",
        ("54735007", "Sacrum"),
        (235, 205, 140),
        synonyms=("sacral bone", "sacral"),
        description="the triangular bone at the base of the spine between the hip bones",
    ),
    # TotalSegmentator's "hip" class is the hip bone; CID 7151 has no hip-bone concept, so (like
    # TotalSegmentator's own SEG writer) we code it as Hip, SCT 29836001.
    _s(
        "hip",
        ("29836001", "Hip"),
        (222, 184, 120),
        synonyms=(
            "hip bone",
            "hip bones",
            "pelvic bone",
            "pelvic bones",
            "iliac bone",
            "ilium",
            "innominate bone",
            "bony pelvis",
        ),
        description="the hip bones of the pelvis: ilium, ischium and pubis",
    ),
    _s(
        "femur",
        ("71341001", "Femur"),
        (230, 196, 150),
        synonyms=("femurs", "thigh bone", "femoral head"),
        description="the thigh bone, whose head sits in the hip joint",
    ),
    _s(
        "scapula",
        ("79601000", "Scapula"),
        (214, 190, 150),
        synonyms=("shoulder blade", "scapulae"),
        description="the shoulder blade on the back of the upper chest",
    ),
    _s(
        "clavicle",
        ("51299004", "Clavicle"),
        (208, 180, 140),
        synonyms=("collarbone", "clavicles"),
        description="the collarbone between the sternum and the shoulder",
    ),
    _s(
        "humerus",
        ("85050009", "Humerus"),
        (200, 175, 135),
        synonyms=("upper arm bone",),
        description="the upper arm bone",
    ),
    _s(
        "liver",
        LIVER,
        (221, 130, 101),
        synonyms=("hepatic", "hepar", "liver parenchyma", "hepatic parenchyma"),
        description="the large organ in the right upper abdomen beneath the diaphragm",
    ),
    _s(
        "spleen",
        ("78961009", "Spleen"),
        (157, 108, 162),
        synonyms=("splenic", "lien"),
        description="the organ in the left upper abdomen behind the stomach, under the ribs",
    ),
    _s(
        "kidneys",
        KIDNEY,
        (185, 102, 83),
        parts=("left kidney", "right kidney"),
        synonyms=("kidney", "both kidneys", "renal", "renal parenchyma", "bilateral kidneys", "nephric"),
        description="the two bean-shaped kidneys on either side of the spine at the back of the abdomen",
    ),
    _s(
        "left kidney",
        KIDNEY,
        (185, 102, 83),
        laterality="left",
        synonyms=("kidney left",),
        description="the left kidney beside the spine, below the spleen",
    ),
    _s(
        "right kidney",
        KIDNEY,
        (205, 122, 103),
        laterality="right",
        synonyms=("kidney right",),
        description="the right kidney beside the spine, below the liver",
    ),
    _s(
        "aorta",
        ("15825003", "Aorta"),
        (224, 97, 76),
        synonyms=("aortic", "thoracic and abdominal aorta"),
        description="the main artery, rising from the heart, arching and running down beside the spine",
    ),
    _s(
        "inferior vena cava",
        ("64131007", "Inferior vena cava"),
        (0, 151, 206),
        synonyms=("ivc", "vena cava", "caval vein", "inferior caval vein"),
        description="the large vein right of the spine carrying blood from the lower body to the heart",
    ),
    _s(
        "portal vein",
        ("32764006", "Portal vein"),
        (0, 112, 165),
        synonyms=("portal", "hepatic portal vein"),
        description="the vein carrying blood from the bowel and spleen into the liver hilum",
    ),
    _s(
        "heart",
        ("80891009", "Heart"),
        (206, 110, 84),
        synonyms=("cardiac", "myocardium and chambers"),
        description="the heart in the middle of the chest between the lungs, above the diaphragm",
    ),
    _s(
        "stomach",
        ("69695003", "Stomach"),
        (216, 132, 105),
        synonyms=("gastric", "ventriculus"),
        description="the stomach in the left upper abdomen, often holding fluid and air",
    ),
    _s(
        "pancreas",
        ("15776009", "Pancreas"),
        (249, 180, 111),
        synonyms=("pancreatic",),
        description="the long gland lying across the back of the upper abdomen behind the stomach",
    ),
    _s(
        "urinary bladder",
        ("89837001", "Bladder"),
        (222, 154, 132),
        synonyms=("bladder", "vesical", "vesica urinaria"),
        description="the fluid-filled bladder in the pelvis behind the pubic bone",
    ),
    _s(
        "gallbladder",
        ("28231008", "Gallbladder"),
        (139, 150, 98),
        synonyms=("gall bladder", "cholecyst", "biliary vesicle"),
        description="the small fluid-filled sac under the liver",
    ),
    _s(
        "esophagus",
        ("32849002", "Esophagus"),
        (211, 171, 143),
        synonyms=("oesophagus", "gullet", "esophageal", "oesophageal"),
        description="the muscular tube behind the trachea carrying food to the stomach",
    ),
)

LESION_KIND = Literal["liver lesion", "lung nodule", "kidney cyst"]

_LESION_LIST: tuple[Structure, ...] = (
    _s(
        "liver lesion",
        ("52988006", "Lesion"),
        (255, 64, 160),
        kind="lesion",
        category=MORPHOLOGICALLY_ABNORMAL,
        finding_site=_sct(LIVER),
        synonyms=(
            "hepatic lesion",
            "liver lesions",
            "hepatic lesions",
            "focal liver lesion",
            "liver mass",
            "hepatic mass",
            "hypodense liver lesion",
            "liver metastasis",
            "hepatic metastasis",
            "liver tumor",
            "liver tumour",
            "lesion in the liver",
        ),
        description="a focal hypodense lesion in the liver",
    ),
    _s(
        "lung nodule",
        ("27925004", "Nodule"),
        (255, 200, 0),
        kind="lesion",
        category=MORPHOLOGICALLY_ABNORMAL,
        finding_site=_sct(LUNG),
        synonyms=(
            "pulmonary nodule",
            "lung nodules",
            "pulmonary nodules",
            "nodule",
            "nodules",
            "lung mass",
            "pulmonary mass",
            "lung lesion",
            "pulmonary lesion",
            "ground glass nodule",
            "ground-glass nodule",
            "solid nodule",
            "nodule in the lung",
        ),
        description="a small round opacity in the lung, solid or ground-glass",
    ),
    _s(
        "kidney cyst",
        ("367643001", "Cyst"),
        (120, 220, 255),
        kind="lesion",
        category=MORPHOLOGICALLY_ABNORMAL,
        finding_site=_sct(KIDNEY),
        synonyms=(
            "renal cyst",
            "kidney cysts",
            "renal cysts",
            "cystic renal lesion",
            "renal cystic lesion",
            "simple renal cyst",
            "cyst in the kidney",
        ),
        description="a round fluid-density cyst in the kidney",
    ),
)


def _extra() -> tuple[Structure, ...]:
    """The core entries with their finer parts, then the rest of CT anatomy (``anatomy_terms``)."""
    from dataclasses import replace

    from inference.anatomy_terms import EXTRA_PARTS, extra_structures

    core = tuple(
        replace(s, subdivisions=EXTRA_PARTS[s.name]) if s.name in EXTRA_PARTS else s for s in _CORE_STRUCTURES
    )
    return (*core, *extra_structures())


_STRUCTURE_LIST: tuple[Structure, ...] = _extra()
STRUCTURES: dict[str, Structure] = {s.name: s for s in _STRUCTURE_LIST}
LESIONS: dict[str, Structure] = {s.name: s for s in _LESION_LIST}


def all_entries() -> Iterable[Structure]:
    """Every structure and lesion type."""
    yield from _STRUCTURE_LIST
    yield from _LESION_LIST


# ---------------------------------------------------------------------------------------------
# Text matching
# ---------------------------------------------------------------------------------------------

_LATERAL_WORDS = {"left": "left", "lt": "left", "l": "left", "right": "right", "rt": "right", "r": "right"}


def normalise(text: str) -> str:
    """Lower case, hyphens/underscores/punctuation to spaces, drop articles, collapse spaces."""
    t = text.lower().replace("_", " ").replace("-", " ")
    t = re.sub(r"[^a-z0-9 ]+", " ", t)
    words = [w for w in t.split() if w not in {"the", "a", "an"}]
    return " ".join(words)


def _build_index() -> dict[str, Structure]:
    index: dict[str, Structure] = {}
    for entry in all_entries():
        for phrase in (entry.name, *entry.synonyms):
            key = normalise(phrase)
            if key in index and index[key] is not entry:
                raise ValueError(
                    f"vocabulary phrase {phrase!r} names both {index[key].name} and {entry.name}"
                )
            index[key] = entry
    return index


_INDEX = _build_index()


def _lateral_variant(base: Structure, side: Laterality) -> Structure | None:
    """The one part of ``base`` on ``side`` ("left" + "kidneys" → "left kidney"); None when there
    is none or several ("left" + "heart" would be both left atrium and left ventricle)."""
    if base.laterality == side:
        return base
    finer = (*base.parts, *base.subdivisions)
    found = [p for p in (STRUCTURES.get(part) for part in finer) if p is not None and p.laterality == side]
    return found[0] if len(found) == 1 else None


def _indexed(key: str) -> Structure | None:
    hit = _INDEX.get(key)
    if hit is None and key in CLASS_ALIASES:
        hit = (
            STRUCTURES[CLASS_ALIASES[key]]
            if CLASS_ALIASES[key] in STRUCTURES
            else LESIONS[CLASS_ALIASES[key]]
        )
    return hit


def lookup(text: str) -> Structure | None:
    """The structure or lesion type ``text`` names exactly (or by a listed synonym), else None.

    Normalisation ignores case, punctuation and articles; a laterality word anywhere ("left renal",
    "kidney, right", "rt lung") selects the lateral part of a paired structure.
    """
    key = normalise(text)
    if not key:
        return None
    hit = _indexed(key)
    if hit is not None:
        return hit
    words = key.split()
    sides = {_LATERAL_WORDS[w] for w in words if w in _LATERAL_WORDS}
    if len(sides) == 1:
        side: Laterality = "left" if "left" in sides else "right"
        rest = " ".join(w for w in words if w not in _LATERAL_WORDS)
        base = _indexed(rest)
        if base is not None:
            return _lateral_variant(base, side)
    return None


# Words that say "a structure" without saying which: "left renal organ", "hepatic tissue".
_GENERIC_WORDS = frozenset({"organ", "organs", "structure", "structures", "region", "tissue", "parenchyma"})


def resolve(text: str) -> Structure | None:
    """:func:`lookup`, then once more without generic words ("left renal organ" → left kidney).

    Used to route a prompt to the model that knows the structure; :func:`lookup` itself stays
    exact (the research model decides by embedding what it does not find there).
    """
    hit = lookup(text)
    if hit is not None:
        return hit
    words = [w for w in normalise(text).split() if w not in _GENERIC_WORDS]
    return lookup(" ".join(words)) if words else None


def leaves(structure: Structure) -> tuple[Structure, ...]:
    """The finest structures ``structure`` is the union of (itself when it has no parts)."""
    finer = (*structure.parts, *structure.subdivisions)
    if not finer:
        return (structure,)
    out: list[Structure] = []
    for part in finer:
        out.extend(leaves(STRUCTURES[part]))
    return tuple(dict.fromkeys(out))


# ---------------------------------------------------------------------------------------------
# Captions for text training (OpenVocabCT-style organ-level captions)
# ---------------------------------------------------------------------------------------------

CAPTION_TEMPLATES: tuple[str, ...] = (
    "{name}",
    "the {name}",
    "{name} on CT",
    "segment the {name}",
    "show the {name}",
    "outline of the {name}",
    "{name} segmentation",
    "a CT scan showing the {name}",
    "{name}: {description}",
    "the {name}, {description}",
)


def captions_for(structure: Structure, rng: np.random.Generator, *, n: int = 4) -> tuple[str, ...]:
    """``n`` distinct captions naming ``structure`` by its name or a synonym, seeded by ``rng``."""
    names = [structure.name, *(s for s in structure.synonyms if len(s) > 2)]
    out: list[str] = []
    tries = 0
    while len(out) < n and tries < 20 * n:
        tries += 1
        name = names[int(rng.integers(len(names)))]
        template = CAPTION_TEMPLATES[int(rng.integers(len(CAPTION_TEMPLATES)))]
        text = template.format(name=name, description=structure.description or structure.name)
        if text not in out:
            out.append(text)
    return tuple(out)
