"""Study manifests: header facts about every series of a study, what routing rules look at.

Headers only (``dcmread(stop_before_pixels=True)``): a 1000-image study is read without touching
pixel data. Two entry points share one builder:

* :func:`build_manifest` — a study folder (staging, or any layout for ``ctnode rules test``),
  read recursively; unreadable files are skipped with a logged reason and counted.
* :func:`build_manifest_from_headers` — header datasets already in memory (the Orthanc path fetches
  them over HTTP).

Per series:

* instances are sorted by position along the slice normal (ImagePositionPatient · (row × column
  direction cosines of ImageOrientationPatient), PS3.3 C.7.6.2.1.1), increasing, ties broken by
  InstanceNumber then SOP Instance UID; when any instance lacks a position or orientation, or the
  orientations differ (a localizer series), by InstanceNumber (missing last) then SOP Instance UID;
* ``slice_thickness_mm`` is SliceThickness (0018,0050) of the first instance (for multi-frame
  objects from the Shared Functional Groups' Pixel Measures, PS3.3 C.7.6.16.2.1); when absent, the
  median spacing of the sorted positions (logged; match reasons say "derived" when
  ``attributes`` has no ``SliceThickness``);
* ``image_count`` counts frames (NumberOfFrames, default 1 per instance);
* ``is_node_result`` is true when any instance is a result (:mod:`dicom_node.node_results`: a
  derived SOP class, this node's Manufacturer, or a UID under this node's own UID root);
* ``attributes`` holds the first instance's top-level, non-sequence, non-binary attributes that
  have a keyword, as strings (several values joined with ``\\``), EXCEPT patient identifiers
  (:data:`dicom_node.phi.PHI_KEYWORDS`) and every person name (VR PN).
"""

from __future__ import annotations

import itertools
import logging
import math
import statistics
import struct
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError
from pydicom.multival import MultiValue

from dicom_node.contracts import CompletionReason, SeriesManifest, StudyManifest, StudySource
from dicom_node.errors import PermanentError
from dicom_node.node_results import NodeIdentity, node_result_reason
from dicom_node.phi import PHI_KEYWORDS
from dicom_node.routing.rules import UNMATCHABLE_VRS

logger = logging.getLogger(__name__)

# Files in a study folder that are not instances (staging markers, partial writes): not read.
_NOT_INSTANCE_SUFFIXES = (".json", ".tmp", ".part", ".partial", ".lock")

# Errors pydicom raises on files that are not (complete) DICOM; such a file is skipped and counted.
_READ_ERRORS = (
    InvalidDicomError,
    OSError,
    EOFError,
    ValueError,
    TypeError,
    KeyError,
    IndexError,
    AttributeError,
    NotImplementedError,
    struct.error,
)
# Errors converting one element's value (odd VRs, bad character sets): that element is left out.
_VALUE_ERRORS = (ValueError, TypeError, LookupError, NotImplementedError, AttributeError)

_PARALLEL_COSINE = 0.9999  # normals within ~0.8° count as one orientation


@dataclass(frozen=True)
class SkippedFile:
    path: str  # relative to the folder read
    reason: str


@dataclass
class HeaderScan:
    """What :func:`read_headers` found: header datasets, and files it could not use."""

    datasets: list[Dataset] = field(default_factory=list)
    skipped: list[SkippedFile] = field(default_factory=list)


def is_node_result(dataset: Dataset, *, uid_root: str, manufacturer: str) -> bool:
    """True for an object this node made (or could have made): never routed as input.

    :func:`dicom_node.node_results.node_result_reason` decides, as for the SCP and the Orthanc plugin.
    """
    return (
        node_result_reason(
            sop_class_uid=str(dataset.get("SOPClassUID", "")),
            series_instance_uid=str(dataset.get("SeriesInstanceUID", "")),
            sop_instance_uid=str(dataset.get("SOPInstanceUID", "")),
            manufacturer=str(dataset.get("Manufacturer", "") or ""),
            identity=NodeIdentity(uid_root=uid_root, manufacturer=manufacturer),
        )
        is not None
    )


# ---------------------------------------------------------------------------------------------
# Reading
# ---------------------------------------------------------------------------------------------


