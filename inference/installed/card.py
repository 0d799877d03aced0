"""The card of an installed model, where installed models live, and the sha256 checks.

Cheap on purpose: the routing step lists installed models (their names, versions and classes)
on CPU workers without torch.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

CARD_FILENAME = "model-card.json"
CARD_FORMAT = 1
Kind = Literal["nnunet", "bundle"]


class ModelError(ValueError):
    """An installed or offered model that cannot be used; the message says what and how to fix it."""


def model_directory() -> Path:
    """``$CTNODE_MODEL_DIR`` (set per process from ``settings.model.directory``), else configs/models."""
    env = os.environ.get("CTNODE_MODEL_DIR")
    if env:
        return Path(env)
    return Path(__file__).resolve().parents[2] / "configs" / "models"


def installed_dir(model_dir: Path | None = None) -> Path:
    return (model_dir or model_directory()) / "installed"


@dataclass(frozen=True)
class ModelCard:
    """What ``ctnode model import`` recorded about a model (``model-card.json`` beside its files)."""

    name: str
    kind: Kind
    source: str  # the folder or zip it was imported from
    licence: str
    version: str
    description: str
    classes: dict[str, str]  # label value (as text) -> class name as the model names it
    files: dict[str, str]  # path relative to the card's folder -> sha256
    imported_at: str
    nnunet: dict[str, Any] = field(default_factory=dict)  # dataset, trainer, plans, configuration, folds
    bundle: dict[str, Any] = field(default_factory=dict)  # task, weights file, inference config
    options: dict[str, Any] = field(default_factory=dict)  # tile step, mirroring, orientation
    format: int = CARD_FORMAT

    @property
    def digest(self) -> str:
        """sha256 over every file's path and sha256: changes whenever any file changes."""
        h = hashlib.sha256()
        for path in sorted(self.files):
            h.update(f"{path}\0{self.files[path]}\n".encode())
        return h.hexdigest()

    @property
    def version_tag(self) -> str:
        """``NAME@<digest[:12]>``: what job ids and SEG/SR Algorithm Version carry."""
        return f"{self.name}@{self.digest[:12]}"

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, sort_keys=True)


def load_model_card(folder: Path) -> ModelCard:
    path = Path(folder) / CARD_FILENAME
    try:
        raw = json.loads(path.read_text())
    except FileNotFoundError:
        raise ModelError(f"no model card at {path}: install models with `ctnode model import`") from None
    except json.JSONDecodeError as exc:
        raise ModelError(f"model card {path} is not valid JSON: {exc}") from None
    if not isinstance(raw, dict) or raw.get("format") != CARD_FORMAT:
        raise ModelError(f"model card {path} has an unknown format (want format {CARD_FORMAT})")
    try:
        return ModelCard(**raw)
    except TypeError as exc:
        raise ModelError(f"model card {path} does not fit: {exc}") from None


def installed_models(model_dir: Path | None = None) -> dict[str, ModelCard]:
    """Every installed model by name (a folder whose card cannot be read is skipped here and
    reported by :func:`broken_models`)."""
    out: dict[str, ModelCard] = {}
    root = installed_dir(model_dir)
    if not root.is_dir():
        return out
    for folder in sorted(p for p in root.iterdir() if p.is_dir()):
        try:
            card = load_model_card(folder)
        except ModelError:
            continue
        out[card.name] = card
    return out


def broken_models(model_dir: Path | None = None) -> dict[str, str]:
    """Folders under installed/ whose card cannot be read, with the reason."""
    out: dict[str, str] = {}
    root = installed_dir(model_dir)
    if not root.is_dir():
        return out
    for folder in sorted(p for p in root.iterdir() if p.is_dir()):
        try:
            load_model_card(folder)
        except ModelError as exc:
            out[folder.name] = str(exc)
    return out


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with Path(path).open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def verify_files(folder: Path, card: ModelCard, paths: Iterable[str] | None = None) -> None:
    """Raise :class:`ModelError` unless each file (default: all) has the sha256 its card records.

    Pickled checkpoints (nnU-Net ``.pth``, ``torch.load(weights_only=False)``) run code when
    loaded: they are checked here first, every time a worker loads them.
    """
    for rel in paths if paths is not None else card.files:
        expected = card.files.get(rel)
        if expected is None:
            raise ModelError(f"model {card.name}: {rel} is not on its card; re-import the model")
        path = Path(folder) / rel
        if not path.is_file():
            raise ModelError(
                f"model {card.name}: {path} is missing (card sha256 {expected}); re-import the model"
            )
        actual = sha256_file(path)
        if actual != expected:
            raise ModelError(
                f"model {card.name}: {path} does not match its card: sha256 {actual} != {expected} "
                "(file changed after import, or corrupt); it is not loaded"
            )
