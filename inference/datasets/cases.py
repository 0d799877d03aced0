"""What every dataset reader returns: cases whose label files name their classes, on disk.

A case is an image plus label files, each file a ``{value: dataset name}`` map (one multi-label
map, or one binary mask per class). Nothing is read until :meth:`LabelledCase.load`, so indexing a
large dataset costs only directory listings.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from inference.datasets.names import NameMapping, map_names
from inference.datasets.nifti import load_nifti_lps, on_grid


@dataclass(frozen=True)
class LabelFile:
    path: Path
    classes: dict[int, str]  # label value → the dataset's class name


@dataclass(frozen=True)
class LabelledCase:
    case_id: str
    image: Path
    label_files: tuple[LabelFile, ...]
    extra: dict[str, Any] = field(default_factory=dict)  # per-case record (teacher, source)

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(n for f in self.label_files for n in f.classes.values()))

    def load(self) -> LoadedCase:
        hu, affine = load_nifti_lps(self.image)
        return LoadedCase(self, np.asarray(hu, dtype=np.float32), affine)


@dataclass
class LoadedCase:
    case: LabelledCase
    hu: np.ndarray  # float32, as stored in the image file
    affine_lps: np.ndarray

    def masks(self) -> Iterator[tuple[str, np.ndarray]]:
        """``(dataset name, boolean mask on the image grid)`` for every class with a voxel."""
        for f in self.case.label_files:
            data, affine = load_nifti_lps(f.path)
            labels = on_grid(
                np.asarray(np.rint(data), dtype=np.int32), affine, self.hu.shape, self.affine_lps
            )
            present = set(np.unique(labels).tolist())
            for value, name in f.classes.items():
                if value in present:
                    yield name, labels == value


@dataclass(frozen=True)
class DatasetIndex:
    """A dataset on disk: its layout, cases, and how its names map into the vocabulary."""

    root: Path
    layout: str  # "nnunet" | "totalsegmentator" | "dicom-seg"
    cases: tuple[LabelledCase, ...]
    mapping: NameMapping
    info: dict[str, Any] = field(default_factory=dict)  # e.g. dataset.json's name, teacher

    @property
    def unknown(self) -> tuple[str, ...]:
        return self.mapping.unknown


def index_of(
    root: Path, layout: str, cases: list[LabelledCase], info: dict[str, Any] | None = None
) -> DatasetIndex:
    names = [n for c in cases for n in c.names]
    return DatasetIndex(Path(root), layout, tuple(cases), map_names(names), dict(info or {}))
