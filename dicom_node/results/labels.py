"""Where each label of a label map is: slices, bounding box, voxel counts, key slice.

Computed once per job and shared by the SEG, SR, GSPS, SC and preview encoders. One pass over the
volume: each voxel becomes a bit ``1 << label`` and the bits are OR-reduced along rows and columns,
which gives, per slice, the rows and columns where each label occurs (0.25 s for 512×512×300 on
this machine, against 0.5 s for ``scipy.ndimage.find_objects`` and 2 s for a global ``bincount``).
Voxel counts are then taken inside each label's bounding box only.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace

import numpy as np

_CHUNK_SLICES = 16


@dataclass(frozen=True, eq=False)
class LabelBox:
    """Inclusive voxel bounds of one label, ``[slice, row, column]``."""

    slice0: int
    row0: int
    column0: int
    slice1: int
    row1: int
    column1: int

    @property
    def slices(self) -> tuple[slice, slice, slice]:
        return (
            slice(self.slice0, self.slice1 + 1),
            slice(self.row0, self.row1 + 1),
            slice(self.column0, self.column1 + 1),
        )

    def as_tuple(self) -> tuple[int, int, int, int, int, int]:
        return (self.slice0, self.row0, self.column0, self.slice1, self.row1, self.column1)


@dataclass(frozen=True, eq=False)
class LabelStats:
    """Per label 1..n_labels: present slices, box, voxel counts (overall and per slice).

    A label's voxels are those holding its value plus those of the labels it contains
    (``members``): a segment that contains others (the body around the lungs and bone) is counted,
    boxed and masked as the union, exactly as the BINARY SEG writes it.
    """

    n_labels: int
    boxes: tuple[LabelBox | None, ...]  # index label-1; None when the label has no voxel
    slice_counts: np.ndarray  # int64 [n_slices, n_labels + 1]; column 0 unused
    labelmap: np.ndarray  # the label map itself (a reference, not a copy)
    members: dict[int, tuple[int, ...]] = field(default_factory=dict)  # label -> its values (if >1)

    def values(self, label: int) -> tuple[int, ...]:
        """The label-map values that make up ``label`` (itself, and those it contains)."""
        return self.members.get(label, (label,))

    def mask(self, label: int, region: tuple[int | slice, ...] | slice | int) -> np.ndarray:
        """Boolean mask of ``label`` (with what it contains) over ``region`` of the label map."""
        values = self.values(label)
        part = self.labelmap[region]
        if len(values) == 1:
            return np.asarray(part == values[0])
        return np.isin(part, values)

    def box(self, label: int) -> LabelBox | None:
        return self.boxes[label - 1]

    def voxel_count(self, label: int) -> int:
        return int(self.slice_counts[:, label].sum())

    def slices_with(self, label: int) -> np.ndarray:
        return np.flatnonzero(self.slice_counts[:, label])

    def footprint(self, label: int, slice_index: int) -> tuple[int, int, int, int] | None:
        """(row0, column0, row1, column1), inclusive, of ``label`` on one slice; None if absent."""
        box = self.box(label)
        if box is None or not self.slice_counts[slice_index, label]:
            return None
        _, row_box, column_box = box.slices
        mask = self.mask(label, (slice_index, row_box, column_box))
        rows = np.flatnonzero(mask.any(axis=1))
        columns = np.flatnonzero(mask.any(axis=0))
        return (
            box.row0 + int(rows[0]),
            box.column0 + int(columns[0]),
            box.row0 + int(rows[-1]),
            box.column0 + int(columns[-1]),
        )

    def key_slice(self, label: int) -> int | None:
        """The slice where the label has most voxels (the first of equals): its key image."""
        column = self.slice_counts[:, label]
        return int(np.argmax(column)) if column.any() else None


def as_label_map(labelmap: np.ndarray) -> np.ndarray:
    """The label map as uint8 (or uint16 above 255 labels): what SEG pixel data and the statistics
    use. Raises ValueError for non-integer or negative labels or a non-3D array."""
    labelmap = np.asarray(labelmap)
    if labelmap.ndim != 3:
        raise ValueError(f"label map must be [slice, row, column], got shape {labelmap.shape}")
    if labelmap.dtype.kind not in "ui":
        raise ValueError(f"label map must hold integers, got {labelmap.dtype}")
    if labelmap.dtype in (np.uint8, np.uint16):
        return labelmap
    if labelmap.size and labelmap.dtype.kind == "i" and int(labelmap.min()) < 0:
        raise ValueError("label map has negative labels")
    highest = int(labelmap.max(initial=0))
    if highest > 65535:
        raise ValueError(f"label {highest} does not fit a SEG (at most 65535 segments)")
    return labelmap.astype(np.uint16 if highest > 255 else np.uint8)


def label_stats(
    labelmap: np.ndarray, n_labels: int, contains: Mapping[int, Sequence[int]] | None = None
) -> LabelStats:
    """Statistics of labels 1..n_labels in a ``[slice, row, column]`` integer label map.

    ``contains`` maps a label to the labels lying inside it (transitively closed here): its counts,
    box and masks are then those of the union.
    """
    stats = _painted_stats(labelmap, n_labels)
    groups = _closure(contains or {}, n_labels)
    if not groups:
        return stats
    slice_counts = stats.slice_counts.copy()
    boxes = list(stats.boxes)
    for label, values in groups.items():
        slice_counts[:, label] = stats.slice_counts[:, list(values)].sum(axis=1)
        parts = [b for v in values if (b := stats.boxes[v - 1]) is not None]
        boxes[label - 1] = (
            LabelBox(
                min(b.slice0 for b in parts),
                min(b.row0 for b in parts),
                min(b.column0 for b in parts),
                max(b.slice1 for b in parts),
                max(b.row1 for b in parts),
                max(b.column1 for b in parts),
            )
            if parts
            else None
        )
    return replace(stats, boxes=tuple(boxes), slice_counts=slice_counts, members=groups)


def _closure(contains: Mapping[int, Sequence[int]], n_labels: int) -> dict[int, tuple[int, ...]]:
    """label -> sorted values of itself and everything inside it, for labels that contain any."""
    out: dict[int, tuple[int, ...]] = {}
    for label in contains:
        if not 1 <= label <= n_labels:
            raise ValueError(f"label {label} contains others but is not a label 1..{n_labels}")
        seen, todo = {label}, list(contains[label])
        while todo:
            inner = todo.pop()
            if not 1 <= inner <= n_labels:
                raise ValueError(f"label {label} contains {inner}, not a label 1..{n_labels}")
            if inner not in seen:
                seen.add(inner)
                todo.extend(contains.get(inner, ()))
        if len(seen) > 1:
            out[label] = tuple(sorted(seen))
    return out


def _painted_stats(labelmap: np.ndarray, n_labels: int) -> LabelStats:
    labelmap = as_label_map(labelmap)
    n_slices, rows, columns = labelmap.shape
    highest = int(labelmap.max(initial=0))
    if highest > n_labels or (labelmap.dtype.kind == "i" and int(labelmap.min(initial=0)) < 0):
        raise ValueError(f"label map holds labels outside 0..{n_labels} (max {highest})")
    if n_labels > 63:
        return _label_stats_wide(labelmap, n_labels)
    bit_type = np.uint32 if n_labels < 32 else np.uint64
    one = bit_type(1)
    row_bits = np.zeros((n_slices, rows), dtype=bit_type)
    column_bits = np.zeros((n_slices, columns), dtype=bit_type)
    for start in range(0, n_slices, _CHUNK_SLICES):
        chunk = labelmap[start : start + _CHUNK_SLICES]
        bits = np.left_shift(one, chunk, dtype=bit_type)
        np.bitwise_or.reduce(bits, axis=2, out=row_bits[start : start + _CHUNK_SLICES])
        np.bitwise_or.reduce(bits, axis=1, out=column_bits[start : start + _CHUNK_SLICES])
    boxes: list[LabelBox | None] = []
    slice_counts = np.zeros((n_slices, n_labels + 1), dtype=np.int64)
    for label in range(1, n_labels + 1):
        in_rows = ((row_bits >> bit_type(label)) & one).astype(bool)
        present = np.flatnonzero(in_rows.any(axis=1))
        if present.size == 0:
            boxes.append(None)
            continue
        row_hits = np.flatnonzero(in_rows.any(axis=0))
        column_hits = np.flatnonzero(((column_bits >> bit_type(label)) & one).astype(bool).any(axis=0))
        box = LabelBox(
            int(present[0]),
            int(row_hits[0]),
            int(column_hits[0]),
            int(present[-1]),
            int(row_hits[-1]),
            int(column_hits[-1]),
        )
        boxes.append(box)
        _, row_box, column_box = box.slices
        for k in present:
            slice_counts[k, label] = np.count_nonzero(labelmap[k, row_box, column_box] == label)
    return LabelStats(n_labels=n_labels, boxes=tuple(boxes), slice_counts=slice_counts, labelmap=labelmap)


def _label_stats_wide(labelmap: np.ndarray, n_labels: int) -> LabelStats:
    """More labels than bits in a word: scipy's find_objects, slower but general."""
    from scipy import ndimage

    found = ndimage.find_objects(labelmap, max_label=n_labels)
    slice_counts = np.zeros((labelmap.shape[0], n_labels + 1), dtype=np.int64)
    boxes: list[LabelBox | None] = []
    for label, region in enumerate(found, start=1):
        if region is None:
            boxes.append(None)
            continue
        s, r, c = region
        boxes.append(LabelBox(s.start, r.start, c.start, s.stop - 1, r.stop - 1, c.stop - 1))
        slice_counts[s, label] = np.count_nonzero(labelmap[region] == label, axis=(1, 2))
    return LabelStats(n_labels=n_labels, boxes=tuple(boxes), slice_counts=slice_counts, labelmap=labelmap)
