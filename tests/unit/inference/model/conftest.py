"""Fixtures of the model tests: the tiny config, a tiny on-disk case cache, the real encoder."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

pytest.importorskip("torch")
pytest.importorskip("monai")

REPO = Path(__file__).resolve().parents[4]
TINY_CONFIG = REPO / "configs" / "models" / "tiny.yaml"
REAL_CARD = REPO / "configs" / "models" / "unified-ct.card.json"


@pytest.fixture(scope="session", autouse=True)
def _offline() -> None:
    # The model must never reach the network: make any attempt fail loudly.
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ["TRANSFORMERS_OFFLINE"] = "1"


@pytest.fixture(scope="session")
def tiny_cfg(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    from inference.model.config import load_config

    cfg = load_config(TINY_CONFIG)
    base = tmp_path_factory.mktemp("tiny-model")
    return cfg.model_copy(
        update={
            "data": cfg.data.model_copy(update={"cache_dir": base / "cache"}),
            "train": cfg.train.model_copy(update={"out_dir": base / "run"}),
        }
    )


@pytest.fixture(scope="session")
def tiny_cache(tiny_cfg):  # type: ignore[no-untyped-def]
    """Two small synthetic cases on the tiny config's grids (+ text embeddings)."""
    from inference.model.dataset import build_cache, case_seeds

    return build_cache(tiny_cfg, case_seeds(tiny_cfg, "train"), progress=False)


@pytest.fixture(scope="session")
def encoder():  # type: ignore[no-untyped-def]
    from inference.model.text import shared_encoder

    return shared_encoder()
