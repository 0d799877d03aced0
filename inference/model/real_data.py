"""Real labelled CT as training data: conversion into the training cache and its augmentation.

A real case is stored like a synthetic one (``dataset.write_canonical``: coarse and fine
canonical grids) with its labels on the training label values (``inference.synth.labels``),
so :class:`~inference.model.dataset.SampleMaker` crops it the same way. What differs is recorded
in ``meta.json``:

* ``real``: true — the sample maker draws SEG queries only from ``labelled``, the structures the
  dataset annotates (a structure a dataset does not label is unknown there, not absent), and
  leaves DET and LOC to synthetic cases (real labels name no lesions and carry no snippets);
* ``volumes_ml``: per-structure volume, so crops can be weighted toward small structures.

The body outline (the "body" query, and the soft tissue every unnamed voxel inside it is) is
not in real label maps: it is thresholded from the image (> −500 HU, largest component, holes
filled) and united with every labelled voxel.

Pure numpy/scipy (no torch).
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from scipy import ndimage as ndi

from inference.datasets.card import write_dataset_card
from inference.datasets.cases import DatasetIndex, LabelledCase
from inference.datasets.names import left_right_lut, training_label
from inference.model.config import ModelConfig, RealAugment
from inference.model.vocab import SEG_NAMES
from inference.synth.labels import STRUCTURE_LABELS, atomic_parts, composites_present, names_present

log = logging.getLogger(__name__)

SOFT_TISSUE = STRUCTURE_LABELS["soft tissue"]
MIN_PICK_ML = 5.0  # smallest structure volume on a case that small-structure sampling aims at


def body_mask(hu: np.ndarray, labelled: np.ndarray) -> np.ndarray:
    """The patient outline: tissue above −500 HU (the table is cut off by keeping the largest
    component), inner air (lungs, bowel gas) filled, plus whatever the labels name."""
    tissue = ndi.binary_opening(hu > -500, iterations=1)
    comp, n = ndi.label(tissue)
    if n:
        sizes = np.bincount(comp.ravel())
        sizes[0] = 0
        tissue = comp == int(sizes.argmax())
    filled: np.ndarray = ndi.binary_fill_holes(tissue | labelled)
    return filled


def covered_labels(index: DatasetIndex) -> set[str]:
    """Training labels a dataset annotates (some class of it maps onto them)."""
    return {lab for c in index.mapping.mapped.values() if (lab := training_label(c)) is not None}


def labelled_names(covered: set[str]) -> list[str]:
    """Query names with a full answer on the dataset: every atomic part annotated (+ "body")."""
    out = ["body"]
    for name in SEG_NAMES:
        if name != "body" and all(p in covered for p in atomic_parts(name)):
            out.append(name)
    return out


def training_labelmap(case: LabelledCase, index: DatasetIndex) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(hu, affine_lps, labels)``: the case's image and its labels on the training values."""
    loaded = case.load()
    labels = np.zeros(loaded.hu.shape, dtype=np.uint8)
    any_label = np.zeros(loaded.hu.shape, dtype=bool)
    for raw, mask in loaded.masks():
        any_label |= mask
        canonical = index.mapping.mapped.get(raw)
        label = training_label(canonical) if canonical else None
        if label is not None:
            labels[mask & (labels == 0)] = STRUCTURE_LABELS[label]
    labels[body_mask(loaded.hu, any_label) & (labels == 0)] = SOFT_TISSUE
    return loaded.hu, loaded.affine_lps, labels


def _safe(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text)[:80]


def prepare_real_case(
    case: LabelledCase, index: DatasetIndex, dest: Path, *, coarse_spacing_mm: float, fine_spacing_mm: float
) -> Path:
    """Store one real case in the cache under ``dest`` (idempotent, like ``prepare_case``)."""
    from inference.model.dataset import CACHE_FORMAT, write_canonical

    out = Path(dest) / f"case_{_safe(case.case_id)}"
    if (out / "meta.json").is_file():
        return out
    hu, affine, labels = training_labelmap(case, index)
    tmp = out.with_name(out.name + ".tmp")
    tmp.mkdir(parents=True, exist_ok=True)
    meta = write_canonical(
        hu,
        affine,
        labels,
        np.zeros_like(labels),
        tmp,
        coarse_spacing_mm=coarse_spacing_mm,
        fine_spacing_mm=fine_spacing_mm,
    )
    with np.load(tmp / "coarse_labels.npz") as z:
        coarse = z["labels"]
    present_atoms = names_present(coarse)
    labelled = labelled_names(covered_labels(index))
    present = [n for n in (*present_atoms.values(), *composites_present(present_atoms)) if n in labelled]
    voxel_ml = coarse_spacing_mm**3 / 1000.0
    counts = np.bincount(coarse.ravel(), minlength=256)
    volumes = {
        n: float(sum(counts[STRUCTURE_LABELS[p]] for p in atomic_parts(n)) * voxel_ml)
        for n in present
        if n != "body"
    }
    meta.update(
        seed=None,
        source=f"real:{index.root.name}/{case.case_id}",
        format=CACHE_FORMAT,
        real=True,
        labelled=labelled,
        volumes_ml=volumes,
        lesions=[],
        snippets=[],
        captions={},
        structures_present=sorted(set(present)),
    )
    (tmp / "meta.json").write_text(json.dumps(meta))
    tmp.rename(out)
    return out


