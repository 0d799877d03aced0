"""Running the trained network on a volume: the coarse whole-volume pass and "look closer".

1. Coarse pass: the whole scan on the canonical grid at ``coarse_spacing_mm`` (3 mm); one image
   encoding serves every query (segmentation masks, detection heatmaps, snippet slices).
2. Look closer: for each segmentation query, a crop around what the coarse pass found (its box
   + ``fine_margin_mm``), at ``fine_spacing_mm`` (1.5 mm) or coarser when the structure is too
   big for ``fine_max_voxels``; the coarse probability enters as the third input channel (the
   prior) and the fine mask replaces the coarse one inside the crop. For each detection, a
   1.5 mm crop around the candidate with a blob prior: the lesion's mask there refines its box,
   and a candidate with no lesion in its crop is dropped (fewer false positives).

Results stay on canonical grids (``ProbMap``); ``pipeline.py`` maps them to the input grid.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from scipy import ndimage as ndi

from inference.model.card import checkpoint_path_from_card, load_card
from inference.model.checkpoint import load_network
from inference.model.config import InferenceConfig
from inference.model.dataset import network_input
from inference.model.geometry import (
    CanonicalGrid,
    canonical_grid_for,
    crop_box_lps,
    resample,
)
from inference.model.network import TASK_IDS, UnifiedCTNet
from inference.model.text import TextEncoder, shared_encoder

log = logging.getLogger(__name__)


@dataclass
class ProbMap:
    grid: CanonicalGrid
    prob: np.ndarray  # float32 probabilities on ``grid``

    def mask(self, threshold: float = 0.5) -> np.ndarray:
        return self.prob >= threshold


@dataclass
class SegAnswer:
    prompt: str
    name: str
    coarse: ProbMap
    fine: ProbMap | None = None  # look-closer result (replaces ``coarse`` inside its grid)
    score: float = 0.0

    @property
    def final(self) -> ProbMap:
        return self.fine if self.fine is not None else self.coarse


@dataclass
class DetAnswer:
    prompt: str
    name: str
    score: float
    center_lps: np.ndarray  # (x, y, z) mm
    lo_lps: np.ndarray  # box corners (x, y, z) mm
    hi_lps: np.ndarray
    mask: ProbMap | None = None  # the lesion's own mask from the look-closer crop
    refined: bool = False


@dataclass
class LocAnswer:
    text: str
    point_lps: np.ndarray  # (x, y, z) mm
    score: float  # probability mass within ±2 slices (3 mm each) of the chosen slice


@dataclass
class Analysis:
    grid: CanonicalGrid
    segments: list[SegAnswer] = field(default_factory=list)
    detections: list[DetAnswer] = field(default_factory=list)
    localisations: list[LocAnswer] = field(default_factory=list)
    coarse_detections: list[DetAnswer] = field(default_factory=list)  # before look-closer (ablation)
    timings_s: dict[str, float] = field(default_factory=dict)


class UnifiedCTModel:
    """The network, its inference settings and text embeddings, kept warm between jobs."""

    def __init__(
        self,
        net: UnifiedCTNet,
        cfg: InferenceConfig,
        *,
        text_bank: dict[str, np.ndarray] | None = None,
        encoder: TextEncoder | None = None,
        device: str | torch.device = "cpu",
        version: str = "unversioned",
    ) -> None:
        self.device = torch.device(device)
        self.net = net.to(self.device).eval()
        self.cfg = cfg
        self.version = version
        self._bank = {k.lower(): np.asarray(v, dtype=np.float32) for k, v in (text_bank or {}).items()}
        self._encoder = encoder
        self.stride = net.cfg.stride

    @classmethod
    def from_card(cls, card_file: Path | None = None, *, device: str | None = None) -> UnifiedCTModel:
        """Load the checkpoint a model card names, after checking its sha256 (never downloads)."""
        from inference.model.card import card_path

        cf = Path(card_file) if card_file is not None else card_path()
        card = load_card(cf)
        ckpt = checkpoint_path_from_card(card, cf)
        dev = device or ("cuda" if torch.cuda.is_available() else "cpu")
        net, cfg, bank, _meta = load_network(ckpt, expected_sha256=str(card["sha256"]), device=dev)
        return cls(net, cfg, text_bank=bank, device=dev, version=f"{card['name']}@{str(card['sha256'])[:12]}")

    # -- text ---------------------------------------------------------------------------------
    @property
    def encoder(self) -> TextEncoder:
        if self._encoder is None:
            self._encoder = shared_encoder()
        return self._encoder

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """Sentence embeddings; the stored bank first, the MiniLM encoder only for new text.

        Keys are lower-cased: the encoder's tokenizer is uncased, so case never changes a vector.
        """
        keys = [t.strip().lower() for t in texts]
        missing = [k for k in dict.fromkeys(keys) if k not in self._bank]
        if missing:
            for k, emb in zip(missing, self.encoder.encode(missing), strict=True):
                self._bank[k] = emb
        if not keys:
            return np.zeros((0, 384), dtype=np.float32)
        return np.stack([self._bank[k] for k in keys])

    # -- network ------------------------------------------------------------------------------
    def _autocast(self) -> torch.autocast:
        return torch.autocast(
            device_type=self.device.type, dtype=torch.bfloat16, enabled=self.device.type == "cuda"
        )

    @torch.no_grad()
    def _forward(
        self, image: np.ndarray, text: np.ndarray, tasks: Sequence[str]
    ) -> tuple[object, torch.Tensor]:
        x = torch.from_numpy(image[None]).to(self.device)
        t = torch.from_numpy(np.asarray(text, dtype=np.float32)[None]).to(self.device)
        task = torch.tensor([[TASK_IDS[k] for k in tasks]], device=self.device)
        with self._autocast():
            feats = self.net.encode_image(x)
            hidden = self.net.decode_queries(feats, t, task)
        return feats, hidden

    # -- the whole analysis -------------------------------------------------------------------
    def analyse(
        self,
        hu: np.ndarray,
        affine_lps: np.ndarray,
        *,
        seg: Sequence[tuple[str, str]] = (),
        det: Sequence[tuple[str, str]] = (),
        loc: Sequence[str] = (),
        look_closer: bool = True,
    ) -> Analysis:
        """``seg``/``det``: (prompt, canonical name) pairs; ``loc``: snippet texts."""
        timings: dict[str, float] = {}
        t0 = time.perf_counter()
        grid = canonical_grid_for(hu.shape, affine_lps, self.cfg.coarse_spacing_mm, multiple_of=self.stride)
        image = network_input(resample(hu, affine_lps, grid.shape, grid.affine_lps))
        timings["resample_in"] = time.perf_counter() - t0
        out = Analysis(grid=grid, timings_s=timings)
        queries = [(p, "seg") for p, _ in seg] + [(p, "det") for p, _ in det] + [(t, "loc") for t in loc]
        if not queries:
            return out
        t0 = time.perf_counter()
        text = self.embed([q for q, _ in queries])
        timings["text"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        feats, hidden = self._forward(image, text, [k for _, k in queries])
        n_seg, n_det = len(seg), len(det)
        with torch.no_grad(), self._autocast():
            if n_seg:
                if self.cfg.coarse_window_voxels is not None:
                    probs = self._windowed_seg(image, text[:n_seg])
                else:
                    probs = self.net.seg_logits(feats, hidden[:, :n_seg]).float().sigmoid()[0].cpu().numpy()  # type: ignore[arg-type]
                for (prompt, name), prob in zip(seg, probs, strict=True):
                    pm = ProbMap(grid, prob)
                    out.segments.append(SegAnswer(prompt, name, pm, score=_mask_score(pm.prob)))
            if n_det:
                heat, size = self.net.det_outputs(feats, hidden[:, n_seg : n_seg + n_det])  # type: ignore[arg-type]
                heat_p = heat.float().sigmoid()
                peaks = (heat_p == F.max_pool3d(heat_p, 3, stride=1, padding=1)) & (
                    heat_p >= self.cfg.det_score_threshold
                )
                for q, (prompt, name) in enumerate(det):
                    out.detections.extend(
                        self._peaks_to_boxes(
                            prompt, name, heat_p[0, q], size[0, q].float(), peaks[0, q], grid
                        )
                    )
            if loc:
                z_logits, point_logits = self.net.loc_outputs(feats, hidden[:, n_seg + n_det :])  # type: ignore[arg-type]
                for q, snippet in enumerate(loc):
                    out.localisations.append(
                        self._localise(snippet, z_logits[0, q].float(), point_logits[0, q].float(), grid)
                    )
        timings["coarse_pass"] = time.perf_counter() - t0
        out.coarse_detections = list(out.detections)
        if look_closer:
            t0 = time.perf_counter()
            for answer in out.segments:
                self._refine_segment(hu, affine_lps, answer, text_of=answer.prompt)
            timings["look_closer_seg"] = time.perf_counter() - t0
            t0 = time.perf_counter()
            out.detections = self._refine_detections(hu, affine_lps, out.detections)
            timings["look_closer_det"] = time.perf_counter() - t0
        return out

    def _windowed_seg(self, image: np.ndarray, text: np.ndarray) -> np.ndarray:
        """Segmentation probabilities ``[Q, S, R, K]`` averaged over half-overlapping windows of
        ``coarse_window_voxels`` (the training crop): the field of view the net was trained on."""
        assert self.cfg.coarse_window_voxels is not None
        shape = np.array(image.shape[1:])
        win = np.array(self.cfg.coarse_window_voxels)
        padded = np.maximum(shape, win)
        if np.any(padded > shape):  # a volume smaller than a window: pad with air (channel 0 = -1)
            big = np.zeros((image.shape[0], *padded), dtype=np.float32)
            big[0], big[1] = -1.0, -1.0
            big[:, : shape[0], : shape[1], : shape[2]] = image
            image = big
        starts = [
            sorted({*range(0, int(p - w) + 1, max(1, int(w) // 2)), int(p - w)})
            for p, w in zip(padded, win, strict=True)
        ]
        acc = np.zeros((len(text), *padded), dtype=np.float32)
        count = np.zeros(tuple(padded), dtype=np.float32)
        tasks = ["seg"] * len(text)
        for z in starts[0]:
            for y in starts[1]:
                for x in starts[2]:
                    box = (slice(z, z + win[0]), slice(y, y + win[1]), slice(x, x + win[2]))
                    feats, hidden = self._forward(
                        np.ascontiguousarray(image[(slice(None), *box)]), text, tasks
                    )
                    with torch.no_grad(), self._autocast():
                        p = self.net.seg_logits(feats, hidden).float().sigmoid()[0].cpu().numpy()  # type: ignore[arg-type]
                    acc[(slice(None), *box)] += p
                    count[box] += 1.0
        out: np.ndarray = (acc / count)[:, : shape[0], : shape[1], : shape[2]]
        return out

    # -- detection ----------------------------------------------------------------------------
    def _peaks_to_boxes(
        self,
        prompt: str,
        name: str,
        heat: torch.Tensor,
        size: torch.Tensor,
        peaks: torch.Tensor,
        grid: CanonicalGrid,
    ) -> list[DetAnswer]:
        idx = torch.nonzero(peaks)
        if idx.numel() == 0:
            return []
        scores = heat[peaks]
        order = torch.argsort(scores, descending=True)[: self.cfg.det_max_per_query]
        spacing = grid.spacing_mm
        answers = []
        for i in order.tolist():
            h = idx[i].cpu().numpy().astype(np.float64)
            # Half-resolution voxel h sits at coarse index 2h (the training targets' convention).
            centre = grid.index_to_lps(2.0 * h)[0]
            extent_half = torch.exp(size[:, idx[i, 0], idx[i, 1], idx[i, 2]]).cpu().numpy().astype(np.float64)
            diameter_zyx = extent_half * 2.0 * spacing
            half = diameter_zyx[::-1] / 2.0
            answers.append(DetAnswer(prompt, name, float(scores[i]), centre, centre - half, centre + half))
        return answers

    def _refine_detections(
        self, hu: np.ndarray, affine_lps: np.ndarray, dets: list[DetAnswer]
    ) -> list[DetAnswer]:
        kept: list[DetAnswer] = []
        for d in dets:
            r = self._refine_detection(hu, affine_lps, d)
            if r is not None:
                kept.append(r)
        # Two candidates that refine to the same lesion: keep the better one.
        kept.sort(key=lambda d: -d.score)
        final: list[DetAnswer] = []
        for d in kept:
            if not any(
                o.name == d.name and np.all(d.center_lps >= o.lo_lps) and np.all(d.center_lps <= o.hi_lps)
                for o in final
            ):
                final.append(d)
        return final

    def _refine_detection(self, hu: np.ndarray, affine_lps: np.ndarray, d: DetAnswer) -> DetAnswer | None:
        radius = float(np.max(d.hi_lps - d.lo_lps)) / 2.0
        lo, hi = crop_box_lps(d.center_lps - radius, d.center_lps + radius, margin_mm=self.cfg.fine_margin_mm)
        grid = self._fine_grid(hu.shape, affine_lps, lo, hi)
        centre_idx = grid.lps_to_index(d.center_lps)[0]
        d2 = sum(
            (g - c) ** 2
            for g, c in zip(np.ogrid[tuple(slice(0, n) for n in grid.shape)], centre_idx, strict=True)
        )
        r_vox = max(radius / grid.spacing_mm, 1.0)
        prior = np.exp(-d2 / (2 * r_vox * r_vox)).astype(np.float32)
        prob = self._fine_prob(hu, affine_lps, grid, prior, d.prompt)
        mask = prob >= self.cfg.mask_threshold
        labels, n = ndi.label(mask)
        if n == 0:
            return None
        weights = ndi.sum_labels(prior, labels, index=np.arange(1, n + 1))
        best = int(np.argmax(weights)) + 1
        comp = labels == best
        idx = np.argwhere(comp)
        lo_i, hi_i = idx.min(axis=0).astype(np.float64), idx.max(axis=0).astype(np.float64)
        corners = grid.index_to_lps(np.stack([lo_i - 0.5, hi_i + 0.5]))
        centre = grid.index_to_lps(idx.mean(axis=0))[0]
        fine_score = float(prob[comp].max())
        return DetAnswer(
            d.prompt,
            d.name,
            float(np.sqrt(d.score * fine_score)),
            centre,
            corners.min(axis=0),
            corners.max(axis=0),
            mask=ProbMap(grid, np.where(comp, prob, 0.0).astype(np.float32)),
            refined=True,
        )

    # -- segmentation look-closer -------------------------------------------------------------
    def _fine_grid(
        self, shape: tuple[int, ...], affine_lps: np.ndarray, lo: np.ndarray, hi: np.ndarray
    ) -> CanonicalGrid:
        extent_zyx = (hi - lo)[::-1]
        spacing = max(
            self.cfg.fine_spacing_mm, float(np.max(extent_zyx / np.array(self.cfg.fine_max_voxels)))
        )
        return canonical_grid_for(shape, affine_lps, spacing, lo_lps=lo, hi_lps=hi, multiple_of=self.stride)

    def _fine_prob(
        self, hu: np.ndarray, affine_lps: np.ndarray, grid: CanonicalGrid, prior: np.ndarray, prompt: str
    ) -> np.ndarray:
        image = network_input(resample(hu, affine_lps, grid.shape, grid.affine_lps), prior)
        feats, hidden = self._forward(image, self.embed([prompt]), ["seg"])
        with torch.no_grad(), self._autocast():
            prob = self.net.seg_logits(feats, hidden).float().sigmoid()[0, 0].cpu().numpy()  # type: ignore[arg-type]
        out: np.ndarray = prob.astype(np.float32)
        return out

    def _refine_segment(
        self, hu: np.ndarray, affine_lps: np.ndarray, answer: SegAnswer, *, text_of: str
    ) -> None:
        coarse = answer.coarse
        mask = coarse.mask(self.cfg.mask_threshold)
        if not mask.any():
            return
        idx = np.argwhere(mask)
        corners = coarse.grid.index_to_lps(np.stack([idx.min(axis=0), idx.max(axis=0)]))
        lo, hi = crop_box_lps(corners.min(axis=0), corners.max(axis=0), margin_mm=self.cfg.fine_margin_mm)
        grid = self._fine_grid(hu.shape, affine_lps, lo, hi)
        prior = np.clip(
            resample(
                coarse.prob, coarse.grid.affine_lps, grid.shape, grid.affine_lps, cval=0.0, antialias=False
            ),
            0.0,
            1.0,
        )
        prob = self._fine_prob(hu, affine_lps, grid, prior, text_of)
        answer.fine = ProbMap(grid, prob)
        answer.score = _mask_score(prob)

    # -- localisation -------------------------------------------------------------------------
    def _localise(
        self, text: str, z_logits: torch.Tensor, point_logits: torch.Tensor, grid: CanonicalGrid
    ) -> LocAnswer:
        pz = torch.softmax(z_logits, dim=0).cpu().numpy()
        k = int(np.argmax(pz))
        score = float(pz[max(0, k - 2) : k + 3].sum())
        plane = point_logits[min(k // 2, point_logits.shape[0] - 1)].cpu().numpy()
        r, c = np.unravel_index(int(np.argmax(plane)), plane.shape)
        point = grid.index_to_lps(np.array([k, 2.0 * r, 2.0 * c], dtype=np.float64))[0]
        return LocAnswer(text=text, point_lps=point, score=score)


def _mask_score(prob: np.ndarray, threshold: float = 0.5) -> float:
    """Mean probability inside the mask (0 when empty): how sure the model is of what it drew."""
    m = prob >= threshold
    return float(prob[m].mean()) if m.any() else 0.0
