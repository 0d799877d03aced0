"""TID 1500 Measurement Report as a Comprehensive 3D SR (PS3.16 TID 1500), built with highdicom.

Content, under the "Imaging Measurements" container, findings first (issue 14):

* **Detections (TID 1410)**: the box on its key slice (cut to the image), width/depth/height and
  mean HU, the finding site, the sentence. At most four numbers, because OHIF 3.13 labels a
  drawing with its first five NUM/finding-site lines (OHIF's cornerstone-dicom-sr
  ``_processTID1410Measurement``: NUM items, then the first SCT 363698007 Finding Site).
* **Localised report snippets (TID 1410)**: a CIRCLE (radius 5 mm) around the point, on its slice.
* **Compact structures (TID 1410)**: the outline of the structure on its key slice (largest
  piece, along the SEG's pixel edges), its volume and attenuation — the figures of
  results.figures — and itself as finding site, so the viewer names the drawing.
  Whole-body structures (``SegmentDescription.diffuse``: body, bone, both lungs, vertebrae) get no
  region: a box from arm to arm means nothing.
* **Every structure as measurement rows (TID 1411), in the "sr" kind**: referencing its SEG segment
  (exactly one of region / surface / segment, as TID 1411 requires), volume (sum of the SEG's voxels,
  with the structures it contains), mean/SD attenuation, its line as a Comment; a compact one also
  gets its 3D bounding box in a TID 1501 group with the same tracking identifier: Width, Depth,
  Height, each INFERRED FROM an SCOORD3D POLYLINE (corner + far end of the edge, LPS mm).
  OHIF 3.13's SR loader reads ``coords[0]`` of every group (cornerstone-dicom-sr); groups without
  image coordinates have crashed it (OHIF issue 3390, dicom-notes.md) or been skipped with a
  warning (deploy/orthanc/README.md), so the "sr-planar" kind leaves these out and carries the
  whole-body figures as text only.
* Free text: highdicom has no API for TEXT in measurement groups, so each group gets a TEXT item
  "Comment" (DCM 121106) appended. The report summary ("Impression", DCM 121073), each structure's
  line and the pipeline's other remarks ("Comment") go into a "Qualitative Evaluations" container
  (UMLS C0034375, TID 1500 row 12); the pipeline's own line for a structure is replaced by the
  encoders', which counts the SEG's voxels.

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
from dicom_node.results.charset import initial_character_set
from dicom_node.results.coding import CT_PROCEDURE, UCUM_HU, UCUM_ML, UCUM_MM, coded, long_string
from dicom_node.results.figures import (
    SegmentFigures,
    clamp_slice,
    clipped_box,
    display_name,
    finding_line,
    image_label,
    segment_figures,
    snippet_centre,
)
from dicom_node.results.inputs import EncodeInputs, SkipKind, save_dataset
from dicom_node.results.labels import LabelBox, LabelStats
from dicom_node.results.outline import trace_outline
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


def _finding_site(segment: SegmentDescription) -> hd.sr.FindingSite:
    """The segment's type as finding site, with its laterality (TID 1419 row 3: Laterality, CID 244)
    where the SEG codes one as a Segmented Property Type Modifier."""
    laterality = coded(segment.type_modifier) if segment.type_modifier is not None else None
    return hd.sr.FindingSite(coded(segment.type), laterality=laterality)


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
    character_set: str | None = None,
) -> hd.sr.Comprehensive3DSR:
    """The TID 1500 report for ``analysis`` over ``sources`` (headers in volume order).

    ``reference_document=True`` lets highdicom build the document from the full content tree
    (slower; the tests check that the default path gives the same dataset).
    """
    make_uid = uid_for or (lambda role: uuid_uid(sop_instance_uid, role))
    algorithm = hd.sr.AlgorithmIdentification(
        name=analysis.algorithm_name, version=analysis.algorithm_version
    )
    figures = segment_figures(stats, analysis, volume)
    groups: list[
        hd.sr.PlanarROIMeasurementsAndQualitativeEvaluations
        | hd.sr.VolumetricROIMeasurementsAndQualitativeEvaluations
        | hd.sr.MeasurementsAndQualitativeEvaluations
    ] = []

    # Findings first (what the radiologist looks for), then snippets, then the organs.
    for index, finding in enumerate(analysis.findings):
        own = _own_algorithm(finding.algorithm_name, finding.algorithm_version, algorithm)
        group = _finding_group(index, finding, volume=volume, algorithm=own, make_uid=make_uid)
        if group is not None:
            groups.append(group)
    for index, snippet in enumerate(analysis.snippets):
        groups.append(_snippet_group(index, snippet, volume=volume, algorithm=algorithm, make_uid=make_uid))
    for figure in figures:
        if not figure.segment.diffuse:  # a region only where it means something (issue 14)
            own = _own_algorithm(figure.segment.algorithm_name, figure.segment.algorithm_version, algorithm)
            groups.append(
                _segment_planar_group(figure, stats, volume=volume, algorithm=own, make_uid=make_uid)
            )
    if include_volumetric_groups and seg is not None:
        # Every structure as measurement rows referencing its SEG segment; compact ones also get
        # their 3D bounding box (for a whole-body structure a box says nothing).
        for figure in figures:
            segment = figure.segment
            tracking_uid = tracking_uids[segment.segment_number]
            own = _own_algorithm(segment.algorithm_name, segment.algorithm_version, algorithm)
            groups.append(
                _segment_volumetric_group(
                    figure, volume=volume, seg=seg, algorithm=own, tracking_uid=tracking_uid
                )
            )
            box = stats.box(segment.segment_number)
            if not segment.diffuse and box is not None:
                groups.append(
                    _segment_box_group(segment, box, volume=volume, algorithm=own, tracking_uid=tracking_uid)
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
    # Every structure's figures in words, as the SEG, GSPS and PDF say them; then the pipeline's
    # other remarks (detections, prompts it could not serve).
    texts += [_text(f.line) for f in figures]
    replaced = tuple(f"{display_name(s)}:" for s in analysis.segments)
    texts += [_text(t) for t in analysis.descriptions if t and not t.startswith(replaced)]
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
        "specific_character_set": character_set or initial_character_set(sources[0]),
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
    figure: SegmentFigures,
    stats: LabelStats,
    *,
    volume: SourceVolume,
    algorithm: hd.sr.AlgorithmIdentification,
    make_uid: Callable[[str], str],
) -> hd.sr.PlanarROIMeasurementsAndQualitativeEvaluations:
    """A compact structure on its key slice: its outline (the largest piece, along the SEG's pixel
    edges), its volume and attenuation, and itself as finding site, which is what OHIF labels the
    drawing with (OHIF 3.13 reads NUM items, then the first SCT 363698007 Finding Site)."""
    segment = figure.segment
    key = figure.key_slice
    assert key is not None
    outline = trace_outline(stats.mask(segment.segment_number, key))
    group = hd.sr.PlanarROIMeasurementsAndQualitativeEvaluations(
        tracking_identifier=hd.sr.TrackingIdentifier(
            uid=make_uid(f"sr-segment-{segment.segment_number}-key-slice"),
            identifier=long_string(figure.name),
        ),
        referenced_region=_region(volume, key, "POLYLINE", outline.astype(np.float32)),
        finding_type=coded(segment.type),
        finding_category=coded(segment.category),
        finding_sites=[_finding_site(segment)],
        algorithm_id=algorithm,
        # volume and mean only: a viewer prints every NUM as "Attenuation Coefficient: ..." and
        # cannot tell mean from SD (the SD is in the text and the measurement rows)
        measurements=_figures_measurements(figure, volume, with_sd=False),
    )
    _append(group, _text(figure.line))
    return group


def _figures_measurements(
    figure: SegmentFigures, volume: SourceVolume, *, with_sd: bool = True
) -> list[hd.sr.Measurement]:
    """Volume (sum of the SEG's voxels) and mean/SD attenuation: the numbers every object shows."""
    out = [
        hd.sr.Measurement(name=VOLUME, value=round(figure.volume_ml, 3), unit=UCUM_ML, method=SUM_OF_VOXELS)
    ]
    if figure.mean_hu is not None:
        out.append(
            hd.sr.Measurement(name=ATTENUATION, value=round(figure.mean_hu, 1), unit=UCUM_HU, derivation=MEAN)
        )
    if figure.std_hu is not None and with_sd:
        out.append(
            hd.sr.Measurement(
                name=ATTENUATION, value=round(figure.std_hu, 1), unit=UCUM_HU, derivation=STANDARD_DEVIATION
            )
        )
    return out


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
) -> hd.sr.PlanarROIMeasurementsAndQualitativeEvaluations | None:
    """A detection: its box on its key slice (cut to the image), width/depth/height and mean HU
    (at most four values, so OHIF's five-line label still shows the finding site), the sentence."""
    clipped = clipped_box(finding.box_voxels, volume)
    if clipped is None:
        return None
    row0, column0, row1, column1 = clipped
    slice0, _, _, slice1, _, _ = finding.box_voxels
    box = LabelBox(slice0, *finding.box_voxels[1:3], slice1, *finding.box_voxels[4:6])
    key = clamp_slice(finding.key_slice_index, volume)
    measurements = [_length(name, value, None, volume) for name, value, _ in box_extents(volume, box)]
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
    _append(
        group,
        _text(
            f"{finding.text} ({finding_line(finding, volume)})"
            if finding.text
            else finding_line(finding, volume)
        ),
    )
    return group


