"""Saving and loading network weights as safetensors (no pickle: a checkpoint can't run code).

The file carries everything needed to rebuild the network: the ``NetworkConfig`` and the
``InferenceConfig`` as JSON metadata, and the frozen-encoder embeddings of the vocabulary
phrases (``text_bank.*``), so the default prompts need no text encoder at run time.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from inference.model.card import CheckpointError, verify_checkpoint
from inference.model.config import InferenceConfig, NetworkConfig
from inference.model.network import UnifiedCTNet

FORMAT = "unified-ct/1"
_BANK_KEY = "text_bank.embeddings"
_META_KEY = "unified-ct"


def save_network(
    net: UnifiedCTNet,
    path: Path,
    *,
    inference: InferenceConfig,
    text_bank: dict[str, np.ndarray] | None = None,
    metadata: dict[str, str] | None = None,
) -> None:
    """Write weights (float32, contiguous) + configs + text bank to ``path``."""
    tensors = {k: v.detach().float().contiguous().cpu() for k, v in net.state_dict().items()}
    meta = {
        "format": FORMAT,
        "network": net.cfg.model_dump_json(),
        "inference": inference.model_dump_json(),
        **(metadata or {}),
    }
    if text_bank:
        texts = list(text_bank)
        tensors[_BANK_KEY] = torch.from_numpy(np.stack([text_bank[t] for t in texts]).astype(np.float32))
        meta["text_bank.texts"] = json.dumps(texts)
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    # One metadata entry holding sorted JSON: safetensors writes its metadata map in hash order,
    # so several entries would give the same weights a different file (and sha256) each export.
    save_file(tensors, str(path), metadata={_META_KEY: json.dumps(meta, sort_keys=True)})


def read_metadata(path: Path) -> dict[str, str]:
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        raw = dict(f.metadata() or {})
    if _META_KEY in raw:
        meta: dict[str, str] = json.loads(raw[_META_KEY])
        return meta
    return raw


def load_network(
    path: Path, *, expected_sha256: str | None = None, device: str | torch.device = "cpu"
) -> tuple[UnifiedCTNet, InferenceConfig, dict[str, np.ndarray], dict[str, Any]]:
    """Rebuild the network from a checkpoint (hash checked first when ``expected_sha256``).

    Returns the network in eval mode, its inference settings, the text bank and the metadata.
    Any problem raises :class:`CheckpointError` naming the file (and the hash when given).
    """
    p = Path(path)
    if expected_sha256 is not None:
        verify_checkpoint(p, expected_sha256)
    elif not p.is_file():
        raise CheckpointError(f"model checkpoint not found: {p}")
    hint = f" (expected sha256 {expected_sha256})" if expected_sha256 else ""
    try:
        meta = read_metadata(p)
        tensors = load_file(str(p), device="cpu")
    except (SafetensorError, OSError, ValueError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"model checkpoint {p} is unreadable{hint}: {exc}") from None
    if meta.get("format") != FORMAT:
        raise CheckpointError(
            f"model checkpoint {p} has format {meta.get('format')!r}, expected {FORMAT!r}{hint}"
        )
    net_cfg = NetworkConfig.model_validate_json(meta["network"])
    inf_cfg = InferenceConfig.model_validate_json(meta["inference"])
    bank: dict[str, np.ndarray] = {}
    if _BANK_KEY in tensors:
        texts = json.loads(meta["text_bank.texts"])
        emb = tensors.pop(_BANK_KEY).numpy()
        bank = dict(zip(texts, emb, strict=True))
    net = UnifiedCTNet(net_cfg)
    try:
        net.load_state_dict(tensors, strict=True)
    except RuntimeError as exc:
        raise CheckpointError(f"model checkpoint {p} does not fit its network config{hint}: {exc}") from None
    net.eval()
    return net.to(device), inf_cfg, bank, dict(meta)
