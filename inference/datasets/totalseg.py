"""TotalSegmentator layout: ``<subject>/ct.nii.gz`` + ``<subject>/segmentations/<class>.nii.gz``.

Also read, because the project's examples (``../shared/data/totalseg-examples``) use them:

* a multi-label map ``<subject>/labels.nii.gz`` with ``classes.json`` (``{value: class}``),
  which is what TotalSegmentator's ``--ml`` output plus its class map amount to;
* a cropped subject: ``ct_cropped.nii.gz`` with its class masks beside it.

``root`` is one subject folder or a folder of subject folders.
"""

from __future__ import annotations

import json
from pathlib import Path

from inference.datasets.cases import DatasetIndex, LabelFile, LabelledCase, index_of

IMAGE_NAMES = ("ct.nii.gz", "ct_cropped.nii.gz")
SUFFIX = ".nii.gz"


def _image_of(folder: Path) -> Path | None:
    for name in IMAGE_NAMES:
        if (folder / name).is_file():
            return folder / name
    return None


def _subject(folder: Path, image: Path) -> LabelledCase | None:
    seg_dir = folder / "segmentations"
    files: list[LabelFile] = []
    if seg_dir.is_dir():
        files = [LabelFile(p, {1: p.name[: -len(SUFFIX)]}) for p in sorted(seg_dir.glob(f"*{SUFFIX}"))]
    elif (folder / "labels.nii.gz").is_file() and (folder / "classes.json").is_file():
        classes = json.loads((folder / "classes.json").read_text())
        files = [LabelFile(folder / "labels.nii.gz", {int(k): str(v) for k, v in classes.items()})]
    else:
        skip = {*IMAGE_NAMES, "labels.nii.gz"}
        files = [
            LabelFile(p, {1: p.name[: -len(SUFFIX)]})
            for p in sorted(folder.glob(f"*{SUFFIX}"))
            if p.name not in skip
        ]
    return LabelledCase(folder.name, image, tuple(files)) if files else None


def read_totalseg(root: Path) -> DatasetIndex:
    """Index one TotalSegmentator subject folder, or a folder of them."""
    root = Path(root)
    folders = [root] if _image_of(root) else sorted(p for p in root.iterdir() if p.is_dir())
    cases = []
    for folder in folders:
        image = _image_of(folder)
        if image is None:
            continue
        case = _subject(folder, image)
        if case is not None:
            cases.append(case)
    if not cases:
        raise ValueError(f"{root}: no TotalSegmentator subject (ct.nii.gz with labels) found")
    return index_of(root, "totalsegmentator", cases)


def read_dataset(root: Path, layout: str = "auto") -> DatasetIndex:
    """Either layout; ``auto`` picks nnU-Net when ``dataset.json`` is there."""
    from inference.datasets.nnunet import read_nnunet

    if layout == "nnunet" or (layout == "auto" and (Path(root) / "dataset.json").is_file()):
        return read_nnunet(root)
    if layout in ("auto", "totalsegmentator"):
        return read_totalseg(root)
    raise ValueError(f"unknown dataset layout {layout!r} (nnunet, totalsegmentator, auto)")
