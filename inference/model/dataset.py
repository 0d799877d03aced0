"""Training data: synthetic cases (engineer D's ``inference.synth``) cached on disk on the
model's canonical grids, and the random samples (crops, queries, targets) drawn from them.

Generating a case costs seconds, a training step about as much, so cases are generated once,
in a worker pool, and stored per case as ``.npy`` (HU memory-mapped, labels small):

* ``coarse_*`` — the whole scan on the canonical grid at the coarse spacing (3 mm): the
  whole-volume pass, detection and localisation are trained on crops of it.
* ``fine_*`` — the scan on the canonical grid at the fine spacing (1.5 mm), cropped to the body:
  the look-closer pass is trained on crops of it around one structure or lesion.
* ``meta.json`` — lesions, snippets, captions, affines; ``texts.npz`` (cache level) holds the
  frozen MiniLM embedding of every training text, so the encoder never runs in the loop.

Pure numpy/scipy: no torch here (the training loop converts batches).
"""

from __future__ import annotations

import json
import logging
import multiprocessing
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from scipy import ndimage as ndi

from inference.model.config import ModelConfig
from inference.model.geometry import AIR_HU, CanonicalGrid, canonical_affine, canonical_grid_for, resample
from inference.model.real_data import augment_intensity, augment_real_crop, small_structure_pick
from inference.model.vocab import LESION_KINDS, SEG_NAMES, is_held_out_text, training_phrases

log = logging.getLogger(__name__)

CACHE_FORMAT = 1
SEG_SLOTS_DEFAULT = 6


# ---------------------------------------------------------------------------------------------
# Cache
# ---------------------------------------------------------------------------------------------


def case_dir(cache_dir: Path, seed: int) -> Path:
    return Path(cache_dir) / f"case_{seed:07d}"


def _synth_shape(seed: int) -> tuple[int, int, int]:
    # 256×256 in-plane lets the generator fit the body (~1.4–1.9 mm); 160–220 slices over the
    # protocol's coverage give 1.5–4.5 mm slices, the range clinical CT uses.
    rng = np.random.default_rng([seed, 77])
    return (int(rng.integers(160, 221)), 256, 256)


def prepare_case(
    seed: int,
    cache_dir: Path,
    *,
    coarse_spacing_mm: float,
    fine_spacing_mm: float,
    mode: str = "phantom",
    shape: tuple[int, int, int] | None = None,
    spacing_mm: tuple[float, float, float] | None = None,
) -> Path:
    """Generate case ``seed`` and store it on the canonical grids (idempotent)."""
    from inference.synth import make_case

    out = case_dir(cache_dir, seed)
    if (out / "meta.json").is_file():
        return out
    case = make_case(seed, mode=mode, shape=shape or _synth_shape(seed), spacing_mm=spacing_mm)  # type: ignore[arg-type]
    tmp = out.with_name(out.name + ".tmp")
    tmp.mkdir(parents=True, exist_ok=True)
    meta = write_canonical(
        case.hu,
        case.affine_lps,
        case.labels,
        case.lesion_labels,
        tmp,
        coarse_spacing_mm=coarse_spacing_mm,
        fine_spacing_mm=fine_spacing_mm,
    )
    meta.update(
        seed=seed,
        source=case.source,
        format=CACHE_FORMAT,
        lesions=[
            {
                "kind": le.kind,
                "label_value": le.label_value,
                "center_lps_mm": list(le.center_lps_mm),
                "diameter_mm": le.diameter_mm,
            }
            for le in case.lesions
        ],
        snippets=[
            {"text": sn.text, "z_mm": sn.z_mm, "point_lps_mm": list(sn.point_lps_mm), "target": sn.target}
            for sn in case.snippets
        ],
        captions={k: list(v) for k, v in case.captions.items()},
        structures_present=list(case.structures_present),
    )
    (tmp / "meta.json").write_text(json.dumps(meta))
    tmp.rename(out)
    return out


