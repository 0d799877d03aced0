"""What the model is taught to answer, in words: names, training phrases, held-out synonyms and
the phrase lists that calibrate "no match". Builds on engineer D's ``inference.vocabulary``
(canonical names, SNOMED codes, synonyms, caption templates); no torch here.
"""

from __future__ import annotations

from functools import cache

from inference.vocabulary import CAPTION_TEMPLATES, LESIONS, STRUCTURES, Structure, lookup

# Structures with a meaning on the synthetic label maps (atomic labels and their unions).
SEG_NAMES: tuple[str, ...] = (
    "body",
    "lungs",
    "left lung",
    "right lung",
    "airway",
    "bone",
    "vertebrae",
    "ribs",
    "sternum",
    "sacrum",
    "hip",
    "femur",
    "scapula",
    "clavicle",
    "humerus",
    "liver",
    "spleen",
    "kidneys",
    "left kidney",
    "right kidney",
    "aorta",
    "inferior vena cava",
    "portal vein",
    "heart",
    "stomach",
    "pancreas",
    "urinary bladder",
    "gallbladder",
    "esophagus",
)
LESION_KINDS: tuple[str, ...] = ("liver lesion", "lung nodule", "kidney cyst")

# What the pipeline segments and detects when a job gives no prompts.
DEFAULT_SEG_PROMPTS: tuple[str, ...] = (
    "liver",
    "spleen",
    "left kidney",
    "right kidney",
    "aorta",
    "left lung",
    "right lung",
    "vertebrae",
    "heart",
    "stomach",
    "pancreas",
    "urinary bladder",
)
DEFAULT_DET_PROMPTS: tuple[str, ...] = LESION_KINDS

# One synonym per entry is never shown in training, to measure how prompts the model has not
# seen fare (docs/model.md, "synonym prompts"). Chosen as a real radiology word, not a variant.
HELD_OUT_SYNONYMS: dict[str, str] = {
    "liver": "hepatic parenchyma",
    "spleen": "lien",
    "lungs": "lung fields",
    "kidneys": "renal parenchyma",
    "aorta": "thoracic and abdominal aorta",
    "vertebrae": "spinal column",
    "heart": "cardiac",
    "urinary bladder": "vesica urinaria",
    "bone": "osseous structures",
    "airway": "tracheobronchial tree",
    "liver lesion": "hepatic mass",
    "lung nodule": "pulmonary nodule",
    "kidney cyst": "renal cyst",
}


def entry(name: str) -> Structure:
    return STRUCTURES[name] if name in STRUCTURES else LESIONS[name]


@cache
def training_phrases(name: str) -> tuple[str, ...]:
    """Every phrase training may use for ``name``: its name and synonyms in the caption templates,
    minus the held-out synonym."""
    e = entry(name)
    held = HELD_OUT_SYNONYMS.get(name)
    names = [n for n in (e.name, *e.synonyms) if n != held and len(n) > 2]
    out: list[str] = []
    for n in names:
        for template in CAPTION_TEMPLATES:
            out.append(template.format(name=n, description=e.description or e.name))
    return tuple(dict.fromkeys(out))


def is_held_out_text(text: str) -> bool:
    t = text.lower()
    return any(h in t for h in HELD_OUT_SYNONYMS.values())


def synonym_prompts(name: str) -> tuple[tuple[str, bool], ...]:
    """``(synonym, held_out)`` for the synonyms of ``name`` that name it alone (for evaluation)."""
    e = entry(name)
    held = HELD_OUT_SYNONYMS.get(name)
    out = []
    for syn in e.synonyms:
        hit = lookup(syn)
        if hit is not None and hit.name == e.name:
            out.append((syn, syn == held))
    return tuple(out)


