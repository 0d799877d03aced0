"""Pipelines by name. Importing this module imports no torch: implementations load on first use.

Names come from four places (a name is never shadowed by a later source):

1. built-ins: ``ct-anatomy-basic``, ``unified-ct``;
2. TotalSegmentator: ``totalsegmentator`` (its five 1.5 mm parts) and ``totalsegmentator-fast``
   (3 mm), answered by whichever installed nnU-Net models are TotalSegmentator's datasets;
3. installed model folders (``ctnode model import``): ``nnunet:<name>``, ``bundle:<name>``;
4. Python entry points of group ``ctnode.pipelines`` (a model package adds a pipeline by
   ``pip install``): ``name = "package.module:factory"``; the factory returns a
   :class:`~inference.contracts.Pipeline` and may carry ``version`` (str), ``needs_torch`` (bool)
   and ``answers`` (canonical structure names) as attributes.

``auto`` is the composition of the installed models (``inference.compose``).

The worker asks for a pipeline by the name a routing rule gives; the routing task only needs
:func:`pipeline_version` (for the job id) and :func:`available`, which must stay cheap.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import importlib.util
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from inference.contracts import Pipeline

logger = logging.getLogger(__name__)

ENTRY_POINT_GROUP = "ctnode.pipelines"
AUTO = "auto"


class PipelineUnavailable(LookupError):
    """A known pipeline that cannot run here (weights not installed, package missing)."""


@dataclass(frozen=True)
class PipelineInfo:
    name: str
    factory: str  # "module:callable" returning a Pipeline
    version: Callable[[], str]  # cheap: no model load, no torch import
    description: str
    needs_torch: bool
    source: str = "built-in"  # built-in | totalsegmentator | nnunet | bundle | entry point | composed
    answers: Callable[[], tuple[str, ...]] = lambda: ()  # canonical structure names (cheap)
    missing: Callable[[], str | None] = lambda: None  # why it cannot run here, else None
    options: dict[str, Any] = field(default_factory=dict)  # keyword arguments of the factory
    fallback: str | None = None  # what rules run instead while this one is not installed


def _anatomy_basic_version() -> str:
    from inference.pipelines.anatomy_basic import VERSION

    return str(VERSION)


def _unified_ct_version() -> str:
    from inference.model.card import checkpoint_version

    return str(checkpoint_version())


def _anatomy_basic_answers() -> tuple[str, ...]:
    from inference.pipelines.anatomy_basic import SERVED

    return tuple(SERVED)


def _unified_ct_answers() -> tuple[str, ...]:
    from inference.model.vocab import LESION_KINDS, SEG_NAMES

    return (*SEG_NAMES, *LESION_KINDS)


def _unified_ct_missing() -> str | None:
    from inference.model.card import CheckpointError, card_path, load_card

    try:
        load_card(card_path())
    except CheckpointError as exc:
        return str(exc)
    return None


_BUILTIN: dict[str, PipelineInfo] = {
    "ct-anatomy-basic": PipelineInfo(
        name="ct-anatomy-basic",
        factory="inference.pipelines.anatomy_basic:AnatomyBasicPipeline",
        version=_anatomy_basic_version,
        description="Classical HU + morphology: body outline, lungs, airways, bone, with measurements (CPU).",
        needs_torch=False,
        answers=_anatomy_basic_answers,
    ),
    "unified-ct": PipelineInfo(
        name="unified-ct",
        factory="inference.model.pipeline:UnifiedCTPipeline",
        version=_unified_ct_version,
        description="Text-prompted segmentation, lesion detection, snippet localisation, look-closer.",
        needs_torch=True,
        answers=_unified_ct_answers,
        missing=_unified_ct_missing,
    ),
}


def _builtin_and_models() -> dict[str, PipelineInfo]:
    from inference.installed.pipelines import installed_pipelines, totalsegmentator_pipelines

    out = dict(_BUILTIN)
    for source in (totalsegmentator_pipelines(), installed_pipelines()):
        for name, pipeline_info in source.items():
            out.setdefault(name, pipeline_info)
    return out


def _entry_points() -> dict[str, PipelineInfo]:
    out: dict[str, PipelineInfo] = {}
    for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        out[ep.name] = PipelineInfo(
            name=ep.name,
            factory=ep.value,
            version=_plugin_attr(ep, "version", str),
            description=f"from package {ep.dist.name if ep.dist else '?'} (entry point {ep.value})",
            needs_torch=False,
            source="entry point",
            answers=_plugin_attr(ep, "answers", tuple),
        )
    return out


def _plugin_attr(ep: importlib.metadata.EntryPoint, attr: str, kind: type) -> Callable[[], Any]:
    def read() -> Any:
        obj = ep.load()
        value = getattr(obj, attr, None)
        if value is None and attr == "version":
            return f"{ep.dist.name}@{ep.dist.version}" if ep.dist else "unknown"
        return kind(value or ())

    return read


def _composed() -> dict[str, PipelineInfo]:
    return {
        AUTO: PipelineInfo(
            name=AUTO,
            factory="inference.compose:ComposedPipeline",
            version=lambda: __import__("inference.compose", fromlist=["composed_version"]).composed_version(),
            description="Each prompt answered by the installed model that knows the structure.",
            needs_torch=True,
            source="composed",
        )
    }


def registry() -> dict[str, PipelineInfo]:
    """Every known pipeline by name (read afresh: models are installed while a process runs)."""
    out = _builtin_and_models()
    for name, pipeline_info in {**_composed(), **_entry_points()}.items():
        if name in out:
            logger.warning("pipeline %s from %s ignored: the name is taken", name, pipeline_info.factory)
            continue
        out[name] = pipeline_info
    return out


def available() -> list[str]:
    """Names rules may use: registered pipelines whose implementation module is importable here.

    A pipeline whose weights are not installed is still a name rules may give (its rule falls
    back, or the job fails with the import command to run); :func:`missing` says which.
    """
    out = []
    for name, pipeline_info in registry().items():
        try:
            found = importlib.util.find_spec(pipeline_info.factory.split(":")[0]) is not None
        except ModuleNotFoundError:  # a parent package is missing (e.g. a partial install)
            found = False
        if found:
            out.append(name)
    return sorted(out)


def info(name: str) -> PipelineInfo:
    known = registry()
    try:
        return known[name]
    except KeyError:
        hint = ""
        if name.startswith(("nnunet:", "bundle:")):
            hint = f" (install it: ctnode model import PATH --name {name.split(':', 1)[1]})"
        raise KeyError(f"unknown pipeline {name!r}{hint}; known: {', '.join(sorted(known))}") from None


def missing(name: str) -> str | None:
    """Why pipeline ``name`` cannot run here (e.g. weights not installed), or None."""
    return info(name).missing()


def pipeline_version(name: str) -> str:
    return info(name).version()


_instances: dict[str, Pipeline] = {}
_lock = threading.Lock()


def get_pipeline(name: str, **options: object) -> Pipeline:
    """The pipeline instance for ``name``, built once per process and kept warm (GPU workers)."""
    pipeline_info = info(name)
    key = name + "@" + pipeline_info.version() + repr(sorted(options.items()))
    with _lock:
        if key not in _instances:
            reason = pipeline_info.missing()
            if reason is not None and pipeline_info.source != "built-in":  # built-ins say it themselves
                raise PipelineUnavailable(f"pipeline {name} cannot run here: {reason}")
            module_name, attr = pipeline_info.factory.split(":")
            factory = getattr(importlib.import_module(module_name), attr)
            _instances[key] = factory(**pipeline_info.options, **options)
        return _instances[key]


def forget_instances() -> None:
    """Drop the warm pipeline instances (tests; a worker re-reading installed models)."""
    with _lock:
        _instances.clear()


def runnable(name: str) -> tuple[str, str | None]:
    """``(pipeline to run, why it is not the one asked for)`` for a rule naming ``name``.

    A pipeline whose weights are not installed and that names a fallback (TotalSegmentator →
    ``ct-anatomy-basic``) gives way to it, and the reason says so; any other name is itself.
    """
    try:
        pipeline_info = info(name)
    except KeyError:  # uninstalled since the rules were loaded: the job fails with the reason
        return name, None
    if pipeline_info.fallback is None:
        return name, None
    reason = pipeline_info.missing()
    if reason is None:
        return name, None
    return pipeline_info.fallback, f"{name} not installed, ran {pipeline_info.fallback} instead ({reason})"
