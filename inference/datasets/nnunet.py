"""nnU-Net v2 raw datasets: ``imagesTr/<case>_0000.nii.gz`` + ``labelsTr/<case>.nii.gz`` +
``dataset.json`` (``"labels": {name: value}``), read (:func:`read_nnunet`) and written
(:class:`NnUNetWriter`, used by ``ctnode model distill``).

Only single-channel (CT) datasets are read: a second channel would be something the model has
never seen. nnU-Net's region-based labels (a tuple of values for one name) are read as the
union of those values.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from inference.datasets.cases import DatasetIndex, LabelFile, LabelledCase, index_of
from inference.datasets.nifti import save_nifti_lps

SUFFIX = ".nii.gz"
CHANNEL = "_0000"


def _classes(labels: dict[str, Any]) -> dict[int, str]:
    out: dict[int, str] = {}
    for name, value in labels.items():
        values = value if isinstance(value, list | tuple) else [value]
        for v in values:
            if int(v) != 0:
                out.setdefault(int(v), name)
    return out


def read_nnunet(root: Path) -> DatasetIndex:
    """Index an nnU-Net raw dataset folder (the one holding ``dataset.json``)."""
    root = Path(root)
    meta = json.loads((root / "dataset.json").read_text())
    if "labels" not in meta:
        raise ValueError(f"{root / 'dataset.json'} has no 'labels'")
    channels = meta.get("channel_names", meta.get("modality", {"0": "CT"}))
    if len(channels) != 1:
        raise ValueError(f"{root}: {len(channels)} input channels; only single-channel CT is read")
    ending = str(meta.get("file_ending", SUFFIX))
    classes = _classes(meta["labels"])
    per_case = meta.get("cases", {})
    cases = []
    for image in sorted((root / "imagesTr").glob(f"*{CHANNEL}{ending}")):
        case_id = image.name[: -len(CHANNEL + ending)]
        label = root / "labelsTr" / f"{case_id}{ending}"
        if not label.is_file():
            continue  # an image without labels teaches nothing here
        cases.append(
            LabelledCase(case_id, image, (LabelFile(label, classes),), dict(per_case.get(case_id, {})))
        )
    info = {k: meta[k] for k in ("name", "description", "teacher", "reference", "unknown_names") if k in meta}
    return index_of(root, "nnunet", cases, info)


class NnUNetWriter:
    """Writes an nnU-Net raw dataset case by case; ``dataset.json`` is rewritten after every case
    so an interrupted run leaves a valid dataset of the cases written so far (resumable)."""

    def __init__(self, root: Path, labels: dict[str, int], info: dict[str, Any]) -> None:
        self.root = Path(root)
        (self.root / "imagesTr").mkdir(parents=True, exist_ok=True)
        (self.root / "labelsTr").mkdir(parents=True, exist_ok=True)
        old_file = self.root / "dataset.json"
        old: dict[str, Any] = json.loads(old_file.read_text()) if old_file.is_file() else {}
        # A resumed run keeps the values already written (cases on disk use them).
        self.labels: dict[str, int] = {"background": 0, **old.get("labels", {}), **labels}
        self.cases: dict[str, Any] = old.get("cases", {})
        self.info = {**{k: v for k, v in old.items() if k == "unknown_names"}, **info}

    def label_value(self, name: str) -> int:
        """The value ``name`` is written with: the one it already has, else the next free one."""
        if name not in self.labels:
            self.labels[name] = max(self.labels.values(), default=0) + 1
        return self.labels[name]

    def has(self, case_id: str) -> bool:
        return case_id in self.cases and (self.root / "labelsTr" / f"{case_id}{SUFFIX}").is_file()

    def write(
        self,
        case_id: str,
        hu: np.ndarray,
        affine_lps: np.ndarray,
        labelmap: np.ndarray,
        record: dict[str, Any],
    ) -> None:
        save_nifti_lps(
            self.root / "imagesTr" / f"{case_id}{CHANNEL}{SUFFIX}",
            np.clip(np.rint(hu), -32768, 32767).astype(np.int16),
            affine_lps,
        )
        # Labels last: their presence is what marks a case as complete (see has()).
        save_nifti_lps(self.root / "labelsTr" / f"{case_id}{SUFFIX}", labelmap.astype(np.uint8), affine_lps)
        self.cases[case_id] = record
        self.flush()

    def flush(self) -> None:
        meta = {
            **self.info,
            "channel_names": {"0": "CT"},
            "labels": self.labels,
            "numTraining": len(self.cases),
            "file_ending": SUFFIX,
            "cases": self.cases,
        }
        tmp = self.root / "dataset.json.tmp"
        tmp.write_text(json.dumps(meta, indent=2) + "\n")
        tmp.replace(self.root / "dataset.json")