def build_real_cache(cfg: ModelConfig, *, progress: bool = True) -> tuple[list[Path], list[Path]]:
    """Convert every configured real dataset into the cache; returns (case dirs, dataset cards).

    Each dataset's card is written beside its converted cases (``<cache>/real/<name>/``), so
    the source folders (which may be read-only shared data) are never written to.
    """
    from tqdm import tqdm

    from inference.datasets.totalseg import read_dataset

    dirs: list[Path] = []
    cards: list[Path] = []
    for ds in cfg.data.real_datasets:
        index = read_dataset(ds.path, ds.layout)
        name = ds.name or Path(ds.path).name
        dest = Path(cfg.data.cache_dir) / "real" / _safe(name)
        cards.append(write_dataset_card(index, dest, name=name))
        if index.unknown:
            log.warning("dataset names outside the vocabulary (not trained)", extra={"names": index.unknown})
        for case in tqdm(index.cases, desc=f"real cases {name}", disable=not progress):
            dirs.append(
                prepare_real_case(
                    case,
                    index,
                    dest,
                    coarse_spacing_mm=cfg.inference.coarse_spacing_mm,
                    fine_spacing_mm=cfg.inference.fine_spacing_mm,
                )
            )
    return dirs, cards


# ---------------------------------------------------------------------------------------------
# Augmentation (on canonical crops: axis 0 is z, axis 2 is x, patient right → left)
# ---------------------------------------------------------------------------------------------


def augment_intensity(hu: np.ndarray, rng: np.random.Generator, aug: RealAugment) -> np.ndarray:
    """Scanner calibration and noise: HU × scale + shift + Gaussian noise."""
    scale = 1.0 + float(rng.uniform(-aug.intensity_scale, aug.intensity_scale))
    shift = float(rng.uniform(-aug.intensity_shift_hu, aug.intensity_shift_hu))
    sigma = float(rng.uniform(0.0, aug.noise_hu_max))
    out: np.ndarray = (hu * scale + shift + rng.normal(0.0, sigma, hu.shape)).astype(np.float32)
    return out


def degrade_resolution(hu: np.ndarray, rng: np.random.Generator, aug: RealAugment) -> np.ndarray:
    """A thicker-slice, softer-kernel look: slab averaging along z, Gaussian blur in-plane."""
    if rng.random() >= aug.resolution_prob:
        return hu
    size = int(rng.integers(1, max(2, round(aug.max_slice_factor)) + 1))
    out = ndi.uniform_filter1d(hu, size=size, axis=0, mode="nearest") if size > 1 else hu
    sigma = float(rng.uniform(0.0, 0.8))
    if sigma > 0.1:
        out = ndi.gaussian_filter(out, sigma=(0.0, sigma, sigma))
    return np.asarray(out, dtype=np.float32)


def flip_left_right(hu: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mirror along x and swap the left/right label values, so the words stay true."""
    flipped = np.ascontiguousarray(labels[..., ::-1])
    swapped: np.ndarray = left_right_lut()[flipped]
    return np.ascontiguousarray(hu[..., ::-1]), swapped


def augment_real_crop(
    hu: np.ndarray, labels: np.ndarray, rng: np.random.Generator, aug: RealAugment, *, flip: bool = True
) -> tuple[np.ndarray, np.ndarray]:
    hu = degrade_resolution(np.asarray(hu, dtype=np.float32), rng, aug)
    hu = augment_intensity(hu, rng, aug)
    if flip and rng.random() < aug.flip_lr_prob:
        hu, labels = flip_left_right(hu, labels)
    return hu, labels


def small_structure_pick(
    names: Sequence[str], volumes_ml: dict[str, float], rng: np.random.Generator, power: float
) -> str | None:
    """A structure drawn with weight volume^-power (small ones more often); None if no names.

    Structures under ``MIN_PICK_ML`` on the case are left out: there they are slivers cut by the
    field of view (subject_a's heart: 3 voxels at 3 mm), and weighting would make them the most
    frequent target of all.
    """
    usable = [n for n in names if volumes_ml.get(n, 0.0) >= MIN_PICK_ML]
    if not usable:
        return None
    w = np.array([volumes_ml[n] ** -power for n in usable])
    return usable[int(rng.choice(len(usable), p=w / w.sum()))]
