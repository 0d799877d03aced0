"""TID 1500 Measurement Report as a Comprehensive 3D SR (PS3.16 TID 1500), built with highdicom.

Content, under the "Imaging Measurements" container:

* **Planar groups (TID 1410), always** — what viewers show. For every segment, a closed POLYLINE
  rectangle (SCOORD, pixel coordinates (column, row), PS3.3 C.18.6.1.1) around the segment on its
  key slice (the slice where it has most voxels), with the box width and depth in mm. For every
  detection (``BoxFinding``), its box on its key slice with its 3D size, volume and mean HU where
  known. For every localised report snippet, a CIRCLE (radius 5 mm) around the localised point on
  its slice. Each SCOORD carries the IMAGE reference of its slice.
* **Volumetric groups (TID 1411), optional** — one per segment with voxels, referencing the SEG
  segment (exactly one of region / surface / segment, as TID 1411 requires). Measurements: volume
  (mL, sum of segmented voxels, computed here from the label map and the source geometry so it
  matches the SEG it points at), mean and standard deviation of attenuation (HU, from the
  pipeline's measurements).
  *The 3D bounding box* follows in a TID 1501 group with the same tracking identifier (TID 1411
  measurements may not carry coordinates): three length measurements — Width (along the image
  rows' direction, i.e. across columns), Depth (along the columns' direction, down the rows) and
  Height (along the slice normal) — each INFERRED FROM an SCOORD3D POLYLINE of two points: the
  box's first corner and the far end of that edge, in LPS mm of the source Frame of Reference.
  Corner + the three edges give the whole box (edge to edge around the voxels).
  OHIF 3.13 crashes on groups without image coordinates (dicom-notes.md), so the "viewer-safe"
  profile (result kind "sr-planar") leaves them out.
* Free text: highdicom has no API for TEXT in measurement groups, so each group gets a TEXT item
  "Comment" (DCM 121106) appended: the segment's description or the finding's sentence. (Not
  "Finding" (DCM 121071): that concept is the group's coded finding type.) The report summary
  ("Impression", DCM 121073) and the model's one-line descriptions ("Comment") go into a
  "Qualitative Evaluations" container (UMLS C0034375, TID 1500 row 12) as TEXT items.

UIDs: every tracking UID comes from ``uid_for(role)`` (the bundle derives them from the job id);
segment groups reuse the SEG segment's Tracking UID so a reader can join SR and SEG.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

import highdicom as hd
import numpy as np
from highdicom.sr.templates import Template
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence as DicomSequence
from pydicom.sr.codedict import codes

from dicom_node.constants import LABEL_MAP_SEGMENTATION_STORAGE, SEGMENTATION_STORAGE
from dicom_node.contracts import (
    AnalysisResult,
    BoxFinding,
    ResultFile,
    SegmentDescription,
    SegmentMeasurement,
    SnippetLocation,
)
from dicom_node.result_kinds import ResultKind
from dicom_node.results.coding import CT_PROCEDURE, UCUM_HU, UCUM_ML, UCUM_MM, coded, long_string
from dicom_node.results.inputs import EncodeInputs, SkipKind, save_dataset
from dicom_node.results.labels import LabelBox, LabelStats
from dicom_node.results.provenance import stamp_datetime, uuid_uid
from dicom_node.results.sources import SourceVolume

COMMENT = hd.sr.CodedConcept("121106", "DCM", "Comment")
IMPRESSION = hd.sr.CodedConcept("121073", "DCM", "Impression")
QUALITATIVE_EVALUATIONS = hd.sr.CodedConcept("C0034375", "UMLS", "Qualitative Evaluations")
VOLUME = codes.SCT.Volume
ATTENUATION = codes.DCM.AttenuationCoefficient
WIDTH = codes.SCT.Width
DEPTH = codes.SCT.Depth
HEIGHT = codes.DCM.Height
MEAN = codes.SCT.Mean
STANDARD_DEVIATION = codes.SCT.StandardDeviation
SUM_OF_VOXELS = codes.DCM.SumOfSegmentedVoxelMethodForVolume
SNIPPET_RADIUS_MM = 5.0


@dataclass(frozen=True)
class SegReference:
    """The SEG the volumetric groups point at."""

    sop_class_uid: str
    sop_instance_uid: str
    series_instance_uid: str


SEG_SOP_CLASSES = frozenset({SEGMENTATION_STORAGE, LABEL_MAP_SEGMENTATION_STORAGE})


def _text(value: str, name: hd.sr.CodedConcept = COMMENT) -> hd.sr.TextContentItem:
    return hd.sr.TextContentItem(name=name, value=value, relationship_type="CONTAINS")


def _append(group: Template, item: hd.sr.ContentItem) -> None:
    """Add a content item under a measurement group's container (highdicom has no API for TEXT)."""
    group[0].ContentSequence.append(item)


