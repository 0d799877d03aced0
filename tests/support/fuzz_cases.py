"""Malformed (and a few well-formed) C-STORE data sets for fuzzing the ingest path.

:func:`generate_cases` returns a deterministic list (by seed) of :class:`FuzzCase`: the encoded
data set exactly as it goes on the wire (no File Meta), the presentation context it is sent
under, the command's Affected SOP Instance UID, how it is sent (whole, cut off mid-transfer,
aborted mid-transfer) and what the node must answer:

* ``stored``: Success (0x0000; a duplicate of a stored instance is Success too);
* ``refused``: a failure status (0xA700 and above), optionally one of ``statuses``;
* ``either``: Success or a failure status — but always an answer on a live association;
* ``dropped``: the sender cuts the transfer off (``wire`` = "cut" or "abort"); the node must
  clean up and go on serving.

Families (``FAMILIES``): control (valid CTs in every native and RLE syntax, duplicates),
truncated, garbage, bitflip, wrong_vr, absurd_size (element lengths, Rows/Columns/frames,
pixel length), bad_transfer_syntax (implicit under explicit and the reverse, big endian bytes,
plain bytes under deflate), pixel_attributes (issue 12 item 10's cases and more), charset
(empty, ISO 2022 IR 87/149, GB18030, UTF-8, unknown, undecodable bytes), uid (mismatches, not a
UID), sequences (deep nesting, missing delimiters, items past the end), private (private and UN
elements), wire (cut or aborted mid-data-set).

Used by tests/integration/test_ingest_fuzz.py (a bounded run in CI) and bench/fuzz_ingest.py
(≥ 2,000 cases against a live ``ctnode serve``).
"""

from __future__ import annotations

import copy
import logging
import random
import struct
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from io import BytesIO

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import (
    DeflatedExplicitVRLittleEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    RLELossless,
    generate_uid,
)

CT_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.2"
SECONDARY_CAPTURE_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.7"
COMPREHENSIVE_SR_STORAGE = "1.2.840.10008.5.1.4.1.1.88.33"
FUZZ_UID_ROOT = "1.2.826.0.1.3680043.10.1111.77."

_VRS = [b"AE", b"AS", b"CS", b"DA", b"DS", b"FD", b"IS", b"LO", b"OB", b"OW", b"PN", b"SH", b"SQ"]
_VRS += [b"SS", b"UI", b"UL", b"UN", b"US", b"UT", b"XX", b"\x00\x00"]
_LONG_VRS = {b"OB", b"OD", b"OF", b"OL", b"OV", b"OW", b"SQ", b"SV", b"UC", b"UN", b"UR", b"UT", b"UV"}


@dataclass(frozen=True)
class FuzzCase:
    name: str
    family: str
    data_set: bytes
    sop_class_uid: str
    transfer_syntax_uid: str
    sop_instance_uid: str
    expect: str  # "stored" | "refused" | "either" | "dropped"
    statuses: frozenset[int] = field(default_factory=frozenset)
    wire: str = "whole"  # "whole" | "cut" | "abort"

    @property
    def context(self) -> tuple[str, str]:
        return (self.sop_class_uid, self.transfer_syntax_uid)


def encode(ds: Dataset, transfer_syntax_uid: str) -> bytes:
    """``ds`` as a C-STORE data set (no File Meta) in ``transfer_syntax_uid``."""
    ds = copy.copy(ds)
    ds.file_meta = FileMetaDataset()
    # The File Meta is dropped below; pydicom only needs something in it to write.
    ds.file_meta.MediaStorageSOPClassUID = ds.get("SOPClassUID") or "1.2.3"
    ds.file_meta.MediaStorageSOPInstanceUID = ds.get("SOPInstanceUID") or "1.2.3"
    ds.file_meta.TransferSyntaxUID = transfer_syntax_uid
    buffer = BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    data = buffer.getvalue()
    meta_length = struct.unpack_from("<I", data, 132 + 8)[0]
    return data[132 + 12 + meta_length :]


