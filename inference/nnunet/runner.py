"""One installed nnU-Net v2 model, loaded once and kept warm: volume in, label map out.

Loading goes through nnU-Net's own ``nnUNetPredictor.initialize_from_trained_model_folder``,
which unpickles ``fold_*/checkpoint_final.pth`` (``torch.load(weights_only=False)``): every
checkpoint's sha256 is checked against the model card first, and a mismatch refuses the model.
Prediction is ``predict_single_npy_array`` (nnU-Net's preprocessing: resampling to the plan's
spacing, normalisation, sliding window, and resampling back), on the GPU with autocast when
there is one, else on CPU.
"""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

from inference.installed.card import ModelCard, ModelError, verify_files
from inference.nnunet.orientation import Orientation, from_network, to_network

logger = logging.getLogger(__name__)


def pick_device(device: str | None) -> Any:
    import torch

    if device in (None, "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


class NnUNetModel:
    """An installed nnU-Net model folder (see ``inference.installed``), ready to predict."""

    def __init__(
        self,
        folder: Path,
        card: ModelCard,
        *,
        device: str | None = None,
        tile_step_size: float | None = None,
        use_mirroring: bool | None = None,
        orientation: Orientation | None = None,
        folds: tuple[str, ...] | None = None,
    ) -> None:
        if card.kind != "nnunet":
            raise ModelError(f"model {card.name} is a {card.kind}, not an nnU-Net model")
        self.card = card
        self.folder = Path(folder)
        info = card.nnunet
        options = card.options
        self.model_folder = self.folder / str(info["model_folder"])
        self.folds = tuple(folds or options.get("folds") or info["folds"])
        self.orientation: Orientation = orientation or options.get("orientation", "RAS")
        self.tile_step_size = float(tile_step_size or options.get("tile_step_size", 0.5))
        mirroring = options.get("use_mirroring", False) if use_mirroring is None else use_mirroring
        self.use_mirroring = bool(mirroring)
        checkpoints = [
            str((self.model_folder / f"fold_{f}" / info["checkpoint"]).relative_to(self.folder))
            for f in self.folds
        ]
        missing = [c for c in checkpoints if c not in card.files]
        if missing:
            raise ModelError(f"model {card.name}: fold checkpoint(s) {', '.join(missing)} not installed")
        # The pickled checkpoints and the JSON that builds the network must be what was imported.
        verify_files(
            self.folder,
            card,
            [
                *checkpoints,
                *(
                    str((self.model_folder / n).relative_to(self.folder))
                    for n in ("plans.json", "dataset.json")
                ),
            ],
        )
        self.device = pick_device(device)
        self._lock = threading.Lock()
        self._predictor = self._load()

    def _load(self) -> Any:
        import torch
        from nnunetv2.inference.predict_from_raw_data import nnUNetPredictor

        from inference.nnunet import trainers

        trainers.install()
        t0 = time.perf_counter()
        predictor = nnUNetPredictor(
            tile_step_size=self.tile_step_size,
            use_gaussian=True,
            use_mirroring=self.use_mirroring,
            perform_everything_on_device=self.device.type == "cuda",
            device=self.device,
            verbose=False,
            verbose_preprocessing=False,
            allow_tqdm=False,
        )
        folds: tuple[int | str, ...] = tuple(f if f == "all" else int(f) for f in self.folds)
        try:
            predictor.initialize_from_trained_model_folder(str(self.model_folder), use_folds=folds)
        except (RuntimeError, KeyError, ValueError, OSError) as exc:
            raise ModelError(f"model {self.card.name}: nnU-Net could not load it: {exc}") from exc
        if self.device.type == "cpu":
            torch.set_num_threads(max(1, torch.get_num_threads()))
        logger.info(
            "nnU-Net model %s loaded in %.1f s on %s", self.card.name, time.perf_counter() - t0, self.device
        )
        return predictor

    @property
    def classes(self) -> dict[int, str]:
        return {int(v): name for v, name in self.card.classes.items()}

    @property
    def target_spacing(self) -> tuple[float, float, float]:
        """The plan's voxel spacing in the reader's axis order (nnU-Net plans store it transposed)."""
        spacing = list(self._predictor.configuration_manager.spacing)
        backward = list(self._predictor.plans_manager.transpose_backward)
        z, y, x = (float(spacing[i]) for i in backward)
        return (z, y, x)

    def predict(self, hu: np.ndarray, affine_lps: np.ndarray) -> np.ndarray:
        """Label values of this model's classes on our ``[slice, row, column]`` grid.

        The volume is resampled to the plan's spacing here and the *labels* brought back by
        nearest neighbour (as TotalSegmentator does), not nnU-Net's export, which resamples every
        class's logits to the input grid first: 118 classes × 512×512×300 would be 37 GB.
        """
        array, spacing, undo = to_network(hu, affine_lps, self.orientation)
        target = self.target_spacing
        resampled = resample_linear(array, spacing, target)
        with self._lock:  # one prediction at a time per loaded model (GPU memory)
            labels = self._predictor.predict_single_npy_array(
                resampled[None].astype(np.float32, copy=False), {"spacing": list(target)}
            )
        labels = nearest_to_shape(np.asarray(labels).astype(np.uint16, copy=False), array.shape)
        return from_network(labels, undo)


def resample_linear(
    array: np.ndarray, spacing: tuple[float, float, float], target: tuple[float, float, float]
) -> np.ndarray:
    """``array`` at ``target`` spacing (linear; unchanged when the spacing is already within 1%)."""
    from scipy import ndimage

    shape = [max(1, round(n * s / t)) for n, s, t in zip(array.shape, spacing, target, strict=True)]
    if list(array.shape) == shape or all(abs(s / t - 1) < 0.01 for s, t in zip(spacing, target, strict=True)):
        return array
    zoom = [n / o for n, o in zip(shape, array.shape, strict=True)]
    out: np.ndarray = ndimage.zoom(array.astype(np.float32, copy=False), zoom, order=1, mode="nearest")
    return out


def nearest_to_shape(labels: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """A label array resized to ``shape`` by nearest neighbour (voxel centres map to voxel centres)."""
    if labels.shape == tuple(shape):
        return labels
    index = [
        np.minimum(((np.arange(n) + 0.5) * (m / n)).astype(np.int64), m - 1)
        for n, m in zip(shape, labels.shape, strict=True)
    ]
    return labels[np.ix_(*index)]
