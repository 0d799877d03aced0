"""Registry rows for installed models: ``nnunet:<name>``, ``bundle:<name>``, TotalSegmentator.

Cheap: reads model cards only (no torch), so the routing step can list and version them.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from inference.installed.card import ModelCard, installed_models

if TYPE_CHECKING:
    from inference.registry import PipelineInfo

# TotalSegmentator v2 CT tasks (totalsegmentator/map_tasks_config.py): the five 1.5 mm parts
# (organs, vertebrae, cardiac, muscles, ribs) and the 3 mm model; their released weight zips are
# nnU-Net trained-model folders named DatasetNNN_TotalSegmentator_...
TOTALSEGMENTATOR_TASKS: dict[str, tuple[int, ...]] = {
    "totalsegmentator": (291, 292, 293, 294, 295),
    "totalsegmentator-fast": (297,),
}
# TotalSegmentator predicts "total" with a tile step of 0.8 and no mirroring (its nnunet.py).
TOTALSEGMENTATOR_OPTIONS = {"tile_step_size": 0.8, "use_mirroring": False}
FALLBACK = "ct-anatomy-basic"


def _known(cards: list[ModelCard]) -> Callable[[], tuple[str, ...]]:
    def answers() -> tuple[str, ...]:
        from inference.answer import known_structures

        return known_structures(
            [n for card in cards for _, n in sorted(card.classes.items(), key=lambda kv: int(kv[0]))]
        )

    return answers


def _version(name: str, cards: list[ModelCard]) -> str:
    if not cards:
        return f"{name}@not-installed"
    return "+".join(card.version_tag for card in cards)


def installed_pipelines() -> dict[str, PipelineInfo]:
    from inference.registry import PipelineInfo

    out: dict[str, PipelineInfo] = {}
    for card in installed_models().values():
        prefix = "nnunet" if card.kind == "nnunet" else "bundle"
        name = f"{prefix}:{card.name}"
        factory = (
            "inference.nnunet.pipeline:NnUNetPipeline"
            if card.kind == "nnunet"
            else "inference.bundles.pipeline:BundlePipeline"
        )
        out[name] = PipelineInfo(
            name=name,
            factory=factory,
            version=lambda card=card: card.version_tag,  # type: ignore[misc]
            description=f"{card.description or card.kind} (licence: {card.licence}; version {card.version})",
            needs_torch=True,
            source=card.kind,
            answers=_known([card]),
            options={"name": name, "version": card.version_tag, "cards": (card,)},
        )
    return out


def totalsegmentator_cards(task: str) -> tuple[list[ModelCard], list[int]]:
    """(installed cards of ``task``'s datasets in TotalSegmentator's order, missing dataset ids)."""
    by_id = {c.nnunet.get("dataset_id"): c for c in installed_models().values() if c.kind == "nnunet"}
    wanted = TOTALSEGMENTATOR_TASKS[task]
    return [by_id[i] for i in wanted if i in by_id], [i for i in wanted if i not in by_id]


def totalsegmentator_pipelines() -> dict[str, PipelineInfo]:
    from inference.registry import PipelineInfo

    out: dict[str, PipelineInfo] = {}
    for task, ids in TOTALSEGMENTATOR_TASKS.items():
        cards, missing_ids = totalsegmentator_cards(task)
        version = _version(task, cards if not missing_ids else [])

        def missing(task: str = task) -> str | None:
            _, absent = totalsegmentator_cards(task)
            if not absent:
                return None
            names = ", ".join(f"Dataset{i}" for i in absent)
            return (
                f"TotalSegmentator weights not installed ({names}): import each released zip with "
                f"`ctnode model import DatasetNNN_TotalSegmentator_....zip --name totalseg-NNN`"
            )

        spacing = "1.5 mm, five parts" if len(ids) > 1 else "3 mm"
        out[task] = PipelineInfo(
            name=task,
            factory="inference.nnunet.pipeline:NnUNetPipeline",
            version=lambda version=version: version,  # type: ignore[misc]
            description=f"TotalSegmentator v2 CT, 117 structures ({spacing}; nnU-Net, weights imported)",
            needs_torch=True,
            source="totalsegmentator",
            answers=_known(cards),
            missing=missing,
            options={"name": task, "version": version, "cards": tuple(cards), **TOTALSEGMENTATOR_OPTIONS},
            fallback=FALLBACK,
        )
    return out
