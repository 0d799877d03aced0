"""Grayscale Softcopy Presentation State (PS3.3 A.33.1) with the AI annotations, built with highdicom.

For PACS viewers that show presentation states but not SEG: on each compact structure's key slice
(where it has most voxels) the outline of every piece of it (closed POLYLINEs along the pixel
edges of the SEG's own voxels, so within a pixel of the SEG's contour) and its figures — the same
line as the SR and the PDF (results.figures), anchored on the structure itself (its interior
point), hence inside the body; on each detection's key slice its box, cut to the image, and its
line, anchored inside the box and the body; each localised report snippet as a small circle with
its text. Whole-body structures (body, bone, both lungs: ``SegmentDescription.diffuse``) are not
drawn: an outline of the skin or of every bone says nothing; their figures are in the SR and PDF.

Rules kept (dicom-notes.md, PS3.3 C.10.5):
* GraphicData is (column, row) in PIXEL units, (0,0) = top-left corner of the top-left pixel, and
  every graphic lies within its image (highdicom refuses anything outside; a detection box reaching
  past the image edge failed the whole job before).
* One GraphicAnnotation per (layer, image): all its images are in the one source series.
* A graphic layer per structure coloured like its SEG segment, one for detections, one for snippets.
* BodyPartExamined is copied from the CT, cleaned; Laterality where dciodvfy asks (results.carried).
* Text is ASCII typography ("-", "x"): DCMTK's dcmpschk rejects other characters in ST values.
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
from dicom_node.results.charset import initial_character_set
from dicom_node.results.coding import FINDING_COLOR_RGB, cielab, code_string, segment_color
from dicom_node.results.figures import (
    clamp_slice,
    clipped_box,
    finding_line,
    plain,
    segment_figures,
    snippet_centre,
)
from dicom_node.results.inputs import EncodeInputs, SkipKind, save_dataset
from dicom_node.results.labels import LabelStats
from dicom_node.results.outline import interior_point, trace_outlines
from dicom_node.results.provenance import copy_body_part, stamp_datetime
from dicom_node.results.sources import SourceVolume
from dicom_node.results.sr import SNIPPET_RADIUS_MM, rectangle_pixels

PIXEL = hd.pr.AnnotationUnitsValues.PIXEL
SOFT_TISSUE_WINDOW = (40.0, 400.0)
SNIPPET_COLOR_RGB = (0, 255, 255)
BODY_HU = -500.0  # fat vs air: where the body is when the CT is at hand (as ct-anatomy-basic)


def _layer_name(number: int, label: str) -> str:
    return code_string(f"S{number:02d} {label}")


def _inside_box_anchor(
    body: np.ndarray, row0: int, column0: int, row1: int, column1: int
) -> tuple[float, float]:
    """A caption anchor for a detection, (column, row): the pixel of its box nearest the box's
    centre that lies inside the body (any segmented structure), else the centre itself."""
    centre_row, centre_column = (row0 + row1 + 1) / 2.0, (column0 + column1 + 1) / 2.0
    rows, columns = np.nonzero(body[row0 : row1 + 1, column0 : column1 + 1])
    if rows.size == 0:
        return centre_column, centre_row
    distance = (rows + row0 + 0.5 - centre_row) ** 2 + (columns + column0 + 0.5 - centre_column) ** 2
    nearest = int(np.argmin(distance))
    return float(columns[nearest] + column0) + 0.5, float(rows[nearest] + row0) + 0.5


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
    character_set: str | None = None,
    hu: np.ndarray | None = None,
) -> hd.pr.GrayscaleSoftcopyPresentationState:
    """The GSPS for ``analysis`` over ``sources`` (headers in volume order)."""
    layers: list[hd.pr.GraphicLayer] = []
    # (layer name, slice index) → graphic objects / text objects
    graphics: dict[tuple[str, int], list[hd.pr.GraphicObject]] = defaultdict(list)
    texts: dict[tuple[str, int], list[hd.pr.TextObject]] = defaultdict(list)
    _, spacing_column = volume.pixel_spacing_mm

    def body(k: int) -> np.ndarray:
        """Where the body is on slice k: every structure lies inside it, and so does tissue
        denser than fat/air where the CT is at hand."""
        inside = stats.labelmap[k] > 0
        return inside | (hu[k] > BODY_HU) if hu is not None else inside

    for order, figures in enumerate(segment_figures(stats, analysis, volume), start=1):
        segment, key = figures.segment, figures.key_slice
        if segment.diffuse or key is None:
            continue  # whole-body structures are reported by their figures, not drawn (SR, PDF)
        name = _layer_name(segment.segment_number, figures.name)
        layers.append(
            hd.pr.GraphicLayer(
                layer_name=name,
                order=order,
                description=figures.name,
                display_color=cielab(segment_color(segment)),
            )
        )
        mask = stats.mask(segment.segment_number, key)
        for polygon in trace_outlines(mask):  # every piece (each rib), not only the largest
            graphics[(name, key)].append(
                hd.pr.GraphicObject(
                    graphic_type="POLYLINE", graphic_data=polygon.astype(np.float32), units=PIXEL
                )
            )
        anchor = interior_point(mask)
        assert anchor is not None  # the key slice has voxels of the segment
        texts[(name, key)].append(
            hd.pr.TextObject(
                text_value=plain(figures.line),
                units=PIXEL,
                anchor_point=anchor,  # on the structure, hence inside the body
                anchor_point_visible=False,
                text_justification="CENTER",
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
        key = clamp_slice(finding.key_slice_index, volume)
        box = clipped_box(finding.box_voxels, volume)
        if box is None:
            continue  # the box lies outside the image: nothing of it can be drawn
        row0, column0, row1, column1 = box
        graphics[("FINDINGS", key)].append(
            hd.pr.GraphicObject("POLYLINE", rectangle_pixels(row0, column0, row1, column1), units=PIXEL)
        )
        texts[("FINDINGS", key)].append(
            hd.pr.TextObject(
                text_value=plain(finding_line(finding, volume))[:1024],
                units=PIXEL,
                anchor_point=_inside_box_anchor(body(key), row0, column0, row1, column1),
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
        key = clamp_slice(snippet.slice_index, volume)
        column, row = snippet_centre(snippet, volume)
        circle = np.array([[column, row], [min(column + radius, volume.columns), row]], dtype=np.float32)
        graphics[("SNIPPETS", key)].append(hd.pr.GraphicObject("CIRCLE", circle, units=PIXEL))
        texts[("SNIPPETS", key)].append(
            hd.pr.TextObject(
                text_value=plain(snippet.text)[:1024],
                units=PIXEL,
                anchor_point=(column, row),
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
        specific_character_set=character_set or initial_character_set(first),
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
        character_set=inputs.character_set,
        hu=inputs.hu,
    )
    return [
        save_dataset(
            kind, gsps, inputs.out_dir / f"{kind.role}.dcm", source_character_set=inputs.source_character_set
        )
    ]
