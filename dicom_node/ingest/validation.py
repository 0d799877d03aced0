"""Validate one received data set before it is staged: pure functions over bytes.

:func:`inspect_dataset` is what every ingest path calls (the C-STORE SCP, STOW-RS): it takes the
encoded data set exactly as received (no File Meta), walks its element structure, parses the
header, and raises an :class:`~dicom_node.errors.IngestError` carrying the DIMSE status to answer:

============  =====================================================================================
status        when
============  =====================================================================================
0xA900        SOP Class UID in the data set ≠ the negotiated one, or SOP Instance UID ≠ the
              command's Affected SOP Instance UID (as DCMTK storescp answers; PS3.4 B.2.3)
0x0122        not a storage SOP class this node accepts
0xC000        garbage: bytes that do not form DICOM elements, a deflate stream that does not inflate
0xC001        truncated: an element or the pixel data runs past the end of what was received
0xC002        a required UID is missing or not a UID (the UIDs become path parts in staging)
0xC003        an image SOP class without Pixel Data
0xC004        absurd image: Rows/Columns/frames 0 or beyond settings.dicom.max_*, or a pixel data
              length that does not match Rows × Columns × frames × samples × bits
============  =====================================================================================

0xC001–0xC004 lie in the "Cannot understand" range (PS3.4 Table B.2-1, 0xC000–0xCFFF); the
sub-code and the ErrorComment tell the sender's log what was wrong. pydicom alone is lenient with
truncated input (it silently returns short or missing Pixel Data), hence the structural walk.
Pixel data is never decoded here: compressed frames are only checked for their fragment
structure (PS3.5 A.4), and decoded later where they are read (``dicom_node.imaging``).
"""

from __future__ import annotations

import re
import struct
import zlib
from dataclasses import dataclass
from io import BytesIO

from pydicom.dataset import Dataset
from pydicom.filereader import read_dataset
from pydicom.tag import BaseTag
from pydicom.uid import DeflatedExplicitVRLittleEndian, ImplicitVRLittleEndian

from dicom_node.errors import CannotUnderstand, SOPClassMismatch, SOPClassNotSupported
from dicom_node.ingest.sop_classes import (
    ACCEPTED_TRANSFER_SYNTAXES,
    ENCAPSULATED_TRANSFER_SYNTAXES,
    PIXEL_SOP_CLASSES,
    STORAGE_SOP_CLASSES,
)
from dicom_node.settings import DicomSettings

STATUS_GARBAGE = 0xC000
STATUS_TRUNCATED = 0xC001
STATUS_BAD_UID = 0xC002
STATUS_NO_PIXEL_DATA = 0xC003
STATUS_ABSURD_IMAGE = 0xC004

# PS3.5 9.1: a UID is dot-separated digit components, at most 64 characters. Leading zeros are
# not valid either, but real senders produce them; what matters here is that a UID can never
# carry "/", "..", or anything else that changes what a path means.
_UID_RE = re.compile(r"[0-9]+(\.[0-9]+)*")
_UID_MAX_LENGTH = 64

_PIXEL_DATA_TAG = 0x7FE00010
_FIRST_PIXEL_TAG = 0x7FE00008  # Float Pixel Data; (7FE0,0009) Double Float, (7FE0,0010) Pixel Data
_ITEM = 0xFFFEE000
_ITEM_DELIMITER = 0xFFFEE00D
_SEQUENCE_DELIMITER = 0xFFFEE0DD
_UNDEFINED_LENGTH = 0xFFFFFFFF
# PS3.5 7.1.2: VRs with a 2-byte reserved field and a 4-byte length in explicit VR encoding.
_LONG_VRS = frozenset(
    {b"OB", b"OD", b"OF", b"OL", b"OV", b"OW", b"SQ", b"SV", b"UC", b"UN", b"UR", b"UT", b"UV"}
)
_SHORT_VRS = frozenset(
    {b"AE", b"AS", b"AT", b"CS", b"DA", b"DS", b"DT", b"FL", b"FD", b"IS", b"LO", b"LT", b"PN", b"SH", b"SL"}
    | {b"SS", b"ST", b"TM", b"UI", b"UL", b"US"}
)
_U16 = struct.Struct("<H")
_U32 = struct.Struct("<I")
_TAG = struct.Struct("<HH")
_MAX_DEPTH = 32  # nested sequences deeper than this are not real data


@dataclass(frozen=True)
class ImageLimits:
    """Largest image accepted (settings.dicom.max_rows / max_columns / max_frames)."""

    max_rows: int = 4096
    max_columns: int = 4096
    max_frames: int = 10000

    @classmethod
    def from_settings(cls, dicom: DicomSettings) -> ImageLimits:
        return cls(max_rows=dicom.max_rows, max_columns=dicom.max_columns, max_frames=dicom.max_frames)