def base_ct(rng: random.Random, *, rows: int = 32, columns: int = 32, study: str | None = None) -> Dataset:
    """A small valid CT Image (PS3.3 A.3) with pseudo-random pixels."""
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
    ds.SOPClassUID = CT_IMAGE_STORAGE
    ds.SOPInstanceUID = generate_uid(prefix=FUZZ_UID_ROOT, entropy_srcs=[str(rng.random())])
    ds.StudyInstanceUID = study or generate_uid(prefix=FUZZ_UID_ROOT, entropy_srcs=[str(rng.random())])
    ds.SeriesInstanceUID = generate_uid(prefix=FUZZ_UID_ROOT, entropy_srcs=[str(rng.random())])
    ds.Modality = "CT"
    ds.PatientName = "FUZZ^CASE"
    ds.PatientID = "FUZZ-1"
    ds.StudyDate = "20261203"
    ds.SeriesNumber = 1
    ds.InstanceNumber = rng.randint(1, 500)
    ds.ImagePositionPatient = [0, 0, rng.randint(0, 300)]
    ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
    ds.PixelSpacing = [0.7, 0.7]
    ds.SliceThickness = 2.5
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows = rows
    ds.Columns = columns
    ds.BitsAllocated = 16
    ds.BitsStored = 12
    ds.HighBit = 11
    ds.PixelRepresentation = 0
    ds.RescaleIntercept = -1024
    ds.RescaleSlope = 1
    pixels = np.random.default_rng(rng.randrange(2**32)).integers(
        0, 4096, size=(rows, columns), dtype=np.uint16
    )
    ds.PixelData = pixels.tobytes()
    return ds


def _case(
    name: str,
    family: str,
    ds: Dataset,
    *,
    ts: str = ExplicitVRLittleEndian,
    expect: str,
    statuses: set[int] | None = None,
    data: bytes | None = None,
    context_class: str | None = None,
    context_ts: str | None = None,
    affected: str | None = None,
    wire: str = "whole",
) -> FuzzCase:
    return FuzzCase(
        name=name,
        family=family,
        data_set=encode(ds, ts) if data is None else data,
        sop_class_uid=context_class or str(ds.SOPClassUID),
        transfer_syntax_uid=context_ts or ts,
        sop_instance_uid=affected if affected is not None else str(ds.SOPInstanceUID),
        expect=expect,
        statuses=frozenset(statuses or ()),
        wire=wire,
    )


def _top_level_elements(data: bytes) -> list[tuple[int, int, bytes, int]]:
    """(offset, tag, VR, header length) of each top-level explicit VR LE element."""
    out = []
    pos = 0
    while pos + 8 <= len(data):
        group, element = struct.unpack_from("<HH", data, pos)
        vr = data[pos + 4 : pos + 6]
        if vr in _LONG_VRS:
            length = struct.unpack_from("<I", data, pos + 8)[0]
            header = 12
        else:
            length = struct.unpack_from("<H", data, pos + 6)[0]
            header = 8
        out.append((pos, (group << 16) | element, vr, header))
        if length == 0xFFFFFFFF:
            break  # an undefined length: stop the simple walk here
        pos += header + length
    return out


# -- families --------------------------------------------------------------------------------


def control(rng: random.Random, i: int) -> FuzzCase:
    ts = rng.choice(
        [ExplicitVRLittleEndian, ImplicitVRLittleEndian, DeflatedExplicitVRLittleEndian, RLELossless]
    )
    ds = base_ct(rng)
    if ts == RLELossless:
        ds.compress(RLELossless)
    return _case(f"control-{i}", "control", ds, ts=ts, expect="stored", statuses={0x0000})


def truncated(rng: random.Random, i: int) -> FuzzCase:
    ds = base_ct(rng)
    ts = rng.choice([ExplicitVRLittleEndian, ImplicitVRLittleEndian, RLELossless])
    if ts == RLELossless:
        ds.compress(RLELossless)
    data = encode(ds, ts)
    cut = rng.randrange(0, len(data) - 1)
    return _case(f"truncated-{i}", "truncated", ds, ts=ts, data=data[:cut], expect="refused")


def garbage(rng: random.Random, i: int) -> FuzzCase:
    ds = base_ct(rng)
    size = rng.choice([1, 7, 64, 1000, 20000])
    noise = rng.randbytes(size)
    if rng.random() < 0.5:  # a valid start, then noise
        head = encode(ds, ExplicitVRLittleEndian)[: rng.randrange(8, 200)]
        noise = head + noise
    return _case(f"garbage-{i}", "garbage", ds, data=noise, expect="refused")


def bitflip(rng: random.Random, i: int) -> FuzzCase:
    ds = base_ct(rng)
    data = bytearray(encode(ds, ExplicitVRLittleEndian))
    header_end = len(data) - len(ds.PixelData)
    for _ in range(rng.randint(1, 8)):
        position = rng.randrange(0, header_end if rng.random() < 0.8 else len(data))
        data[position] ^= 1 << rng.randrange(8)
    return _case(f"bitflip-{i}", "bitflip", ds, data=bytes(data), expect="either")


