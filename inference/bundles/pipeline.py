"""``bundle:<name>``: a MONAI bundle answering prompts (segmentation labels or detection boxes)."""

from __future__ import annotations

import time
from collections.abc import Sequence

import numpy as np

from inference.answer import ClassMap, answer_requests
from inference.contracts import DetectionOut, ModelOutputs, Request, Task, Unmatched, VolumeInput
from inference.describe import describe_detection, describe_summary
from inference.installed.card import ModelCard, installed_dir, load_model_card
from inference.measure import measure
from inference.vocabulary import resolve


class BundlePipeline:
    def __init__(
        self, name: str, version: str, cards: Sequence[ModelCard], *, device: str | None = None, **_: object
    ) -> None:
        from inference.bundles.runner import BundleModel

        self.name = name
        self.version = version
        (card,) = cards
        self.model = BundleModel(
            installed_dir() / card.name, load_model_card(installed_dir() / card.name), device=device
        )
        kind = "detect: " if self.model.task == "detection" else ""
        self.default_prompts = tuple(dict.fromkeys(f"{kind}{n}" for n in self.model.classes.values()))

    def run(self, volume: VolumeInput, requests: Sequence[Request]) -> ModelOutputs:
        t0 = time.perf_counter()
        card = self.model.card
        if self.model.task == "detection":
            outputs = self._detect(volume, requests)
        else:
            labels = self.model.segment(volume.hu, volume.affine_lps)
            maps = [ClassMap(labels, self.model.classes, card.name, card.version_tag)]
            outputs = answer_requests(
                volume, requests, maps, model_name=self.name, model_version=self.version
            )
        outputs.timings_s["total"] = time.perf_counter() - t0
        return outputs

    def _detect(self, volume: VolumeInput, requests: Sequence[Request]) -> ModelOutputs:
        card = self.model.card
        classes = {v: resolve(n) for v, n in self.model.classes.items()}
        wanted: dict[int, str] = {}
        unmatched: list[Unmatched] = []
        for request in requests:
            structure = resolve(request.text)
            values = [
                v
                for v, s in classes.items()
                if s is not None and structure is not None and s.name == structure.name
            ]
            if request.task == Task.LOC or not values:
                unmatched.append(
                    Unmatched(
                        request.text, f"{self.name} detects only {', '.join(self.model.classes.values())}"
                    )
                )
                continue
            for v in values:
                wanted.setdefault(v, request.text)
        detections: list[DetectionOut] = []
        for box, score, value in self.model.detect(volume.hu, volume.affine_lps) if wanted else []:
            structure = classes.get(value)
            if value not in wanted or structure is None:
                continue
            k0, r0, c0, k1, r1, c1 = box
            mask = np.zeros(volume.hu.shape, dtype=bool)
            mask[k0 : k1 + 1, r0 : r1 + 1, c0 : c1 + 1] = True
            m = measure(mask, volume.hu, volume.spacing_mm)
            detections.append(
                DetectionOut(
                    prompt=wanted[value],
                    name=structure.name,
                    score=score,
                    box_voxels=(k0, r0, c0, k1, r1, c1),
                    center_lps_mm=volume.index_to_lps(((k0 + k1) / 2, (r0 + r1) / 2, (c0 + c1) / 2)),
                    size_mm=m.extent_mm,
                    category=structure.category,
                    type=structure.type,
                    finding_site=structure.finding_site,
                    measurements=m,
                    description=describe_detection(
                        structure.name, m, image_number=(k0 + k1) // 2 + 1, score=score
                    ),
                    algorithm_name=card.name,
                    algorithm_version=card.version_tag,
                )
            )
        return ModelOutputs(
            model_name=self.name,
            model_version=self.version,
            labelmap=np.zeros(volume.hu.shape, dtype=np.uint16),
            detections=detections,
            unmatched=unmatched,
            summary=describe_summary([], [(d.name, d.measurements) for d in detections if d.measurements]),
        )
