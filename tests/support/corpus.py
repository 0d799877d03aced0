"""A real-world DICOM corpus for ingest: pydicom's bundled test files plus variants made from them.

:func:`build_corpus` returns :class:`CorpusCase` items, each a Part 10 file and what the node must
do with it:

* ``stored``          answered Success (the file is in staging afterwards);
* ``refused``         a failure status, ``status``, whose ErrorComment contains ``reason``;
* ``not negotiated``  the node does not accept its (SOP class, transfer syntax) at association:
                      Explicit VR Big Endian (retired), MR/US/RT classes, which is a refusal too.

Sources:

* every file of ``pydicom.data`` (test files and character-set files) with a File Meta: CT, SC,
  SEG, SR in Explicit/Implicit/Deflated VR, JPEG baseline/extended/lossless, JPEG-LS, JPEG 2000,
  RLE, big endian, and the character sets of PS3.5 Annex C/D/H/I/J/K examples. Their expected
  outcome is Success unless :data:`KNOWN_REFUSALS` names what is wrong with the file;
* "as CT" variants of pydicom's MR_small family (same pixel encodings, SOP class CT Image,
  a new SOP Instance UID): compressed syntaxes under the class this node routes;
* character-set variants of CT_small.dcm: the Specific Character Set and the raw PatientName bytes
  of each pydicom character-set file, plus an empty or missing Specific Character Set, invalid
  UTF-8, an unknown term;
* vendor private variants of CT_small.dcm: private blocks with OB, SQ and UN values, a private
  element without its creator, pydicom's nested private sequence in Implicit VR.
"""

from __future__ import annotations

import copy
import warnings
from dataclasses import dataclass
from pathlib import Path

from pydicom import dcmread
from pydicom.data import get_charset_files, get_testdata_file, get_testdata_files
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence
from pydicom.uid import ImplicitVRLittleEndian, generate_uid

from dicom_node.ingest.sop_classes import ACCEPTED_TRANSFER_SYNTAXES, STORAGE_SOP_CLASSES

CT_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.2"
CORPUS_UID_ROOT = "1.2.826.0.1.3680043.10.1111.88."

# pydicom files the node must refuse, with the reason (checked against the files themselves:
# tests/unit/dicom_node/ingest/test_validation.py has the same cases as unit tests).
KNOWN_REFUSALS: dict[str, tuple[int, str]] = {
    "JPEGLSNearLossless_08.dcm": (0xC002, "StudyInstanceUID missing"),
    "JPEGLSNearLossless_16.dcm": (0xC002, "StudyInstanceUID missing"),
    "SC_rgb_jls_lossy_line.dcm": (0xC002, "StudyInstanceUID missing"),
    "SC_rgb_jls_lossy_sample.dcm": (0xC002, "StudyInstanceUID missing"),
    "SC_rgb_jpeg.dcm": (0xC000, "implicit VR data set under an explicit VR transfer syntax"),
    "UN_sequence.dcm": (0xC002, "SOPClassUID missing"),
}


@dataclass(frozen=True)
class CorpusCase:
    name: str
    path: Path
    sop_class_uid: str
    transfer_syntax_uid: str
    sop_instance_uid: str
    expect: str  # "stored" | "refused" | "not negotiated"
    status: int | None = None
    reason: str = ""
    patient_name_bytes: bytes | None = None  # a variant whose PatientName must arrive byte for byte


def _meta(path: Path) -> tuple[str, str, str] | None:
    try:
        meta = dcmread(path, stop_before_pixels=True).file_meta
    except Exception:  # no File Meta, not DICOM at all: nothing a sender could propose
        return None
    values = [
        str(meta.get(k, "") or "").strip("\x00 ") for k in ("MediaStorageSOPClassUID", "TransferSyntaxUID")
    ]
    instance = str(meta.get("MediaStorageSOPInstanceUID", "") or "").strip("\x00 ")
    if not all(values):
        return None
    return values[0], values[1], instance


def _case_for(path: Path, name: str, **extra: object) -> CorpusCase | None:
    meta = _meta(path)
    if meta is None:
        return None
    sop_class, ts, instance = meta
    if sop_class not in STORAGE_SOP_CLASSES or ts not in ACCEPTED_TRANSFER_SYNTAXES:
        return CorpusCase(name, path, sop_class, ts, instance, "not negotiated")
    if "expect" in extra:
        return CorpusCase(name, path, sop_class, ts, instance, **extra)  # type: ignore[arg-type]
    if name in KNOWN_REFUSALS:
        status, reason = KNOWN_REFUSALS[name]
        return CorpusCase(name, path, sop_class, ts, instance, "refused", status, reason)
    return CorpusCase(name, path, sop_class, ts, instance, "stored", **extra)  # type: ignore[arg-type]


def _save(ds: Dataset, path: Path) -> Path:
    ds.save_as(path, enforce_file_format=True)
    return path


def _new_instance(ds: Dataset, seed: str) -> None:
    uid = generate_uid(prefix=CORPUS_UID_ROOT, entropy_srcs=[seed])
    ds.SOPInstanceUID = uid
    ds.file_meta.MediaStorageSOPInstanceUID = uid


