"""Validate one received data set before it is staged: pure functions over bytes.

:func:`inspect_dataset` is what every ingest path calls (the C-STORE SCP, STOW-RS): it takes the
encoded data set exactly as received (no File Meta), walks its element structure, parses the
header, and raises an :class:`~dicom_node.errors.IngestError` carrying the DIMSE status to answer
(C-STORE: the response Status with the reason in ErrorComment (0000,0902); STOW-RS: the same code
as FailureReason (0008,1197) of the instance, the reason in a ``Warning`` header):

======  ===================================================================================  =========
status  refused when (the reason sent)                                                       standard
======  ===================================================================================  =========
0xA700  the staging disk is below ``storage.min_free_bytes`` (``staging.py``)                 B.2-1
0xA701  the data set is larger than ``dicom.max_instance_bytes`` (a deflated one: once        B.2-1
        inflated); a C-STORE past twice that is aborted instead (``scp.py``)
0xA900  SOP Class UID in the data set ≠ the negotiated one, or SOP Instance UID ≠ the        B.2-1
        command's Affected SOP Instance UID (as DCMTK storescp answers)
0xA900  Pixel Data (or Float/Double Float Pixel Data) in a SOP class without pixels          B.2-1
        (SR, KOS, GSPS, encapsulated PDF: "CT pixels under an SR SOP class")
0xA900  a CT image (CT, Enhanced CT, Legacy Converted) that is not one 16-bit                C.8.2.1.1
        MONOCHROME1/2 sample per pixel
0x0122  not a storage SOP class this node accepts                                            PS3.7 C.4.2
0xC000  garbage: bytes that do not form DICOM elements, a deflate stream that does not       B.2-1
        inflate, a transfer syntax not accepted
0xC001  truncated: an element, a sequence or the pixel data runs past the end of what was
        received; native pixel data shorter than Rows × Columns × frames × samples × bits
0xC002  a required UID is missing or not a UID (the UIDs become path parts in staging)
0xC003  an image SOP class without Pixel Data
0xC004  absurd image: Rows/Columns/frames 0 or beyond ``dicom.max_*``, a size attribute
        that is not a number, SamplesPerPixel not 1/3 or BitsAllocated not 1/8/16/32/64,
        native pixel data longer than the image, encapsulated pixel data under a native
        transfer syntax or the reverse, fewer fragments than frames
0xC005  inconsistent Image Pixel module (PS3.3 C.7.6.3): BitsStored 0 or > BitsAllocated,   C.7.6.3.1
        HighBit outside [BitsStored − 1, BitsAllocated − 1], PixelRepresentation not 0/1,
        PhotometricInterpretation unknown or not matching SamplesPerPixel (RGB with 1
        sample), PlanarConfiguration missing or not 0/1 with 3 samples, a Type 1 pixel
        attribute missing
======  ===================================================================================  =========

0xA7xx is "Refused: Out of Resources", 0xA9xx "Error: Data Set does not match SOP Class",
0xC000–0xCFFF "Error: Cannot understand" (PS3.4 Table B.2-1); the sub-codes after the first are
this node's, and the ErrorComment says what exactly was wrong. pydicom alone is lenient with
truncated input (it silently returns short or missing Pixel Data), hence the structural walk.
Pixel data is never decoded here: compressed frames are only checked for their fragment
structure (PS3.5 A.4), and decoded later where they are read (``dicom_node.imaging``).
"""

from __future__ import annotations

import functools
import re
import struct
import zlib
from dataclasses import dataclass
from io import BytesIO

from pydicom.datadict import dictionary_VR
from pydicom.dataset import Dataset
from pydicom.filereader import read_dataset
from pydicom.tag import BaseTag
from pydicom.uid import DeflatedExplicitVRLittleEndian, ImplicitVRLittleEndian