@dataclass(frozen=True)
class PixelDataLayout:
    """Where the top-level Pixel Data element is, as found by the structural walk."""

    value_offset: int
    # Value length in bytes; None for undefined length (encapsulated).
    length: int | None
    # Encapsulated only: number of items (Basic Offset Table item included).
    item_count: int = 0


@dataclass(frozen=True)
class InspectedInstance:
    """A data set that passed :func:`inspect_dataset`: its header (no pixels) and its UIDs."""

    header: Dataset
    sop_class_uid: str
    sop_instance_uid: str
    study_instance_uid: str
    series_instance_uid: str
    transfer_syntax_uid: str


def is_valid_uid(value: object) -> bool:
    """True for a syntactically valid DICOM UID (digits and dots, ≤ 64 characters)."""
    return (
        isinstance(value, str) and 0 < len(value) <= _UID_MAX_LENGTH and _UID_RE.fullmatch(value) is not None
    )


def require_uid(value: object, *, what: str) -> str:
    """Return ``value`` as a UID string or raise CannotUnderstand (0xC002)."""
    text = str(value).rstrip("\x00 ") if value is not None else ""
    if not is_valid_uid(text):
        raise CannotUnderstand(f"{what} missing or not a valid UID", status=STATUS_BAD_UID)
    return text


def inflate(deflated: bytes) -> bytes:
    """Undo Deflated Explicit VR Little Endian (PS3.5 A.5: raw deflate, RFC 1951)."""
    try:
        inflater = zlib.decompressobj(-zlib.MAX_WBITS)
        data = inflater.decompress(deflated) + inflater.flush()
    except zlib.error as exc:
        raise CannotUnderstand(f"deflated data set does not inflate: {exc}", status=STATUS_GARBAGE) from exc
    if not inflater.eof:
        raise CannotUnderstand("deflated data set is truncated", status=STATUS_TRUNCATED)
    return data


def walk_structure(data: bytes | memoryview, *, implicit_vr: bool) -> PixelDataLayout | None:
    """Walk every element of an encoded little-endian data set; return the Pixel Data layout.

    Raises CannotUnderstand with STATUS_TRUNCATED when a value or a sequence runs past the end of
    ``data``, STATUS_GARBAGE when the bytes are not DICOM elements at all. Values are skipped, not
    read, so a 500 MB multi-frame costs what its headers cost.
    """
    view = memoryview(data)
    if len(view) == 0:
        raise CannotUnderstand("empty data set", status=STATUS_GARBAGE)
    walker = _Walker(view, implicit_vr=implicit_vr)
    walker.dataset(0, len(view), depth=0, in_undefined_item=False)
    if walker.element_count == 0:
        raise CannotUnderstand("no DICOM elements in data set", status=STATUS_GARBAGE)
    return walker.pixel_data


