"""``ctnode model import PATH --name NAME``: a model folder or zip → ``installed/NAME/`` + card.

Accepted (the layouts their tools write):

* an nnU-Net v2 trained-model folder — ``dataset.json``, ``plans.json``, ``fold_*/checkpoint_final.pth``
  (``nnUNetv2_export_model_to_zip`` zips and TotalSegmentator's released weight zips nest it as
  ``DatasetXXX_.../Trainer__Plans__configuration/``);
* a MONAI bundle — ``configs/metadata.json``, an inference config, ``models/model.pt`` or
  ``models/model.ts``.

Every file's sha256 goes on the card. A corrupt zip, a model folder without a trained fold, a
bundle without metadata each stop the import with one clear error, and nothing is installed.
"""

from __future__ import annotations

import json
import re
import shutil
import tempfile
import zipfile
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath
from typing import Any

from inference.installed.card import (
    CARD_FILENAME,
    ModelCard,
    ModelError,
    installed_dir,
    sha256_file,
)

NAME_PATTERN = re.compile(r"^[a-z0-9][a-z0-9._-]{0,63}$")
CHECKPOINT = "checkpoint_final.pth"
_DATASET_ID = re.compile(r"^Dataset(\d{3})_")


def import_model(
    path: Path,
    *,
    name: str,
    model_dir: Path | None = None,
    licence: str | None = None,
    version: str | None = None,
    replace: bool = False,
    options: dict[str, Any] | None = None,
) -> ModelCard:
    """Install the model at ``path`` (folder or zip) as ``name``; returns its card."""
    if not NAME_PATTERN.match(name):
        raise ModelError(f"model name {name!r}: use lower case letters, digits, '.', '_' or '-' (max 64)")
    path = Path(path)
    if not path.exists():
        raise ModelError(f"{path}: no such file or folder")
    target = installed_dir(model_dir) / name
    if target.exists() and not replace:
        raise ModelError(f"model {name!r} is already installed at {target} (use --replace to overwrite)")
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=f".{name}-", dir=target.parent) as tmp:
        staging = Path(tmp) / "model"
        if path.is_dir():
            shutil.copytree(path, staging / path.name, symlinks=False)  # keeps Trainer__Plans__config
        else:
            _unzip(path, staging)
        kind, root = _find_model_root(staging, path)
        if kind == "nnunet":
            card = _nnunet_card(root, staging, name=name, source=path, licence=licence, version=version)
        else:
            card = _bundle_card(root, staging, name=name, source=path, licence=licence, version=version)
        if options:
            card = ModelCard(**{**card.__dict__, "options": {**card.options, **options}})
        (staging / CARD_FILENAME).write_text(card.to_json())
        if target.exists():
            shutil.rmtree(target)
        staging.rename(target)  # same file system: the model appears whole or not at all
    return card


def _unzip(path: Path, dest: Path) -> None:
    try:
        with zipfile.ZipFile(path) as archive:
            bad = archive.testzip()
            if bad is not None:
                raise ModelError(f"{path}: zip member {bad!r} is corrupt (CRC mismatch); nothing installed")
            for member in archive.namelist():
                p = PurePosixPath(member)
                if p.is_absolute() or ".." in p.parts:
                    raise ModelError(f"{path}: zip member {member!r} points outside the archive; refused")
            archive.extractall(dest)
    except zipfile.BadZipFile as exc:
        raise ModelError(f"{path} is not a readable zip ({exc}); nothing installed") from None
    except (OSError, EOFError) as exc:  # truncated archives fail while reading members
        raise ModelError(f"{path}: reading the zip failed ({exc}); nothing installed") from None


def _find_model_root(staging: Path, source: Path) -> tuple[str, Path]:
    nnunet = sorted({p.parent for p in staging.rglob("plans.json") if (p.parent / "dataset.json").is_file()})
    bundles = sorted({p.parent for p in staging.rglob("configs") if p.is_dir()})
    if len(nnunet) > 1:
        found = ", ".join(str(p.relative_to(staging)) for p in nnunet)
        raise ModelError(f"{source} holds several nnU-Net configurations ({found}); import one folder")
    if nnunet:
        return "nnunet", nnunet[0]
    for root in bundles:
        if (root / "configs" / "metadata.json").is_file():
            return "bundle", root
    if bundles:
        raise ModelError(
            f"{source}: MONAI bundle without metadata (configs/metadata.json missing): its classes, "
            "version and licence are unknown, so it is not installed"
        )
    raise ModelError(
        f"{source} is neither an nnU-Net v2 trained-model folder (dataset.json, plans.json, "
        "fold_*/checkpoint_final.pth) nor a MONAI bundle (configs/metadata.json, models/model.pt)"
    )


def _files(staging: Path) -> dict[str, str]:
    return {
        str(p.relative_to(staging)): sha256_file(p)
        for p in sorted(staging.rglob("*"))
        if p.is_file() and p.name != CARD_FILENAME
    }


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise ModelError(f"{path.name} cannot be read: {exc}") from None
    if not isinstance(data, dict):
        raise ModelError(f"{path.name} is not a JSON object")
    return data