from dicom_node.constants import INPUT_SOP_CLASSES
from dicom_node.errors import CannotUnderstand, OutOfResources, SOPClassMismatch, SOPClassNotSupported
from dicom_node.ingest.sop_classes import (
    ACCEPTED_TRANSFER_SYNTAXES,
    ENCAPSULATED_TRANSFER_SYNTAXES,
    NO_PIXEL_SOP_CLASS_PREFIXES,
    PIXEL_SOP_CLASSES,
    STORAGE_SOP_CLASSES,
)
from dicom_node.settings import DicomSettings

# The statuses of the table above, as values. Every status ingest answers is one of these or the
# default of an IngestError class (dicom_node/errors.py): docs/conformance-statement.md's table
# "cstore-scp-statuses" is checked against both (tests/unit/docs/).
STATUS_SUCCESS = 0x0000
STATUS_GARBAGE = 0xC000
STATUS_TRUNCATED = 0xC001
STATUS_BAD_UID = 0xC002
STATUS_NO_PIXEL_DATA = 0xC003
STATUS_ABSURD_IMAGE = 0xC004
STATUS_INCONSISTENT_PIXELS = 0xC005
STATUS_TOO_LARGE = 0xA701
STATUS_NOT_THIS_SOP_CLASS = 0xA900

# PS3.3 C.7.6.3.1.2: Photometric Interpretation → Samples per Pixel it requires. ARGB, CMYK and
# HSV are retired (4 samples or no longer defined) and refused.
PHOTOMETRIC_SAMPLES: dict[str, int] = {
    "MONOCHROME1": 1,
    "MONOCHROME2": 1,
    "PALETTE COLOR": 1,
    "RGB": 3,
    "YBR_FULL": 3,
    "YBR_FULL_422": 3,
    "YBR_PARTIAL_422": 3,
    "YBR_PARTIAL_420": 3,
    "YBR_ICT": 3,
    "YBR_RCT": 3,
    "XYB": 3,
}

# PS3.5 9.1: a UID is dot-separated digit components, at most 64 characters. Leading zeros are
# not valid either, but real senders produce them; what matters here is that a UID can never
# carry "/", "..", or anything else that changes what a path means.
_UID_RE = re.compile(r"[0-9]+(\.[0-9]+)*")
_UID_MAX_LENGTH = 64

_PIXEL_DATA_TAG = 0x7FE00010
_FIRST_PIXEL_TAG = 0x7FE00008  # Float Pixel Data; (7FE0,0009) Double Float, (7FE0,0010) Pixel Data
_PIXEL_TAGS = frozenset({0x7FE00008, 0x7FE00009, _PIXEL_DATA_TAG})
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
    max_instance_bytes: int = 4 * 1024**3

    @classmethod
    def from_settings(cls, dicom: DicomSettings) -> ImageLimits:
        return cls(
            max_rows=dicom.max_rows,
            max_columns=dicom.max_columns,
            max_frames=dicom.max_frames,
            max_instance_bytes=dicom.max_instance_bytes,
        )


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


def too_large(size_bytes: int, limits: ImageLimits) -> OutOfResources:
    """The 0xA701 refusal for a data set of ``size_bytes``."""
    return OutOfResources(
        f"data set of {size_bytes // 2**20} MiB exceeds max_instance_bytes "
        f"({limits.max_instance_bytes // 2**20} MiB)",
        status=STATUS_TOO_LARGE,
    )


