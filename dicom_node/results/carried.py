"""What the result objects carry over from the source CT headers, cleaned first.

A result object repeats the patient and study of its source (PS3.3 C.7.1.1, C.7.2.1, C.7.2.2) and a
few series/equipment attributes. highdicom copies every root attribute of the source's Patient and
Study modules as it finds it, so a defect of the source (an empty or unknown Specific Character
Set, a date "2020-01-02", PatientSex "male", a 20-character AccessionNumber, a paired body part
without Laterality, a malformed sequence) became a defect of every result — dciodvfy errors at the
PACS, or no result at all. Here each source header is replaced, for the builders, by a shallow copy
in which:

* the patient/study attributes highdicom would copy are removed, and a fixed set of them comes
  back, decoded with the source's character set and each value checked against its VR (PS3.5
  6.2): repaired where the intent is unambiguous (a date with separators, a time with colons, a
  lower-case sex, an over-long LO/SH cut to its maximum), otherwise emptied (Type 2: PatientName,
  PatientID, PatientBirthDate, PatientSex, StudyDate, StudyTime, ReferringPhysicianName, StudyID,
  AccessionNumber) or left out (Type 3). A StudyInstanceUID that is not a UID cannot be repaired:
  the job fails with that reason.
* the equipment text highdicom copies into Contributing Equipment is checked the same way;
* everything else (UIDs, geometry, pixel description) is the source's own element, untouched.

Patient/study attributes are taken from the first source and put on every copy, so all objects
of a job carry the same values. Clinical-trial attributes are not carried (partial ones break the
module's Type 1 rules); the result objects reference the source images, which keep them.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date

from pydicom import config
from pydicom.datadict import dictionary_VM, dictionary_VR, tag_for_keyword
from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset
from pydicom.multival import MultiValue
from pydicom.tag import BaseTag
from pydicom.valuerep import PersonName, validate_value

from dicom_node.errors import PermanentError

# Maximum value lengths in characters (PS3.5 Table 6.2-1).
_MAX_LENGTH = {"SH": 16, "LO": 64, "ST": 1024, "LT": 10240, "UT": 2**32 - 2, "CS": 16, "AE": 16}
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0e-\x1a\x1c-\x1f\x7f]")  # ESC (1B), CR/LF/FF/TAB stay for text
_LINE_BREAKS = re.compile(r"[\r\n\f\t]")
_CS = re.compile(r"^[A-Z0-9 _]{0,16}$")
_DATE = re.compile(r"^(\d{4})[-./]?(\d{2})[-./]?(\d{2})$")
_TIME = re.compile(r"^(\d{2})(?::?(\d{2})(?::?(\d{2})(\.\d{1,6})?)?)?$")
_AGE = re.compile(r"^(\d{1,3})\s*([DWMY])$")

# Type 2 attributes a result object always carries (empty when the source's value is unusable).
TYPE2 = (
    "PatientName",
    "PatientID",
    "PatientBirthDate",
    "PatientSex",
    "StudyDate",
    "StudyTime",
    "ReferringPhysicianName",
    "StudyID",
    "AccessionNumber",
)
# Type 3 attributes carried when the source has a valid value.
TYPE3 = (
    "IssuerOfPatientID",
    "OtherPatientNames",
    "PatientComments",
    "PatientAge",
    "PatientSize",
    "PatientWeight",
    "AdditionalPatientHistory",
    "StudyDescription",
    "PatientIdentityRemoved",
    "DeidentificationMethod",
)
# Source equipment text highdicom copies into Contributing Equipment (PS3.3 C.12.1.1.5).
EQUIPMENT = (
    "Manufacturer",
    "InstitutionName",
    "InstitutionAddress",
    "StationName",
    "InstitutionalDepartmentName",
    "ManufacturerModelName",
    "DeviceSerialNumber",
    "SoftwareVersions",
)
_ENUMERATED = {
    "PatientSex": {"M", "F", "O"},
    "PatientIdentityRemoved": {"YES", "NO"},
}
_SEX_WORDS = {"MALE": "M", "FEMALE": "F", "OTHER": "O"}


def _patient_study_keywords() -> frozenset[str]:
    """Root attributes of the Patient and Study information entities of the CT Image IOD: what
    highdicom copies (highdicom's own tables of the standard; a fixed list if they move)."""
    try:
        from highdicom._standard_utils import (
            get_iod_module_map,
            get_module_attribute_map,
            get_sop_class_iod_map,
        )

        iod = get_sop_class_iod_map()["1.2.840.10008.5.1.4.1.1.2"]
        modules = [m["key"] for m in get_iod_module_map()[iod] if m["ie"] in ("Patient", "Study")]
        attributes = get_module_attribute_map()
        found = {str(a["keyword"]) for m in modules for a in attributes[m] if len(a["path"]) == 0}
    except (ImportError, KeyError):  # pragma: no cover - only if highdicom reorganises
        found = set()
    return frozenset(found | set(TYPE2) | set(TYPE3) | {"StudyInstanceUID"})


PATIENT_STUDY_KEYWORDS = _patient_study_keywords()
_REMOVED_TAGS = tuple(
    BaseTag(tag) for k in sorted(PATIENT_STUDY_KEYWORDS) if (tag := tag_for_keyword(k)) is not None
)


def _valid(vr: str, value: object) -> bool:
    try:
        validate_value(vr, value, config.RAISE)
    except (ValueError, TypeError):
        return False
    return True


def _clean_text(vr: str, text: str) -> str:
    text = _CONTROL.sub("", text)
    if vr in ("SH", "LO", "PN"):  # single-line VRs; a backslash would split the value (PS3.5 6.2)
        text = _LINE_BREAKS.sub(" ", text).replace("\\", " ")
    text = text.strip() if vr != "LT" else text.rstrip()
    return text[: _MAX_LENGTH.get(vr, len(text))]


def _clean_person_name(value: object) -> PersonName | str:
    if isinstance(value, PersonName):
        groups = [g for g in (value.alphabetic, value.ideographic, value.phonetic)]
    else:
        groups = str(value).split("=")
    cleaned = []
    for group in groups[:3]:
        components = _clean_text("PN", group or "").split("^")[:5]
        cleaned.append("^".join(c[:64] for c in components))
    while cleaned and not cleaned[-1]:
        cleaned.pop()
    text = "=".join(cleaned)
    return PersonName(text) if text else ""


def clean_value(keyword: str, vr: str, value: object) -> object | None:
    """``value`` made valid for ``vr`` where the intent is clear, else None (PS3.5 6.2)."""
    if value is None or value == "":
        return None
    tag = tag_for_keyword(keyword)
    if isinstance(value, (list, MultiValue)) and tag is not None and dictionary_VM(tag) == "1":
        # a stray backslash split a single-valued attribute ("Dr\Who"): one value again
        value = " ".join(str(v) for v in value if str(v))
    if isinstance(value, (list, MultiValue)):
        items = [clean_value(keyword, vr, v) for v in value]
        kept = [v for v in items if v not in (None, "")]
        return kept if kept else None
    if vr == "PN":
        name = _clean_person_name(value)
        return name if name and _valid("PN", name) else None
    text = str(value)
    if vr in ("SH", "LO", "ST", "LT", "UT", "UC"):
        text = _clean_text(vr, text)
        return text or None
    text = text.strip()
    if vr == "DA":
        match = _DATE.match(text)
        if not match:
            return None
        try:
            date(int(match[1]), int(match[2]), int(match[3]))
        except ValueError:
            return None
        return "".join(match.groups())
    if vr == "TM":
        match = _TIME.match(text)
        if not match:
            return None
        hours, minutes, seconds, fraction = match.groups()
        if int(hours) > 23 or int(minutes or 0) > 59 or int(seconds or 0) > 60:
            return None
        return hours + (minutes or "") + (seconds or "") + (fraction or "")
    if vr == "AS":
        match = _AGE.match(text.upper())
        return f"{int(match[1]):03d}{match[2]}" if match else None
    if vr == "DS":
        try:
            number = float(text)
        except ValueError:
            return None
        if number != number or number in (float("inf"), float("-inf")):
            return None
        return text if _valid("DS", text) else f"{number:.10g}"[:16]
    if vr == "CS":
        text = text.upper()
        if keyword == "PatientSex":
            text = _SEX_WORDS.get(text, text)
        allowed = _ENUMERATED.get(keyword)
        if allowed is not None:
            return text if text in allowed else None
        return text if _CS.match(text) else None
    return text if _valid(vr, text) else None


@dataclass(frozen=True)
class CarriedHeader:
    """The cleaned attributes every result object of a job carries over from its sources."""

    elements: tuple[DataElement, ...]
    equipment: tuple[DataElement, ...]


def _source_value(source: Dataset, tag: int) -> object | None:
    """The decoded value, or None when absent or when pydicom cannot even decode it (a DS
    "seventy" raises on access)."""
    if tag not in source:
        return None
    try:
        return source[tag].value
    except (ValueError, TypeError, LookupError):
        return None


def carried_header(first: Dataset) -> CarriedHeader:
    """The patient/study and equipment elements of ``first`` (decoded with its own character set),
    cleaned. Raises PermanentError when the StudyInstanceUID is not a valid UID."""
    study_uid = str(_source_value(first, 0x0020000D) or "").strip().rstrip("\x00")
    if not study_uid or not _valid("UI", study_uid):
        raise PermanentError(f"the source's StudyInstanceUID {study_uid[:70]!r} is not a valid UID")
    elements = [DataElement(0x0020000D, "UI", study_uid)]  # StudyInstanceUID
    for keyword in (*TYPE2, *TYPE3):
        tag = tag_for_keyword(keyword)
        assert tag is not None
        vr = dictionary_VR(tag)
        value = clean_value(keyword, vr, _source_value(first, tag))
        if value is None and keyword in TYPE3:
            continue
        elements.append(DataElement(tag, vr, value if value is not None else None))
    equipment = []
    for keyword in EQUIPMENT:
        tag = tag_for_keyword(keyword)
        assert tag is not None
        if tag in first:
            vr = dictionary_VR(tag)
            value = clean_value(keyword, vr, _source_value(first, tag))
            if value is not None:
                equipment.append(DataElement(tag, vr, value))
    return CarriedHeader(elements=tuple(elements), equipment=tuple(equipment))


def clean_sources(sources: Sequence[Dataset]) -> list[Dataset]:
    """Shallow copies of the source headers for the builders (see the module docstring).

    The copies share every untouched element with the sources (no pixel data is read, nothing of
    the caller's datasets changes); the same copy is returned for a header repeated in ``sources``
    (the frames of one multi-frame instance).
    """
    if not sources:
        return []
    carried = carried_header(sources[0])
    equipment_tags = {elem.tag for elem in carried.equipment} | {
        BaseTag(t) for k in EQUIPMENT if (t := tag_for_keyword(k)) is not None
    }
    copies: dict[int, Dataset] = {}
    out = []
    for source in sources:
        copy = copies.get(id(source))
        if copy is None:
            mapping = dict(source._dict)
            for tag in (*_REMOVED_TAGS, *equipment_tags):
                mapping.pop(tag, None)
            copy = Dataset(mapping)
            copy._parent_encoding = source._parent_encoding  # raw elements decode as in the source
            copy._read_little, copy._read_implicit = source._read_little, source._read_implicit
            if hasattr(source, "file_meta"):
                copy.file_meta = source.file_meta
            for elem in (*carried.elements, *carried.equipment):
                copy.add(DataElement(elem.tag, elem.VR, elem.value))
            copies[id(source)] = copy
        out.append(copy)
    return out


# Body Part Examined defined terms (PS3.16 Annex L) for which dciodvfy (dicom3tools 2026) does not
# ask for Laterality: measured one term at a time. Any other term, or none, gets Laterality.
UNPAIRED_BODY_PARTS = frozenset(
    {
        "ABDOMEN",
        "ABDOMENPELVIS",
        "AORTA",
        "BLADDER",
        "BRAIN",
        "CHEST",
        "CHESTABDOMEN",
        "CHESTABDPELVIS",
        "COCCYX",
        "COLON",
        "CSPINE",
        "CTSPINE",
        "ESOPHAGUS",
        "FACE",
        "GALLBLADDER",
        "HEAD",
        "HEADNECK",
        "HEART",
        "JAW",
        "LARYNX",
        "LIVER",
        "LSPINE",
        "LSSPINE",
        "MEDIASTINUM",
        "NECK",
        "PANCREAS",
        "PELVIS",
        "PHARYNX",
        "PROSTATE",
        "RECTUM",
        "SKULL",
        "SPINE",
        "SPLEEN",
        "SSPINE",
        "STERNUM",
        "STOMACH",
        "THYROID",
        "TLSPINE",
        "TRACHEA",
        "TSPINE",
        "UTERUS",
        "WHOLEBODY",
        "",
    }
)


def body_part(source: Dataset) -> tuple[str | None, str | None]:
    """(BodyPartExamined, Laterality) to write on a result, cleaned (PS3.3 C.7.3.1).

    BodyPartExamined: upper case within the CS repertoire, or None. Laterality (Type 2C, required
    for a paired structure): None (left out) for an unpaired body part, else the source's "R"/"L"
    or "" (unknown) — so a source series without it no longer passes that defect on.
    """
    part = clean_value("BodyPartExamined", "CS", source.get("BodyPartExamined"))
    laterality = str(source.get("Laterality") or "").strip().upper()
    if part in UNPAIRED_BODY_PARTS:
        return str(part), None
    return (str(part) if part else None), (laterality if laterality in ("R", "L") else "")