def rectangle_pixels(row0: int, column0: int, row1: int, column1: int) -> np.ndarray:
    """Closed rectangle around inclusive pixel bounds, (column, row) with (0,0) the top-left corner
    of the top-left pixel (PS3.3 C.18.6.1.1, C.10.5.1.2): it encloses the pixels, edge to edge."""
    left, top, right, bottom = float(column0), float(row0), float(column1 + 1), float(row1 + 1)
    return np.array(
        [[left, top], [right, top], [right, bottom], [left, bottom], [left, top]], dtype=np.float32
    )


def _region(
    volume: SourceVolume, slice_index: int, graphic_type: str, points: np.ndarray
) -> hd.sr.ImageRegion:
    source = volume.slices[slice_index]
    return hd.sr.ImageRegion(
        graphic_type=graphic_type,
        graphic_data=points,
        source_image=hd.sr.SourceImageForRegion(
            referenced_sop_class_uid=source.sop_class_uid,
            referenced_sop_instance_uid=source.sop_instance_uid,
            referenced_frame_numbers=source.frame_numbers,
        ),
    )


def _length(
    name: hd.sr.CodedConcept, value_mm: float, coordinates: np.ndarray | None, volume: SourceVolume
) -> hd.sr.Measurement:
    referenced = None
    if coordinates is not None:
        referenced = [
            hd.sr.CoordinatesForMeasurement3D(
                graphic_type=hd.sr.GraphicTypeValues3D.POLYLINE,
                graphic_data=coordinates.astype(np.float64),
                frame_of_reference_uid=volume.frame_of_reference_uid,
            )
        ]
    return hd.sr.Measurement(
        name=name, value=round(value_mm, 2), unit=UCUM_MM, referenced_coordinates=referenced
    )


def box_extents(volume: SourceVolume, box: LabelBox) -> list[tuple[hd.sr.CodedConcept, float, np.ndarray]]:
    """(Width, Depth, Height) of a voxel box in mm, each with its edge as two LPS points.

    The box encloses its voxels edge to edge: it starts half a voxel before the first voxel centre.
    """
    corner_index = np.array([box.slice0, box.row0, box.column0], dtype=np.float64) - 0.5
    counts = np.array([box.slice1 - box.slice0 + 1, box.row1 - box.row0 + 1, box.column1 - box.column0 + 1])
    corner = volume.to_lps(corner_index)
    out = []
    for name, axis in ((WIDTH, 2), (DEPTH, 1), (HEIGHT, 0)):
        far_index = corner_index.copy()
        far_index[axis] += counts[axis]
        far = volume.to_lps(far_index)
        out.append((name, float(np.linalg.norm(far - corner)), np.stack([corner, far])))
    return out


def _attenuation(
    measurement: SegmentMeasurement | None, *, mean_hu: float | None = None
) -> list[hd.sr.Measurement]:
    out = []
    mean = measurement.mean_hu if measurement is not None else mean_hu
    if mean is not None:
        out.append(hd.sr.Measurement(name=ATTENUATION, value=round(mean, 1), unit=UCUM_HU, derivation=MEAN))
    if measurement is not None:
        out.append(
            hd.sr.Measurement(
                name=ATTENUATION,
                value=round(measurement.std_hu, 1),
                unit=UCUM_HU,
                derivation=STANDARD_DEVIATION,
            )
        )
    return out


