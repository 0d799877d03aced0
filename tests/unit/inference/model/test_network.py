"""Shapes and contracts of the network, determinism, and that training steps lower the loss."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from inference.model.config import NetworkConfig
from inference.model.network import TASK_IDS, UnifiedCTNet

pytestmark = pytest.mark.model

TINY = NetworkConfig(
    channels=(8, 16),
    stem_channels=4,
    voxel_embed_dim=8,
    query_dim=16,
    decoder_layers=1,
    attention_heads=2,
    loc_embed_dim=8,
)


def _inputs(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    image = torch.randn(2, 3, 8, 16, 24, generator=g)
    text = torch.nn.functional.normalize(torch.randn(2, 3, 384, generator=g), dim=-1)
    task = torch.tensor([[TASK_IDS["seg"], TASK_IDS["det"], TASK_IDS["loc"]]] * 2)
    return image, text, task


def test_output_shapes() -> None:
    torch.manual_seed(0)
    net = UnifiedCTNet(TINY).eval()
    image, text, task = _inputs()
    with torch.no_grad():
        feats = net.encode_image(image)
        hidden = net.decode_queries(feats, text, task)
        seg = net.seg_logits(feats, hidden[:, :1])
        heat, size = net.det_outputs(feats, hidden[:, 1:2])
        z, point = net.loc_outputs(feats, hidden[:, 2:])
    assert hidden.shape == (2, 3, TINY.query_dim)
    assert seg.shape == (2, 1, 8, 16, 24)  # full input resolution
    assert heat.shape == (2, 1, 4, 8, 12)  # half resolution
    assert size.shape == (2, 1, 3, 4, 8, 12)
    assert z.shape == (2, 1, 8)  # one logit per input slice
    assert point.shape == (2, 1, 4, 8, 12)
    assert feats.tokens.shape == (2, 2 * 4 * 6, TINY.query_dim)  # stride-4 bottleneck tokens


def test_queries_are_independent_of_each_other() -> None:
    """A prompt's answer must not depend on which other prompts came with it."""
    torch.manual_seed(0)
    net = UnifiedCTNet(TINY).eval()
    image, text, task = _inputs()
    with torch.no_grad():
        feats = net.encode_image(image)
        both = net.seg_logits(feats, net.decode_queries(feats, text[:, :2], task[:, :2]))[:, 0]
        alone = net.seg_logits(feats, net.decode_queries(feats, text[:, :1], task[:, :1]))[:, 0]
    torch.testing.assert_close(both, alone)


def test_same_seed_same_weights_and_outputs() -> None:
    image, text, task = _inputs()
    outs = []
    for _ in range(2):
        torch.manual_seed(123)
        net = UnifiedCTNet(TINY).eval()
        with torch.no_grad():
            feats = net.encode_image(image)
            outs.append(net.seg_logits(feats, net.decode_queries(feats, text, task)))
    torch.testing.assert_close(outs[0], outs[1])
    torch.manual_seed(124)
    other = UnifiedCTNet(TINY).eval()
    with torch.no_grad():
        feats = other.encode_image(image)
        different = other.seg_logits(feats, other.decode_queries(feats, text, task))
    assert not torch.allclose(outs[0], different)


def test_one_training_step_lowers_the_loss(tiny_cfg, tiny_cache) -> None:  # type: ignore[no-untyped-def]
    from inference.model.dataset import SampleMaker, load_text_table
    from inference.model.train import compute_losses, make_batch

    torch.manual_seed(0)
    net = UnifiedCTNet(tiny_cfg.network)
    maker = SampleMaker(tiny_cfg, tiny_cache, load_text_table(tiny_cfg.data.cache_dir))
    batch = make_batch(maker, tiny_cfg, step=0)
    opt = torch.optim.SGD(net.parameters(), lr=0.05)
    net.train()
    before, _ = compute_losses(net, batch, tiny_cfg.train.loss_weights)
    opt.zero_grad()
    before.backward()
    opt.step()
    after, _ = compute_losses(net, batch, tiny_cfg.train.loss_weights)
    assert float(after.detach()) < float(before.detach())
    assert np.isfinite(float(after.detach()))


def test_batchnorm_recalibration_uses_whole_coarse_scans(tiny_cfg, tiny_cache) -> None:  # type: ignore[no-untyped-def]
    from inference.model.dataset import CachedCase, network_input
    from inference.model.geometry import canonical_grid_for, resample
    from inference.model.train import recalibrate_batchnorm

    torch.manual_seed(0)
    net = UnifiedCTNet(tiny_cfg.network)
    bn = net.backbone.stem[1]
    bn.running_mean.fill_(5.0)  # what a last training batch might have left
    assert recalibrate_batchnorm(net, tiny_cfg, tiny_cache, cases=1) == 1
    assert not net.training and bn.momentum == 0.1
    # the stem's statistics are now exactly those of the first cached scan, whole, as the
    # predictor feeds it (padded to the network stride)
    case = CachedCase.open(tiny_cache[0])
    hu, _, _ = case.arrays("coarse")
    spacing = tiny_cfg.inference.coarse_spacing_mm
    grid = canonical_grid_for(hu.shape, case.coarse.affine_lps, spacing, multiple_of=tiny_cfg.network.stride)
    vol = resample(np.asarray(hu, dtype=np.float32), case.coarse.affine_lps, grid.shape, grid.affine_lps)
    with torch.no_grad():
        conv = net.backbone.stem[0](torch.from_numpy(network_input(vol)[None]))
    torch.testing.assert_close(bn.running_mean, conv.mean(dim=(0, 2, 3, 4)), rtol=1e-4, atol=1e-4)
