"""Burn-in rendering of key slices (Pillow + numpy only): windowed CT, coloured segments, outlines,
boxes and captions. Shared by the secondary-capture fallback and the PNG preview.

Drawing coordinates are the PIXEL units of the annotations, (column, row) with (0, 0) the top-left
corner of the top-left pixel, scaled by ``scale`` (an integer zoom for small images).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from dicom_node.contracts import BoxFinding, SegmentDescription
from dicom_node.results.coding import FINDING_COLOR_RGB, segment_color
from dicom_node.results.figures import display_name
from dicom_node.results.outline import interior_point, trace_outlines

RGB = tuple[int, int, int]
SEGMENT_ALPHA = 0.35


@dataclass
class SlicePicture:
    """What to draw on one slice."""

    slice_index: int
    fills: dict[int, RGB] = field(default_factory=dict)  # label value → colour (blended)
    outlines: list[tuple[np.ndarray, RGB]] = field(default_factory=list)  # (polygon (column,row), colour)
    boxes: list[tuple[tuple[float, float, float, float], RGB]] = field(
        default_factory=list
    )  # left,top,right,bottom
    # (column, row) the caption is centred on, text, colour
    captions: list[tuple[tuple[float, float], str, RGB]] = field(default_factory=list)
    legend: list[tuple[str, RGB]] = field(default_factory=list)  # whole-body structures: listed below


def windowed_gray(hu_slice: np.ndarray, window: tuple[float, float]) -> np.ndarray:
    """HU → uint8 with a linear window (low, high) in HU."""
    low, high = window
    scaled = (np.asarray(hu_slice, dtype=np.float32) - low) * (255.0 / max(high - low, 1e-6))
    return np.clip(scaled, 0, 255).astype(np.uint8)


def font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    try:
        return ImageFont.load_default(size=size)
    except (TypeError, OSError):  # Pillow without FreeType: the fixed bitmap font
        return ImageFont.load_default()


def render_slice(
    hu_slice: np.ndarray,
    label_slice: np.ndarray | None,
    picture: SlicePicture,
    *,
    window: tuple[float, float],
    scale: int = 1,
    banner: str = "",
) -> Image.Image:
    """An RGB picture of one slice with ``picture`` drawn on it."""
    gray = windowed_gray(hu_slice, window)
    rgb = np.repeat(gray[:, :, None], 3, axis=2).astype(np.float32)
    if label_slice is not None:
        for label, colour in picture.fills.items():
            mask = label_slice == label
            if mask.any():
                rgb[mask] = (1 - SEGMENT_ALPHA) * rgb[mask] + SEGMENT_ALPHA * np.array(
                    colour, dtype=np.float32
                )
    image = Image.fromarray(np.clip(rgb, 0, 255).astype(np.uint8), mode="RGB")
    if scale > 1:
        image = image.resize((image.width * scale, image.height * scale), Image.Resampling.NEAREST)
    draw = ImageDraw.Draw(image)
    width = max(1, scale)
    for polygon, colour in picture.outlines:
        if len(polygon) >= 2:
            draw.line([(float(x) * scale, float(y) * scale) for x, y in polygon], fill=colour, width=width)
    for (left, top, right, bottom), colour in picture.boxes:
        draw.rectangle(
            [left * scale, top * scale, right * scale, bottom * scale], outline=colour, width=width
        )
    text_font = font(max(10, image.height // 40))
    for (x, y), text, colour in picture.captions:
        # centred on the anchor, moved only as far as needed to stay inside the image
        x0, y0, x1, y1 = draw.textbbox((0, 0), text, font=text_font, stroke_width=1)
        text_width, text_height = x1 - x0, y1 - y0
        px = min(max(float(x) * scale - text_width / 2, 2), max(image.width - text_width - 2, 2))
        py = min(max(float(y) * scale - text_height / 2, 2), max(image.height - text_height - 2, 2))
        draw.text((px, py), text, fill=colour, font=text_font, stroke_width=1, stroke_fill=(0, 0, 0))
    y_legend = float(image.height - 4)
    for text, colour in reversed(picture.legend):
        x0, y0, x1, y1 = draw.textbbox((0, 0), text, font=text_font, stroke_width=1)
        y_legend -= y1 - y0 + 4
        draw.text((4, y_legend), text, fill=colour, font=text_font, stroke_width=1, stroke_fill=(0, 0, 0))
    if banner:
        banner_font = font(max(10, image.height // 32))
        draw.text((4, 4), banner, fill=(255, 64, 64), font=banner_font, stroke_width=2, stroke_fill=(0, 0, 0))
    return image


def key_slice_pictures(
    labelmap: np.ndarray,
    *,
    segments: Sequence[SegmentDescription],
    findings: Sequence[BoxFinding],
    key_slices: Sequence[int],
    captions: dict[int, str] | None = None,
) -> list[SlicePicture]:
    """For each key slice: every segment present blended in its colour and every piece of it
    outlined; a compact structure's caption on the structure itself (its interior point, so the
    label sits inside the body); whole-body structures (``diffuse``) in the legend; finding boxes
    with their caption inside the box or just below it."""
    pictures = []
    contains = {s.segment_number: s.contains for s in segments if s.contains}
    for k in key_slices:
        picture = SlicePicture(slice_index=k)
        present = set(np.unique(labelmap[k]).tolist()) - {0}
        for segment in segments:
            values = _members(segment.segment_number, contains)
            if not present & set(values):
                continue
            colour = segment_color(segment)
            text = (captions or {}).get(segment.segment_number, display_name(segment))
            if segment.segment_number in present:
                picture.fills[segment.segment_number] = colour
            mask = np.isin(labelmap[k], values) if len(values) > 1 else labelmap[k] == segment.segment_number
            for polygon in trace_outlines(mask):
                picture.outlines.append((polygon, colour))
            anchor = interior_point(mask)
            if segment.diffuse or anchor is None:
                picture.legend.append((text, colour))
            else:
                picture.captions.append((anchor, text, colour))
        for finding in findings:
            slice0, row0, column0, slice1, row1, column1 = finding.box_voxels
            if finding.key_slice_index == k or slice0 <= k <= slice1:
                picture.boxes.append(((column0, row0, column1 + 1, row1 + 1), FINDING_COLOR_RGB))
                picture.captions.append(
                    (
                        ((column0 + column1 + 1) / 2, row1 + 1.5),
                        f"{finding.label} ({finding.score:.2f})",
                        FINDING_COLOR_RGB,
                    )
                )
        pictures.append(picture)
    return pictures


def _members(label: int, contains: dict[int, tuple[int, ...]]) -> tuple[int, ...]:
    seen, todo = {label}, list(contains.get(label, ()))
    while todo:
        inner = todo.pop()
        if inner not in seen:
            seen.add(inner)
            todo.extend(contains.get(inner, ()))
    return tuple(sorted(seen))


def choose_key_slices(
    labelmap: np.ndarray, *, findings: Sequence[BoxFinding], segment_key_slices: Sequence[int], count: int
) -> list[int]:
    """Up to ``count`` slices: detections first, then the biggest structures' key slices, then
    evenly spaced slices through the labelled range; returned in slice order."""
    chosen: list[int] = []
    for k in [f.key_slice_index for f in findings] + list(segment_key_slices):
        if 0 <= k < labelmap.shape[0] and k not in chosen:
            chosen.append(k)
        if len(chosen) >= count:
            return sorted(chosen)
    labelled = np.flatnonzero(labelmap.reshape(labelmap.shape[0], -1).any(axis=1))
    pool = labelled if labelled.size else np.arange(labelmap.shape[0])
    for q in np.linspace(0, 1, count + 2)[1:-1]:
        k = int(pool[round(q * (pool.size - 1))])
        if k not in chosen:
            chosen.append(k)
        if len(chosen) >= count:
            break
    return sorted(chosen)