def write_canonical(
    hu: np.ndarray,
    affine_lps: np.ndarray,
    labels: np.ndarray,
    lesion_labels: np.ndarray,
    out: Path,
    *,
    coarse_spacing_mm: float,
    fine_spacing_mm: float,
) -> dict[str, object]:
    """Store a labelled volume on the coarse (whole) and fine (body box) canonical grids."""
    coarse = canonical_grid_for(hu.shape, affine_lps, coarse_spacing_mm)
    np.save(out / "coarse_hu.npy", _to_int16(resample(hu, affine_lps, coarse.shape, coarse.affine_lps)))
    coarse_labels = resample(labels, affine_lps, coarse.shape, coarse.affine_lps, order=0, cval=0)
    coarse_lesions = resample(lesion_labels, affine_lps, coarse.shape, coarse.affine_lps, order=0, cval=0)
    np.savez_compressed(out / "coarse_labels.npz", labels=coarse_labels, lesions=coarse_lesions)
    # Fine grid: only the body's bounding box (keeps the cache ~4× smaller than the full FOV).
    body = np.argwhere(coarse_labels > 0)
    if body.size:
        lo_idx, hi_idx = body.min(axis=0) - 1, body.max(axis=0) + 1
        pts = coarse.index_to_lps(np.stack([lo_idx, hi_idx]))
        fine = canonical_grid_for(
            hu.shape, affine_lps, fine_spacing_mm, lo_lps=pts.min(axis=0), hi_lps=pts.max(axis=0)
        )
    else:
        fine = canonical_grid_for(hu.shape, affine_lps, fine_spacing_mm)
    np.save(out / "fine_hu.npy", _to_int16(resample(hu, affine_lps, fine.shape, fine.affine_lps)))
    # Fine label maps stay uncompressed and memory-mapped: a look-closer sample reads only its
    # crop (decompressing a case's 1.5 mm maps cost ~0.3 s a sample, as much as the step).
    np.save(
        out / "fine_labels.npy", resample(labels, affine_lps, fine.shape, fine.affine_lps, order=0, cval=0)
    )
    np.save(
        out / "fine_lesions.npy",
        resample(lesion_labels, affine_lps, fine.shape, fine.affine_lps, order=0, cval=0),
    )
    return {"coarse_affine": coarse.affine_lps.tolist(), "fine_affine": fine.affine_lps.tolist()}


def _to_int16(hu: np.ndarray) -> np.ndarray:
    out: np.ndarray = np.clip(np.rint(hu), -1024, 3071).astype(np.int16)
    return out


_Job = tuple[int, Path, float, float, str, tuple[int, int, int] | None, tuple[float, float, float] | None]


def _prepare_star(args: _Job) -> int:
    seed, cache_dir, coarse, fine, mode, shape, spacing = args
    prepare_case(
        seed,
        cache_dir,
        coarse_spacing_mm=coarse,
        fine_spacing_mm=fine,
        mode=mode,
        shape=shape,
        spacing_mm=spacing,
    )
    return seed


def case_seeds(cfg: ModelConfig, split: str) -> list[int]:
    d = cfg.data
    if split == "train":
        return list(range(d.first_train_seed, d.first_train_seed + d.train_cases))
    return list(range(d.first_val_seed, d.first_val_seed + d.val_cases))


def case_mode(cfg: ModelConfig, seed: int) -> str:
    rng = np.random.default_rng([seed, 91])
    return "template" if rng.random() < cfg.data.template_fraction else "phantom"


def build_cache(cfg: ModelConfig, seeds: Sequence[int], *, progress: bool = True) -> list[Path]:
    """Generate missing cases in a process pool, then embed every training text once."""
    cache_dir = cfg.data.cache_dir
    cache_dir.mkdir(parents=True, exist_ok=True)
    todo = [s for s in seeds if not (case_dir(cache_dir, s) / "meta.json").is_file()]
    jobs: list[_Job] = [
        (
            s,
            cache_dir,
            cfg.inference.coarse_spacing_mm,
            cfg.inference.fine_spacing_mm,
            case_mode(cfg, s),
            cfg.data.synth_shape,
            cfg.data.synth_spacing_mm,
        )
        for s in todo
    ]
    if jobs:
        from tqdm import tqdm

        workers = max(1, min(cfg.data.generation_workers, len(jobs)))
        bar = tqdm(total=len(jobs), desc="synthetic cases", disable=not progress)
        if workers == 1:
            for job in jobs:
                _prepare_star(job)
                bar.update()
        else:
            ctx = multiprocessing.get_context("spawn")  # no fork of a process that may hold torch threads
            with ctx.Pool(workers) as pool:
                for _ in pool.imap_unordered(_prepare_star, jobs):
                    bar.update()
        bar.close()
    dirs = [case_dir(cache_dir, s) for s in seeds]
    ensure_text_embeddings(cache_dir, dirs, phrases_per_name=cfg.data.phrases_per_name)
    return dirs


