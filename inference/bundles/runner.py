"""One installed MONAI bundle, run with ``monai.bundle`` and kept warm.

The bundle's own inference config decides everything it can: ``network_def`` (weights from
``models/model.pt``, or ``models/model.ts`` TorchScript), ``preprocessing`` (it starts with
``LoadImaged``, so the volume is handed over as a NIfTI file in RAS), ``inferer`` and
``postprocessing`` (``Invertd`` brings the prediction back to the file's grid; files the bundle
saves go to a temporary ``output_dir``). Detection bundles (MONAI's lung-nodule RetinaNet layout:
a ``detector`` built on ``network_def``, with its ``detector_ops``) give boxes in the
preprocessed image's voxels, mapped to ours through that image's affine.

Weights are checked against the card's sha256 before ``torch.load``/``torch.jit.load``.
"""

from __future__ import annotations

import logging
import tempfile
import threading
from pathlib import Path
from typing import Any

import numpy as np

from inference.installed.card import ModelCard, ModelError, verify_files

logger = logging.getLogger(__name__)

LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])


def write_nifti(hu: np.ndarray, affine_lps: np.ndarray, path: Path) -> None:
    """Our ``[slice, row, column]`` volume as a NIfTI file whose voxel axes are (column, row, slice)."""
    import nibabel as nib

    swap = np.array([[0, 0, 1, 0], [0, 1, 0, 0], [1, 0, 0, 0], [0, 0, 0, 1.0]])  # (c, r, s) -> (s, r, c)
    affine_ras = LPS_TO_RAS @ affine_lps @ swap
    image = nib.Nifti1Image(np.ascontiguousarray(hu.transpose(2, 1, 0)), affine_ras)  # type: ignore[no-untyped-call]
    nib.save(image, str(path))


def boxes_to_ours(
    boxes: np.ndarray, affine_ras: np.ndarray, affine_lps: np.ndarray, shape: tuple[int, ...]
) -> list[tuple[int, int, int, int, int, int]]:
    """Boxes ``[x0, y0, z0, x1, y1, z1]`` in a (preprocessed) image's voxels, whose affine maps to
    RAS mm → inclusive ``[s0, r0, c0, s1, r1, c1]`` in our volume (its affine maps to LPS mm)."""
    to_ours = np.linalg.inv(affine_lps) @ np.linalg.inv(LPS_TO_RAS) @ affine_ras
    out = []
    for box in np.asarray(boxes, dtype=np.float64).reshape(-1, 6):
        corners = np.array(
            [[x, y, z, 1.0] for x in (box[0], box[3]) for y in (box[1], box[4]) for z in (box[2], box[5])]
        )
        ours = (to_ours @ corners.T).T[:, :3]
        lo = np.clip(np.floor(ours.min(axis=0)), 0, np.array(shape) - 1).astype(int)
        hi = np.clip(np.ceil(ours.max(axis=0)), 0, np.array(shape) - 1).astype(int)
        out.append((int(lo[0]), int(lo[1]), int(lo[2]), int(hi[0]), int(hi[1]), int(hi[2])))
    return out


