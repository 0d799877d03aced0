"""A toy pipeline package: everything above 300 HU is "bone" (docs/extending.md, "Adding a
pipeline"). A real package would run its model here; the node only needs ``run``."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from inference.answer import ClassMap, answer_requests
from inference.contracts import ModelOutputs, Request, VolumeInput


class ToyBonePipeline:
    name = "toy-bone"
    version = "toy-bone@0.1"  # goes into job ids and into SEG/SR algorithm identification
    answers = ("bone",)  # canonical vocabulary names: what `auto` may send here
    needs_torch = False
    default_prompts = ("bone",)

    def run(self, volume: VolumeInput, requests: Sequence[Request]) -> ModelOutputs:
        labels = (volume.hu > 300).astype(np.uint8)
        maps = [ClassMap(labels, {1: "bone"}, self.name, self.version)]
        return answer_requests(volume, requests, maps, model_name=self.name, model_version=self.version)