def training_texts(dirs: Iterable[Path], *, phrases_per_name: int | None = None) -> list[str]:
    texts: dict[str, None] = {}
    for name in (*SEG_NAMES, *LESION_KINDS):
        texts.update(dict.fromkeys(training_phrases(name)[:phrases_per_name]))
    for d in dirs:
        meta = json.loads((d / "meta.json").read_text())
        for caps in meta["captions"].values():
            texts.update(dict.fromkeys(caps))
        texts.update(dict.fromkeys(s["text"] for s in meta["snippets"]))
    return list(texts)


def ensure_text_embeddings(
    cache_dir: Path, dirs: Iterable[Path], *, phrases_per_name: int | None = None
) -> Path:
    """``texts.npz`` with the MiniLM embedding of every text the samples can draw."""
    path = Path(cache_dir) / "texts.npz"
    texts = training_texts(dirs, phrases_per_name=phrases_per_name)
    known: dict[str, np.ndarray] = {}
    if path.is_file():
        with np.load(path) as z:
            known = dict(zip(z["texts"].tolist(), z["emb"], strict=True))
    missing = [t for t in texts if t not in known]
    if missing:
        from inference.model.text import shared_encoder

        emb = shared_encoder().encode(missing)
        known.update(zip(missing, emb, strict=True))
        all_texts = list(known)
        np.savez(
            path, texts=np.array(all_texts), emb=np.stack([known[t] for t in all_texts]).astype(np.float32)
        )
    return path


def load_text_table(cache_dir: Path) -> dict[str, np.ndarray]:
    with np.load(Path(cache_dir) / "texts.npz") as z:
        return dict(zip(z["texts"].tolist(), z["emb"].astype(np.float32), strict=True))


# ---------------------------------------------------------------------------------------------
# Samples
# ---------------------------------------------------------------------------------------------


# Decompressed coarse label maps of recently used cases (~4 MB each).
_LABEL_CACHE: dict[tuple[Path, str], tuple[np.ndarray, np.ndarray]] = {}
_LABEL_CACHE_SIZE = 256


