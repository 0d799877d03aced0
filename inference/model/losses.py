"""Training losses of the three heads. Every function takes per-query validity masks, so unused
query slots (a crop with no snippet, a look-closer sample with one query) cost nothing."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def seg_loss(logits: torch.Tensor, target: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """BCE + soft Dice per query, averaged over valid queries. ``logits``/``target`` ``[B,Q,...]``.

    An empty target (structure absent from the crop) is taught by BCE alone: its Dice term is
    skipped, since any false positive would already give Dice 0 with no useful gradient scale.
    """
    if not bool(valid.any()):
        return logits.sum() * 0.0
    lg = logits[valid].flatten(1).float()
    tg = target[valid].flatten(1).float()
    bce = F.binary_cross_entropy_with_logits(lg, tg, reduction="none").mean(dim=1)
    prob = lg.sigmoid()
    inter = (prob * tg).sum(dim=1)
    denom = prob.sum(dim=1) + tg.sum(dim=1)
    dice = 1.0 - (2.0 * inter + 1.0) / (denom + 1.0)
    has = tg.sum(dim=1) > 0
    dice = torch.where(has, dice, torch.zeros_like(dice))
    return (bce * 10.0 + dice).mean()


def focal_heatmap_loss(logits: torch.Tensor, target: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """CenterNet's penalty-reduced focal loss (α=2, β=4) on ``[B, S, R, K]`` heatmaps."""
    if not bool(valid.any()):
        return logits.sum() * 0.0
    lg = logits[valid].float()
    tg = target[valid].float()
    prob = lg.sigmoid().clamp(1e-4, 1 - 1e-4)
    pos = tg.ge(0.999).float()
    neg = 1.0 - pos
    pos_loss = -torch.log(prob) * (1 - prob) ** 2 * pos
    neg_loss = -torch.log(1 - prob) * prob**2 * (1 - tg) ** 4 * neg
    n_pos = pos.sum().clamp(min=1.0)
    return (pos_loss.sum() + neg_loss.sum()) / n_pos


def size_loss(
    pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor, valid: torch.Tensor
) -> torch.Tensor:
    """L1 on log box size at lesion centres. ``pred``/``target`` ``[B,3,...]``, ``mask`` ``[B,...]``."""
    m = mask[valid].unsqueeze(1).float()
    if float(m.sum()) == 0.0:
        return pred.sum() * 0.0
    return ((pred[valid].float() - target[valid].float()).abs() * m).sum() / (3.0 * m.sum())


def loc_z_loss(logits: torch.Tensor, target_slice: torch.Tensor, *, sigma: float = 1.5) -> torch.Tensor:
    """Cross-entropy of the slice distribution ``[B, S]`` against a Gaussian around the target
    slice (−1 = no target): neighbouring slices are nearly as right as the exact one."""
    ok = target_slice >= 0
    if not bool(ok.any()):
        return logits.sum() * 0.0
    lg = logits[ok].float()
    z = torch.arange(lg.shape[1], device=lg.device, dtype=lg.dtype)
    soft = torch.exp(-((z[None] - target_slice[ok, None].to(lg.dtype)) ** 2) / (2 * sigma * sigma))
    soft = soft / soft.sum(dim=1, keepdim=True)
    return -(soft * F.log_softmax(lg, dim=1)).sum(dim=1).mean()


def loc_point_loss(
    logits: torch.Tensor, target_voxel: torch.Tensor, has_target: torch.Tensor
) -> torch.Tensor:
    """Cross-entropy of the 3D point distribution ``[B, S, R, K]`` (softmax over all voxels)."""
    if not bool(has_target.any()):
        return logits.sum() * 0.0
    lg = logits[has_target].float().flatten(1)
    shape = logits.shape[1:]
    t = target_voxel[has_target]
    flat = (t[:, 0] * shape[1] + t[:, 1]) * shape[2] + t[:, 2]
    return F.cross_entropy(lg, flat)
