"""Prompts answered from models' class label maps: shared by nnU-Net models, MONAI bundles and
``pipeline: auto``.

A model answers with a label map on the volume's grid and the names of its classes (its
dataset.json or bundle metadata). Each class name goes through the vocabulary (``lookup``:
TotalSegmentator's "vertebrae_L3" is our "l3 vertebra"), so a prompt reaches the class that
segments it, or the union of the classes that segment its parts ("lumbar spine" = L1–L5,
"lungs" = five lobes). Lesion classes answer detection prompts as one box per connected
component. Every segment and box names the model that produced it.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from inference.contracts import DetectionOut, ModelOutputs, Request, SegmentOut, Task, Unmatched, VolumeInput
from inference.describe import describe_detection, describe_segment, describe_summary
from inference.measure import components, measure
from inference.vocabulary import STRUCTURES, Structure, lookup, resolve


@dataclass(frozen=True)
class ClassMap:
    """One model's answer: a label map on the volume's grid and what its values mean."""

    labels: np.ndarray  # integer [slice, row, column]
    classes: dict[int, str]  # label value -> class name as the model names it
    algorithm_name: str
    algorithm_version: str


@dataclass(frozen=True)
class _Source:
    model: int  # index into the ClassMaps
    value: int


def class_structures(classes: dict[int, str]) -> dict[int, Structure | None]:
    return {value: lookup(name) for value, name in classes.items()}


def known_structures(class_names: Sequence[str]) -> tuple[str, ...]:
    """Canonical names of the classes (cheap: for ``ctnode pipelines list`` and routing)."""
    out = []
    for name in class_names:
        hit = lookup(name)
        if hit is not None:
            out.append(hit.name)
    return tuple(dict.fromkeys(out))


def answerable(structure: Structure, known: set[str]) -> bool:
    """Whether models knowing ``known`` (canonical names) can answer ``structure``."""
    if structure.name in known:
        return True
    return any(answerable(STRUCTURES[p], known) for p in (*structure.parts, *structure.subdivisions))


def _sources(structure: Structure, index: dict[str, list[_Source]]) -> list[_Source]:
    if structure.name in index:
        return index[structure.name]
    out: list[_Source] = []
    for part in (*structure.parts, *structure.subdivisions):
        out.extend(_sources(STRUCTURES[part], index))
    return out


def answer_requests(
    volume: VolumeInput,
    requests: Sequence[Request],
    maps: Sequence[ClassMap],
    *,
    model_name: str,
    model_version: str,
    min_lesion_ml: float = 0.01,
) -> ModelOutputs:
    t0 = time.perf_counter()
    index: dict[str, list[_Source]] = {}
    for i, cmap in enumerate(maps):
        for value, structure in class_structures(cmap.classes).items():
            if structure is not None:
                index.setdefault(structure.name, []).append(_Source(i, value))
    unmatched: list[Unmatched] = []
    wanted: dict[str, tuple[Structure, str, list[_Source]]] = {}
    detect: dict[str, tuple[Structure, str, list[_Source]]] = {}
    for request in requests:
        if request.task == Task.LOC:
            unmatched.append(Unmatched(request.text, f"{model_name} localises no report snippets"))
            continue
        structure = resolve(request.text)
        if structure is None:
            unmatched.append(
                Unmatched(
                    request.text, f"no match: no structure of that name in the vocabulary ({model_name})"
                )
            )
            continue
        sources = _sources(structure, index)
        if not sources:
            unmatched.append(Unmatched(request.text, f"{model_name} does not segment {structure.name}"))
        elif request.task == Task.DET:
            if structure.kind != "lesion":
                unmatched.append(Unmatched(request.text, f"{structure.name} is no lesion kind to detect"))
            else:
                detect.setdefault(structure.name, (structure, request.text, sources))
        elif structure.kind == "lesion":
            detect.setdefault(structure.name, (structure, request.text, sources))
        else:
            same = next((n for n, (_, _, s) in wanted.items() if set(s) == set(sources)), None)
            if same is not None and same != structure.name:
                # "lumbar spine" from a model that only knows L3: one segment, said once
                unmatched.append(Unmatched(request.text, f"answered by segment {same!r} (the same classes)"))
                continue
            wanted.setdefault(structure.name, (structure, request.text, sources))

    def mask_of(sources: list[_Source]) -> np.ndarray:
        mask = np.zeros(volume.hu.shape, dtype=bool)
        for model in {s.model for s in sources}:
            values = [s.value for s in sources if s.model == model]
            mask |= np.isin(maps[model].labels, values)
        return mask

    def algorithm(sources: list[_Source]) -> tuple[str, str]:
        models = sorted({s.model for s in sources})
        names = "+".join(maps[m].algorithm_name for m in models)
        versions = "+".join(maps[m].algorithm_version for m in models)
        return names, versions

    measured = []
    for name, (structure, prompt, sources) in wanted.items():
        mask = mask_of(sources)
        if not mask.any():
            unmatched.append(
                Unmatched(prompt, f"{name}: not found in this volume by {algorithm(sources)[0]}")
            )
            continue
        measured.append((structure, prompt, sources, mask, measure(mask, volume.hu, volume.spacing_mm)))
    labelmap = np.zeros(volume.hu.shape, dtype=np.uint16)
    segments: list[SegmentOut] = []
    # One label per voxel: the largest first, so a structure inside another keeps its own label.
    measured.sort(key=lambda item: -item[4].voxel_count)
    for value, item in enumerate(measured, start=1):
        labelmap[item[3]] = value
    painted = np.bincount(labelmap.ravel(), minlength=len(measured) + 1)
    for value, (structure, prompt, sources, _mask, m) in enumerate(measured, start=1):
        if painted[value] == 0:  # wholly inside smaller structures painted after it
            unmatched.append(Unmatched(prompt, f"{structure.name}: covered entirely by smaller segments"))
            continue
        algo_name, algo_version = algorithm(sources)
        segments.append(
            SegmentOut(
                label_value=value,
                name=structure.name,
                prompt=prompt,
                category=structure.category,
                type=structure.type,
                type_modifier=structure.type_modifier,
                score=1.0,
                measurements=m,
                description=describe_segment(structure.name, m),
                algorithm_name=algo_name,
                algorithm_version=algo_version,
            )
        )
    detections: list[DetectionOut] = []
    for name, (structure, prompt, sources) in detect.items():
        algo_name, algo_version = algorithm(sources)
        _, found = components(mask_of(sources), volume.hu, volume.spacing_mm, min_volume_ml=min_lesion_ml)
        if not found:
            unmatched.append(Unmatched(prompt, f"{name}: none found in this volume by {algo_name}"))
        for comp in found:
            m = comp.measurements
            k0, r0, c0, k1, r1, c1 = m.bbox_voxels
            centre = volume.index_to_lps(((k0 + k1) / 2, (r0 + r1) / 2, (c0 + c1) / 2))
            detections.append(
                DetectionOut(
                    prompt=prompt,
                    name=name,
                    score=1.0,
                    box_voxels=m.bbox_voxels,
                    center_lps_mm=centre,
                    size_mm=m.extent_mm,
                    category=structure.category,
                    type=structure.type,
                    finding_site=structure.finding_site,
                    measurements=m,
                    description=describe_detection(name, m, image_number=(k0 + k1) // 2 + 1),
                    algorithm_name=algo_name,
                    algorithm_version=algo_version,
                )
            )
    return ModelOutputs(
        model_name=model_name,
        model_version=model_version,
        labelmap=labelmap,
        segments=segments,
        detections=detections,
        unmatched=unmatched,
        summary=describe_summary(
            [(s.name, s.measurements) for s in segments],
            [(d.name, d.measurements) for d in detections if d.measurements is not None],
        ),
        timings_s={"answer": time.perf_counter() - t0},
    )