def inflate(deflated: bytes | memoryview, *, max_bytes: int | None = None) -> bytes:
    """Undo Deflated Explicit VR Little Endian (PS3.5 A.5: raw deflate, RFC 1951).

    ``max_bytes`` bounds the inflated size (a few KB of deflate can inflate to gigabytes):
    beyond it, OutOfResources 0xA701."""
    limit = max_bytes if max_bytes is not None else 0
    try:
        inflater = zlib.decompressobj(-zlib.MAX_WBITS)
        # max_length stops at limit + 1 bytes: enough to know the limit is exceeded.
        data = inflater.decompress(deflated, limit + 1 if limit else 0)
        if limit and (len(data) > limit or inflater.unconsumed_tail):
            raise too_large(limit + 1, ImageLimits(max_instance_bytes=limit))
        data += inflater.flush()
    except zlib.error as exc:
        raise CannotUnderstand(f"deflated data set does not inflate: {exc}", status=STATUS_GARBAGE) from exc
    if not inflater.eof:
        raise CannotUnderstand("deflated data set is truncated", status=STATUS_TRUNCATED)
    return data


@dataclass(frozen=True)
class StructureScan:
    """What the structural walk found at the top level of a data set."""

    pixel_data: PixelDataLayout | None  # (7FE0,0010)
    pixel_tags: frozenset[int]  # which of Float/Double Float/Pixel Data are present


def walk_structure(data: bytes | memoryview, *, implicit_vr: bool) -> PixelDataLayout | None:
    """The Pixel Data layout of :func:`scan_structure`."""
    return scan_structure(data, implicit_vr=implicit_vr).pixel_data