def wrong_vr(rng: random.Random, i: int) -> FuzzCase:
    ds = base_ct(rng)
    data = bytearray(encode(ds, ExplicitVRLittleEndian))
    elements = _top_level_elements(bytes(data))
    offset, _, vr, _ = rng.choice(elements)
    data[offset + 4 : offset + 6] = rng.choice([v for v in _VRS if v != vr])
    return _case(f"wrong_vr-{i}", "wrong_vr", ds, data=bytes(data), expect="either")


def absurd_size(rng: random.Random, i: int) -> FuzzCase:
    ds = base_ct(rng)
    kind = rng.choice(["element length", "rows", "columns", "frames", "pixel length", "zero size"])
    if kind == "element length":
        data = bytearray(encode(ds, ExplicitVRLittleEndian))
        offset, _, _, header = rng.choice(_top_level_elements(bytes(data)))
        if header == 12:
            struct.pack_into("<I", data, offset + 8, rng.choice([0xFFFFFFF0, 0x7FFFFFFF, len(data) * 3]))
        else:
            struct.pack_into("<H", data, offset + 6, 0xFFFF)
        return _case(f"absurd_size-{i}", "absurd_size", ds, data=bytes(data), expect="refused")
    if kind == "rows":
        ds.Rows = rng.choice([0, 65535, 40000])
    elif kind == "columns":
        ds.Columns = rng.choice([0, 65535, 40000])
    elif kind == "frames":
        ds.NumberOfFrames = rng.choice(["0", "999999", "2147483647", "-5"])
    elif kind == "pixel length":
        ds.PixelData = ds.PixelData[: rng.randrange(0, len(ds.PixelData) - 2) & ~1] + (
            b"\0" * rng.choice([0, 2, 4096])
        )
        if len(ds.PixelData) == 32 * 32 * 2:
            ds.PixelData += b"\0\0"
    else:
        ds.Rows = 0
        ds.Columns = 0
        ds.PixelData = b""
    return _case(f"absurd_size-{i}", "absurd_size", ds, expect="refused")


def bad_transfer_syntax(rng: random.Random, i: int) -> FuzzCase:
    ds = base_ct(rng)
    kind = rng.choice(
        ["implicit under explicit", "explicit under implicit", "plain under deflate", "big endian"]
    )
    if kind == "implicit under explicit":
        data, context = encode(ds, ImplicitVRLittleEndian), ExplicitVRLittleEndian
    elif kind == "explicit under implicit":
        data, context = encode(ds, ExplicitVRLittleEndian), ImplicitVRLittleEndian
    elif kind == "plain under deflate":
        data, context = encode(ds, ExplicitVRLittleEndian), DeflatedExplicitVRLittleEndian
    else:  # Explicit VR Big Endian (retired) bytes under Explicit VR Little Endian
        from pydicom.filebase import DicomBytesIO
        from pydicom.filewriter import write_dataset

        buffer = DicomBytesIO()
        buffer.is_little_endian = False
        buffer.is_implicit_VR = False
        write_dataset(buffer, ds)
        data, context = bytes(buffer.getvalue()), ExplicitVRLittleEndian
    return _case(f"bad_ts-{i}", "bad_transfer_syntax", ds, data=data, context_ts=context, expect="refused")


_PIXEL_FAULTS: list[tuple[str, Callable[[Dataset], None], set[int]]] = [
    ("BitsStored > BitsAllocated", lambda ds: setattr(ds, "BitsStored", 20), {0xC005}),
    ("BitsStored 0", lambda ds: setattr(ds, "BitsStored", 0), {0xC005}),
    ("PixelRepresentation 7", lambda ds: setattr(ds, "PixelRepresentation", 7), {0xC005}),
    ("HighBit 16", lambda ds: setattr(ds, "HighBit", 16), {0xC005}),
    ("RGB with 1 sample", lambda ds: setattr(ds, "PhotometricInterpretation", "RGB"), {0xC005}),
    ("unknown photometric", lambda ds: setattr(ds, "PhotometricInterpretation", "CMYK"), {0xC005}),
    ("SamplesPerPixel 2", lambda ds: setattr(ds, "SamplesPerPixel", 2), {0xC004}),
    ("BitsAllocated 12", lambda ds: setattr(ds, "BitsAllocated", 12), {0xC004}),
    ("no PhotometricInterpretation", lambda ds: delattr(ds, "PhotometricInterpretation"), {0xC005}),
    ("no BitsStored", lambda ds: delattr(ds, "BitsStored"), {0xC005}),
    ("no Rows", lambda ds: delattr(ds, "Rows"), {0xC004}),
    ("Rows not a number", lambda ds: ds.__setitem__(0x00280010, _raw_us(ds, b"ab")), {0xC004, 0xC000}),
    ("no Pixel Data", lambda ds: delattr(ds, "PixelData"), {0xC003}),
    ("pixel data 2 bytes long", lambda ds: setattr(ds, "PixelData", ds.PixelData + b"\0\0"), {0xC004}),
    ("pixel data 2 bytes short", lambda ds: setattr(ds, "PixelData", ds.PixelData[:-2]), {0xC001}),
    ("8-bit CT", lambda ds: _eight_bit(ds), {0xA900}),
]