class _Walker:
    def __init__(self, view: memoryview, *, implicit_vr: bool) -> None:
        self.view = view
        self.implicit_vr = implicit_vr
        self.pixel_data: PixelDataLayout | None = None
        self.element_count = 0

    def _need(self, pos: int, count: int, end: int) -> None:
        if pos + count > end:
            raise CannotUnderstand("data set truncated inside an element", status=STATUS_TRUNCATED)

    def dataset(self, pos: int, end: int, *, depth: int, in_undefined_item: bool) -> int:
        """Walk elements from ``pos``; stop at ``end`` or after an Item Delimitation Item."""
        if depth > _MAX_DEPTH:
            raise CannotUnderstand("sequences nested too deeply", status=STATUS_GARBAGE)
        view = self.view
        implicit = self.implicit_vr
        while pos < end:
            self._need(pos, 8, end)
            group, element = _TAG.unpack_from(view, pos)
            tag = (group << 16) | element
            if tag == _ITEM_DELIMITER and in_undefined_item:
                return pos + 8
            if group == 0xFFFE:
                raise CannotUnderstand("unexpected item tag in data set", status=STATUS_GARBAGE)
            vr: bytes | None
            if implicit:
                vr = None
                length = _U32.unpack_from(view, pos + 4)[0]
                header = 8
            else:
                vr = bytes(view[pos + 4 : pos + 6])
                if vr in _LONG_VRS:
                    self._need(pos, 12, end)
                    length = _U32.unpack_from(view, pos + 8)[0]
                    header = 12
                elif vr in _SHORT_VRS:
                    length = _U16.unpack_from(view, pos + 6)[0]
                    header = 8
                else:
                    raise CannotUnderstand(
                        "unknown VR in explicit VR data set (not DICOM)", status=STATUS_GARBAGE
                    )
            self.element_count += 1
            value_start = pos + header
            if length == _UNDEFINED_LENGTH:
                if not (implicit or vr in (b"SQ", b"UN", b"OB", b"OW")):
                    raise CannotUnderstand("undefined length on a non-sequence VR", status=STATUS_GARBAGE)
                is_pixel = tag == _PIXEL_DATA_TAG and depth == 0
                # PS3.5 6.2.2: an undefined-length UN value is encoded implicit VR.
                nested_implicit = implicit or vr == b"UN"
                pos, items = self.items(value_start, end, depth=depth + 1, implicit_vr=nested_implicit)
                if is_pixel:
                    self.pixel_data = PixelDataLayout(value_offset=value_start, length=None, item_count=items)
            else:
                if value_start + length > end:
                    raise CannotUnderstand(
                        "element value runs past the end of the data", status=STATUS_TRUNCATED
                    )
                if tag == _PIXEL_DATA_TAG and depth == 0:
                    self.pixel_data = PixelDataLayout(value_offset=value_start, length=length)
                pos = value_start + length
        if in_undefined_item:
            raise CannotUnderstand("item without its delimiter: truncated", status=STATUS_TRUNCATED)
        return pos

    def items(self, pos: int, end: int, *, depth: int, implicit_vr: bool) -> tuple[int, int]:
        """Walk the items of an undefined-length value up to its Sequence Delimitation Item."""
        view = self.view
        count = 0
        while True:
            if pos + 8 > end:
                raise CannotUnderstand(
                    "sequence or pixel data without its delimiter: truncated", status=STATUS_TRUNCATED
                )
            group, element = _TAG.unpack_from(view, pos)
            tag = (group << 16) | element
            length = _U32.unpack_from(view, pos + 4)[0]
            if tag == _SEQUENCE_DELIMITER:
                return pos + 8, count
            if tag != _ITEM:
                raise CannotUnderstand("expected an item in a sequence (not DICOM)", status=STATUS_GARBAGE)
            count += 1
            if length == _UNDEFINED_LENGTH:
                saved = self.implicit_vr
                self.implicit_vr = implicit_vr
                try:
                    pos = self.dataset(pos + 8, end, depth=depth, in_undefined_item=True)
                finally:
                    self.implicit_vr = saved
            else:
                if pos + 8 + length > end:
                    raise CannotUnderstand(
                        "item runs past the end of the data: truncated", status=STATUS_TRUNCATED
                    )
                pos += 8 + length


def _stop_at_pixels(tag: BaseTag, vr: str | None, length: int) -> bool:
    return int(tag) >= _FIRST_PIXEL_TAG


def parse_header(data: bytes | memoryview, *, implicit_vr: bool) -> Dataset:
    """pydicom Dataset of every element before the pixel data (values parsed lazily)."""
    try:
        return read_dataset(BytesIO(data), implicit_vr, True, stop_when=_stop_at_pixels)
    except Exception as exc:  # pydicom raises a variety of errors on malformed input
        raise CannotUnderstand(
            f"data set does not parse: {type(exc).__name__}", status=STATUS_GARBAGE
        ) from exc


def _int_attribute(header: Dataset, keyword: str, default: int | None = None) -> int | None:
    try:
        value = header.get(keyword, default)
        if value is None or value == "":
            return default
        return int(value)
    except (TypeError, ValueError) as exc:
        raise CannotUnderstand(f"{keyword} is not a number", status=STATUS_ABSURD_IMAGE) from exc