def iter_headers(folder: Path, skipped: list[SkippedFile]) -> Iterator[Dataset]:
    """Header datasets of every DICOM file under ``folder`` (recursive, any layout, sorted paths).

    Files that cannot be read, or lack Study/Series/SOP Instance UIDs, are appended to
    ``skipped`` and logged (path relative to ``folder`` and the error kind; never tag values).
    Hidden files and staging side files (``*.json``, ``*.tmp``, ...) are passed over silently.
    """
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        relative = path.relative_to(folder)
        if any(part.startswith(".") for part in relative.parts) or path.name.endswith(_NOT_INSTANCE_SUFFIXES):
            continue
        try:
            # force=True reads files without the 128-byte preamble (some exports); the UID check
            # below rejects whatever non-DICOM that lets through.
            dataset = dcmread(path, stop_before_pixels=True, force=True)
            missing = [
                k for k in ("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID") if not dataset.get(k)
            ]
        except _READ_ERRORS as exc:
            reason = f"unreadable ({type(exc).__name__})"
        else:
            if not missing:
                yield dataset
                continue
            reason = f"not a DICOM instance (no {', '.join(missing)})"
        skipped.append(SkippedFile(str(relative), reason))
        logger.warning("skipping file in study folder", extra={"file": str(relative), "reason": reason})


def read_headers(folder: Path) -> HeaderScan:
    """Every header under ``folder`` in memory (the CLI groups them by study)."""
    scan = HeaderScan()
    scan.datasets.extend(iter_headers(folder, scan.skipped))
    return scan


def group_by_study(datasets: Iterable[Dataset]) -> dict[str, list[Dataset]]:
    """Header datasets by StudyInstanceUID, in first-seen order."""
    out: dict[str, list[Dataset]] = {}
    for dataset in datasets:
        out.setdefault(str(dataset.StudyInstanceUID), []).append(dataset)
    return out


def build_manifest(
    study_dir: Path,
    *,
    source: StudySource,
    calling_ae_title: str = "",
    called_ae_title: str = "",
    completion_reason: CompletionReason | None = None,
    uid_root: str,
    manufacturer: str,
) -> StudyManifest:
    """The manifest of the one study whose instances lie under ``study_dir``.

    Raises :class:`~dicom_node.errors.PermanentError` when no instance is readable or the folder
    holds several studies (staging keeps one study per folder: anything else is a bug upstream).
    """
    skipped: list[SkippedFile] = []
    manifest = build_manifest_from_headers(
        iter_headers(study_dir, skipped),
        source=source,
        calling_ae_title=calling_ae_title,
        called_ae_title=called_ae_title,
        completion_reason=completion_reason,
        uid_root=uid_root,
        manufacturer=manufacturer,
    )
    if skipped:
        logger.warning(
            "study folder has unreadable files",
            extra={"study": manifest.study_instance_uid, "skipped_files": len(skipped)},
        )
    return manifest


def build_manifest_from_headers(
    datasets: Iterable[Dataset],
    *,
    source: StudySource,
    calling_ae_title: str = "",
    called_ae_title: str = "",
    completion_reason: CompletionReason | None = None,
    uid_root: str,
    manufacturer: str,
) -> StudyManifest:
    """The manifest of one study from its instances' header datasets (pixel data not needed).

    Only a few facts per instance are kept while iterating, so a generator of datasets is read
    in constant memory per instance. A dataset without the three instance UIDs is skipped.
    """
    study_uids: set[str] = set()
    builders: dict[str, _SeriesBuilder] = {}
    for dataset in datasets:
        try:
            study_uid = str(dataset.StudyInstanceUID)
            series_uid = str(dataset.SeriesInstanceUID)
            str(dataset.SOPInstanceUID)
        except AttributeError:
            logger.warning("header without Study/Series/SOP Instance UID skipped")
            continue
        study_uids.add(study_uid)
        builder = builders.get(series_uid)
        if builder is None:
            builder = builders[series_uid] = _SeriesBuilder(series_uid)
        builder.add(dataset, uid_root=uid_root, manufacturer=manufacturer)
    if not study_uids:
        raise PermanentError("no readable DICOM instance for this study")
    if len(study_uids) > 1:
        raise PermanentError(f"instances of {len(study_uids)} studies where one was expected")
    series = sorted((b.finish() for b in builders.values()), key=_series_order)
    return StudyManifest(
        study_instance_uid=study_uids.pop(),
        calling_ae_title=calling_ae_title.strip(),
        called_ae_title=called_ae_title.strip(),
        source=source,
        completion_reason=completion_reason,
        series=tuple(series),
    )


