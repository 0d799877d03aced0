"""Explicit VR Little Endian encoding (PS3.5 7.1.2) for bulk, repetitive content.

pydicom writes a nested sequence item in roughly a third of a millisecond; a binary SEG of a CT with
20 organs has thousands of per-frame functional group items and a TID 1500 SR thousands of content
items, which pydicom needs seconds to write. Here:

* ``element``/``sequence``/``item``/``text``/``us``/``ul``/``code`` build bytes directly (defined
  lengths, values padded as PS3.5 6.2 requires) for the SEG's per-frame groups;
* ``write_file`` writes any Explicit VR Little Endian dataset with the same bytes as
  ``pydicom.dcmwrite(..., enforce_file_format=True)``, using pydicom's own per-VR value writers but
  not its per-element and per-dataset overhead; anything unusual falls back to pydicom.

Tests compare the bytes with pydicom's (test_explicit_vr.py) and the SEG with highdicom's output.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Iterable, Sequence
from typing import BinaryIO, cast

import pydicom
from pydicom.charset import convert_encodings, default_encoding, encode_string
from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import correct_ambiguous_vr_element, write_dataset, writers
from pydicom.uid import ExplicitVRLittleEndian
from pydicom.valuerep import CUSTOMIZABLE_CHARSET_VR, VR

# VRs with a 4-byte length field after two reserved bytes (PS3.5 Table 7.1-1).
_LONG_VRS = frozenset({"OB", "OD", "OF", "OL", "OV", "OW", "SQ", "UC", "UN", "UR", "UT"})
_ITEM_TAG = struct.pack("<HH", 0xFFFE, 0xE000)
_ASCII_VRS = frozenset({"AE", "AS", "CS", "UR", "UI"})
_FIRST_BODY_TAG = 0x00080006  # everything before it (Specific Character Set) is written by pydicom


def header(tag: int, vr: str, length: int) -> bytes:
    """The header of a long-VR element whose value the caller streams after it."""
    if vr not in _LONG_VRS:
        raise ValueError(f"VR {vr} has a 2-byte length: encode it with element()")
    return struct.pack("<HH2sHI", tag >> 16, tag & 0xFFFF, vr.encode("ascii"), 0, length)


def element(tag: int, vr: str, value: bytes) -> bytes:
    """One data element; ``value`` must already have even length."""
    group, elem = tag >> 16, tag & 0xFFFF
    if vr in _LONG_VRS:
        return struct.pack("<HH2sHI", group, elem, vr.encode("ascii"), 0, len(value)) + value
    if len(value) > 0xFFFF:
        raise ValueError(f"value of ({group:04X},{elem:04X}) too long for VR {vr}")
    return struct.pack("<HH2sH", group, elem, vr.encode("ascii"), len(value)) + value


def text(tag: int, vr: str, value: str | Sequence[str]) -> bytes:
    """A string VR (UI padded with NUL, others with space); multiple values joined by backslash."""
    joined = value if isinstance(value, str) else "\\".join(value)
    raw = joined.encode("utf-8")
    if len(raw) % 2:
        raw += b"\x00" if vr == "UI" else b" "
    return element(tag, vr, raw)


def us(tag: int, *values: int) -> bytes:
    return element(tag, "US", struct.pack(f"<{len(values)}H", *values))


def ul(tag: int, *values: int) -> bytes:
    return element(tag, "UL", struct.pack(f"<{len(values)}I", *values))


def item(content: bytes) -> bytes:
    """A sequence item of defined length (PS3.5 7.5.1)."""
    return _ITEM_TAG + struct.pack("<I", len(content)) + content


def sequence(tag: int, items: Iterable[bytes]) -> bytes:
    """A sequence of defined length from already encoded item contents."""
    return element(tag, "SQ", b"".join(item(content) for content in items))


def code(value: str, scheme_designator: str, meaning: str) -> bytes:
    """Content of a Code Sequence Macro item (PS3.3 Table 8.8-1), basic form."""
    return (
        text(0x00080100, "SH", value)
        + text(0x00080102, "SH", scheme_designator)
        + text(0x00080104, "LO", meaning)
    )


class _NeedsPydicom(Exception):
    """Something only pydicom's general writer handles (ambiguous VR, undefined length, ...)."""


