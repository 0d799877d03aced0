"""Find an nnU-Net trainer class by name without importing every trainer module.

nnU-Net's predictor builds the network through the trainer named in the checkpoint, found by
``recursive_find_trainer_class_by_name``, which imports every module under
``nnunetv2.training.nnUNetTrainer`` in turn. Some of those (Primus, via dynamic-network-
architectures → timm) import torchvision, which a CPU-torch install does not have; the search
then fails before it reaches ``nnUNetTrainerNoMirroring`` (TotalSegmentator's trainer). This
search looks where nnU-Net's does, skips modules that cannot be imported here, and says which.
"""

from __future__ import annotations

import importlib
import inspect
import logging
import pkgutil
from typing import Any

logger = logging.getLogger(__name__)
_cache: dict[str, Any] = {}


def find_trainer_class(name: str) -> Any:
    if name in _cache:
        return _cache[name]
    import nnunetv2.training.nnUNetTrainer as package

    skipped: list[str] = []
    for module_info in pkgutil.walk_packages(package.__path__, prefix=package.__name__ + "."):
        try:
            module = importlib.import_module(module_info.name)
        except ImportError as exc:  # e.g. torchvision absent: not a trainer this model needs
            skipped.append(f"{module_info.name} ({exc})")
            continue
        candidate = getattr(module, name, None)
        if inspect.isclass(candidate):
            _cache[name] = candidate
            return candidate
    raise RuntimeError(
        f"nnU-Net trainer class {name!r} not found in nnunetv2.training.nnUNetTrainer"
        + (f"; not importable here: {'; '.join(skipped[:5])}" if skipped else "")
    )


def install() -> None:
    """Make nnU-Net's predictor use :func:`find_trainer_class` (idempotent)."""
    import nnunetv2.inference.predict_from_raw_data as predict

    predict.recursive_find_trainer_class_by_name = find_trainer_class