class BundleModel:
    def __init__(self, folder: Path, card: ModelCard, *, device: str | None = None) -> None:
        if card.kind != "bundle":
            raise ModelError(f"model {card.name} is a {card.kind}, not a MONAI bundle")
        self.card = card
        self.folder = Path(folder)
        self.root = self.folder / str(card.bundle["root"])
        self.task = str(card.bundle.get("task", "segmentation"))
        # Every file: a bundle's configs evaluate Python expressions and may import its scripts/.
        verify_files(self.folder, card)
        from inference.nnunet.runner import pick_device

        self.device = pick_device(device)
        self._lock = threading.Lock()
        self._tmp = tempfile.TemporaryDirectory(prefix=f"ctnode-bundle-{card.name}-")
        self.parser = self._parser()
        self.network = self._network(self.root / str(card.bundle["weights"]))

    def _parser(self) -> Any:
        import sys

        from monai.bundle.config_parser import ConfigParser

        if (self.root / "scripts").is_dir() and str(self.root) not in sys.path:
            sys.path.insert(0, str(self.root))  # the bundle's own code (its files are on the card)

        parser = ConfigParser()
        parser.read_meta(str(self.root / "configs" / "metadata.json"))
        parser.read_config(str(self.root / str(self.card.bundle["inference_config"])))
        parser["bundle_root"] = str(self.root)
        parser["output_dir"] = self._tmp.name
        parser["device"] = str(self.device)
        return parser

    def _network(self, weights: Path) -> Any:
        import torch

        try:
            if weights.suffix == ".ts":
                network = torch.jit.load(str(weights), map_location=self.device)  # type: ignore[no-untyped-call]
            else:
                network = self.parser.get_parsed_content("network_def", instantiate=True)
                state = torch.load(str(weights), map_location="cpu", weights_only=True)
                if isinstance(state, dict) and "model" in state and isinstance(state["model"], dict):
                    state = state["model"]  # bundles saved by CheckpointSaver nest the weights
                network.load_state_dict(state)
        except (RuntimeError, KeyError, ValueError, OSError) as exc:
            raise ModelError(
                f"bundle {self.card.name}: its network could not be built and loaded: {exc}"
            ) from exc
        return network.to(self.device).eval()

    @property
    def classes(self) -> dict[int, str]:
        return {int(v): name for v, name in self.card.classes.items()}

    def _preprocessed(self, hu: np.ndarray, affine_lps: np.ndarray) -> dict[str, Any]:
        path = Path(self._tmp.name) / "input.nii.gz"
        write_nifti(hu, affine_lps, path)
        preprocessing = self.parser.get_parsed_content("preprocessing", instantiate=True)
        data: dict[str, Any] = preprocessing({"image": str(path)})
        return data

    def segment(self, hu: np.ndarray, affine_lps: np.ndarray) -> np.ndarray:
        """Label values of the bundle's classes on our ``[slice, row, column]`` grid."""
        import torch

        with self._lock, torch.no_grad():
            data = self._preprocessed(hu, affine_lps)
            inferer = self.parser.get_parsed_content("inferer", instantiate=True)
            image = data["image"].to(self.device)[None]
            with torch.autocast(self.device.type, enabled=self.device.type == "cuda"):
                data["pred"] = inferer(image, self.network)[0].float().cpu()
            data["image"] = data["image"].cpu()
            if "postprocessing" in self.parser:
                data = self.parser.get_parsed_content("postprocessing", instantiate=True)(data)
        pred = data["pred"]
        array = np.asarray(pred.detach().cpu().numpy() if hasattr(pred, "detach") else pred)
        if array.ndim == 4:
            array = array.argmax(axis=0) if array.shape[0] > 1 else array[0]
        labels = np.rint(array).astype(np.uint16)  # NIfTI (column, row, slice) of the file we wrote
        if labels.shape != hu.shape[::-1]:
            raise ModelError(
                f"bundle {self.card.name}: prediction shape {labels.shape} is not the input's "
                f"{hu.shape[::-1]} (its postprocessing must invert the spatial preprocessing, e.g. Invertd)"
            )
        return np.ascontiguousarray(labels.transpose(2, 1, 0))

    def detect(self, hu: np.ndarray, affine_lps: np.ndarray) -> list[tuple[tuple[int, ...], float, int]]:
        """``(box [s0, r0, c0, s1, r1, c1] inclusive in our voxels, score, class value)`` per box."""
        import torch

        with self._lock, torch.no_grad():
            data = self._preprocessed(hu, affine_lps)
            detector = self.parser.get_parsed_content("detector", instantiate=True)
            detector.network = self.network
            for op in ("detector_ops",):
                if op in self.parser:
                    self.parser.get_parsed_content(op, instantiate=True)
            detector.eval()
            image = data["image"]
            out = detector([image.to(self.device)], use_inferer=True)[0]
        boxes = out[detector.target_box_key].detach().cpu().numpy().reshape(-1, 6)
        scores = out[detector.pred_score_key].detach().cpu().numpy().reshape(-1)
        labels = out[detector.target_label_key].detach().cpu().numpy().reshape(-1)
        to_ras = np.asarray(image.affine, dtype=np.float64)
        ours = boxes_to_ours(boxes, to_ras, affine_lps, hu.shape)
        return [
            (box, float(score), int(label)) for box, score, label in zip(ours, scores, labels, strict=True)
        ]
