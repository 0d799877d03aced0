"""Pipelines by name. Importing this module imports no torch: implementations load on first use.

The worker asks for a pipeline by the name a routing rule gives; the routing task only needs
:func:`pipeline_version` (for the job id) and :func:`available`, which must stay cheap.
"""

from __future__ import annotations

import importlib
import importlib.util
import threading
from collections.abc import Callable
from dataclasses import dataclass

from inference.contracts import Pipeline


@dataclass(frozen=True)
class PipelineInfo:
    name: str
    factory: str  # "module:callable" returning a Pipeline
    version: Callable[[], str]  # cheap: no model load, no torch import
    description: str
    needs_torch: bool


def _anatomy_basic_version() -> str:
    from inference.pipelines.anatomy_basic import VERSION

    return str(VERSION)


def _unified_ct_version() -> str:
    from inference.model.card import checkpoint_version

    return str(checkpoint_version())


_REGISTRY: dict[str, PipelineInfo] = {
    "ct-anatomy-basic": PipelineInfo(
        name="ct-anatomy-basic",
        factory="inference.pipelines.anatomy_basic:AnatomyBasicPipeline",
        version=_anatomy_basic_version,
        description="Classical HU + morphology: body outline, lungs, airways, bone, with measurements (CPU).",
        needs_torch=False,
    ),
    "unified-ct": PipelineInfo(
        name="unified-ct",
        factory="inference.model.pipeline:UnifiedCTPipeline",
        version=_unified_ct_version,
        description="Text-prompted segmentation, lesion detection, snippet localisation, look-closer.",
        needs_torch=True,
    ),
}

_instances: dict[str, Pipeline] = {}
_lock = threading.Lock()


def available() -> list[str]:
    """Names of registered pipelines whose implementation module is importable here."""
    out = []
    for name, pipeline_info in _REGISTRY.items():
        try:
            found = importlib.util.find_spec(pipeline_info.factory.split(":")[0]) is not None
        except ModuleNotFoundError:  # a parent package is missing (e.g. a partial install)
            found = False
        if found:
            out.append(name)
    return sorted(out)


def info(name: str) -> PipelineInfo:
    try:
        return _REGISTRY[name]
    except KeyError:
        raise KeyError(f"unknown pipeline {name!r}; known: {', '.join(sorted(_REGISTRY))}") from None


def pipeline_version(name: str) -> str:
    return info(name).version()


def get_pipeline(name: str, **options: object) -> Pipeline:
    """The pipeline instance for ``name``, built once per process and kept warm (GPU workers)."""
    key = name + repr(sorted(options.items()))
    with _lock:
        if key not in _instances:
            module_name, attr = info(name).factory.split(":")
            factory = getattr(importlib.import_module(module_name), attr)
            _instances[key] = factory(**options)
        return _instances[key]