def _snippet_group(
    index: int,
    snippet: SnippetLocation,
    *,
    volume: SourceVolume,
    algorithm: hd.sr.AlgorithmIdentification,
    make_uid: Callable[[str], str],
) -> hd.sr.PlanarROIMeasurementsAndQualitativeEvaluations:
    key = clamp_slice(snippet.slice_index, volume)
    column, row = snippet_centre(snippet, volume)  # voxel centre → pixel-edge coordinates
    radius_px = SNIPPET_RADIUS_MM / volume.pixel_spacing_mm[1]
    circle = np.array([[column, row], [min(column + radius_px, volume.columns), row]], dtype=np.float32)
    group = hd.sr.PlanarROIMeasurementsAndQualitativeEvaluations(
        tracking_identifier=hd.sr.TrackingIdentifier(
            uid=make_uid(f"sr-snippet-{index}"), identifier=f"Report snippet {index + 1}"
        ),
        referenced_region=_region(volume, key, "CIRCLE", circle),
        algorithm_id=algorithm,
    )
    _append(
        group, _text(f"{snippet.text} (localised to {image_label(volume, key)}, score {snippet.score:.2f})")
    )
    return group


def _segment_volumetric_group(
    figure: SegmentFigures,
    *,
    volume: SourceVolume,
    seg: SegReference,
    algorithm: hd.sr.AlgorithmIdentification,
    tracking_uid: str,
) -> hd.sr.VolumetricROIMeasurementsAndQualitativeEvaluations:
    segment = figure.segment
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
        finding_sites=[_finding_site(segment)],
        algorithm_id=algorithm,
        measurements=_figures_measurements(figure, volume),
    )
    _append(group, _text(figure.line))
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
        character_set=inputs.character_set,
    )
    return save_dataset(
        kind, sr, inputs.out_dir / f"{kind.role}.dcm", source_character_set=inputs.source_character_set
    )
