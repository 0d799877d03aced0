"""The model card and checkpoint identity — WITHOUT torch.

``inference.registry`` calls :func:`checkpoint_version` when the routing task computes a job id,
on CPU workers that have no torch, so this module reads only the card JSON and hashes files.

Where the files are: ``configs/models/`` of the project (``unified-ct.safetensors`` +
``unified-ct.card.json``), or the folder named by the ``CTNODE_MODEL_DIR`` environment variable
(a deployment that keeps models outside the code). Loading never downloads anything.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

MODEL_NAME = "unified-ct"
CARD_FILENAME = f"{MODEL_NAME}.card.json"
CHECKPOINT_FILENAME = f"{MODEL_NAME}.safetensors"
INTENDED_USE = "research use; not validated for diagnosis"


class CheckpointError(RuntimeError):
    """A missing, unreadable or corrupt model file (the message names the file and the hash)."""


def model_dir() -> Path:
    env = os.environ.get("CTNODE_MODEL_DIR")
    if env:
        return Path(env)
    return Path(__file__).resolve().parents[2] / "configs" / "models"


def card_path() -> Path:
    return model_dir() / CARD_FILENAME


def load_card(path: Path | None = None) -> dict[str, Any]:
    p = Path(path) if path is not None else card_path()
    try:
        card: dict[str, Any] = json.loads(p.read_text())
    except FileNotFoundError:
        raise CheckpointError(f"model card not found: {p}") from None
    except json.JSONDecodeError as exc:
        raise CheckpointError(f"model card {p} is not valid JSON: {exc}") from None
    for key in ("name", "checkpoint", "sha256"):
        if key not in card:
            raise CheckpointError(f"model card {p} lacks {key!r}")
    return card


def checkpoint_version(path: Path | None = None) -> str:
    """``"unified-ct@<sha256[:12]>"`` from the card: changes whenever the weights change."""
    card = load_card(path)
    return f"{card['name']}@{str(card['sha256'])[:12]}"


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with Path(path).open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def verify_checkpoint(path: Path, expected_sha256: str) -> None:
    """Raise :class:`CheckpointError` naming the file and the expected hash unless they match."""
    p = Path(path)
    if not p.is_file():
        raise CheckpointError(f"model checkpoint not found: {p} (expected sha256 {expected_sha256})")
    actual = sha256_file(p)
    if actual != expected_sha256:
        raise CheckpointError(
            f"model checkpoint {p} is corrupt or not the one its card names: "
            f"sha256 {actual} != expected {expected_sha256}"
        )


def checkpoint_path_from_card(card: dict[str, Any], card_file: Path) -> Path:
    """The checkpoint a card names (relative names are beside the card)."""
    p = Path(str(card["checkpoint"]))
    return p if p.is_absolute() else card_file.parent / p


def write_card(path: Path, card: dict[str, Any]) -> None:
    Path(path).write_text(json.dumps(card, indent=2, sort_keys=False) + "\n")
