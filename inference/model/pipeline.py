"""``unified-ct``: the unified model served as an ``inference.contracts.Pipeline``.

``run(volume, requests)``: prompts are matched (``prompts.py``: exact vocabulary hit, or the
nearest known phrase above the calibrated similarity, else ``Unmatched`` "no match"), the model
runs once over the whole volume at 3 mm (the CPU fallback resolution) and looks closer at what
it found, and the answers are resampled back onto the input grid, measured and described
(``inference.measure`` / ``inference.describe``: every number in a description is measured).

The model stays loaded between jobs (the registry keeps one pipeline per worker process).
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from inference.contracts import (
    DetectionOut,
    LocalisationOut,
    Measurements,
    ModelOutputs,
    Request,
    SegmentOut,
    Task,
    Unmatched,
    VolumeInput,
)
from inference.describe import describe_detection, describe_segment, describe_summary
from inference.measure import measure
from inference.model.card import MODEL_NAME
from inference.model.geometry import resample_to_box
from inference.model.predictor import Analysis, DetAnswer, ProbMap, UnifiedCTModel
from inference.model.prompts import PromptMatcher
from inference.model.vocab import DEFAULT_DET_PROMPTS, DEFAULT_SEG_PROMPTS, LESION_KINDS, entry

log = logging.getLogger(__name__)

Box = tuple[slice, slice, slice]


@dataclasses.dataclass
class MaskOnInput:
    """A binary mask on part of the input grid (``box``) and its probabilities there."""

    box: Box
    mask: np.ndarray
    prob: np.ndarray

    @property
    def count(self) -> int:
        return int(np.count_nonzero(self.mask))


def to_input_grid(pm: ProbMap, volume: VolumeInput, *, threshold: float = 0.5) -> MaskOnInput | None:
    """A canonical-grid probability map resampled (trilinear) onto the input grid's covered box.

    Only the part of the map around voxels at or above ``threshold`` is resampled (1 voxel of
    margin): a trilinear value is a weighted mean of its 8 neighbours, so no point outside that
    box can reach the threshold and the mask is exactly the same — at a fraction of the cost
    when a whole-volume map is mostly below it (measured: 50 s → see bench/RESULTS.md).
    """
    above = np.argwhere(pm.prob >= threshold)
    if not len(above):
        return None
    lo = np.maximum(above.min(axis=0) - 1, 0)
    hi = np.minimum(above.max(axis=0) + 2, pm.prob.shape)
    shift = np.eye(4)
    shift[:3, 3] = lo
    sub = pm.prob[lo[0] : hi[0], lo[1] : hi[1], lo[2] : hi[2]]
    hit = resample_to_box(sub, pm.grid.affine_lps @ shift, volume.hu.shape, volume.affine_lps)
    if hit is None:
        return None
    box, prob = hit
    mask = prob >= threshold
    if not mask.any():
        return None
    return MaskOnInput(box=box, mask=mask, prob=prob)


def measure_in_box(m: MaskOnInput, volume: VolumeInput) -> Measurements:
    """``inference.measure.measure`` on the box only, with the bbox shifted to input indices."""
    meas = measure(m.mask, volume.hu[m.box], volume.spacing_mm)
    s, r, c = (b.start for b in m.box)
    b = meas.bbox_voxels
    return dataclasses.replace(meas, bbox_voxels=(b[0] + s, b[1] + r, b[2] + c, b[3] + s, b[4] + r, b[5] + c))


class UnifiedCTPipeline:
    name = MODEL_NAME
    default_prompts: tuple[str, ...] = DEFAULT_SEG_PROMPTS + DEFAULT_DET_PROMPTS

    def __init__(
        self,
        *,
        card_path: str | Path | None = None,
        device: str | None = None,
        look_closer: bool | None = None,
        model: UnifiedCTModel | None = None,
    ) -> None:
        self.model = model or UnifiedCTModel.from_card(Path(card_path) if card_path else None, device=device)
        self.version = self.model.version
        # None: what the checkpoint's inference settings say (its look-closer ablation)
        self.look_closer = self.model.cfg.look_closer if look_closer is None else look_closer
        self.matcher = PromptMatcher(self.model.embed, threshold=self.model.cfg.match_threshold)

    # -- requests -----------------------------------------------------------------------------
    def default_requests(self) -> list[Request]:
        return [Request(Task.DET if p in LESION_KINDS else Task.SEG, p) for p in self.default_prompts]

    def plan(
        self, requests: Sequence[Request]
    ) -> tuple[list[tuple[str, str]], list[tuple[str, str]], list[str], list[Unmatched]]:
        """Split requests into matched SEG/DET (prompt, name) pairs, LOC texts and the unmatched."""
        seg: list[tuple[str, str]] = []
        det: list[tuple[str, str]] = []
        loc: list[str] = []
        unmatched: list[Unmatched] = []
        for req in requests:
            if req.task == Task.LOC:
                _, _, sim = self.matcher.snippet_similarity(req.text)
                if sim >= self.model.cfg.loc_match_threshold:
                    loc.append(req.text)
                else:
                    unmatched.append(
                        Unmatched(
                            req.text,
                            f"no match: snippet names nothing the model knows "
                            f"(similarity {sim:.2f} < {self.model.cfg.loc_match_threshold:.2f})",
                        )
                    )
                continue
            match = self.matcher.match(req.text)
            if match.name is None:
                unmatched.append(Unmatched(req.text, match.reason(self.matcher.threshold)))
            elif req.task == Task.DET and match.name not in LESION_KINDS:
                unmatched.append(
                    Unmatched(
                        req.text,
                        f"detection finds lesions ({', '.join(LESION_KINDS)}); "
                        f"{match.name!r} is a structure: ask to segment it",
                    )
                )
            elif req.task == Task.DET:
                det.append((req.text, match.name))
            else:
                seg.append((req.text, match.name))
        return seg, det, loc, unmatched

    # -- run ----------------------------------------------------------------------------------
    def run(self, volume: VolumeInput, requests: Sequence[Request]) -> ModelOutputs:
        t_start = time.perf_counter()
        seg, det, loc, unmatched = self.plan(list(requests) or self.default_requests())
        analysis = self.model.analyse(
            volume.hu, volume.affine_lps, seg=seg, det=det, loc=loc, look_closer=self.look_closer
        )
        t0 = time.perf_counter()
        outputs = ModelOutputs(
            model_name=self.name,
            model_version=self.version,
            labelmap=np.zeros(volume.hu.shape, dtype=np.uint16),
            unmatched=unmatched,
        )
        self._segments(analysis, volume, outputs)
        self._detections(analysis.detections, volume, outputs)
        self._localisations(analysis, volume, outputs)
        outputs.summary = describe_summary(
            [(s.name, s.measurements) for s in outputs.segments],
            [(d.name, d.measurements) for d in outputs.detections if d.measurements is not None],
        )
        outputs.timings_s = {
            **analysis.timings_s,
            "to_input_grid": time.perf_counter() - t0,
            "total": time.perf_counter() - t_start,
        }
        return outputs

    def _segments(self, analysis: Analysis, volume: VolumeInput, outputs: ModelOutputs) -> None:
        found: list[tuple[int, str, str, float, MaskOnInput]] = []
        for answer in analysis.segments:
            m = to_input_grid(answer.final, volume, threshold=self.model.cfg.mask_threshold)
            if m is None:
                outputs.unmatched.append(Unmatched(answer.prompt, f"{answer.name} not found in this volume"))
                continue
            found.append((len(found) + 1, answer.prompt, answer.name, answer.score, m))
        # One label per voxel: paint the largest first so a structure inside another keeps its
        # own label; each structure is measured on its full mask.
        best = {}
        for value, prompt, name, score, m in sorted(found, key=lambda f: -f[4].count):
            region = outputs.labelmap[m.box]
            region[m.mask] = value
            best[value] = (prompt, name, score, m)
        for value in sorted(best):
            prompt, name, score, m = best[value]
            meas = measure_in_box(m, volume)
            e = entry(name)
            outputs.segments.append(
                SegmentOut(
                    label_value=value,
                    name=name,
                    prompt=prompt,
                    category=e.category,
                    type=e.type,
                    score=round(score, 4),
                    measurements=meas,
                    description=describe_segment(name, meas),
                )
            )

    def _detections(self, dets: Sequence[DetAnswer], volume: VolumeInput, outputs: ModelOutputs) -> None:
        inv = np.linalg.inv(volume.affine_lps)
        shape = np.array(volume.hu.shape)
        for d in dets:
            corners = np.array(
                [
                    [x, y, z]
                    for x in (d.lo_lps[0], d.hi_lps[0])
                    for y in (d.lo_lps[1], d.hi_lps[1])
                    for z in (d.lo_lps[2], d.hi_lps[2])
                ]
            )
            idx = corners @ inv[:3, :3].T + inv[:3, 3]
            lo = np.clip(np.floor(idx.min(axis=0) + 0.5).astype(int), 0, shape - 1)
            hi = np.clip(np.ceil(idx.max(axis=0) - 0.5).astype(int), 0, shape - 1)
            hi = np.maximum(hi, lo)
            box = (int(lo[0]), int(lo[1]), int(lo[2]), int(hi[0]), int(hi[1]), int(hi[2]))
            spacing = np.array(volume.spacing_mm)
            size = tuple(float(v) for v in (hi - lo + 1) * spacing)
            meas = None
            if d.mask is not None:
                m = to_input_grid(d.mask, volume)
                if m is not None:
                    meas = measure_in_box(m, volume)
            e = entry(d.name)
            centre_idx = d.center_lps @ inv[:3, :3].T + inv[:3, 3]
            key_slice = int(np.clip(round(float(centre_idx[0])), 0, shape[0] - 1))
            description = (
                describe_detection(d.name, meas, image_number=key_slice + 1, score=d.score)
                if meas is not None
                else f"{d.name[:1].upper()}{d.name[1:]}, box "
                f"{size[0]:.0f} × {size[1]:.0f} × {size[2]:.0f} mm, "
                f"at image {key_slice + 1}"
            )
            outputs.detections.append(
                DetectionOut(
                    prompt=d.prompt,
                    name=d.name,
                    score=round(d.score, 4),
                    box_voxels=box,
                    center_lps_mm=(float(d.center_lps[0]), float(d.center_lps[1]), float(d.center_lps[2])),
                    size_mm=size,  # type: ignore[arg-type]
                    category=e.category,
                    type=e.type,
                    finding_site=e.finding_site,
                    measurements=meas,
                    description=description,
                )
            )

    def _localisations(self, analysis: Analysis, volume: VolumeInput, outputs: ModelOutputs) -> None:
        inv = np.linalg.inv(volume.affine_lps)
        n_slices = volume.hu.shape[0]
        for a in analysis.localisations:
            idx = a.point_lps @ inv[:3, :3].T + inv[:3, 3]
            k = int(np.clip(round(float(idx[0])), 0, n_slices - 1))
            centre = volume.index_to_lps((k, (volume.hu.shape[1] - 1) / 2, (volume.hu.shape[2] - 1) / 2))
            outputs.localisations.append(
                LocalisationOut(
                    text=a.text,
                    slice_index=k,
                    z_mm=centre[2],
                    point_lps_mm=(float(a.point_lps[0]), float(a.point_lps[1]), float(a.point_lps[2])),
                    score=round(a.score, 4),
                )
            )