def _value_bytes(elem: DataElement, encodings: list[str]) -> bytes:
    """The encoded value of a non-sequence element, by pydicom's own per-VR writer."""
    vr = elem.VR
    if vr not in writers or " or " in vr or elem.is_buffered or elem.is_undefined_length:
        # ambiguous VRs ("US or SS") need pydicom's correction against the dataset
        raise _NeedsPydicom(f"{elem.tag}: VR {vr}")
    if elem.is_empty:
        return b""
    value = elem.value
    if type(value) is str:  # the common single-valued strings, exactly as pydicom's writers do
        if vr in _ASCII_VRS:  # write_string / write_UI
            if len(value) % 2:
                value += "\0" if vr == "UI" else " "
            return value.encode(default_encoding)
        if vr in CUSTOMIZABLE_CHARSET_VR and vr != "PN":  # write_text
            raw = encode_string(value, encodings)
            return raw + b" " if len(raw) % 2 else raw
    buffer = DicomBytesIO()
    buffer.is_little_endian, buffer.is_implicit_VR = True, False
    fn, param = cast(tuple[Callable[..., None], str | None], writers[cast(VR, vr)])
    if vr in CUSTOMIZABLE_CHARSET_VR:
        fn(buffer, elem, encodings=encodings)
    elif param is not None:
        fn(buffer, elem, param)
    else:
        fn(buffer, elem)
    return buffer.getvalue()


def encode_elements(ds: Dataset, encodings: list[str], ancestors: list[Dataset] | None = None) -> bytes:
    """A dataset's elements in Explicit VR Little Endian, byte for byte as pydicom writes them
    (defined-length sequences and items, group lengths left out), without pydicom's per-element
    overhead. Raises ``_NeedsPydicom`` for anything unusual."""
    if "SpecificCharacterSet" in ds:
        encodings = convert_encodings(ds.SpecificCharacterSet)
    parts = []
    for tag in sorted(ds.keys()):
        if tag.element == 0 and tag.group > 6:
            continue  # retired group lengths are not written (PS3.5 7.2)
        elem = ds[tag]
        if " or " in elem.VR:  # e.g. "US or SS": resolved from the dataset, as pydicom's writer does
            elem = cast(DataElement, correct_ambiguous_vr_element(elem, ds, True, [ds, *(ancestors or [])]))
        if elem.VR == "SQ":
            if elem.is_undefined_length:
                raise _NeedsPydicom(f"{tag}: undefined-length sequence")
            items = []
            for item_ds in elem.value:
                if getattr(item_ds, "is_undefined_length_sequence_item", False):
                    raise _NeedsPydicom(f"{tag}: undefined-length item")
                items.append(encode_elements(item_ds, encodings, [ds, *(ancestors or [])]))
            parts.append(sequence(tag, items))
            continue
        value = _value_bytes(elem, encodings)
        if elem.VR not in _LONG_VRS and len(value) > 0xFFFF:
            raise _NeedsPydicom(f"{tag}: value too long for VR {elem.VR}")
        parts.append(element(tag, elem.VR, value))
    return b"".join(parts)


def encode_body(ds: Dataset, encodings: list[str]) -> bytes:
    """:func:`encode_elements`, or pydicom's writer when the fast path does not apply."""
    try:
        return encode_elements(ds, encodings)
    except _NeedsPydicom:
        buffer = DicomBytesIO()
        buffer.is_little_endian, buffer.is_implicit_VR = True, False
        write_dataset(buffer, ds, encodings)
        return buffer.getvalue()


def file_encodings(ds: Dataset) -> list[str]:
    """Python codecs for the dataset's Specific Character Set (pydicom's default when absent)."""
    return convert_encodings(ds.get("SpecificCharacterSet", default_encoding))


def write_head(out: BinaryIO, ds: Dataset) -> None:
    """Preamble, File Meta Information and the elements before (0008,0006), by pydicom."""
    head = ds[:_FIRST_BODY_TAG]
    head.file_meta = ds.file_meta
    pydicom.dcmwrite(out, head, enforce_file_format=True)


def body(ds: Dataset) -> Dataset:
    """The elements from (0008,0006) on: what follows :func:`write_head`."""
    return ds[_FIRST_BODY_TAG:]


def write_file(out: BinaryIO, ds: Dataset) -> None:
    """Write ``ds`` in the DICOM file format, as ``pydicom.dcmwrite(out, ds, enforce_file_format=True)``
    does (same bytes; tests compare), several times faster for large SR/GSPS content trees.

    Only Explicit VR Little Endian datasets take the fast path; anything else goes to pydicom.
    """
    transfer_syntax = ds.file_meta.get("TransferSyntaxUID") if hasattr(ds, "file_meta") else None
    if transfer_syntax != ExplicitVRLittleEndian:
        pydicom.dcmwrite(out, ds, enforce_file_format=True)
        return
    # Up to and including Specific Character Set, pydicom writes preamble, meta and the charset.
    head = ds[:_FIRST_BODY_TAG]
    head.file_meta = ds.file_meta
    try:
        body = encode_elements(
            ds[_FIRST_BODY_TAG:], convert_encodings(ds.get("SpecificCharacterSet", "ISO_IR 6"))
        )
    except _NeedsPydicom:
        pydicom.dcmwrite(out, ds, enforce_file_format=True)
        return
    pydicom.dcmwrite(out, head, enforce_file_format=True)
    out.write(body)
