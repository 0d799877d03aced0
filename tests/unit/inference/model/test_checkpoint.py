"""Checkpoint round trip, hash check, card/version without torch."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from inference.model.card import CheckpointError, checkpoint_version, load_card, sha256_file, write_card
from inference.model.checkpoint import load_network, save_network
from inference.model.config import InferenceConfig
from inference.model.network import UnifiedCTNet
from tests.unit.inference.model.test_network import TINY, _inputs

pytestmark = pytest.mark.model


def _saved(tmp_path: Path) -> tuple[UnifiedCTNet, Path]:
    torch.manual_seed(1)
    net = UnifiedCTNet(TINY).eval()
    path = tmp_path / "m.safetensors"
    save_network(net, path, inference=InferenceConfig(), text_bank={"liver": np.ones(384, dtype=np.float32)})
    return net, path


def test_round_trip_gives_identical_outputs(tmp_path: Path) -> None:
    net, path = _saved(tmp_path)
    loaded, inf_cfg, bank, meta = load_network(path, expected_sha256=sha256_file(path))
    image, text, task = _inputs()
    with torch.no_grad():
        f1, f2 = net.encode_image(image), loaded.encode_image(image)
        a = net.seg_logits(f1, net.decode_queries(f1, text, task))
        b = loaded.seg_logits(f2, loaded.decode_queries(f2, text, task))
    torch.testing.assert_close(a, b)
    assert inf_cfg == InferenceConfig()
    assert list(bank) == ["liver"] and bank["liver"].shape == (384,)
    assert meta["format"] == "unified-ct/1"


def test_corrupt_checkpoint_names_file_and_expected_hash(tmp_path: Path) -> None:
    _, path = _saved(tmp_path)
    good = sha256_file(path)
    data = bytearray(path.read_bytes())
    data[-10] ^= 0xFF  # flip one byte of the weights
    path.write_bytes(bytes(data))
    with pytest.raises(CheckpointError) as err:
        load_network(path, expected_sha256=good)
    assert str(path) in str(err.value) and good in str(err.value)


def test_missing_checkpoint_is_a_clear_error(tmp_path: Path) -> None:
    missing = tmp_path / "nope.safetensors"
    with pytest.raises(CheckpointError, match=r"not found.*nope\.safetensors.*abc123"):
        load_network(missing, expected_sha256="abc123")


def test_truncated_file_without_hash_is_unreadable_error(tmp_path: Path) -> None:
    _, path = _saved(tmp_path)
    path.write_bytes(path.read_bytes()[:100])
    with pytest.raises(CheckpointError, match="unreadable"):
        load_network(path)


def test_version_from_card_without_importing_torch(tmp_path: Path) -> None:
    card = tmp_path / "unified-ct.card.json"
    write_card(
        card, {"name": "unified-ct", "checkpoint": "unified-ct.safetensors", "sha256": "0123456789abcdef" * 4}
    )
    assert checkpoint_version(card) == "unified-ct@0123456789ab"
    code = (
        "import sys; from pathlib import Path; from inference.model.card import checkpoint_version; "
        f"print(checkpoint_version(Path({str(card)!r}))); print('torch' in sys.modules)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        cwd=Path(__file__).resolve().parents[4],
    )
    assert out.stdout.split() == ["unified-ct@0123456789ab", "False"]


def test_card_errors_name_the_file(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="not found"):
        load_card(tmp_path / "absent.json")
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"name": "x"}))
    with pytest.raises(CheckpointError, match="lacks 'checkpoint'"):
        load_card(bad)


def test_saving_the_same_weights_twice_gives_the_same_file(tmp_path: Path) -> None:
    """The model version is the file's sha256: it must change with the weights, not per export."""
    net, path = _saved(tmp_path)
    again = tmp_path / "again.safetensors"
    save_network(net, again, inference=InferenceConfig(), text_bank={"liver": np.ones(384, dtype=np.float32)})
    assert sha256_file(path) == sha256_file(again)


def test_warm_start_loads_the_exported_weights_and_rejects_another_network(tiny_cfg, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from inference.model.train import INIT_FILE, warm_start

    torch.manual_seed(1)
    source = UnifiedCTNet(tiny_cfg.network)
    ckpt = tmp_path / "source.safetensors"
    save_network(source, ckpt, inference=tiny_cfg.inference)

    torch.manual_seed(2)
    target = UnifiedCTNet(tiny_cfg.network)
    key = next(iter(source.state_dict()))
    assert not torch.equal(source.state_dict()[key], target.state_dict()[key])
    digest = warm_start(target, ckpt, tmp_path)
    for name, value in source.state_dict().items():
        assert torch.equal(value.float(), target.state_dict()[name].float()), name
    assert digest == sha256_file(ckpt)
    assert json.loads((tmp_path / INIT_FILE).read_text()) == {"file": "source.safetensors", "sha256": digest}

    other = UnifiedCTNet(tiny_cfg.network.model_copy(update={"query_dim": tiny_cfg.network.query_dim * 2}))
    with pytest.raises(CheckpointError, match=r"source\.safetensors"):
        warm_start(other, ckpt, tmp_path)
