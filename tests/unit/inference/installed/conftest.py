"""Tiny nnU-Net v2 model folders (nnU-Net's own planner and network, random weights), built once."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("nnunetv2")

from tests.support.nnunet_models import make_nnunet_model

ORGANS = {"liver": 1, "spleen": 2, "kidney_cyst_left": 3}
SPINE = {"kidney_left": 1, "vertebrae_L3": 2, "vertebrae_L4": 3}


@pytest.fixture(scope="session")
def organs_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``.../Dataset901_Organs/nnUNetTrainer__nnUNetPlans__3d_fullres`` (folds 0 and 1)."""
    return make_nnunet_model(
        tmp_path_factory.mktemp("organs"),
        labels=ORGANS,
        dataset_id=901,
        dataset_name="Organs",
        folds=("0", "1"),
        extra={"licence": "CC0-1.0 (test model)", "release": "0.1"},
    )


@pytest.fixture(scope="session")
def spine_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Trained (so to speak) with TotalSegmentator's trainer class, which nnU-Net's own trainer
    search cannot reach without torchvision (inference/nnunet/trainers.py)."""
    return make_nnunet_model(
        tmp_path_factory.mktemp("spine"),
        labels=SPINE,
        dataset_id=902,
        dataset_name="Spine",
        seed=3,
        trainer="nnUNetTrainerNoMirroring",
    )


@pytest.fixture
def model_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty model directory for this test (``$CTNODE_MODEL_DIR``)."""
    folder = tmp_path / "models"
    folder.mkdir()
    monkeypatch.setenv("CTNODE_MODEL_DIR", str(folder))
    return folder


@pytest.fixture(autouse=True)
def _cold_registry() -> None:
    """Each test loads its own models: no warm instance from another test's model directory."""
    from inference.registry import forget_instances

    forget_instances()