def _raw_us(ds: Dataset, value: bytes) -> object:
    from pydicom.dataelem import RawDataElement
    from pydicom.tag import Tag

    return RawDataElement(Tag(0x00280010), "US", len(value), value, 0, False, True)


def _eight_bit(ds: Dataset) -> None:
    ds.BitsAllocated = ds.BitsStored = 8
    ds.HighBit = 7
    ds.PixelData = bytes(int(ds.Rows) * int(ds.Columns))


def pixel_attributes(rng: random.Random, i: int) -> FuzzCase:
    ds = base_ct(rng)
    _, fault, statuses = _PIXEL_FAULTS[i % len(_PIXEL_FAULTS)]
    fault(ds)
    return _case(f"pixels-{i}", "pixel_attributes", ds, expect="refused", statuses=statuses)


def ct_under_sr(rng: random.Random, i: int) -> FuzzCase:
    ds = base_ct(rng)
    ds.SOPClassUID = COMPREHENSIVE_SR_STORAGE
    return _case(f"ct_under_sr-{i}", "ct_under_sr", ds, expect="refused", statuses={0xA900})


_CHARSETS: list[tuple[object, bytes]] = [
    ("", "Müller^Hans".encode("latin-1")),
    ("ISO_IR 100", "Müller^Hans".encode("latin-1")),
    ("ISO_IR 192", "Müller^Hans^李".encode()),
    ("ISO_IR 192", b"\xff\xfe\xfa broken utf-8"),
    ("GB18030", "王^小红".encode("gb18030")),
    (["", "ISO 2022 IR 87"], b"Yamada^Tarou=\x1b$B;3ED\x1b(B^\x1b$BB@O:\x1b(B"),
    (["", "ISO 2022 IR 149"], b"Hong^Gildong=\x1b$)C\xfb\xf3^\x1b$)C\xd1\xce\xd4\xd7"),
    ("ISO_IR 144", "Люкшина^Наталья".encode("iso8859_5")),
    ("NOT_A_CHARSET", b"Smith^John"),
    (["ISO 2022 IR 6", "ISO 2022 IR 100"], b"Plain^Name"),
]


def charset(rng: random.Random, i: int) -> FuzzCase:
    ds = base_ct(rng)
    charset_value, name = _CHARSETS[i % len(_CHARSETS)]
    ds.SpecificCharacterSet = charset_value
    data = bytearray(encode(ds, ExplicitVRLittleEndian))
    # Swap in the raw PatientName bytes (pydicom would re-encode a str): (0010,0010) PN
    marker = b"\x10\x00\x10\x00PN"
    at = data.index(marker)
    old_length = struct.unpack_from("<H", data, at + 6)[0]
    value = name + (b" " if len(name) % 2 else b"")
    data[at : at + 8 + old_length] = marker + struct.pack("<H", len(value)) + value
    return _case(f"charset-{i}", "charset", ds, data=bytes(data), expect="stored", statuses={0x0000})


def uid(rng: random.Random, i: int) -> FuzzCase:
    ds = base_ct(rng)
    kind = i % 6
    if kind == 0:  # the command says another instance
        return _case(f"uid-{i}", "uid", ds, affected="1.2.3.4.5.6", expect="refused", statuses={0xA900})
    if kind == 1:  # the data set says another class than the context
        ds.SOPClassUID = SECONDARY_CAPTURE_IMAGE_STORAGE
        return _case(
            f"uid-{i}", "uid", ds, context_class=CT_IMAGE_STORAGE, expect="refused", statuses={0xA900}
        )
    bad = ["../../etc/passwd", "1.2.abc", "", "1." + "9" * 70][kind - 2]
    keyword = rng.choice(["StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID"])
    setattr(ds, keyword, bad)
    # The command needs a valid Affected SOP Instance UID (pynetdicom checks it before sending).
    affected = "1.2.3.4" if keyword == "SOPInstanceUID" else None
    return _case(f"uid-{i}", "uid", ds, affected=affected, expect="refused", statuses={0xC002, 0xA900})