def _as_ct_variants(out: Path) -> list[CorpusCase]:
    cases = []
    for name in (
        "MR_small.dcm",
        "MR_small_implicit.dcm",
        "MR_small_RLE.dcm",
        "MR_small_jp2klossless.dcm",
        "MR_small_jpeg_ls_lossless.dcm",
        "MR_small_padded.dcm",
        "MR_small_bigendian.dcm",
        "MR_truncated.dcm",
    ):
        source = Path(str(get_testdata_file(name)))
        if name == "MR_truncated.dcm":
            # Its pixel data is cut short: keep the bytes, change only the class in the header.
            data = source.read_bytes().replace(
                b"1.2.840.10008.5.1.4.1.1.4\x00", CT_IMAGE_STORAGE.encode() + b"\x00"
            )
            path = out / f"as-ct-{name}"
            path.write_bytes(data)
            case = _case_for(
                path,
                f"as CT: {name}",
                expect="refused",
                status=0xC001,
                reason="runs past the end of the data",
            )
        else:
            ds = dcmread(source)
            ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID = CT_IMAGE_STORAGE
            ds.Modality = "CT"
            _new_instance(ds, name)
            path = _save(ds, out / f"as-ct-{name}")
            if name == "MR_small_padded.dcm":  # 128 bytes after the image: the wrong length
                case = _case_for(
                    path,
                    f"as CT: {name}",
                    expect="refused",
                    status=0xC004,
                    reason="pixel data longer than the image",
                )
            else:
                case = _case_for(path, f"as CT: {name}")
        if case is not None:
            cases.append(case)
    return cases


_PLACEHOLDER_NAME = "PLACEHOLDER^PATIENT^NAME"


def _with_patient_name_bytes(path: Path, value: bytes) -> None:
    """Replace the placeholder PatientName of an Explicit VR LE file by ``value`` byte for byte
    (pydicom would decode and re-encode a name, losing bytes of an unknown character set)."""
    data = path.read_bytes()
    placeholder = _PLACEHOLDER_NAME.encode()
    old = b"\x10\x00\x10\x00PN" + len(placeholder).to_bytes(2, "little") + placeholder
    padded = value + (b" " if len(value) % 2 else b"")
    new = b"\x10\x00\x10\x00PN" + len(padded).to_bytes(2, "little") + padded
    assert data.count(old) == 1
    path.write_bytes(data.replace(old, new))


def _charset_variants(out: Path) -> list[CorpusCase]:
    ct_small = dcmread(get_testdata_file("CT_small.dcm"))
    sources: list[tuple[str, object, bytes]] = []
    for path in sorted(get_charset_files("chr*.dcm")):
        ds = dcmread(path)
        element = ds.get_item(0x00100010)
        if element is not None and element.value:
            sources.append((Path(path).name, ds.get("SpecificCharacterSet"), bytes(element.value)))
    sources += [
        ("empty SpecificCharacterSet", "", b"Doe^Jane"),
        ("no SpecificCharacterSet", None, b"Doe^John"),
        ("invalid UTF-8 under ISO_IR 192", "ISO_IR 192", b"M\xfcller^\xc3"),
        ("unknown term", "ISO_IR 999", b"Unknown^Term"),
    ]
    cases = []
    for index, (name, charset, patient_name) in enumerate(sources):
        ds = copy.deepcopy(ct_small)
        if charset is None:
            del ds.SpecificCharacterSet
        else:
            ds.SpecificCharacterSet = charset
        ds.PatientName = _PLACEHOLDER_NAME
        _new_instance(ds, f"charset-{name}")
        path = _save(ds, out / f"charset-{index:02d}.dcm")
        _with_patient_name_bytes(path, patient_name)
        case = _case_for(path, f"charset: {name}", patient_name_bytes=patient_name)
        if case is not None:
            cases.append(case)
    return cases


def _private_variants(out: Path) -> list[CorpusCase]:
    ct_small = dcmread(get_testdata_file("CT_small.dcm"))
    cases = []
    ds = copy.deepcopy(ct_small)
    block = ds.private_block(0x0009, "ACME 1.1", create=True)
    block.add_new(0x01, "OB", bytes(range(256)) * 4)
    item = Dataset()
    item.add_new(0x00090010, "LO", "ACME 1.1")
    item.add_new(0x00091002, "LO", "nested vendor value")
    block.add_new(0x03, "SQ", Sequence([item]))
    block.add_new(0x04, "UN", b"\x01\x02\x03\x04")
    _new_instance(ds, "private-blocks")
    cases.append(_save(ds, out / "private-blocks.dcm"))
    ds = copy.deepcopy(ct_small)
    ds.add_new(0x00111011, "LO", "orphan")  # a private element without its creator
    _new_instance(ds, "private-orphan")
    cases.append(_save(ds, out / "private-orphan.dcm"))
    # pydicom's nested private sequence (Implicit VR) inside a CT
    nested = dcmread(get_testdata_file("nested_priv_SQ.dcm"), force=True)
    ds = copy.deepcopy(ct_small)
    for element in nested:
        if element.tag.is_private:
            ds.add(element)
    ds.file_meta.TransferSyntaxUID = ImplicitVRLittleEndian
    _new_instance(ds, "private-nested-implicit")
    cases.append(_save(ds, out / "private-nested-implicit.dcm"))
    return [c for c in (_case_for(p, f"private: {p.stem}") for p in cases) if c is not None]


def build_corpus(out: Path) -> list[CorpusCase]:
    """Every corpus case; variants are written into ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    cases: list[CorpusCase] = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pydicom warns about the odd files: they are the point
        for path in sorted({*get_testdata_files("*.dcm"), *get_charset_files("*.dcm")}):
            case = _case_for(Path(path), Path(path).name)
            if case is not None:
                cases.append(case)
        cases += _as_ct_variants(out)
        cases += _charset_variants(out)
        cases += _private_variants(out)
    return cases