def check_pixel_data(
    header: Dataset,
    layout: PixelDataLayout | None,
    *,
    sop_class_uid: str,
    encapsulated: bool,
    limits: ImageLimits,
) -> None:
    """Refuse a missing, inconsistent or absurdly large image (see module docstring)."""
    if sop_class_uid not in PIXEL_SOP_CLASSES:
        return
    if layout is None:
        raise CannotUnderstand("image without Pixel Data", status=STATUS_NO_PIXEL_DATA)
    rows = _int_attribute(header, "Rows")
    columns = _int_attribute(header, "Columns")
    frames = _int_attribute(header, "NumberOfFrames", 1)
    samples = _int_attribute(header, "SamplesPerPixel", 1)
    bits_allocated = _int_attribute(header, "BitsAllocated")
    if rows is None or columns is None or bits_allocated is None:
        raise CannotUnderstand("image without Rows/Columns/BitsAllocated", status=STATUS_ABSURD_IMAGE)
    assert frames is not None and samples is not None
    if not 0 < rows <= limits.max_rows or not 0 < columns <= limits.max_columns:
        raise CannotUnderstand(f"image size {rows}x{columns} out of range", status=STATUS_ABSURD_IMAGE)
    if not 0 < frames <= limits.max_frames:
        raise CannotUnderstand(f"NumberOfFrames {frames} out of range", status=STATUS_ABSURD_IMAGE)
    if samples not in (1, 3) or bits_allocated not in (1, 8, 16, 32, 64):
        raise CannotUnderstand("SamplesPerPixel/BitsAllocated not an image", status=STATUS_ABSURD_IMAGE)
    if encapsulated:
        # PS3.5 A.4: Basic Offset Table item, then at least one fragment per frame.
        if layout.length is not None:
            raise CannotUnderstand(
                "native pixel data under a compressed transfer syntax", status=STATUS_ABSURD_IMAGE
            )
        fragments = layout.item_count - 1
        if fragments < max(1, frames):
            raise CannotUnderstand("fewer pixel data fragments than frames", status=STATUS_TRUNCATED)
        return
    if layout.length is None:
        raise CannotUnderstand(
            "encapsulated pixel data under a native transfer syntax", status=STATUS_ABSURD_IMAGE
        )
    pixels = rows * columns * frames * samples
    expected = (pixels + 7) // 8 if bits_allocated == 1 else pixels * (bits_allocated // 8)
    # PS3.5 7.1.1: values have even length, so one pad byte may follow an odd-length image.
    if layout.length != expected and not (expected % 2 == 1 and layout.length == expected + 1):
        what = "short (truncated)" if layout.length < expected else "longer than the image"
        raise CannotUnderstand(
            f"pixel data {what}: {layout.length} bytes for {rows}x{columns}x{frames}",
            status=STATUS_TRUNCATED if layout.length < expected else STATUS_ABSURD_IMAGE,
        )


def inspect_dataset(
    data: bytes | memoryview,
    *,
    transfer_syntax_uid: str,
    negotiated_sop_class_uid: str,
    affected_sop_instance_uid: str | None,
    limits: ImageLimits,
) -> InspectedInstance:
    """Validate an encoded data set as received (see module docstring); return its header.

    ``data`` is the data set without File Meta, in ``transfer_syntax_uid`` (deflated data is
    inflated here for checking; what is staged is always the bytes as received).
    """
    if transfer_syntax_uid not in ACCEPTED_TRANSFER_SYNTAXES:
        raise CannotUnderstand("transfer syntax not accepted", status=STATUS_GARBAGE)
    if negotiated_sop_class_uid not in STORAGE_SOP_CLASSES:
        raise SOPClassNotSupported("SOP class not accepted by this node")
    plain = inflate(bytes(data)) if transfer_syntax_uid == DeflatedExplicitVRLittleEndian else data
    implicit_vr = transfer_syntax_uid == ImplicitVRLittleEndian
    layout = walk_structure(plain, implicit_vr=implicit_vr)
    # Parse only what precedes the pixel data: the pixels are neither copied nor read here.
    header_end = layout.value_offset if layout is not None else len(plain)
    header = parse_header(memoryview(plain)[:header_end], implicit_vr=implicit_vr)
    try:
        sop_class_uid = require_uid(header.get("SOPClassUID"), what="SOPClassUID")
        sop_instance_uid = require_uid(header.get("SOPInstanceUID"), what="SOPInstanceUID")
        study_instance_uid = require_uid(header.get("StudyInstanceUID"), what="StudyInstanceUID")
        series_instance_uid = require_uid(header.get("SeriesInstanceUID"), what="SeriesInstanceUID")
    except CannotUnderstand:
        raise
    except Exception as exc:  # a header value pydicom cannot convert
        raise CannotUnderstand(f"header does not parse: {type(exc).__name__}", status=STATUS_GARBAGE) from exc
    if sop_class_uid != negotiated_sop_class_uid:
        raise SOPClassMismatch("data set SOP Class UID differs from the negotiated presentation context")
    if affected_sop_instance_uid is not None and sop_instance_uid != affected_sop_instance_uid.rstrip(
        "\x00 "
    ):
        raise SOPClassMismatch("data set SOP Instance UID differs from the Affected SOP Instance UID")
    check_pixel_data(
        header,
        layout,
        sop_class_uid=sop_class_uid,
        encapsulated=transfer_syntax_uid in ENCAPSULATED_TRANSFER_SYNTAXES,
        limits=limits,
    )
    return InspectedInstance(
        header=header,
        sop_class_uid=sop_class_uid,
        sop_instance_uid=sop_instance_uid,
        study_instance_uid=study_instance_uid,
        series_instance_uid=series_instance_uid,
        transfer_syntax_uid=transfer_syntax_uid,
    )