def bank_phrases() -> tuple[tuple[str, str], ...]:
    """``(phrase, canonical name)`` for every name and synonym the model knows: the reference
    set a free-text prompt is compared with to decide "match" or "no match"."""
    out: list[tuple[str, str]] = []
    for name in (*SEG_NAMES, *LESION_KINDS):
        e = entry(name)
        for phrase in (e.name, *e.synonyms):
            out.append((phrase, e.name))
    return tuple(dict.fromkeys(out))


# Calibration of the "no match" threshold (docs/model.md): phrases that mean something the model
# knows but appear in no list above, and phrases that mean nothing it knows.
CALIBRATION_KNOWN: tuple[tuple[str, str], ...] = (
    ("hepatic tissue", "liver"),
    ("the liver organ", "liver"),
    ("splenic tissue", "spleen"),
    ("both renal organs", "kidneys"),
    ("left renal organ", "left kidney"),
    ("right-sided kidney", "right kidney"),
    ("main artery from the heart", "aorta"),
    ("abdominal aorta", "aorta"),
    ("lung tissue", "lungs"),
    ("left lung field", "left lung"),
    ("right lung field", "right lung"),
    ("spinal vertebrae", "vertebrae"),
    ("heart muscle", "heart"),
    ("cardiac chambers", "heart"),
    ("gastric organ", "stomach"),
    ("pancreatic gland", "pancreas"),
    ("urine bladder", "urinary bladder"),
    ("gall bladder organ", "gallbladder"),
    ("rib bones", "ribs"),
    ("breast bone", "sternum"),
    ("thighbone", "femur"),
    ("skeletal bones", "bone"),
    ("the windpipe and bronchi", "airway"),
    ("food pipe", "esophagus"),
    ("lesion of the liver", "liver lesion"),
    ("liver metastases", "liver lesion"),
    ("nodules in the lungs", "lung nodule"),
    ("lung nodule suspicious for cancer", "lung nodule"),
    ("cyst of the kidney", "kidney cyst"),
    ("renal cystic mass", "kidney cyst"),
)
CALIBRATION_UNKNOWN: tuple[str, ...] = (
    "banana bicycle",
    "purple elephant",
    "hello world",
    "weather forecast for tomorrow",
    "invoice number 4711",
    "asdf qwerty",
    "brain",
    "thyroid gland",
    "prostate",
    "uterus",
    "eyeball",
    "optic nerve",
    "tooth enamel",
    "appendix",
    "sigmoid colon",
    "small bowel loops",
    "adrenal gland",
    "carotid artery",
    "knee meniscus",
    "pituitary",
    "fracture",
    "pneumothorax",
    "pleural effusion",
    "hip replacement implant",
    "a cat sitting on a sofa",
    "the quick brown fox",
    "music playlist",
    "breast implant",
    "lymph node",
    "tonsils",
)

# The same for report snippets (LOC), compared without their image reference
# (``prompts.snippet_finding``): findings in organs or of kinds the model does not know, and
# text that is no finding at all. The known side is the generator's own snippets (held-out seeds).
CALIBRATION_UNKNOWN_SNIPPETS: tuple[str, ...] = (
    "series 2, image 14: the brain shows no acute infarct",
    "series 3, image 80: small thyroid nodule",
    "series 2, image 33: prostate is enlarged",
    "series 5, image 10: maxillary sinus mucosal thickening",
    "series 2, image 51: appendix is normal",
    "series 3, image 77: sigmoid diverticulosis",
    "series 2, image 90: uterus is unremarkable",
    "series 6, image 12: lymph node in the axilla measuring 12 mm",
    "series 3, image 40: hello world",
    "series 2, image 8: invoice number 4711",
    "series 3, image 22: a cat sitting on a sofa",
    "image 45: weather forecast for tomorrow",
    "series 2, image 60: pleural effusion on the right",
    "series 2, image 61: small pneumothorax",
    "series 3, image 70: adrenal adenoma",
    "series 4, image 18: carotid artery stenosis",
    "series 2, image 99: breast implant",
)
