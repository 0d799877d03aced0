"""Which Specific Character Set (0008,0005) a result object declares, so every character it
writes reaches the PACS intact (PS3.5 6.1, PS3.3 C.12.1.1.2).

The objects carry text from two places: the source CT (patient and study attributes, decoded by
pydicom with the source's own character set) and the node (descriptions with a typographic minus
"−" and "×", structure names, a snippet of a report). Copying the source's declared set and writing
text outside it turned "−874 HU" into "?874 HU" at the PACS; an empty (0008,0005) made highdicom
refuse to build anything. The rule here:

* a builder passes :func:`initial_character_set` of the source to highdicom (never the source's
  raw value, which may be empty, misspelt or an ISO 2022 combination highdicom refuses);
* before writing, :func:`declare_character_set` looks at every text value of the finished object
  (SH, LO, ST, LT, UT, UC, PN, at any depth) and declares the first of: the source's own set (when
  it is a valid one and pydicom encodes all the text in it exactly), the set the object declares
  already (same test), none (all ASCII: the default repertoire), ISO_IR 192 (UTF-8: anything).

So a Latin-1 site keeps seeing Latin-1 and a Japanese site its ISO 2022 IR 87 names — which also
keeps the DCMTK tools happy, whose 3.6.7 checker rejects multi-byte UTF-8 in PN and ST values
(measured with dcmpschk) — and text no set of the source can hold ("−", a name from another
script) is written as UTF-8, which PS3.5 6.1.2.5.3 allows and every current viewer reads.
"""

from __future__ import annotations

from collections.abc import Iterator

from pydicom import config
from pydicom.charset import convert_encodings, encode_string, python_encoding
from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset
from pydicom.multival import MultiValue
from pydicom.valuerep import PersonName

UTF8 = "ISO_IR 192"
# VRs whose characters depend on the Specific Character Set (PS3.5 6.1.2.3).
TEXT_VRS = frozenset({"SH", "LO", "ST", "LT", "UT", "UC", "PN"})
# Defined Terms kept as they are when the text fits: one value, no code extensions (PS3.3 C.12.1.1.2).
KEEPABLE = frozenset(
    {
        "ISO_IR 100",
        "ISO_IR 101",
        "ISO_IR 109",
        "ISO_IR 110",
        "ISO_IR 126",
        "ISO_IR 127",
        "ISO_IR 138",
        "ISO_IR 144",
        "ISO_IR 148",
        "ISO_IR 166",
        "ISO_IR 203",
        "GB18030",
        UTF8,
    }
)
_PYTHON_CODEC = {**python_encoding, "ISO_IR 203": "iso8859_15"}


def declared(value: object) -> tuple[str, ...]:
    """The (0008,0005) values as a tuple of stripped strings (empty for absent or empty)."""
    if value is None:
        return ()
    values = [value] if isinstance(value, str) else list(value)  # type: ignore[call-overload]
    out = tuple(str(v).strip() for v in values)
    return () if not any(out) else out


def initial_character_set(source: Dataset) -> str | None:
    """What a builder tells highdicom to declare for an object made from ``source``.

    The source's own set when it is one value this module can keep; None (the default repertoire)
    when the source declares nothing or only an empty value; ISO_IR 192 otherwise (ISO 2022
    combinations, GBK, unknown terms). :func:`declare_character_set` settles it after the build.
    """
    values = declared(source.get("SpecificCharacterSet"))
    if not values:
        return None
    if len(values) == 1 and values[0] in KEEPABLE:
        return values[0]
    return UTF8


def text_values(ds: Dataset) -> Iterator[str]:
    """Every text value of ``ds`` whose encoding depends on the character set, at any depth."""
    for elem in ds:
        if elem.VR == "SQ":
            for item in elem.value or ():
                yield from text_values(item)
            continue
        if elem.VR not in TEXT_VRS or elem.value is None:
            continue
        values = elem.value if isinstance(elem.value, (list, MultiValue)) else [elem.value]
        for value in values:
            if isinstance(value, PersonName):
                yield from (c for c in value.components if c)
            elif isinstance(value, bytes):
                # not decoded: bytes written as they are; only ASCII is known to be safe
                yield value.decode("latin_1")
            elif value is not None:
                yield str(value)