def _series_order(series: SeriesManifest) -> tuple[bool, int, str]:
    return (series.series_number is None, series.series_number or 0, series.series_instance_uid)


# ---------------------------------------------------------------------------------------------
# Per-series assembly
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Instance:
    sop_instance_uid: str
    instance_number: int | None
    normal: tuple[float, float, float] | None
    position_mm: float | None  # along this instance's own normal
    frames: int


class _SeriesBuilder:
    """Facts of one series' instances; keeps whole headers only of the two candidate 'firsts'."""

    def __init__(self, series_instance_uid: str) -> None:
        self.series_instance_uid = series_instance_uid
        self.instances: list[_Instance] = []
        self.node_result = False
        # The first instance is the lowest by position or, in the fallback, by InstanceNumber:
        # keep the header facts of the current best of each ordering.
        self._first_by_position: tuple[tuple[float, int, str], Dataset] | None = None
        self._first_by_number: tuple[tuple[bool, int, str], Dataset] | None = None

    def add(self, dataset: Dataset, *, uid_root: str, manufacturer: str) -> None:
        instance = _instance_facts(dataset)
        self.instances.append(instance)
        self.node_result = self.node_result or is_node_result(
            dataset, uid_root=uid_root, manufacturer=manufacturer
        )
        number_key = _number_key(instance)
        if self._first_by_number is None or number_key < self._first_by_number[0]:
            self._first_by_number = (number_key, dataset)
        if instance.position_mm is not None:
            position_key = (instance.position_mm, number_key[1], instance.sop_instance_uid)
            if self._first_by_position is None or position_key < self._first_by_position[0]:
                self._first_by_position = (position_key, dataset)

    def finish(self) -> SeriesManifest:
        by_position = self._positions_usable()
        if by_position:
            ordered = sorted(
                self.instances,
                key=lambda i: (i.position_mm, _number_key(i)[1], i.sop_instance_uid),
            )
            assert self._first_by_position is not None
            first = _Header.of(self._first_by_position[1])
        else:
            ordered = sorted(self.instances, key=_number_key)
            assert self._first_by_number is not None
            first = _Header.of(self._first_by_number[1])
            if len(self.instances) > 1:
                logger.debug(
                    "series sorted by InstanceNumber (no usable positions)",
                    extra={"series": self.series_instance_uid},
                )
        thickness = first.slice_thickness_mm
        if thickness is None and by_position:
            thickness = _position_spacing_mm(ordered)
            if thickness is not None:
                logger.debug(
                    "slice thickness from position spacing (no SliceThickness)",
                    extra={"series": self.series_instance_uid, "slice_thickness_mm": thickness},
                )
        return SeriesManifest(
            series_instance_uid=self.series_instance_uid,
            modality=first.modality,
            sop_class_uid=first.sop_class_uid,
            series_number=first.series_number,
            series_description=first.series_description,
            body_part_examined=first.body_part_examined,
            slice_thickness_mm=thickness,
            image_count=sum(i.frames for i in self.instances),
            sop_instance_uids=tuple(i.sop_instance_uid for i in ordered),
            is_node_result=self.node_result,
            attributes=first.attributes,
        )

    def _positions_usable(self) -> bool:
        normals = [i.normal for i in self.instances]
        if any(n is None or i.position_mm is None for n, i in zip(normals, self.instances, strict=True)):
            return False
        reference = normals[0]
        assert reference is not None
        return all(n is not None and _dot(n, reference) >= _PARALLEL_COSINE for n in normals)


def _number_key(instance: _Instance) -> tuple[bool, int, str]:
    number = instance.instance_number
    return (number is None, number if number is not None else 0, instance.sop_instance_uid)


@dataclass(frozen=True)
class _Header:
    """The header facts a SeriesManifest takes from its first instance."""

    modality: str
    sop_class_uid: str
    series_number: int | None
    series_description: str
    body_part_examined: str
    slice_thickness_mm: float | None
    attributes: dict[str, str]

    @classmethod
    def of(cls, dataset: Dataset) -> _Header:
        return cls(
            modality=_text(dataset, "Modality"),
            sop_class_uid=_text(dataset, "SOPClassUID"),
            series_number=_integer(dataset, "SeriesNumber"),
            series_description=_text(dataset, "SeriesDescription"),
            body_part_examined=_text(dataset, "BodyPartExamined"),
            slice_thickness_mm=_slice_thickness_mm(dataset),
            attributes=manifest_attributes(dataset),
        )


