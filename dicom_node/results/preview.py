"""A PNG preview of the result: key slices side by side with the SEG colours and the boxes.

``ctnode demo`` writes it as out/preview.png. Pillow only (no matplotlib), so the node stays small.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw
from pydicom.dataset import Dataset

from dicom_node.contracts import BoxFinding, SegmentDescription
from dicom_node.errors import PermanentError
from dicom_node.results.figures import display_name, image_label
from dicom_node.results.labels import label_stats
from dicom_node.results.render import choose_key_slices, font, key_slice_pictures, render_slice
from dicom_node.results.sources import source_volume

MIN_PANEL_PX = 384  # small volumes are zoomed so that labels stay legible
PANEL_GAP_PX = 6


def render_preview(
    hu: np.ndarray,
    labelmap: np.ndarray,
    *,
    segments: Sequence[SegmentDescription],
    findings: Sequence[BoxFinding],
    out_path: Path,
    n_key_slices: int = 3,
    window: tuple[float, float] = (-1000.0, 1000.0),
    sources: Sequence[Dataset] | None = None,
) -> Path:
    """Write ``out_path`` (PNG): ``n_key_slices`` slices of ``hu`` (HU, ``[slice, row, column]``),
    labelled by ``labelmap``, the findings' boxes drawn; ``window`` is (low, high) in HU.

    Key slices: those of the detections first, then of the largest structures. Each panel is titled
    as the PACS names its image, "series 3, image 282" (SeriesNumber, InstanceNumber of
    ``sources``, the CT headers in the label map's slice order); without ``sources``, "slice k of n".
    Captions sit on their structure; whole-body structures are listed in each panel's legend.
    """
    if hu.shape != labelmap.shape:
        raise ValueError(f"hu {hu.shape} and labelmap {labelmap.shape} differ in shape")
    stats = label_stats(
        labelmap,
        max((s.segment_number for s in segments), default=0),
        {s.segment_number: s.contains for s in segments if s.contains},
    )
    by_size = sorted(segments, key=lambda s: stats.voxel_count(s.segment_number), reverse=True)
    segment_keys = [k for k in (stats.key_slice(s.segment_number) for s in by_size) if k is not None]
    key_slices = choose_key_slices(
        labelmap, findings=findings, segment_key_slices=segment_keys, count=n_key_slices
    )
    scale = max(1, -(-MIN_PANEL_PX // max(hu.shape[1], 1)))
    pictures = key_slice_pictures(labelmap, segments=segments, findings=findings, key_slices=key_slices)
    panels = [
        render_slice(
            hu[p.slice_index],
            labelmap[p.slice_index],
            p,
            window=window,
            scale=scale,
            banner=_image_name(p.slice_index, len(hu), sources),
        )
        for p in pictures
    ]
    width = sum(p.width for p in panels) + PANEL_GAP_PX * (len(panels) - 1)
    height = max(p.height for p in panels) + 24
    sheet = Image.new("RGB", (max(width, 1), height), (0, 0, 0))
    x = 0
    for panel in panels:
        sheet.paste(panel, (x, 0))
        x += panel.width + PANEL_GAP_PX
    legend = "  ".join(display_name(s) for s in by_size if stats.voxel_count(s.segment_number))
    ImageDraw.Draw(sheet).text(
        (4, height - 20),
        f"AI result preview - not for diagnosis. {legend}",
        fill=(220, 220, 220),
        font=font(14),
    )
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_path.with_name(f".{out_path.name}.tmp")
    sheet.save(tmp, format="PNG")
    os.replace(tmp, out_path)
    return out_path


def _image_name(slice_index: int, n_slices: int, sources: Sequence[Dataset] | None) -> str:
    """ "series 3, image 282" as a PACS shows the image (results.figures.image_label)."""
    if sources is None or len(sources) != n_slices:
        return f"slice {slice_index + 1} of {n_slices}"
    try:
        shape = (n_slices, int(sources[0].Rows), int(sources[0].Columns))
        return image_label(source_volume(sources, shape), slice_index)
    except PermanentError:  # headers that do not describe this volume: name it by position
        return f"slice {slice_index + 1} of {n_slices}"