# ISO 2022 code-extension terms (PS3.3 C.12.1.1.2, Tables C.12-3/C.12-4) kept as the source
# declared them, with value 1 empty or ISO 2022 IR 6/IR 100/IR 13.
CODE_EXTENSIONS = frozenset(
    {
        "ISO 2022 IR 6",
        "ISO 2022 IR 13",
        "ISO 2022 IR 87",
        "ISO 2022 IR 100",
        "ISO 2022 IR 101",
        "ISO 2022 IR 109",
        "ISO 2022 IR 110",
        "ISO 2022 IR 126",
        "ISO 2022 IR 127",
        "ISO 2022 IR 138",
        "ISO 2022 IR 144",
        "ISO 2022 IR 148",
        "ISO 2022 IR 149",
        "ISO 2022 IR 159",
        "ISO 2022 IR 166",
        "ISO 2022 IR 58",
    }
)


def _valid_terms(values: tuple[str, ...]) -> bool:
    if len(values) == 1:
        return values[0] in KEEPABLE
    return (
        len(values) > 1
        and values[0] in ("", *CODE_EXTENSIONS)
        and all(v in CODE_EXTENSIONS for v in values[1:])
    )


def _fits(texts: list[str], values: tuple[str, ...]) -> bool:
    """Whether every text encodes exactly under the Specific Character Set ``values``."""
    if not values:
        return all(t.isascii() and "\x1b" not in t for t in texts)
    if not _valid_terms(values):
        return False
    if len(values) == 1:
        codec = _PYTHON_CODEC[values[0]]
        try:
            for t in texts:
                t.encode(codec)
        except (UnicodeEncodeError, LookupError):
            return False
        return True
    # ISO 2022: pydicom's own encoder (escape sequences per run of characters), made strict
    encodings = convert_encodings(list(values))
    previous = config.settings.writing_validation_mode
    config.settings.writing_validation_mode = config.RAISE
    try:
        for t in texts:
            encode_string(t, encodings)
    except (UnicodeError, ValueError, LookupError):
        return False
    finally:
        config.settings.writing_validation_mode = previous
    return True


def character_set_for(
    texts: list[str], current: str | None, preferred: tuple[str, ...] = ()
) -> str | list[str] | None:
    """The set to declare for ``texts``: ``preferred`` (the source's) when valid and it encodes
    them all exactly, else ``current`` on the same test, else None when they are all ASCII, else
    ISO_IR 192."""
    if preferred and _fits(texts, preferred):
        return preferred[0] if len(preferred) == 1 else list(preferred)
    if current is not None and current in KEEPABLE and _fits(texts, (current,)):
        return current
    if _fits(texts, ()):
        return None
    return UTF8


def _fresh_person_names(ds: Dataset) -> None:
    """Give every PN element its own PersonName, built from its text.

    highdicom copies the source's elements by reference, so one PersonName object ends up in the
    source copy and in every result of the job; pydicom caches the bytes of the first encoding in
    it (``original_string``) and writes them again under another object's character set (UTF-8
    bytes declared as ISO_IR 127: a garbled name). A new element per object avoids that.
    """
    for elem in list(ds):
        if elem.VR == "SQ":
            for item in elem.value or ():
                _fresh_person_names(item)
        elif elem.VR == "PN" and elem.value not in (None, ""):
            value = elem.value
            if isinstance(value, (list, MultiValue)):
                fresh: object = [PersonName(str(v)) for v in value]
            else:
                fresh = PersonName(str(value))
            ds[elem.tag] = DataElement(elem.tag, "PN", fresh)


def declare_character_set(ds: Dataset, preferred: tuple[str, ...] = ()) -> str | list[str] | None:
    """Set (0008,0005) of a finished result object so its text encodes losslessly; returns it.
    ``preferred``: the source's declared values (:func:`declared`), tried first."""
    _fresh_person_names(ds)
    values = declared(ds.get("SpecificCharacterSet"))
    current = values[0] if len(values) == 1 else (UTF8 if values else None)
    chosen = character_set_for(list(text_values(ds)), current, preferred)
    if "SpecificCharacterSet" in ds:
        del ds.SpecificCharacterSet
    if chosen is not None:
        ds.SpecificCharacterSet = chosen
    return chosen