def build_sr(
    sources: Sequence[Dataset],
    stats: LabelStats,
    analysis: AnalysisResult,
    *,
    volume: SourceVolume,
    seg: SegReference | None,
    series_instance_uid: str,
    sop_instance_uid: str,
    series_number: int,
    manufacturer: str,
    tracking_uids: Mapping[int, str],
    uid_for: Callable[[str], str] | None = None,
    include_volumetric_groups: bool = True,
    series_description: str = "",
    content_datetime: datetime | None = None,
    reference_document: bool = False,
) -> hd.sr.Comprehensive3DSR:
    """The TID 1500 report for ``analysis`` over ``sources`` (headers in volume order).

    ``reference_document=True`` lets highdicom build the document from the full content tree
    (slower; the tests check that the default path gives the same dataset).
    """
    make_uid = uid_for or (lambda role: uuid_uid(sop_instance_uid, role))
    algorithm = hd.sr.AlgorithmIdentification(
        name=analysis.algorithm_name, version=analysis.algorithm_version
    )
    measured = {m.segment_number: m for m in analysis.measurements}
    groups: list[
        hd.sr.PlanarROIMeasurementsAndQualitativeEvaluations
        | hd.sr.VolumetricROIMeasurementsAndQualitativeEvaluations
        | hd.sr.MeasurementsAndQualitativeEvaluations
    ] = []

    for segment in analysis.segments:
        own = _own_algorithm(segment.algorithm_name, segment.algorithm_version, algorithm)
        group = _segment_planar_group(segment, stats, volume=volume, algorithm=own, make_uid=make_uid)
        if group is not None:
            groups.append(group)
    for index, finding in enumerate(analysis.findings):
        own = _own_algorithm(finding.algorithm_name, finding.algorithm_version, algorithm)
        groups.append(_finding_group(index, finding, volume=volume, algorithm=own, make_uid=make_uid))
    for index, snippet in enumerate(analysis.snippets):
        groups.append(_snippet_group(index, snippet, volume=volume, algorithm=algorithm, make_uid=make_uid))
    if include_volumetric_groups and seg is not None:
        for segment in analysis.segments:
            box = stats.box(segment.segment_number)
            if box is None:
                continue
            tracking_uid = tracking_uids[segment.segment_number]
            groups.append(
                _segment_volumetric_group(
                    segment,
                    box,
                    voxel_count=stats.voxel_count(segment.segment_number),
                    measurement=measured.get(segment.segment_number),
                    volume=volume,
                    seg=seg,
                    algorithm=_own_algorithm(segment.algorithm_name, segment.algorithm_version, algorithm),
                    tracking_uid=tracking_uid,
                )
            )
            groups.append(
                _segment_box_group(
                    segment,
                    box,
                    volume=volume,
                    algorithm=_own_algorithm(segment.algorithm_name, segment.algorithm_version, algorithm),
                    tracking_uid=tracking_uid,
                )
            )

    if not groups:
        # Nothing found. highdicom needs a measurement group (TID 1500 allows Qualitative
        # Evaluations alone), so one TID 1501 group says so, referencing the middle slice.
        groups.append(_summary_group(analysis, volume=volume, algorithm=algorithm, make_uid=make_uid))
    observer = hd.sr.ObserverContext(
        observer_type=codes.DCM.Device,
        observer_identifying_attributes=hd.sr.DeviceObserverIdentifyingAttributes(
            uid=make_uid("sr-observer-device"),
            name=long_string(analysis.algorithm_name),
            manufacturer_name=long_string(manufacturer),
            model_name=long_string(f"{analysis.algorithm_name} {analysis.algorithm_version}"),
        ),
    )
    report = hd.sr.MeasurementReport(
        observation_context=hd.sr.ObservationContext(observer_device_context=observer),
        procedure_reported=CT_PROCEDURE,
        imaging_measurements=groups or None,
        title=codes.DCM.ImagingMeasurementReport,
    )
    texts = [_text(analysis.summary, IMPRESSION)] if analysis.summary else []
    texts += [_text(t) for t in analysis.descriptions if t]
    if texts:
        evaluations = hd.sr.ContainerContentItem(name=QUALITATIVE_EVALUATIONS, relationship_type="CONTAINS")
        evaluations.ContentSequence = DicomSequence(texts)
        report[0].ContentSequence.append(evaluations)

    evidence = list(_unique_instances(sources))
    if seg is not None and include_volumetric_groups:
        evidence.append(_stub(sources[0], seg))
    document = {
        "evidence": evidence,
        "series_instance_uid": series_instance_uid,
        "series_number": series_number,
        "sop_instance_uid": sop_instance_uid,
        "instance_number": 1,
        "manufacturer": manufacturer,
        "is_complete": True,
        "is_final": False,  # not verified by a person (PS3.3 C.17.2: VerificationFlag UNVERIFIED)
    }
    root = report[0]
    if reference_document:
        sr = hd.sr.Comprehensive3DSR(content=root, **document)  # type: ignore[arg-type]
    else:
        # highdicom deep-copies, re-parses and searches the whole content tree (about 2 s for 20
        # organs on this machine). The document is made from the root container with only its first
        # child (highdicom needs one) and the children are attached afterwards: the same dataset,
        # since every reference in the tree points at the evidence given (tests compare both ways).
        light = Dataset()
        for element in root:
            if element.keyword != "ContentSequence":
                light.add(element)
        light.ContentSequence = DicomSequence([root.ContentSequence[0]])  # the language item
        sr = hd.sr.Comprehensive3DSR(content=light, **document)  # type: ignore[arg-type]
        sr.ContentSequence = root.ContentSequence
    if series_description:
        sr.SeriesDescription = series_description[:64]
    stamp_datetime(sr, content_datetime or datetime.now())
    return sr