def sequences(rng: random.Random, i: int) -> FuzzCase:
    ds = base_ct(rng)
    kind = i % 4
    if kind == 0:  # deep nesting (past the walker's 32 levels)
        inner = Dataset()
        inner.CodeValue = "X"
        for _ in range(40):
            outer = Dataset()
            outer.ContentSequence = Sequence([inner])
            inner = outer
        ds.ContentSequence = inner.ContentSequence
        return _case(f"sequences-{i}", "sequences", ds, expect="refused", statuses={0xC000})
    item = Dataset()
    item.ReferencedSOPClassUID = CT_IMAGE_STORAGE
    item.ReferencedSOPInstanceUID = "1.2.3.4"
    ds.ReferencedImageSequence = Sequence([item, item])
    ds["ReferencedImageSequence"].is_undefined_length = True
    if kind == 1:  # well-formed undefined length: stored
        return _case(f"sequences-{i}", "sequences", ds, expect="stored", statuses={0x0000})
    data = bytearray(encode(ds, ExplicitVRLittleEndian))
    delimiter = b"\xfe\xff\xdd\xe0\x00\x00\x00\x00"
    at = data.index(delimiter)
    if kind == 2:  # the sequence delimiter removed
        del data[at : at + 8]
    else:  # an item claiming more than there is
        item_at = data.index(b"\xfe\xff\x00\xe0")
        struct.pack_into("<I", data, item_at + 4, 0x00FFFFF0)
    return _case(f"sequences-{i}", "sequences", ds, data=bytes(data), expect="refused")


def private(rng: random.Random, i: int) -> FuzzCase:
    ds = base_ct(rng)
    block = ds.private_block(0x0029, "FUZZ VENDOR", create=True)
    block.add_new(0x10, "OB", rng.randbytes(rng.choice([2, 100, 5000])))
    block.add_new(0x11, "LO", "vendor text")
    data = encode(ds, ExplicitVRLittleEndian)
    if i % 2:  # an unknown public-looking element with VR UN
        element = struct.pack("<HH2sHI", 0x0019, 0x1001, b"UN", 0, 4) + b"\x01\x02\x03\x04"
        at = data.index(b"\x20\x00\x0d\x00")  # before (0020,000D)
        data = data[:at] + element + data[at:]
    return _case(f"private-{i}", "private", ds, data=data, expect="stored", statuses={0x0000})


def wire(rng: random.Random, i: int) -> FuzzCase:
    ds = base_ct(rng, rows=256, columns=256)  # 128 KiB: several PDUs to stop between
    return _case(f"wire-{i}", "wire", ds, expect="dropped", wire=rng.choice(["cut", "abort"]))


FAMILIES: dict[str, tuple[Callable[[random.Random, int], FuzzCase], int]] = {
    # family: (generator, weight)
    "control": (control, 10),
    "truncated": (truncated, 12),
    "garbage": (garbage, 8),
    "bitflip": (bitflip, 14),
    "wrong_vr": (wrong_vr, 10),
    "absurd_size": (absurd_size, 10),
    "bad_transfer_syntax": (bad_transfer_syntax, 6),
    "pixel_attributes": (pixel_attributes, 10),
    "ct_under_sr": (ct_under_sr, 2),
    "charset": (charset, 8),
    "uid": (uid, 6),
    "sequences": (sequences, 6),
    "private": (private, 4),
    "wire": (wire, 2),
}


def generate_cases(count: int, *, seed: int = 0) -> list[FuzzCase]:
    """``count`` cases, every family at least once, in a seed-determined order."""
    # pydicom warns about each character set it cannot encode with: expected here.
    logging.getLogger("pydicom").setLevel(logging.ERROR)
    rng = random.Random(seed)
    names = list(FAMILIES)
    weights = [FAMILIES[name][1] for name in names]
    chosen = names + rng.choices(names, weights=weights, k=max(0, count - len(names)))
    rng.shuffle(chosen)
    cases = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pydicom's "invalid value for VR": on purpose here
        for index, family in enumerate(chosen[:count]):
            generator = FAMILIES[family][0]
            cases.append(generator(random.Random(rng.randrange(2**32)), index))
    return cases