def manifest_attributes(dataset: Dataset) -> dict[str, str]:
    """Top-level attributes with a keyword, as strings, minus sequences, binary, PHI and names."""
    out: dict[str, str] = {}
    for tag in list(dataset.keys()):
        if tag.is_private or tag.group == 0x0002:
            continue
        try:
            element = dataset[tag]
            keyword = element.keyword
            if not keyword or keyword in PHI_KEYWORDS or element.VR == "PN":
                continue
            if element.VR in UNMATCHABLE_VRS:
                continue
            text = _value_text(element.value)
        except _VALUE_ERRORS:
            continue
        if text is not None:
            out[keyword] = text
    return out


def _value_text(value: object) -> str | None:
    if value is None:
        return ""
    if isinstance(value, bytes | bytearray):
        return None
    if isinstance(value, MultiValue | list | tuple):
        parts = [_value_text(v) for v in value]
        if any(p is None for p in parts):
            return None
        return "\\".join(p for p in parts if p is not None)
    return str(value).strip()


def _instance_facts(dataset: Dataset) -> _Instance:
    normal = _normal(dataset)
    position = _position(dataset)
    return _Instance(
        sop_instance_uid=str(dataset.SOPInstanceUID),
        instance_number=_integer(dataset, "InstanceNumber"),
        normal=normal,
        position_mm=_dot(position, normal) if position is not None and normal is not None else None,
        frames=max(_integer(dataset, "NumberOfFrames") or 1, 1),
    )


def _floats(dataset: Dataset, keyword: str, count: int) -> tuple[float, ...] | None:
    try:
        value = dataset.get(keyword)
        if value is None:
            return None
        numbers = tuple(float(v) for v in value)
    except _VALUE_ERRORS:
        return None
    if len(numbers) != count or not all(math.isfinite(n) for n in numbers):
        return None
    return numbers


def _normal(dataset: Dataset) -> tuple[float, float, float] | None:
    """Unit slice normal: row direction × column direction (PS3.3 C.7.6.2.1.1)."""
    cosines = _floats(dataset, "ImageOrientationPatient", 6)
    if cosines is None:
        return None
    rx, ry, rz, cx, cy, cz = cosines
    n = (ry * cz - rz * cy, rz * cx - rx * cz, rx * cy - ry * cx)
    length = math.sqrt(_dot(n, n))
    if length < 1e-6:
        return None
    return (n[0] / length, n[1] / length, n[2] / length)


def _position(dataset: Dataset) -> tuple[float, float, float] | None:
    numbers = _floats(dataset, "ImagePositionPatient", 3)
    return (numbers[0], numbers[1], numbers[2]) if numbers is not None else None


def _dot(a: tuple[float, float, float], b: tuple[float, float, float]) -> float:
    return a[0] * b[0] + a[1] * b[1] + a[2] * b[2]


def _position_spacing_mm(ordered: list[_Instance]) -> float | None:
    positions = [i.position_mm for i in ordered if i.position_mm is not None]
    gaps = [b - a for a, b in itertools.pairwise(positions) if b - a > 1e-4]
    if not gaps:
        return None
    return round(statistics.median(gaps), 3)


def _slice_thickness_mm(dataset: Dataset) -> float | None:
    value = _positive_float(dataset, "SliceThickness")
    if value is not None:
        return value
    # Enhanced (multi-frame) objects keep it in the Pixel Measures functional group.
    try:
        shared = dataset.get("SharedFunctionalGroupsSequence")
        if shared:
            measures = shared[0].get("PixelMeasuresSequence")
            if measures:
                return _positive_float(measures[0], "SliceThickness")
    except _VALUE_ERRORS:
        return None
    return None


def _positive_float(dataset: Dataset, keyword: str) -> float | None:
    try:
        raw = dataset.get(keyword)
        value = float(raw) if raw not in (None, "") else None
    except _VALUE_ERRORS:
        return None
    if value is None or not math.isfinite(value) or value <= 0:
        return None
    return round(value, 6)


def _integer(dataset: Dataset, keyword: str) -> int | None:
    try:
        raw = dataset.get(keyword)
        return int(raw) if raw not in (None, "") else None
    except _VALUE_ERRORS:
        return None


def _text(dataset: Dataset, keyword: str) -> str:
    try:
        value = dataset.get(keyword)
    except _VALUE_ERRORS:
        return ""
    return "" if value is None else str(value).strip()