def _summary_group(
    analysis: AnalysisResult,
    *,
    volume: SourceVolume,
    algorithm: hd.sr.AlgorithmIdentification,
    make_uid: Callable[[str], str],
) -> hd.sr.MeasurementsAndQualitativeEvaluations:
    middle = volume.slices[len(volume.slices) // 2]
    group = hd.sr.MeasurementsAndQualitativeEvaluations(
        tracking_identifier=hd.sr.TrackingIdentifier(uid=make_uid("sr-summary"), identifier="AI result"),
        algorithm_id=algorithm,
        source_images=[
            hd.sr.SourceImageForMeasurementGroup(
                referenced_sop_class_uid=middle.sop_class_uid,
                referenced_sop_instance_uid=middle.sop_instance_uid,
                referenced_frame_numbers=middle.frame_numbers,
            )
        ],
    )
    _append(group, _text(analysis.summary or "No structures segmented and no findings."))
    return group


def _unique_instances(sources: Sequence[Dataset]) -> list[Dataset]:
    seen: set[str] = set()
    out = []
    for ds in sources:
        if str(ds.SOPInstanceUID) not in seen:
            seen.add(str(ds.SOPInstanceUID))
            out.append(ds)
    return out


def _stub(source: Dataset, seg: SegReference) -> Dataset:
    """The SEG as SR evidence: only the identifiers highdicom needs for the evidence sequence."""
    ds = Dataset()
    ds.SOPClassUID = seg.sop_class_uid
    ds.SOPInstanceUID = seg.sop_instance_uid
    ds.SeriesInstanceUID = seg.series_instance_uid
    ds.StudyInstanceUID = source.StudyInstanceUID
    return ds


def _own_algorithm(
    name: str, version: str, default: hd.sr.AlgorithmIdentification
) -> hd.sr.AlgorithmIdentification:
    """The algorithm of one group (TID 4019): the segment's or finding's own when a composed
    answer names it, else the analysis' algorithm."""
    if not name:
        return default
    return hd.sr.AlgorithmIdentification(name=name[:64], version=(version or "unknown")[:64])


def _segment_planar_group(
    segment: SegmentDescription,
    stats: LabelStats,
    *,
    volume: SourceVolume,
    algorithm: hd.sr.AlgorithmIdentification,
    make_uid: Callable[[str], str],
) -> hd.sr.PlanarROIMeasurementsAndQualitativeEvaluations | None:
    key = stats.key_slice(segment.segment_number)
    box = stats.box(segment.segment_number)
    if key is None or box is None:
        return None
    footprint = stats.footprint(segment.segment_number, key)
    assert footprint is not None
    row0, column0, row1, column1 = footprint
    spacing_row, spacing_column = volume.pixel_spacing_mm
    group = hd.sr.PlanarROIMeasurementsAndQualitativeEvaluations(
        tracking_identifier=hd.sr.TrackingIdentifier(
            uid=make_uid(f"sr-segment-{segment.segment_number}-key-slice"),
            identifier=long_string(f"{segment.label} key slice"),
        ),
        referenced_region=_region(volume, key, "POLYLINE", rectangle_pixels(row0, column0, row1, column1)),
        finding_type=coded(segment.type),
        finding_category=coded(segment.category),
        algorithm_id=algorithm,
        measurements=[
            _length(WIDTH, (column1 - column0 + 1) * spacing_column, None, volume),
            _length(DEPTH, (row1 - row0 + 1) * spacing_row, None, volume),
        ],
    )
    if segment.description:
        _append(group, _text(segment.description))
    return group


def _segment_box_group(
    segment: SegmentDescription,
    box: LabelBox,
    *,
    volume: SourceVolume,
    algorithm: hd.sr.AlgorithmIdentification,
    tracking_uid: str,
) -> hd.sr.MeasurementsAndQualitativeEvaluations:
    """TID 1501 group with the segment's 3D bounding box: three edges as SCOORD3D-backed lengths.

    TID 1411 measurements cannot carry coordinates (highdicom enforces it), hence a separate group;
    it shares the segment's tracking identifier, because it describes the same finding.
    """
    return hd.sr.MeasurementsAndQualitativeEvaluations(
        tracking_identifier=hd.sr.TrackingIdentifier(
            uid=tracking_uid, identifier=long_string(segment.tracking_id)
        ),
        finding_type=coded(segment.type),
        finding_category=coded(segment.category),
        algorithm_id=algorithm,
        measurements=[
            _length(name, value, points, volume) for name, value, points in box_extents(volume, box)
        ],
    )


def _finding_group(
    index: int,
    finding: BoxFinding,
    *,
    volume: SourceVolume,
    algorithm: hd.sr.AlgorithmIdentification,
    make_uid: Callable[[str], str],
) -> hd.sr.PlanarROIMeasurementsAndQualitativeEvaluations:
    slice0, row0, column0, slice1, row1, column1 = finding.box_voxels
    box = LabelBox(slice0, row0, column0, slice1, row1, column1)
    key = min(max(finding.key_slice_index, 0), len(volume.slices) - 1)
    measurements = [_length(name, value, None, volume) for name, value, _ in box_extents(volume, box)]
    if finding.volume_ml is not None:
        measurements.append(hd.sr.Measurement(name=VOLUME, value=round(finding.volume_ml, 3), unit=UCUM_ML))
    measurements.extend(_attenuation(None, mean_hu=finding.mean_hu))
    group = hd.sr.PlanarROIMeasurementsAndQualitativeEvaluations(
        tracking_identifier=hd.sr.TrackingIdentifier(
            uid=make_uid(f"sr-finding-{index}"), identifier=long_string(f"{finding.label} {index + 1}")
        ),
        referenced_region=_region(volume, key, "POLYLINE", rectangle_pixels(row0, column0, row1, column1)),
        finding_type=coded(finding.type),
        finding_category=coded(finding.category),
        finding_sites=[hd.sr.FindingSite(coded(finding.finding_site))] if finding.finding_site else None,
        algorithm_id=algorithm,
        measurements=measurements,
    )
    _append(group, _text(f"{finding.text} (score {finding.score:.2f})" if finding.text else finding.label))
    return group


def _snippet_group(
    index: int,
    snippet: SnippetLocation,
    *,
    volume: SourceVolume,
    algorithm: hd.sr.AlgorithmIdentification,
    make_uid: Callable[[str], str],
) -> hd.sr.PlanarROIMeasurementsAndQualitativeEvaluations:
    key = min(max(snippet.slice_index, 0), len(volume.slices) - 1)
    _, row, column = volume.to_index(snippet.point_lps_mm)
    row = float(np.clip(row + 0.5, 0, volume.rows))  # voxel centre → pixel-edge coordinates
    column = float(np.clip(column + 0.5, 0, volume.columns))
    radius_px = SNIPPET_RADIUS_MM / volume.pixel_spacing_mm[1]
    circle = np.array([[column, row], [min(column + radius_px, volume.columns), row]], dtype=np.float32)
    group = hd.sr.PlanarROIMeasurementsAndQualitativeEvaluations(
        tracking_identifier=hd.sr.TrackingIdentifier(
            uid=make_uid(f"sr-snippet-{index}"), identifier=f"Report snippet {index + 1}"
        ),
        referenced_region=_region(volume, key, "CIRCLE", circle),
        algorithm_id=algorithm,
    )
    _append(group, _text(f"{snippet.text} (localised to image {key + 1}, score {snippet.score:.2f})"))
    return group


def _segment_volumetric_group(
    segment: SegmentDescription,
    box: LabelBox,
    *,
    voxel_count: int,
    measurement: SegmentMeasurement | None,
    volume: SourceVolume,
    seg: SegReference,
    algorithm: hd.sr.AlgorithmIdentification,
    tracking_uid: str,
) -> hd.sr.VolumetricROIMeasurementsAndQualitativeEvaluations:
    measurements = [
        hd.sr.Measurement(
            name=VOLUME,
            value=round(voxel_count * volume.voxel_volume_ml, 3),
            unit=UCUM_ML,
            method=SUM_OF_VOXELS,
        ),
        *_attenuation(measurement),
    ]
    group = hd.sr.VolumetricROIMeasurementsAndQualitativeEvaluations(
        tracking_identifier=hd.sr.TrackingIdentifier(
            uid=tracking_uid, identifier=long_string(segment.tracking_id)
        ),
        referenced_segment=hd.sr.ReferencedSegment(
            sop_class_uid=seg.sop_class_uid,
            sop_instance_uid=seg.sop_instance_uid,
            segment_number=segment.segment_number,
            source_series=hd.sr.SourceSeriesForSegmentation(volume.series_instance_uid),
        ),
        finding_type=coded(segment.type),
        finding_category=coded(segment.category),
        algorithm_id=algorithm,
        measurements=measurements,
    )
    if segment.description:
        _append(group, _text(segment.description))
    return group


# ---------------------------------------------------------------------------------------------
# Result kinds "sr" and "sr-planar" (dicom_node.result_kinds)
# ---------------------------------------------------------------------------------------------


def encode_sr(inputs: EncodeInputs, kind: ResultKind, earlier: Sequence[ResultFile]) -> list[ResultFile]:
    """The report with volumetric groups referencing the SEG written before it (when there is one)."""
    seg = next(
        (
            SegReference(f.sop_class_uid, f.sop_instance_uid, f.series_instance_uid)
            for f in earlier
            if f.sop_class_uid in SEG_SOP_CLASSES
        ),
        None,
    )
    return [_encode(inputs, kind, seg=seg, include_volumetric_groups=True)]


def encode_planar_sr(
    inputs: EncodeInputs, kind: ResultKind, earlier: Sequence[ResultFile]
) -> list[ResultFile]:
    """Key-slice groups only, for viewers that cannot show volumetric groups (OHIF issue 3390)."""
    if not inputs.has_annotations:
        # A TID 1500 needs a measurement group; the only one left would have no image coordinates,
        # which is what this profile exists to avoid.
        raise SkipKind("nothing found to show on a key slice")
    return [_encode(inputs, kind, seg=None, include_volumetric_groups=False)]


def _encode(
    inputs: EncodeInputs, kind: ResultKind, *, seg: SegReference | None, include_volumetric_groups: bool
) -> ResultFile:
    sr = build_sr(
        inputs.sources,
        inputs.stats,
        inputs.analysis,
        volume=inputs.volume,
        seg=seg,
        series_instance_uid=inputs.uid(f"{kind.role}-series"),
        sop_instance_uid=inputs.uid(f"{kind.role}-instance"),
        series_number=kind.series_number,
        manufacturer=inputs.manufacturer,
        tracking_uids=inputs.tracking_uids,
        uid_for=lambda role: inputs.uid(f"{kind.role}-{role}"),
        include_volumetric_groups=include_volumetric_groups,
        series_description=inputs.series_description(kind),
        content_datetime=inputs.content_datetime,
    )
    return save_dataset(kind, sr, inputs.out_dir / f"{kind.role}.dcm")