@dataclass
class CachedCase:
    path: Path
    meta: dict[str, Any]
    coarse: CanonicalGrid
    fine: CanonicalGrid

    @classmethod
    def open(cls, path: Path) -> CachedCase:
        meta = json.loads((path / "meta.json").read_text())
        coarse_hu = np.load(path / "coarse_hu.npy", mmap_mode="r")
        fine_hu = np.load(path / "fine_hu.npy", mmap_mode="r")
        return cls(
            path=path,
            meta=meta,
            coarse=CanonicalGrid(coarse_hu.shape, np.asarray(meta["coarse_affine"])),
            fine=CanonicalGrid(fine_hu.shape, np.asarray(meta["fine_affine"])),
        )

    def arrays(self, level: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        hu = np.load(self.path / f"{level}_hu.npy", mmap_mode="r")
        if (self.path / f"{level}_labels.npy").is_file():
            labels = np.load(self.path / f"{level}_labels.npy", mmap_mode="r")
            return hu, labels, np.load(self.path / f"{level}_lesions.npy", mmap_mode="r")
        key = (self.path, level)
        if key not in _LABEL_CACHE:
            with np.load(self.path / f"{level}_labels.npz") as z:
                _LABEL_CACHE[key] = (z["labels"], z["lesions"])
            while len(_LABEL_CACHE) > _LABEL_CACHE_SIZE:
                _LABEL_CACHE.pop(next(iter(_LABEL_CACHE)))
        labels, lesions = _LABEL_CACHE[key]
        return hu, labels, lesions

    def lesion_kind(self, value: int) -> str | None:
        for le in self.meta["lesions"]:
            if le["label_value"] == value:
                return str(le["kind"])
        return None


@dataclass
class Sample:
    """One training sample; query slots are fixed: ``seg_slots`` SEG, then 1 DET, then 1 LOC."""

    image: np.ndarray  # [3, S, R, K] float32 network input
    text: np.ndarray  # [Q, 384]
    task: np.ndarray  # [Q] int64 (TASK_IDS)
    valid: np.ndarray  # [Q] bool
    seg_target: np.ndarray  # [seg_slots, S, R, K] uint8
    det_heat: np.ndarray  # [S/2, R/2, K/2] float32 CenterNet target (0..1)
    det_size: np.ndarray  # [3, S/2, R/2, K/2] float32 log box size (half-res voxels)
    det_size_mask: np.ndarray  # [S/2, R/2, K/2] float32 1 at lesion centres
    loc_z: int  # target slice index in the crop (-1 = none)
    loc_point: np.ndarray  # [3] int64 half-res voxel of the target point


def network_input(hu: np.ndarray, prior: np.ndarray | None = None) -> np.ndarray:
    """Three input channels: wide window, soft-tissue window, look-closer prior (0 if none)."""
    h = np.asarray(hu, dtype=np.float32)
    wide = np.clip(h, -1000.0, 1000.0) / 1000.0
    soft = (np.clip(h, -160.0, 240.0) - 40.0) / 200.0
    pri = np.zeros_like(wide) if prior is None else np.asarray(prior, dtype=np.float32)
    return np.stack([wide, soft, pri]).astype(np.float32)


def _crop(volume: np.ndarray, start: np.ndarray, size: tuple[int, int, int], fill: float) -> np.ndarray:
    """``volume[start:start+size]`` padded with ``fill`` where it leaves the volume."""
    out = np.full(size, fill, dtype=volume.dtype)
    src_lo = np.maximum(start, 0)
    src_hi = np.minimum(start + np.array(size), volume.shape)
    if np.any(src_hi <= src_lo):
        return out
    dst_lo = src_lo - start
    dst_hi = dst_lo + (src_hi - src_lo)
    out[dst_lo[0] : dst_hi[0], dst_lo[1] : dst_hi[1], dst_lo[2] : dst_hi[2]] = volume[
        src_lo[0] : src_hi[0], src_lo[1] : src_hi[1], src_lo[2] : src_hi[2]
    ]
    return out


def name_mask(labels: np.ndarray, lesions: np.ndarray, name: str, case: CachedCase) -> np.ndarray:
    """Truth mask of a structure (atomic/composite/body) or lesion kind on a label crop."""
    if name in LESION_KINDS:
        values = [le["label_value"] for le in case.meta["lesions"] if le["kind"] == name]
        return np.isin(lesions, values) if values else np.zeros(lesions.shape, dtype=bool)
    from inference.synth import structure_mask

    return structure_mask(labels, name)


def _gaussian_heat(shape: tuple[int, ...], centres: list[np.ndarray], sigmas: list[float]) -> np.ndarray:
    heat = np.zeros(shape, dtype=np.float32)
    grids = np.ogrid[tuple(slice(0, n) for n in shape)]
    for c, s in zip(centres, sigmas, strict=True):
        d2 = sum((g - ci) ** 2 for g, ci in zip(grids, c, strict=True))
        heat = np.maximum(heat, np.exp(-d2 / (2 * s * s)).astype(np.float32))
    return heat


class SampleMaker:
    """Draws coarse (whole-volume pass) and fine (look-closer pass) samples from cached cases."""

    def __init__(
        self,
        cfg: ModelConfig,
        dirs: Sequence[Path],
        text_table: dict[str, np.ndarray],
        real_dirs: Sequence[Path] = (),
    ) -> None:
        self.cfg = cfg
        self.dirs = list(dirs)
        self.real_dirs = list(real_dirs)  # real labelled cases (real_data.py), drawn real_fraction
        self.texts = text_table
        self.seg_slots = cfg.train.seg_queries
        self._cases: dict[Path, CachedCase] = {}

    def case(self, index: int, *, real: bool = False) -> CachedCase:
        pool = self.real_dirs if real else self.dirs
        path = pool[index % len(pool)]
        if path not in self._cases:
            self._cases[path] = CachedCase.open(path)
        return self._cases[path]

    def _redraw(self, rng: np.random.Generator) -> CachedCase:
        """Another case when this one has nothing to sample (synthetic unless there are none)."""
        real = not self.dirs
        return self.case(int(rng.integers(len(self.real_dirs if real else self.dirs))), real=real)

    def seg_names(self, case: CachedCase) -> list[str]:
        """Names a SEG query may ask on this case: on a real case only those its dataset labels
        (elsewhere "absent" would be a guess), no lesion kinds (real labels name none)."""
        if case.meta.get("real"):
            return [n for n in case.meta["labelled"] if n in SEG_NAMES]
        return [*SEG_NAMES, *LESION_KINDS]

    def _text(self, name: str, case: CachedCase, rng: np.random.Generator) -> np.ndarray:
        captions = [c for c in case.meta["captions"].get(name, []) if not is_held_out_text(c)]
        options = [t for t in (*training_phrases(name), *captions) if t in self.texts]
        return self.texts[options[int(rng.integers(len(options)))]]

    def sample(self, rng: np.random.Generator, *, fine: bool) -> Sample:
        """A coarse (whole-volume pass) or fine (look-closer) sample; a batch holds one kind."""
        real = bool(self.real_dirs) and (not self.dirs or rng.random() < self.cfg.data.real_fraction)
        case = self.case(int(rng.integers(len(self.real_dirs if real else self.dirs))), real=real)
        if fine:
            return self.fine_sample(case, rng)
        return self.coarse_sample(case, rng)

    # -- whole-volume pass ------------------------------------------------------------------
    def coarse_sample(self, case: CachedCase, rng: np.random.Generator) -> Sample:
        size = self.cfg.train.crop_voxels
        hu, labels, lesions = case.arrays("coarse")
        shape = np.array(hu.shape)
        real = bool(case.meta.get("real"))
        aug = self.cfg.data.real_augment
        names = self.seg_names(case)
        # Centre the crop on a random body voxel (or a lesion, a third of the time).
        centre = None
        if real and rng.random() < aug.small_structure_prob:
            # a structure drawn toward the small ones, then a random voxel of it
            pick = small_structure_pick(
                case.meta["structures_present"], case.meta["volumes_ml"], rng, aug.small_structure_power
            )
            pts = (
                np.argwhere(name_mask(np.asarray(labels), np.asarray(lesions), pick, case))
                if pick
                else np.zeros((0, 3), dtype=np.int64)
            )
            if len(pts):
                centre = pts[int(rng.integers(len(pts)))]
        if case.meta["lesions"] and rng.random() < 0.33:
            le = case.meta["lesions"][int(rng.integers(len(case.meta["lesions"])))]
            centre = np.round(case.coarse.lps_to_index(np.array(le["center_lps_mm"]))[0]).astype(int)
        if centre is None:  # a random body voxel: every part of the body is seen equally often
            body = np.flatnonzero(np.asarray(labels).ravel())
            flat = int(body[int(rng.integers(len(body)))]) if len(body) else int(rng.integers(np.prod(shape)))
            centre = np.array(np.unravel_index(flat, tuple(shape)))
        jitter = np.array([int(rng.integers(-n // 4, n // 4 + 1)) for n in size])
        start = centre + jitter - np.array(size) // 2
        start = np.clip(start, np.minimum(0, shape - np.array(size)), np.maximum(0, shape - np.array(size)))
        hu_c = _crop(np.asarray(hu), start, size, AIR_HU).astype(np.float32)
        lab_c = _crop(np.asarray(labels), start, size, 0)
        les_c = _crop(np.asarray(lesions), start, size, 0)
        if real:
            hu_c, lab_c = augment_real_crop(hu_c, lab_c, rng, aug)
        else:
            hu_c = hu_c * float(rng.uniform(0.97, 1.03)) + float(rng.normal(0, 8))
        image = network_input(hu_c)

        # SEG queries: present structures first, sometimes an absent one (answer: empty).
        present = [n for n in names if name_mask(lab_c, les_c, n, case).any()]
        rng.shuffle(present)
        absent = [n for n in names if n not in present]
        picks = present[: self.seg_slots - 1] if absent else present[: self.seg_slots]
        while len(picks) < self.seg_slots and absent:
            picks.append(absent.pop(int(rng.integers(len(absent)))))
        seg_target = np.zeros((self.seg_slots, *size), dtype=np.uint8)
        texts, tasks, valid = [], [], []
        for i in range(self.seg_slots):
            if i < len(picks):
                seg_target[i] = name_mask(lab_c, les_c, picks[i], case)
                texts.append(self._text(picks[i], case, rng))
                valid.append(True)
            else:
                texts.append(np.zeros(384, dtype=np.float32))
                valid.append(False)
            tasks.append(0)

        # DET query: a lesion kind (present in the case when possible).
        half = tuple(n // 2 for n in size)
        # Lesions from the case record (centre, diameter), not the 3 mm label crop: a 4 mm
        # nodule can vanish from a nearest-neighbour 3 mm label map but must still be found.
        spacing = case.coarse.spacing_mm
        here = []
        for le in case.meta["lesions"]:
            idx = case.coarse.lps_to_index(np.array(le["center_lps_mm"]))[0] - start
            if np.all(idx >= -0.5) and np.all(idx < np.array(size) - 0.5):
                here.append((le, idx))
        kinds_here = sorted({str(le["kind"]) for le, _ in here})
        kind = (
            kinds_here[int(rng.integers(len(kinds_here)))]
            if kinds_here and rng.random() < 0.8
            else (LESION_KINDS[int(rng.integers(len(LESION_KINDS)))])
        )
        centres, sigmas, sizes = [], [], []
        for le, idx in here:
            if le["kind"] != kind:
                continue
            extent_half = np.full(3, float(le["diameter_mm"]) / spacing / 2.0)
            centres.append(idx / 2.0)
            sigmas.append(max(0.6, float(extent_half.mean()) / 4.0))
            sizes.append(extent_half)
        det_heat = _gaussian_heat(half, centres, sigmas)
        det_size = np.zeros((3, *half), dtype=np.float32)
        det_size_mask = np.zeros(half, dtype=np.float32)
        for c, ext in zip(centres, sizes, strict=True):
            idx = tuple(np.clip(np.round(c).astype(int), 0, np.array(half) - 1))
            det_heat[idx] = 1.0
            det_size[(slice(None), *idx)] = np.log(np.maximum(ext, 0.5))
            det_size_mask[idx] = 1.0
        texts.append(self._text(kind, case, rng))
        tasks.append(1)
        valid.append(not real)  # unlabelled lesions may be there: no DET answer on real cases

        # LOC query: a snippet whose slice lies in the crop.
        loc_z, loc_point = -1, np.zeros(3, dtype=np.int64)
        inside = []
        for sn in case.meta["snippets"]:
            idx = case.coarse.lps_to_index(np.array(sn["point_lps_mm"]))[0] - start
            if np.all(idx >= 0) and np.all(idx < np.array(size)) and sn["text"] in self.texts:
                inside.append((sn, idx))
        if inside:
            sn, idx = inside[int(rng.integers(len(inside)))]
            loc_z = int(np.clip(round(idx[0]), 0, size[0] - 1))
            loc_point = np.clip(np.round(idx / 2.0).astype(np.int64), 0, np.array(half) - 1)
            texts.append(self.texts[sn["text"]])
            valid.append(True)
        else:
            texts.append(np.zeros(384, dtype=np.float32))
            valid.append(False)
        tasks.append(2)
        return Sample(
            image=image,
            text=np.stack(texts).astype(np.float32),
            task=np.array(tasks, dtype=np.int64),
            valid=np.array(valid, dtype=bool),
            seg_target=seg_target,
            det_heat=det_heat,
            det_size=det_size,
            det_size_mask=det_size_mask,
            loc_z=loc_z,
            loc_point=loc_point,
        )

    # -- look-closer pass -------------------------------------------------------------------
    def fine_sample(self, case: CachedCase, rng: np.random.Generator) -> Sample:
        """A crop at 1–1.75 × the fine spacing (1.5–2.6 mm) around one structure or lesion, with a
        prior that looks like what the coarse pass hands over."""
        size = self.cfg.train.fine_crop_voxels
        hu, labels, lesions = case.arrays("fine")
        _, c_labels, c_lesions = case.arrays("coarse")
        present = [n for n in case.meta["structures_present"] if n in SEG_NAMES]
        lesion_list = case.meta["lesions"]
        real = bool(case.meta.get("real"))
        aug = self.cfg.data.real_augment
        # Real cases: structures only (no lesion labels, so no false-candidate blobs either).
        roll = 1.0 if real else rng.random()
        fake = False
        if lesion_list and roll < 0.3:
            le = lesion_list[int(rng.integers(len(lesion_list)))]
            name = str(le["kind"])
            target_lps = np.array(le["center_lps_mm"]) + rng.normal(0, 2.0, 3)
            radius_mm = float(le["diameter_mm"]) / 2 * float(rng.uniform(0.7, 1.4))
        elif roll < 0.4:
            # A false candidate: a blob inside an organ with no lesion there; the answer is empty.
            name = LESION_KINDS[int(rng.integers(len(LESION_KINDS)))]
            organ = {"liver lesion": "liver", "lung nodule": "lungs", "kidney cyst": "kidneys"}[name]
            from inference.synth import structure_mask

            pts = np.argwhere(structure_mask(np.asarray(c_labels), organ))
            if not len(pts):
                return self.fine_sample(self._redraw(rng), rng)
            target_lps = case.coarse.index_to_lps(pts[int(rng.integers(len(pts)))])[0]
            radius_mm = float(rng.uniform(3, 15))
            fake = True
        else:
            if not present:
                return self.fine_sample(self._redraw(rng), rng)
            pick = None
            if real and rng.random() < aug.small_structure_prob:
                pick = small_structure_pick(
                    [n for n in present if n != "body"],
                    case.meta["volumes_ml"],
                    rng,
                    aug.small_structure_power,
                )
            name = pick or present[int(rng.integers(len(present)))]
            target_lps = None
            radius_mm = 0.0
        # Look-closer crops of big structures are coarser than fine_spacing_mm: train on that range too.
        spacing = self.cfg.inference.fine_spacing_mm * float(rng.uniform(1.0, 1.75))
        if target_lps is None:
            pts = np.argwhere(name_mask(np.asarray(c_labels), np.asarray(c_lesions), name, case))
            if not len(pts):
                # present at full resolution but lost on the 3 mm nearest-neighbour label map
                # (a thin or tiny structure): draw again rather than crash the run
                return self.fine_sample(self._redraw(rng), rng)
            target_lps = case.coarse.index_to_lps(pts[int(rng.integers(len(pts)))])[0]
        extent = np.array(size, dtype=np.float64)[::-1] * spacing  # (x, y, z) mm
        lo = target_lps - extent / 2 + rng.uniform(-0.2, 0.2, 3) * extent
        grid = CanonicalGrid(size, canonical_affine(lo, spacing))
        hu_c = resample(hu, case.fine.affine_lps, size, grid.affine_lps, antialias=True)
        lab_c = resample(labels, case.fine.affine_lps, size, grid.affine_lps, order=0, cval=0)
        les_c = resample(lesions, case.fine.affine_lps, size, grid.affine_lps, order=0, cval=0)
        target = name_mask(lab_c, les_c, name, case)
        if fake:
            target = np.zeros_like(target)
        # Prior: what the coarse pass would hand over.
        if name in LESION_KINDS:
            centre_idx = grid.lps_to_index(target_lps)[0]
            d2 = sum(
                (g - c) ** 2
                for g, c in zip(np.ogrid[tuple(slice(0, n) for n in size)], centre_idx, strict=True)
            )
            r_vox = max(radius_mm / spacing, 1.0)
            prior = np.exp(-d2 / (2 * r_vox * r_vox)).astype(np.float32)
        else:
            coarse_mask = name_mask(np.asarray(c_labels), np.asarray(c_lesions), name, case).astype(
                np.float32
            )
            coarse_mask = ndi.gaussian_filter(coarse_mask, float(rng.uniform(0.5, 1.2)))
            shift = np.eye(4)
            shift[:3, 3] = rng.normal(0, 2.0, 3)
            prior = resample(coarse_mask, shift @ case.coarse.affine_lps, size, grid.affine_lps, cval=0.0)
            prior = np.clip(prior * float(rng.uniform(0.8, 1.2)), 0, 1)
        if real:  # no mirror here: the prior would have to be mirrored with it
            hu_c = augment_intensity(np.asarray(hu_c, dtype=np.float32), rng, aug)
        else:
            hu_c = hu_c * float(rng.uniform(0.97, 1.03)) + float(rng.normal(0, 8))
        image = network_input(hu_c, prior)
        q = self.seg_slots + 2
        texts = np.zeros((q, 384), dtype=np.float32)
        texts[0] = self._text(name, case, rng)
        valid = np.zeros(q, dtype=bool)
        valid[0] = True
        seg_target = np.zeros((self.seg_slots, *size), dtype=np.uint8)
        seg_target[0] = target
        half = tuple(n // 2 for n in size)
        return Sample(
            image=image,
            text=texts,
            task=np.array([0] * self.seg_slots + [1, 2], dtype=np.int64),
            valid=valid,
            seg_target=seg_target,
            det_heat=np.zeros(half, dtype=np.float32),
            det_size=np.zeros((3, *half), dtype=np.float32),
            det_size_mask=np.zeros(half, dtype=np.float32),
            loc_z=-1,
            loc_point=np.zeros(3, dtype=np.int64),
        )
