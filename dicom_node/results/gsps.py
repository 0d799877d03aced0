"""Grayscale Softcopy Presentation State (PS3.3 A.33.1) with the AI annotations, built with highdicom.

For PACS viewers that show presentation states but not SEG: on each structure's key slice (the
slice where it has most voxels) its outline (closed POLYLINE along the pixel edges of the SEG's own
voxels) and a text "label: width x depth mm, volume mL"; on each detection's key slice its box
(closed POLYLINE) and its sentence; each localised report snippet as a small circle with its text.

Rules kept (dicom-notes.md, PS3.3 C.10.5):
* GraphicData is (column, row) in PIXEL units, (0,0) = top-left corner of the top-left pixel.
* One GraphicAnnotation per (layer, image): all its images are in the one source series.
* A graphic layer per structure coloured like its SEG segment, one for detections, one for snippets.
* BodyPartExamined is copied from the CT (else dciodvfy asks for Laterality).
* The presentation applies to every image of the series, with the series' first window preset.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from datetime import datetime

import highdicom as hd
import numpy as np
from pydicom.dataset import Dataset

from dicom_node.contracts import AnalysisResult, ResultFile
from dicom_node.result_kinds import ResultKind
from dicom_node.results.coding import FINDING_COLOR_RGB, cielab, code_string, segment_color
from dicom_node.results.inputs import EncodeInputs, SkipKind, save_dataset
from dicom_node.results.labels import LabelStats
from dicom_node.results.outline import trace_outline
from dicom_node.results.provenance import copy_body_part, stamp_datetime
from dicom_node.results.sources import SourceVolume
from dicom_node.results.sr import SNIPPET_RADIUS_MM, rectangle_pixels

PIXEL = hd.pr.AnnotationUnitsValues.PIXEL
SOFT_TISSUE_WINDOW = (40.0, 400.0)
SNIPPET_COLOR_RGB = (0, 255, 255)


def _layer_name(number: int, label: str) -> str:
    return code_string(f"S{number:02d} {label}")


def segment_caption(label: str, width_mm: float, depth_mm: float, volume_ml: float) -> str:
    return f"{label}: {width_mm:.0f} x {depth_mm:.0f} mm, {volume_ml:.1f} mL"


def _window(source: Dataset) -> tuple[float, float]:
    centre, width = source.get("WindowCenter"), source.get("WindowWidth")
    if centre is None or width is None:
        return SOFT_TISSUE_WINDOW
    first_centre = centre[0] if hasattr(centre, "__len__") and not isinstance(centre, str) else centre
    first_width = width[0] if hasattr(width, "__len__") and not isinstance(width, str) else width
    return float(first_centre), float(first_width)


def _modality_lut(sources: Sequence[Dataset]) -> hd.ModalityLUTTransformation | None:
    """The series' rescale as the GSPS Modality LUT (PS3.3 C.11.1) when every slice shares it.

    Passing it saves highdicom a per-image scan; when slices differ, None lets highdicom decide
    (it refuses: one presentation state cannot carry several rescales).
    """
    first = sources[0]
    if "RescaleSlope" not in first or "RescaleIntercept" not in first:
        return None
    key = (str(first.RescaleSlope), str(first.RescaleIntercept), str(first.get("RescaleType", "")))
    for ds in sources:
        if (
            str(ds.get("RescaleSlope")),
            str(ds.get("RescaleIntercept")),
            str(ds.get("RescaleType", "")),
        ) != key:
            return None
    return hd.ModalityLUTTransformation(
        rescale_intercept=float(first.RescaleIntercept),
        rescale_slope=float(first.RescaleSlope),
        rescale_type=str(first.get("RescaleType") or "HU"),
    )


def build_gsps(
    sources: Sequence[Dataset],
    stats: LabelStats,
    analysis: AnalysisResult,
    *,
    volume: SourceVolume,
    series_instance_uid: str,
    sop_instance_uid: str,
    series_number: int,
    manufacturer: str,
    content_label: str = "AI_ANNOTATIONS",
    series_description: str = "",
    content_datetime: datetime | None = None,
) -> hd.pr.GrayscaleSoftcopyPresentationState:
    """The GSPS for ``analysis`` over ``sources`` (headers in volume order)."""
    layers: list[hd.pr.GraphicLayer] = []
    # (layer name, slice index) → graphic objects / text objects
    graphics: dict[tuple[str, int], list[hd.pr.GraphicObject]] = defaultdict(list)
    texts: dict[tuple[str, int], list[hd.pr.TextObject]] = defaultdict(list)
    spacing_row, spacing_column = volume.pixel_spacing_mm

    for order, segment in enumerate(analysis.segments, start=1):
        key = stats.key_slice(segment.segment_number)
        footprint = stats.footprint(segment.segment_number, key) if key is not None else None
        if key is None or footprint is None:
            continue
        name = _layer_name(segment.segment_number, segment.label)
        layers.append(
            hd.pr.GraphicLayer(
                layer_name=name,
                order=order,
                description=segment.label[:64],
                display_color=cielab(segment_color(segment)),
            )
        )
        row0, column0, row1, column1 = footprint
        polygon = trace_outline(stats.labelmap[key] == segment.segment_number)
        graphics[(name, key)].append(
            hd.pr.GraphicObject(graphic_type="POLYLINE", graphic_data=polygon.astype(np.float32), units=PIXEL)
        )
        caption = segment_caption(
            segment.label,
            (column1 - column0 + 1) * spacing_column,
            (row1 - row0 + 1) * spacing_row,
            stats.voxel_count(segment.segment_number) * volume.voxel_volume_ml,
        )
        texts[(name, key)].append(
            hd.pr.TextObject(
                text_value=caption,
                units=PIXEL,
                anchor_point=(float(column0), float(max(row0 - 1, 0))),
                anchor_point_visible=False,
                text_justification="LEFT",
            )
        )

    if analysis.findings:
        layers.append(
            hd.pr.GraphicLayer(
                layer_name="FINDINGS",
                order=len(layers) + 1,
                description="AI detections",
                display_color=cielab(FINDING_COLOR_RGB),
            )
        )
    for finding in analysis.findings:
        _, row0, column0, _, row1, column1 = finding.box_voxels
        key = min(max(finding.key_slice_index, 0), len(volume.slices) - 1)
        rectangle = rectangle_pixels(row0, column0, row1, column1)
        graphics[("FINDINGS", key)].append(hd.pr.GraphicObject("POLYLINE", rectangle, units=PIXEL))
        size = " x ".join(f"{v:.0f}" for v in finding.size_mm)
        texts[("FINDINGS", key)].append(
            hd.pr.TextObject(
                text_value=f"{finding.label} {size} mm ({finding.score:.2f})",
                units=PIXEL,
                anchor_point=(float(column0), float(min(row1 + 2, volume.rows))),
                anchor_point_visible=False,
                text_justification="LEFT",
            )
        )

    if analysis.snippets:
        layers.append(
            hd.pr.GraphicLayer(
                layer_name="SNIPPETS",
                order=len(layers) + 1,
                description="Report snippets localised by AI",
                display_color=cielab(SNIPPET_COLOR_RGB),
            )
        )
    radius = SNIPPET_RADIUS_MM / spacing_column
    for snippet in analysis.snippets:
        key = min(max(snippet.slice_index, 0), len(volume.slices) - 1)
        _, row, column = volume.to_index(snippet.point_lps_mm)
        row = float(np.clip(row + 0.5, 0, volume.rows))
        column = float(np.clip(column + 0.5, 0, volume.columns))
        circle = np.array([[column, row], [min(column + radius, volume.columns), row]], dtype=np.float32)
        graphics[("SNIPPETS", key)].append(hd.pr.GraphicObject("CIRCLE", circle, units=PIXEL))
        texts[("SNIPPETS", key)].append(
            hd.pr.TextObject(
                text_value=snippet.text[:1024],
                units=PIXEL,
                anchor_point=(column, float(min(row + radius + 2, volume.rows))),
                anchor_point_visible=False,
                text_justification="LEFT",
            )
        )

    by_name = {layer.GraphicLayer: layer for layer in layers}
    annotations = []
    for layer_name, key in sorted(set(graphics) | set(texts), key=lambda k: (k[1], k[0])):
        source = volume.slices[key]
        annotations.append(
            hd.pr.GraphicAnnotation(
                referenced_images=[source.dataset],
                graphic_layer=by_name[layer_name],
                referenced_frame_number=source.frame_number,
                graphic_objects=graphics.get((layer_name, key)) or None,
                text_objects=texts.get((layer_name, key)) or None,
            )
        )

    first = sources[0]
    centre, width = _window(first)
    modality_lut = _modality_lut(sources) if not volume.is_multiframe else None
    unique_sources = list({str(ds.SOPInstanceUID): ds for ds in sources}.values())
    gsps = hd.pr.GrayscaleSoftcopyPresentationState(
        referenced_images=unique_sources,
        series_instance_uid=series_instance_uid,
        series_number=series_number,
        sop_instance_uid=sop_instance_uid,
        instance_number=1,
        manufacturer=manufacturer,
        manufacturer_model_name=analysis.algorithm_name[:64],
        software_versions=analysis.algorithm_version[:64],
        device_serial_number="0",
        content_label=code_string(content_label),
        content_description=f"AI annotations: {analysis.algorithm_name} {analysis.algorithm_version}"[:64],
        graphic_annotations=annotations or None,
        graphic_layers=layers or None,
        voi_lut_transformations=[
            hd.pr.SoftcopyVOILUTTransformation(window_center=centre, window_width=width)
        ],
        modality_lut_transformation=modality_lut,
    )
    copy_body_part(gsps, first)
    if series_description:
        gsps.SeriesDescription = series_description[:64]
    stamp_datetime(gsps, content_datetime or datetime.now())
    return gsps


# ---------------------------------------------------------------------------------------------
# Result kind "gsps" (dicom_node.result_kinds)
# ---------------------------------------------------------------------------------------------


def encode_gsps(inputs: EncodeInputs, kind: ResultKind, earlier: Sequence[ResultFile]) -> list[ResultFile]:
    if not inputs.has_annotations:
        raise SkipKind("nothing to annotate")
    gsps = build_gsps(
        inputs.sources,
        inputs.stats,
        inputs.analysis,
        volume=inputs.volume,
        series_instance_uid=inputs.uid(f"{kind.role}-series"),
        sop_instance_uid=inputs.uid(f"{kind.role}-instance"),
        series_number=kind.series_number,
        manufacturer=inputs.manufacturer,
        series_description=inputs.series_description(kind),
        content_datetime=inputs.content_datetime,
    )
    return [save_dataset(kind, gsps, inputs.out_dir / f"{kind.role}.dcm")]
