"""A minimal Explicit VR Little Endian element encoder (PS3.5 7.1.2) for bulk, repetitive content.

pydicom writes a nested sequence item in roughly a third of a millisecond; a binary SEG of a CT with
20 organs has thousands of per-frame functional group items, which pydicom needs seconds to build and
write. These few functions encode such items directly to bytes (defined lengths, values padded as
PS3.5 6.2 requires). Only what the SEG encoder needs is here; anything else goes through pydicom.
Correctness is checked by reading the result back with pydicom and comparing it with highdicom's
own output (tests/unit/dicom_node/results/test_seg.py).
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Sequence

# VRs with a 4-byte length field after two reserved bytes (PS3.5 Table 7.1-1).
_LONG_VRS = frozenset({"OB", "OD", "OF", "OL", "OV", "OW", "SQ", "UC", "UN", "UR", "UT"})
_ITEM_TAG = struct.pack("<HH", 0xFFFE, 0xE000)


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
