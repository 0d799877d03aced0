"""``pipeline: auto`` — each prompt answered by the installed pipeline that knows the structure.

A prompt ("hepatic", "left renal organ", "L3 vertebra") is resolved in the vocabulary; the first
pipeline in the preference order that answers that structure (or lesion kind) gets it. Each
chosen pipeline runs once with its prompts, and the answers are merged into one label map: every
segment and box keeps the name and version of the pipeline that produced it (SEG Segment
Algorithm Name/Version, PS3.3 C.8.20.2). A prompt nobody knows comes back as "no match".

Default order: installed nnU-Net and bundle models (by name), then TotalSegmentator (1.5 mm, then
3 mm), then ``ct-anatomy-basic``. ``unified-ct`` (research, shadow only) and entry-point
plugins join only when named in ``preference``.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Sequence
from dataclasses import replace

import numpy as np

from inference.answer import answerable
from inference.contracts import ModelOutputs, Request, SegmentOut, Task, Unmatched, VolumeInput
from inference.describe import describe_summary
from inference.vocabulary import resolve

NAME = "auto"


def default_order() -> list[str]:
    from inference.registry import registry

    known = registry()
    installed = sorted(n for n, i in known.items() if i.source in {"nnunet", "bundle"})
    tail = [n for n in ("totalsegmentator", "totalsegmentator-fast", "ct-anatomy-basic") if n in known]
    return [*installed, *tail]


def candidates(preference: Sequence[str] | None = None) -> list[str]:
    """The pipelines ``auto`` may use here, in order: installed (weights present) only."""
    from inference.registry import registry

    known = registry()
    order = list(dict.fromkeys([*(preference or ()), *default_order()]))
    return [n for n in order if n in known and n != NAME and known[n].missing() is None]


def composed_version(preference: Sequence[str] | None = None) -> str:
    """Changes when any candidate pipeline changes (job ids follow the installed models)."""
    from inference.registry import pipeline_version

    parts = [f"{n}={pipeline_version(n)}" for n in candidates(preference)]
    return f"{NAME}@" + hashlib.sha256("|".join(parts).encode()).hexdigest()[:12]


class ComposedPipeline:
    name = NAME
    default_prompts: tuple[str, ...] = ()

    def __init__(self, *, device: str | None = None, preference: Sequence[str] | None = None) -> None:
        self.device = device
        self.preference = tuple(preference or ())
        self.version = composed_version(self.preference)

    def _route(self, requests: Sequence[Request]) -> tuple[dict[str, list[Request]], list[Unmatched]]:
        from inference.registry import info

        order = candidates(self.preference)
        known = {name: set(info(name).answers()) for name in order}
        plan: dict[str, list[Request]] = {}
        unmatched: list[Unmatched] = []
        for request in requests:
            structure = resolve(request.text)
            chosen = None
            if structure is not None and request.task != Task.LOC:
                chosen = next((n for n in order if answerable(structure, known[n])), None)
            if chosen is None:
                why = (
                    "no structure of that name"
                    if structure is None
                    else f"no installed model answers {structure.name}"
                )
                unmatched.append(
                    Unmatched(request.text, f"no match: {why} (auto: {', '.join(order) or 'none installed'})")
                )
                continue
            plan.setdefault(chosen, []).append(request)
        return plan, unmatched

    def run(self, volume: VolumeInput, requests: Sequence[Request]) -> ModelOutputs:
        from inference.registry import get_pipeline, info

        t0 = time.perf_counter()
        plan, unmatched = self._route(requests)
        labelmap = np.zeros(volume.hu.shape, dtype=np.uint16)
        segments: list[SegmentOut] = []
        outputs = ModelOutputs(
            model_name=NAME, model_version=self.version, labelmap=labelmap, unmatched=unmatched
        )
        for name, routed in plan.items():
            options = {"device": self.device} if info(name).needs_torch else {}
            t = time.perf_counter()
            part = get_pipeline(name, **options).run(volume, routed)
            outputs.timings_s[name] = time.perf_counter() - t
            # Later pipelines paint over earlier ones only where they answered (one label per voxel).
            for seg in part.segments:
                value = len(segments) + 1
                mask = part.labelmap == seg.label_value
                labelmap[mask] = value
                segments.append(
                    replace(
                        seg,
                        label_value=value,
                        algorithm_name=seg.algorithm_name or part.model_name,
                        algorithm_version=seg.algorithm_version or part.model_version,
                    )
                )
            outputs.detections.extend(
                replace(
                    d,
                    algorithm_name=d.algorithm_name or part.model_name,
                    algorithm_version=d.algorithm_version or part.model_version,
                )
                for d in part.detections
            )
            outputs.localisations.extend(part.localisations)
            outputs.unmatched.extend(part.unmatched)
        painted = np.bincount(labelmap.ravel(), minlength=len(segments) + 1)
        outputs.segments = [s for s in segments if painted[s.label_value] > 0]
        outputs.summary = describe_summary(
            [(s.name, s.measurements) for s in outputs.segments],
            [(d.name, d.measurements) for d in outputs.detections if d.measurements is not None],
        )
        outputs.timings_s["total"] = time.perf_counter() - t0
        return outputs
