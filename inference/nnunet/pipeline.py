"""``nnunet:<name>`` and TotalSegmentator: installed nnU-Net models as one pipeline.

Several models (TotalSegmentator's five 1.5 mm parts) are run in order and their answers merged:
each keeps its own classes and names its model on every segment; where two claim a voxel, the
later model's class wins (as TotalSegmentator merges its parts).
"""

from __future__ import annotations

import time
from collections.abc import Sequence

from inference.answer import ClassMap, answer_requests
from inference.contracts import ModelOutputs, Request, VolumeInput
from inference.installed.card import ModelCard, installed_dir, load_model_card
from inference.nnunet.runner import NnUNetModel


class NnUNetPipeline:
    def __init__(
        self,
        name: str,
        version: str,
        cards: Sequence[ModelCard],
        *,
        device: str | None = None,
        tile_step_size: float | None = None,
        use_mirroring: bool | None = None,
    ) -> None:
        self.name = name
        self.version = version
        self.models = [
            NnUNetModel(
                installed_dir() / card.name,
                load_model_card(installed_dir() / card.name),
                device=device,
                tile_step_size=tile_step_size,
                use_mirroring=use_mirroring,
            )
            for card in cards
        ]
        self.default_prompts = tuple(
            dict.fromkeys(name for model in self.models for name in model.classes.values())
        )

    def run(self, volume: VolumeInput, requests: Sequence[Request]) -> ModelOutputs:
        t0 = time.perf_counter()
        maps = []
        timings: dict[str, float] = {}
        for model in self.models:
            t = time.perf_counter()
            labels = model.predict(volume.hu, volume.affine_lps)
            timings[f"predict {model.card.name}"] = time.perf_counter() - t
            maps.append(ClassMap(labels, model.classes, model.card.name, model.card.version_tag))
        outputs = answer_requests(volume, requests, maps, model_name=self.name, model_version=self.version)
        outputs.timings_s.update(timings)
        outputs.timings_s["total"] = time.perf_counter() - t0
        return outputs
