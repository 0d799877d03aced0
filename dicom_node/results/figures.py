"""One name and one set of numbers per structure, for every object the node writes.

The SEG's segment label, the SR's tracking identifier, numeric values and text, the GSPS caption,
the secondary-capture caption, the PDF summary and the preview all take a structure's name and
figures from here, so they cannot disagree (issue 12 item 11, issue 14 item 2):

* name: ``SegmentDescription.label`` (the adapter writes the vocabulary's display label);
* volume: the SEG's own voxels (with the structures the segment contains) × the voxel volume of the
  source geometry — what a viewer measuring the SEG gets;
* mean and SD of attenuation: the pipeline's, only when it measured those same voxels (its voxel
  count equals the SEG's); otherwise they are left out rather than shown for other voxels.

Images are named as the PACS shows them: "series 3, image 282" from the source slice's
SeriesNumber and InstanceNumber (never a position in the sorted volume; issue 12 item 12).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from dicom_node.contracts import AnalysisResult, BoxFinding, SegmentDescription, SnippetLocation
from dicom_node.results.labels import LabelStats
from dicom_node.results.sources import SourceVolume

logger = logging.getLogger(__name__)

MINUS = "\u2212"
TIMES = "\u00d7"


_PLAIN = {MINUS: "-", TIMES: "x", "\u2192": "->", "\u201c": '"', "\u201d": '"', "\u2018": "'", "\u2019": "'"}


def plain(text: str) -> str:
    """The typography of these lines in ASCII ("−874 HU" → "-874 HU", "8 × 7" → "8 x 7").

    For presentation-state text: DCMTK 3.6.7's dcmpschk rejects non-ASCII ST values in a GSPS
    (measured), and GSPS renderers are where old code paths live. Other characters stay.
    """
    for typographic, ascii_text in _PLAIN.items():
        text = text.replace(typographic, ascii_text)
    return text


def display_name(segment: SegmentDescription) -> str:
    """The one name a structure has in every object: its label with a capital first letter
    ("left lung" → "Left lung"), at most 64 characters (LO)."""
    label = segment.label.strip()
    return (label[:1].upper() + label[1:])[:64]


def format_volume_ml(volume_ml: float) -> str:
    """ "1523 mL" from 10 mL up, "4.2 mL" from 0.1 mL, "0.05 mL" below (as inference.describe)."""
    if volume_ml >= 10:
        return f"{volume_ml:.0f} mL"
    if volume_ml >= 0.1:
        return f"{volume_ml:.1f} mL"
    return f"{volume_ml:.2g} mL"


def format_hu(value: float) -> str:
    """A whole HU value with a typographic minus: "−874 HU", "58 HU"."""
    n = round(value)
    return f"{MINUS}{-n} HU" if n < 0 else f"{n} HU"


def format_size_mm(sizes_mm: Sequence[float]) -> str:
    """ "8 × 7 × 6 mm", largest first."""
    ordered = sorted((float(v) for v in sizes_mm), reverse=True)
    return f" {TIMES} ".join(f"{round(v):d}" for v in ordered) + " mm"


def image_label(volume: SourceVolume, slice_index: int) -> str:
    """How a PACS names the image of a slice: "series 3, image 282" (frame N of a multi-frame)."""
    source = volume.slices[slice_index]
    ds = source.dataset
    parts = []
    series_number = ds.get("SeriesNumber")
    if series_number not in (None, ""):
        parts.append(f"series {series_number}")
    instance_number = ds.get("InstanceNumber")
    if source.frame_number is not None:
        parts.append(
            f"image {instance_number}, frame {source.frame_number}"
            if instance_number
            else f"frame {source.frame_number}"
        )
    elif instance_number not in (None, ""):
        parts.append(f"image {instance_number}")
    else:
        parts.append(f"slice {slice_index + 1} of {len(volume.slices)}")
    return ", ".join(parts)


@dataclass(frozen=True)
class SegmentFigures:
    """What every object says about one segment."""

    segment: SegmentDescription
    voxel_count: int
    volume_ml: float
    mean_hu: float | None
    std_hu: float | None
    key_slice: int | None

    @property
    def name(self) -> str:
        return display_name(self.segment)

    @property
    def number(self) -> int:
        return self.segment.segment_number

    @property
    def line(self) -> str:
        """ "Left lung: 1523 mL, mean −850 HU (SD 12)"."""
        text = f"{self.name}: {format_volume_ml(self.volume_ml)}"
        if self.mean_hu is not None:
            text += f", mean {format_hu(self.mean_hu)}"
            if self.std_hu is not None:
                text += f" (SD {round(self.std_hu):d})"
        return text


def segment_figures(
    stats: LabelStats, analysis: AnalysisResult, volume: SourceVolume
) -> list[SegmentFigures]:
    """Figures of every segment with voxels, in the analysis' order."""
    measured = {m.segment_number: m for m in analysis.measurements}
    out = []
    for segment in analysis.segments:
        count = stats.voxel_count(segment.segment_number)
        if not count:
            continue
        measurement = measured.get(segment.segment_number)
        mean = std = None
        if measurement is not None:
            if measurement.voxel_count == count:
                mean, std = measurement.mean_hu, measurement.std_hu
            else:
                logger.warning(
                    "segment %d: the pipeline measured %d voxels, the SEG holds %d; HU figures left out",
                    segment.segment_number,
                    measurement.voxel_count,
                    count,
                )
        out.append(
            SegmentFigures(
                segment=segment,
                voxel_count=count,
                volume_ml=count * volume.voxel_volume_ml,
                mean_hu=mean,
                std_hu=std,
                key_slice=stats.key_slice(segment.segment_number),
            )
        )
    return out


def clamp_slice(index: int, volume: SourceVolume) -> int:
    return min(max(index, 0), len(volume.slices) - 1)


def finding_line(finding: BoxFinding, volume: SourceVolume) -> str:
    """ "Liver lesion: 15 × 13 × 13 mm, 0.8 mL, mean 20 HU, series 3, image 87 (score 0.91)"."""
    parts = [format_size_mm(finding.size_mm)]
    if finding.volume_ml is not None:
        parts.append(format_volume_ml(finding.volume_ml))
    if finding.mean_hu is not None:
        parts.append(f"mean {format_hu(finding.mean_hu)}")
    parts.append(image_label(volume, clamp_slice(finding.key_slice_index, volume)))
    return f"{finding.label}: {', '.join(parts)} (score {finding.score:.2f})"


def clipped_box(
    box_voxels: tuple[int, int, int, int, int, int], volume: SourceVolume
) -> tuple[int, int, int, int] | None:
    """(row0, column0, row1, column1) of a detection box cut to the image (inclusive pixels), or
    None when nothing of it is inside: graphics must lie within the image (PS3.3 C.10.5.1.2)."""
    _, row0, column0, _, row1, column1 = box_voxels
    row0, column0 = max(row0, 0), max(column0, 0)
    row1, column1 = min(row1, volume.rows - 1), min(column1, volume.columns - 1)
    if row0 > row1 or column0 > column1:
        return None
    return row0, column0, row1, column1


def snippet_centre(snippet: SnippetLocation, volume: SourceVolume) -> tuple[float, float]:
    """(column, row) pixel-edge coordinates of a localised snippet's point, inside the image."""
    _, row, column = volume.to_index(snippet.point_lps_mm)
    return (
        float(np.clip(column + 0.5, 0, volume.columns)),
        float(np.clip(row + 0.5, 0, volume.rows)),
    )