def _nnunet_card(
    root: Path, staging: Path, *, name: str, source: Path, licence: str | None, version: str | None
) -> ModelCard:
    dataset = _read_json(root / "dataset.json")
    plans = _read_json(root / "plans.json")
    folds = sorted(p.name.removeprefix("fold_") for p in root.glob("fold_*") if (p / CHECKPOINT).is_file())
    empty = sorted(p.name for p in root.glob("fold_*") if not (p / CHECKPOINT).is_file())
    if not folds:
        detail = f" ({', '.join(empty)} without {CHECKPOINT})" if empty else ""
        raise ModelError(
            f"{source}: nnU-Net model folder {root.name!r} has no trained fold{detail}: "
            f"expected fold_N/{CHECKPOINT}; nothing installed"
        )
    labels = dataset.get("labels")
    if not isinstance(labels, dict) or not labels:
        raise ModelError(f"{source}: dataset.json has no labels")
    classes: dict[str, str] = {}
    for label_name, value in labels.items():
        if not isinstance(value, int):
            raise ModelError(
                f"{source}: label {label_name!r} is region-based ({value!r}); "
                "only integer labels are supported"
            )
        if value != 0:
            classes[str(value)] = str(label_name)
    trainer, _, rest = root.name.partition("__")
    plans_name, _, configuration = rest.partition("__")
    dataset_folder = root.parent.name if root.parent != staging else str(plans.get("dataset_name", ""))
    match = _DATASET_ID.match(dataset_folder) or _DATASET_ID.match(str(plans.get("dataset_name", "")))
    return ModelCard(
        name=name,
        kind="nnunet",
        source=str(source),
        licence=licence or str(dataset.get("licence") or dataset.get("license") or "not stated by the model"),
        version=version or str(dataset.get("release") or dataset.get("version") or "not stated"),
        description=str(dataset.get("description") or dataset.get("name") or ""),
        classes=classes,
        files=_files(staging),
        imported_at=datetime.now(UTC).isoformat(timespec="seconds"),
        nnunet={
            "model_folder": str(root.relative_to(staging)),
            "dataset": dataset_folder or str(plans.get("dataset_name", "")),
            "dataset_id": int(match.group(1)) if match else None,
            "trainer": trainer,
            "plans": plans_name,
            "configuration": configuration or None,
            "folds": folds,
            "checkpoint": CHECKPOINT,
            "reader": plans.get("image_reader_writer"),
        },
    )


def _bundle_card(
    root: Path, staging: Path, *, name: str, source: Path, licence: str | None, version: str | None
) -> ModelCard:
    meta = _read_json(root / "configs" / "metadata.json")
    weights = [w for w in ("models/model.ts", "models/model.pt") if (root / w).is_file()]
    if not weights:
        raise ModelError(f"{source}: MONAI bundle without weights (models/model.pt or models/model.ts)")
    configs = [
        c for c in ("inference.json", "inference.yaml", "inference.yml") if (root / "configs" / c).is_file()
    ]
    if not configs:
        raise ModelError(f"{source}: MONAI bundle without an inference config (configs/inference.json)")
    outputs = meta.get("network_data_format", {}).get("outputs", {})
    classes: dict[str, str] = {}
    task = "segmentation"
    for output in outputs.values() if isinstance(outputs, dict) else ():
        channel_def = output.get("channel_def") if isinstance(output, dict) else None
        if isinstance(channel_def, dict):
            classes.update({str(k): str(v) for k, v in channel_def.items() if str(k) != "0"})
        if isinstance(output, dict) and str(output.get("type", "")).lower() in {"object", "box", "boxes"}:
            task = "detection"
    detection = meta.get("ctnode", {}) if isinstance(meta.get("ctnode"), dict) else {}
    if detection.get("task") == "detection" or "detection" in str(meta.get("task", "")).lower():
        task = "detection"
    if task == "detection":  # class values start at 0 (no background channel)
        labels = detection.get("labels") or meta.get("labels") or {}
        if not labels:
            for output in outputs.values() if isinstance(outputs, dict) else ():
                if isinstance(output, dict) and isinstance(output.get("channel_def"), dict):
                    labels = output["channel_def"]
        classes = {str(k): str(v) for k, v in dict(labels).items()}
    if not classes:
        raise ModelError(f"{source}: bundle metadata names no output classes (network_data_format.outputs)")
    return ModelCard(
        name=name,
        kind="bundle",
        source=str(source),
        licence=licence or str(meta.get("license") or meta.get("licence") or "not stated by the bundle"),
        version=version or str(meta.get("version") or "not stated"),
        description=str(meta.get("description") or meta.get("name") or ""),
        classes=classes,
        files=_files(staging),
        imported_at=datetime.now(UTC).isoformat(timespec="seconds"),
        bundle={
            "root": str(root.relative_to(staging)),
            "task": task,
            "weights": weights[0],
            "inference_config": f"configs/{configs[0]}",
        },
    )
