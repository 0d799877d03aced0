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
* instances are classified one by one (:mod:`dicom_node.node_results`: a derived SOP class,
  this node's Manufacturer, or a UID under this node's own UID root make a result). A series is
  what its input instances are: those of its most common input SOP class. Result objects and
  instances of another SOP class filed in it (a Secondary Capture inside a 60-slice CT series)
  are **set aside**: left out of ``sop_instance_uids``, ``image_count`` and the first-instance
  facts, listed in ``set_aside`` with the reason, and logged. ``is_node_result`` is true only for
  a series with no input instance at all (a SEG series, our own results stored back);
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
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError
from pydicom.multival import MultiValue
from pydicom.uid import UID

from dicom_node.contracts import (
    CompletionReason,
    SeriesManifest,
    SetAsideInstance,
    StudyManifest,
    StudySource,
)
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
    sop_class_uid: str
    instance_number: int | None
    normal: tuple[float, float, float] | None
    position_mm: float | None  # along this instance's own normal
    frames: int
    result_reason: str | None  # why it is a node result (dicom_node.node_results), or None


class _Firsts:
    """The current lowest instance by position and by InstanceNumber, with its whole header."""

    def __init__(self) -> None:
        self.by_position: tuple[tuple[float, int, str], Dataset] | None = None
        self.by_number: tuple[tuple[bool, int, str], Dataset] | None = None

    def offer(self, instance: _Instance, dataset: Dataset) -> None:
        number_key = _number_key(instance)
        if self.by_number is None or number_key < self.by_number[0]:
            self.by_number = (number_key, dataset)
        if instance.position_mm is not None:
            position_key = (instance.position_mm, number_key[1], instance.sop_instance_uid)
            if self.by_position is None or position_key < self.by_position[0]:
                self.by_position = (position_key, dataset)

    def merge(self, other: _Firsts) -> None:
        for attribute in ("by_position", "by_number"):
            mine, theirs = getattr(self, attribute), getattr(other, attribute)
            if theirs is not None and (mine is None or theirs[0] < mine[0]):
                setattr(self, attribute, theirs)


class _SeriesBuilder:
    """Facts of one series' instances, classified one by one (issue 12 item 9: a stray object
    must not decide for the whole series). Whole headers are kept only of the candidate 'firsts'
    of each (input or result, SOP class) group."""

    def __init__(self, series_instance_uid: str) -> None:
        self.series_instance_uid = series_instance_uid
        self.instances: list[_Instance] = []
        self._firsts: dict[tuple[bool, str], _Firsts] = {}

    def add(self, dataset: Dataset, *, uid_root: str, manufacturer: str) -> None:
        reason = node_result_reason(
            sop_class_uid=str(dataset.get("SOPClassUID", "")),
            series_instance_uid=str(dataset.get("SeriesInstanceUID", "")),
            sop_instance_uid=str(dataset.get("SOPInstanceUID", "")),
            manufacturer=_text(dataset, "Manufacturer"),
            identity=NodeIdentity(uid_root=uid_root, manufacturer=manufacturer),
        )
        instance = _instance_facts(dataset, result_reason=reason)
        self.instances.append(instance)
        group = (reason is None, instance.sop_class_uid)
        self._firsts.setdefault(group, _Firsts()).offer(instance, dataset)

    def _classify(self) -> tuple[list[_Instance], list[SetAsideInstance], bool, _Firsts]:
        """(kept instances, set aside, is_node_result, firsts of the kept ones).

        The series is what its input instances are: those of the most common input SOP class
        (ties: the lower UID). Result objects and input instances of another class filed in it
        are set aside. Only a series without any input instance is a node result, whole.
        """
        inputs = [i for i in self.instances if i.result_reason is None]
        firsts = _Firsts()
        if not inputs:
            for group in self._firsts.values():
                firsts.merge(group)
            return list(self.instances), [], True, firsts
        counts = Counter(i.sop_class_uid for i in inputs)
        dominant = min(counts, key=lambda uid: (-counts[uid], uid))
        firsts.merge(self._firsts[(True, dominant)])
        kept = [i for i in inputs if i.sop_class_uid == dominant]
        set_aside = [
            SetAsideInstance(
                sop_instance_uid=i.sop_instance_uid,
                sop_class_uid=i.sop_class_uid,
                reason=i.result_reason
                or f"{_class_name(i.sop_class_uid)} in a series of {_class_name(dominant)}",
            )
            for i in self.instances
            if i.result_reason is not None or i.sop_class_uid != dominant
        ]
        return kept, set_aside, False, firsts

    def finish(self) -> SeriesManifest:
        kept, set_aside, node_result, firsts = self._classify()
        if set_aside:
            logger.warning(
                "series: %d of %d instances set aside (%s)",
                len(set_aside),
                len(self.instances),
                "; ".join(sorted({item.reason for item in set_aside})),
                extra={"series": self.series_instance_uid},
            )
        by_position = _positions_usable(kept)
        if by_position:
            ordered = sorted(kept, key=lambda i: (i.position_mm, _number_key(i)[1], i.sop_instance_uid))
            assert firsts.by_position is not None
            first = _Header.of(firsts.by_position[1])
        else:
            ordered = sorted(kept, key=_number_key)
            assert firsts.by_number is not None
            first = _Header.of(firsts.by_number[1])
            if len(kept) > 1:
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
            image_count=sum(i.frames for i in kept),
            sop_instance_uids=tuple(i.sop_instance_uid for i in ordered),
            is_node_result=node_result,
            set_aside=tuple(sorted(set_aside, key=lambda item: item.sop_instance_uid)),
            attributes=first.attributes,
        )


def _positions_usable(instances: list[_Instance]) -> bool:
    normals = [i.normal for i in instances]
    if any(n is None or i.position_mm is None for n, i in zip(normals, instances, strict=True)):
        return False
    reference = normals[0]
    assert reference is not None
    return all(n is not None and _dot(n, reference) >= _PARALLEL_COSINE for n in normals)


def _class_name(sop_class_uid: str) -> str:
    name = UID(sop_class_uid).name if sop_class_uid else ""
    return name if name and name != sop_class_uid else f"SOP class {sop_class_uid or '(none)'}"


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


def _instance_facts(dataset: Dataset, *, result_reason: str | None) -> _Instance:
    normal = _normal(dataset)
    position = _position(dataset)
    return _Instance(
        sop_instance_uid=str(dataset.SOPInstanceUID),
        sop_class_uid=_text(dataset, "SOPClassUID"),
        instance_number=_integer(dataset, "InstanceNumber"),
        normal=normal,
        position_mm=_dot(position, normal) if position is not None and normal is not None else None,
        frames=max(_integer(dataset, "NumberOfFrames") or 1, 1),
        result_reason=result_reason,
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