def scan_structure(data: bytes | memoryview, *, implicit_vr: bool) -> StructureScan:
    """Walk every element of an encoded little-endian data set; return where its pixels are.

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
    return StructureScan(pixel_data=walker.pixel_data, pixel_tags=frozenset(walker.pixel_tags))


def _implicit_hint(view: memoryview, pos: int) -> str | None:
    """At the first element: the wording for a data set encoded implicit VR although its transfer
    syntax says explicit (a known sender bug), when the bytes read as implicit VR elements."""
    if pos != 0:
        return None
    try:
        _Walker(view, implicit_vr=True).dataset(0, len(view), depth=0, in_undefined_item=False)
    except CannotUnderstand:
        return None
    return "implicit VR data set under an explicit VR transfer syntax"


class _Walker:
    def __init__(self, view: memoryview, *, implicit_vr: bool) -> None:
        self.view = view
        self.implicit_vr = implicit_vr
        self.pixel_data: PixelDataLayout | None = None
        self.pixel_tags: set[int] = set()
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
                        _implicit_hint(view, pos) or "unknown VR in explicit VR data set (not DICOM)",
                        status=STATUS_GARBAGE,
                    )
            self.element_count += 1
            if depth == 0 and tag in _PIXEL_TAGS:
                self.pixel_tags.add(tag)
            value_start = pos + header
            if length == _UNDEFINED_LENGTH:
                if not (implicit or vr in (b"SQ", b"UN", b"OB", b"OW")):
                    raise CannotUnderstand("undefined length on a non-sequence VR", status=STATUS_GARBAGE)
                # Encapsulated pixel data (also in an icon image item) holds fragments, not items
                # with data sets (PS3.5 A.4); a sequence's items are walked.
                fragments = tag in _PIXEL_TAGS
                # PS3.5 6.2.2: an undefined-length UN value is encoded implicit VR.
                nested_implicit = implicit or vr == b"UN"
                pos, items = self.items(
                    value_start, end, depth=depth + 1, implicit_vr=nested_implicit, walk=not fragments
                )
                if tag == _PIXEL_DATA_TAG and depth == 0:
                    self.pixel_data = PixelDataLayout(value_offset=value_start, length=None, item_count=items)
            else:
                if value_start + length > end:
                    raise CannotUnderstand(
                        "element value runs past the end of the data", status=STATUS_TRUNCATED
                    )
                if tag == _PIXEL_DATA_TAG and depth == 0:
                    self.pixel_data = PixelDataLayout(value_offset=value_start, length=length)
                if length and (vr == b"SQ" or (implicit and _is_sequence(tag))):
                    # A defined-length sequence: its items must fill it exactly (PS3.5 7.5.1).
                    self.items(
                        value_start,
                        value_start + length,
                        depth=depth + 1,
                        implicit_vr=implicit,
                        walk=True,
                        defined=True,
                    )
                pos = value_start + length
        if in_undefined_item:
            raise CannotUnderstand("item without its delimiter: truncated", status=STATUS_TRUNCATED)
        return pos

    def items(
        self, pos: int, end: int, *, depth: int, implicit_vr: bool, walk: bool, defined: bool = False
    ) -> tuple[int, int]:
        """Walk the items of a sequence or of encapsulated pixel data: up to the Sequence
        Delimitation Item for an undefined length, exactly to ``end`` for a ``defined`` one.
        ``walk``: the items hold data sets (a sequence), walked too (not pixel fragments)."""
        if depth > _MAX_DEPTH:
            raise CannotUnderstand("sequences nested too deeply", status=STATUS_GARBAGE)
        view = self.view
        count = 0
        while True:
            if defined and pos == end:
                return pos, count
            if pos + 8 > end:
                raise CannotUnderstand(
                    "sequence or pixel data without its delimiter: truncated"
                    if not defined
                    else "sequence items do not fill the sequence's length",
                    status=STATUS_TRUNCATED,
                )
            group, element = _TAG.unpack_from(view, pos)
            tag = (group << 16) | element
            length = _U32.unpack_from(view, pos + 4)[0]
            if tag == _SEQUENCE_DELIMITER and not defined:
                return pos + 8, count
            if tag != _ITEM:
                raise CannotUnderstand("expected an item in a sequence (not DICOM)", status=STATUS_GARBAGE)
            count += 1
            saved = self.implicit_vr
            self.implicit_vr = implicit_vr
            try:
                if length == _UNDEFINED_LENGTH:
                    if not walk:
                        raise CannotUnderstand(
                            "pixel data fragment of undefined length", status=STATUS_GARBAGE
                        )
                    pos = self.dataset(pos + 8, end, depth=depth, in_undefined_item=True)
                    continue
                if pos + 8 + length > end:
                    raise CannotUnderstand(
                        "item runs past the end of the data: truncated", status=STATUS_TRUNCATED
                    )
                if walk and length:
                    self.dataset(pos + 8, pos + 8 + length, depth=depth, in_undefined_item=False)
                pos += 8 + length
            finally:
                self.implicit_vr = saved


@functools.lru_cache(maxsize=4096)
def _is_sequence(tag: int) -> bool:
    """Whether the data dictionary gives ``tag`` VR SQ (implicit VR data sets carry no VR)."""
    try:
        return dictionary_VR(tag) == "SQ"
    except KeyError:  # private or unknown: its value is skipped, not walked
        return False


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


# Attributes ingest and the InstanceStored hand-off read from the header. Decoded once here, so
# that a value pydicom cannot convert (a US of 3 bytes, a VR changed in transit) is refused
# with its name instead of raising later from deep inside the receive path.
_READ_KEYWORDS = (
    "SOPClassUID",
    "SOPInstanceUID",
    "StudyInstanceUID",
    "SeriesInstanceUID",
    "Rows",
    "Columns",
    "NumberOfFrames",
    "SamplesPerPixel",
    "BitsAllocated",
    "BitsStored",
    "HighBit",
    "PixelRepresentation",
    "PhotometricInterpretation",
    "PlanarConfiguration",
    "Manufacturer",
    "NumberOfSeriesRelatedInstances",
    "ImagesInAcquisition",
)


def decode_read_attributes(header: Dataset) -> None:
    """Convert every attribute of ``_READ_KEYWORDS`` present; CannotUnderstand (0xC000) naming
    the first one pydicom cannot decode."""
    for keyword in _READ_KEYWORDS:
        try:
            header.get(keyword)
        except Exception as exc:  # pydicom raises ValueError, BytesLengthException, ...
            raise CannotUnderstand(
                f"{keyword} does not decode ({type(exc).__name__})", status=STATUS_GARBAGE
            ) from exc


def _int_attribute(header: Dataset, keyword: str, default: int | None = None) -> int | None:
    try:
        value = header.get(keyword, default)
        if value is None or value == "":
            return default
        return int(value)
    except Exception as exc:  # a value that is not one number (multi-valued, text, bytes)
        raise CannotUnderstand(f"{keyword} is not a number", status=STATUS_ABSURD_IMAGE) from exc


def _pixel_module_problem(header: Dataset, *, samples: int, bits_allocated: int) -> str | None:
    """What contradicts the Image Pixel module (PS3.3 C.7.6.3.1), or None."""
    bits_stored = _int_attribute(header, "BitsStored")
    high_bit = _int_attribute(header, "HighBit")
    pixel_representation = _int_attribute(header, "PixelRepresentation")
    photometric = str(header.get("PhotometricInterpretation", "") or "").strip().upper()
    for keyword, value in (
        ("BitsStored", bits_stored),
        ("HighBit", high_bit),
        ("PixelRepresentation", pixel_representation),
        ("PhotometricInterpretation", photometric or None),
    ):
        if value is None:
            return f"{keyword} missing (Type 1, PS3.3 C.7.6.3)"
    assert bits_stored is not None and high_bit is not None and pixel_representation is not None
    if not 0 < bits_stored <= bits_allocated:
        return f"BitsStored {bits_stored} with BitsAllocated {bits_allocated}"
    if not bits_stored - 1 <= high_bit < bits_allocated:
        return f"HighBit {high_bit} with BitsStored {bits_stored}, BitsAllocated {bits_allocated}"
    if pixel_representation not in (0, 1):
        return f"PixelRepresentation {pixel_representation} (0 or 1)"
    required_samples = PHOTOMETRIC_SAMPLES.get(photometric)
    if required_samples is None:
        return f"PhotometricInterpretation {photometric[:16]!r} unknown"
    if required_samples != samples:
        return (
            f"PhotometricInterpretation {photometric} needs SamplesPerPixel {required_samples}, not {samples}"
        )
    if samples > 1 and _int_attribute(header, "PlanarConfiguration") not in (0, 1):
        return "PlanarConfiguration missing or not 0/1 with 3 samples per pixel"
    return None


def check_pixel_data(
    header: Dataset,
    layout: PixelDataLayout | None,
    *,
    sop_class_uid: str,
    encapsulated: bool,
    limits: ImageLimits,
    pixel_tags: frozenset[int] = frozenset(),
) -> None:
    """Refuse a missing, inconsistent or absurdly large image (see module docstring).

    ``pixel_tags``: the pixel data elements present at the top level (:class:`StructureScan`).
    """
    if sop_class_uid not in PIXEL_SOP_CLASSES:
        if sop_class_uid.startswith(NO_PIXEL_SOP_CLASS_PREFIXES) and (pixel_tags or layout is not None):
            # e.g. a CT image sent under an SR SOP class: the IOD has no pixels (PS3.3 A.35).
            raise SOPClassMismatch(
                "Pixel Data in a SOP class without pixels", status=STATUS_NOT_THIS_SOP_CLASS
            )
        return
    if layout is None:
        raise CannotUnderstand("image without Pixel Data", status=STATUS_NO_PIXEL_DATA)
    rows = _int_attribute(header, "Rows")
    columns = _int_attribute(header, "Columns")
    frames = _int_attribute(header, "NumberOfFrames", 1)
    samples = _int_attribute(header, "SamplesPerPixel")
    bits_allocated = _int_attribute(header, "BitsAllocated")
    if rows is None or columns is None or bits_allocated is None:
        raise CannotUnderstand("image without Rows/Columns/BitsAllocated", status=STATUS_ABSURD_IMAGE)
    if samples is None:
        raise CannotUnderstand(
            "SamplesPerPixel missing (Type 1, PS3.3 C.7.6.3)", status=STATUS_INCONSISTENT_PIXELS
        )
    assert frames is not None
    if not 0 < rows <= limits.max_rows or not 0 < columns <= limits.max_columns:
        raise CannotUnderstand(f"image size {rows}x{columns} out of range", status=STATUS_ABSURD_IMAGE)
    if not 0 < frames <= limits.max_frames:
        raise CannotUnderstand(f"NumberOfFrames {frames} out of range", status=STATUS_ABSURD_IMAGE)
    if samples not in (1, 3) or bits_allocated not in (1, 8, 16, 32, 64):
        raise CannotUnderstand("SamplesPerPixel/BitsAllocated not an image", status=STATUS_ABSURD_IMAGE)
    problem = _pixel_module_problem(header, samples=samples, bits_allocated=bits_allocated)
    if problem is not None:
        raise CannotUnderstand(problem, status=STATUS_INCONSISTENT_PIXELS)
    if sop_class_uid in INPUT_SOP_CLASSES:
        # PS3.3 C.8.2.1.1.1-4 (CT Image), C.8.15.3.x (Enhanced CT): one MONOCHROME1/2 sample of
        # 16 bits. Anything else is not a CT image, whatever the SOP class says.
        photometric = str(header.get("PhotometricInterpretation", "")).strip().upper()
        if samples != 1 or photometric not in ("MONOCHROME1", "MONOCHROME2") or bits_allocated != 16:
            raise SOPClassMismatch(
                f"not a CT image: {samples} x {bits_allocated}-bit {photometric[:16]} "
                "(CT is 1 x 16-bit MONOCHROME1/2)",
                status=STATUS_NOT_THIS_SOP_CLASS,
            )
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
    photometric = str(header.get("PhotometricInterpretation", "")).strip().upper()
    # PS3.3 C.7.6.3.1.2: native YBR_FULL_422 / YBR_PARTIAL_422 store Cb and Cr once per two pixels
    # (Y Y Cb Cr): two samples' worth of bytes per pixel, not three.
    stored_samples = 2 if photometric in ("YBR_FULL_422", "YBR_PARTIAL_422") else samples
    pixels = rows * columns * frames * stored_samples
    expected = (pixels + 7) // 8 if bits_allocated == 1 else pixels * (bits_allocated // 8)
    # PS3.5 7.1.1: values have even length, so one pad byte may follow an odd-length image.
    if layout.length != expected and not (expected % 2 == 1 and layout.length == expected + 1):
        what = "short (truncated)" if layout.length < expected else "longer than the image"
        raise CannotUnderstand(
            f"pixel data {what}: {layout.length} bytes for {rows}x{columns}x{frames}x{samples} "
            f"of {bits_allocated} bits ({expected} bytes)",
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
    if len(data) > limits.max_instance_bytes:
        raise too_large(len(data), limits)
    if transfer_syntax_uid == DeflatedExplicitVRLittleEndian:
        plain: bytes | memoryview = inflate(data, max_bytes=limits.max_instance_bytes)
    else:
        plain = data
    implicit_vr = transfer_syntax_uid == ImplicitVRLittleEndian
    scan = scan_structure(plain, implicit_vr=implicit_vr)
    layout = scan.pixel_data
    # Parse only what precedes the pixel data: the pixels are neither copied nor read here.
    header_end = layout.value_offset if layout is not None else len(plain)
    header = parse_header(memoryview(plain)[:header_end], implicit_vr=implicit_vr)
    decode_read_attributes(header)
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
        pixel_tags=scan.pixel_tags,
    )
    return InspectedInstance(
        header=header,
        sop_class_uid=sop_class_uid,
        sop_instance_uid=sop_instance_uid,
        study_instance_uid=study_instance_uid,
        series_instance_uid=series_instance_uid,
        transfer_syntax_uid=transfer_syntax_uid,
    )
