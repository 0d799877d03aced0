"""Tiny nnU-Net v2 trained-model folders made with nnU-Net's own planning and network code.

Random weights (nothing downloaded): the layout, plans, network and checkpoint are exactly what
``nnUNetv2_train`` writes, so the node's import, sha256 checks, loading through
``nnUNetPredictor`` and orientation handling are exercised for real; what the random network
segments is not a result.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

import numpy as np

TRAINER = "nnUNetTrainer"
CONFIGURATION = "3d_fullres"


@contextmanager
def _nnunet_env(root: Path) -> Iterator[None]:
    keys = ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results")
    saved = {k: os.environ.get(k) for k in keys}
    for k in keys:
        (root / k).mkdir(parents=True, exist_ok=True)
        os.environ[k] = str(root / k)
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _case(
    rng: np.random.Generator, shape: tuple[int, int, int], n_labels: int
) -> tuple[np.ndarray, np.ndarray]:
    image = rng.normal(0.0, 30.0, size=shape).astype(np.int16)
    labels = np.zeros(shape, dtype=np.uint8)
    for value in range(1, n_labels + 1):
        corner = [int(rng.integers(0, s - s // 3)) for s in shape]
        box = tuple(slice(c, c + max(2, s // 4)) for c, s in zip(corner, shape, strict=True))
        labels[box] = value
        image[box] += np.int16(100 * value)
    return image, labels


def make_nnunet_model(
    root: Path,
    *,
    labels: Mapping[str, int],
    dataset_id: int = 901,
    dataset_name: str = "Tiny",
    shape: tuple[int, int, int] = (20, 24, 28),
    spacing_mm: tuple[float, float, float] = (3.0, 2.5, 2.0),
    folds: tuple[str, ...] = ("0",),
    base_features: int = 4,
    seed: int = 0,
    extra: Mapping[str, object] | None = None,
    trainer: str = TRAINER,
) -> Path:
    """Write ``root/export/DatasetNNN_name/nnUNetTrainer__nnUNetPlans__3d_fullres`` and return it."""
    import nibabel as nib
    import torch
    from nnunetv2.experiment_planning.dataset_fingerprint.fingerprint_extractor import (
        DatasetFingerprintExtractor,
    )
    from nnunetv2.experiment_planning.experiment_planners.default_experiment_planner import ExperimentPlanner
    from nnunetv2.utilities.get_network_from_plans import get_network_from_plans
    from nnunetv2.utilities.plans_handling.plans_handler import PlansManager

    folder_name = f"Dataset{dataset_id:03d}_{dataset_name}"
    rng = np.random.default_rng(seed)
    with _nnunet_env(root / "work"):
        raw = Path(os.environ["nnUNet_raw"]) / folder_name  # noqa: SIM112 (nnU-Net's own names)
        (raw / "imagesTr").mkdir(parents=True, exist_ok=True)
        (raw / "labelsTr").mkdir(parents=True, exist_ok=True)
        affine = np.diag([spacing_mm[2], spacing_mm[1], spacing_mm[0], 1.0])  # NIfTI (x, y, z)
        for i in range(2):
            image, seg = _case(rng, shape, len(labels))
            # NIfTI arrays are (x, y, z); SimpleITK reads them back as [z, y, x] = our shape
            nib.save(
                nib.Nifti1Image(image.transpose(2, 1, 0), affine), raw / "imagesTr" / f"c{i}_0000.nii.gz"
            )
            nib.save(nib.Nifti1Image(seg.transpose(2, 1, 0), affine), raw / "labelsTr" / f"c{i}.nii.gz")
        dataset = {
            "channel_names": {"0": "CT"},
            "labels": {"background": 0, **dict(labels)},
            "numTraining": 2,
            "file_ending": ".nii.gz",
            "name": dataset_name,
            **(extra or {}),
        }
        (raw / "dataset.json").write_text(json.dumps(dataset))
        DatasetFingerprintExtractor(dataset_id, 1, verbose=False).run()
        planner = ExperimentPlanner(dataset_id, gpu_memory_target_in_gb=0.5)
        planner.plan_experiment()
        preprocessed = Path(os.environ["nnUNet_preprocessed"]) / folder_name  # noqa: SIM112
        plans = json.loads((preprocessed / "nnUNetPlans.json").read_text())
        arch = plans["configurations"][CONFIGURATION]["architecture"]["arch_kwargs"]
        arch["features_per_stage"] = [
            min(base_features * 2**i, 8 * base_features) for i in range(arch["n_stages"])
        ]
        manager = PlansManager(plans)
        config = manager.get_configuration(CONFIGURATION)
        torch.manual_seed(seed)
        network = get_network_from_plans(
            config.network_arch_class_name,
            config.network_arch_init_kwargs,
            config.network_arch_init_kwargs_req_import,
            1,
            len(labels) + 1,
            deep_supervision=False,
        )
    model = root / "export" / folder_name / f"{trainer}__nnUNetPlans__{CONFIGURATION}"
    model.mkdir(parents=True, exist_ok=True)
    (model / "plans.json").write_text(json.dumps(plans, indent=1))
    (model / "dataset.json").write_text(json.dumps(dataset, indent=1))
    for fold in folds:
        (model / f"fold_{fold}").mkdir(exist_ok=True)
        torch.save(
            {
                "network_weights": network.state_dict(),
                "trainer_name": trainer,
                "init_args": {"configuration": CONFIGURATION, "fold": fold},
                "inference_allowed_mirroring_axes": (0, 1, 2),
                "current_epoch": 0,
            },
            model / f"fold_{fold}" / "checkpoint_final.pth",
        )
    return model
