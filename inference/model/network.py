"""The unified CT network: image encoder–decoder, text connector, task-routing tokens, query
decoder and the three heads (segmentation, detection, localisation).

Shapes: images ``[B, C, S, R, K]`` (slice, row, column on the canonical LPS-aligned grid, see
``geometry.py``); text embeddings ``[B, Q, 384]`` from the frozen MiniLM encoder; task ids
``[B, Q]`` (``TASK_IDS``). Every query is decoded independently (no self-attention between
queries), so a prompt's answer never depends on which other prompts came with it.

Design after the seeds in docs/model.md: the MLP connector text → query space follows
OpenVocabCT (it generalises to synonyms better than cross-attention); task-routing tokens that
select the head follow the unified CT VLM; the detection head is a query-conditioned
CenterNet heatmap + size head (trainable on CPU, unlike DETR's set matching); the localisation
head predicts a distribution over axial slices (RadFinder) and a 3D point.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from monai.networks.blocks.dynunet_block import UnetResBlock, UnetUpBlock
from torch import nn

from inference.model.config import NetworkConfig

TASK_IDS: dict[str, int] = {"seg": 0, "det": 1, "loc": 2}
_NORM = "batch"


@dataclass
class ImageFeatures:
    voxel: torch.Tensor  # [B, E, S/2, R/2, K/2] per-voxel embeddings at half resolution
    stem: torch.Tensor  # [B, F, S, R, K] full-resolution stem features (boundary detail)
    det: torch.Tensor  # [B, E, S/2, R/2, K/2] detection features at half resolution
    tokens: torch.Tensor  # [B, N, D] bottleneck tokens (with position) for cross-attention
    slices: torch.Tensor  # [B, L, S] per-slice features for axial localisation

    @property
    def full_shape(self) -> tuple[int, int, int]:
        s, r, k = self.stem.shape[2:]
        return (int(s), int(r), int(k))


class ImageBackbone(nn.Module):
    """A residual 3D U-Net from MONAI blocks: multi-scale features + per-voxel embeddings.

    Built for a 2-core CPU, where full-resolution work dominates a training step (measured here:
    a 16→16 3×3×3 convolution forward+backward on a 48×80×80 batch of 2 costs ~0.9 s, a 1×1×1
    36→64 one ~2 s). So the only full-resolution layer is a thin stem convolution; the residual
    blocks start at half resolution and the decoder returns to half resolution. Mask logits are
    ``upsample(query · half-resolution embedding) + query · stem features``: semantics from the
    U-Net, boundary detail from the stem. BatchNorm (running statistics at inference) keeps the
    features independent of the field of view, so a net trained on crops behaves the same on a
    whole volume.
    """

    def __init__(self, cfg: NetworkConfig) -> None:
        super().__init__()
        ch = cfg.channels
        stem = cfg.stem_channels
        self.stem = nn.Sequential(
            nn.Conv3d(cfg.in_channels, stem, kernel_size=3, padding=1),
            nn.BatchNorm3d(stem),
            nn.LeakyReLU(0.01),
        )
        self.encoder = nn.ModuleList()
        prev = stem
        for width in ch:
            self.encoder.append(UnetResBlock(3, prev, width, kernel_size=3, stride=2, norm_name=_NORM))
            prev = width
        self.decoder = nn.ModuleList(
            UnetUpBlock(3, ch[i], ch[i - 1], kernel_size=3, stride=1, upsample_kernel_size=2, norm_name=_NORM)
            for i in range(len(ch) - 1, 0, -1)
        )
        e = cfg.voxel_embed_dim
        self.voxel_out = nn.Sequential(nn.Conv3d(ch[0], 2 * e, 1), nn.GELU(), nn.Conv3d(2 * e, e, 1))
        self.det_out = nn.Sequential(nn.Conv3d(ch[0], 2 * e, 1), nn.GELU(), nn.Conv3d(2 * e, e, 1))
        self.token_proj = nn.Linear(ch[-1], cfg.query_dim)
        self.pos_proj = nn.Linear(3 * 8, cfg.query_dim)
        self.slice_proj = nn.Conv1d(2 * ch[0], cfg.loc_embed_dim, kernel_size=5, padding=2)

    def forward(self, image: torch.Tensor) -> ImageFeatures:
        full = self.stem(image)
        skips = []
        x = full
        for block in self.encoder:
            x = block(x)
            skips.append(x)
        bottleneck = x
        for up, skip in zip(self.decoder, reversed(skips[:-1]), strict=True):
            x = up(x, skip)
        tokens = self.token_proj(bottleneck.flatten(2).transpose(1, 2))
        tokens = tokens + self.pos_proj(_fourier_positions(bottleneck.shape[2:], image.device, tokens.dtype))
        # Per-slice summary of the decoded features (mean and max over the axial plane), at full z.
        slices = torch.cat([x.mean(dim=(3, 4)), x.amax(dim=(3, 4))], dim=1)
        slices = F.interpolate(slices, size=int(image.shape[2]), mode="linear")
        return ImageFeatures(
            voxel=self.voxel_out(x),
            stem=full,
            det=self.det_out(x),
            tokens=tokens,
            slices=self.slice_proj(slices),
        )


def _fourier_positions(shape: torch.Size, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """[N, 24] sin/cos features of normalised (slice, row, column) positions of a token grid."""
    axes = [torch.linspace(-1.0, 1.0, int(n), device=device) for n in shape]
    grid = torch.stack(torch.meshgrid(*axes, indexing="ij"), dim=-1).reshape(-1, 3)
    freqs = torch.tensor([1.0, 2.0, 4.0, 8.0], device=device) * math.pi / 2
    angles = grid[:, :, None] * freqs  # [N, 3, 4]
    return torch.cat([angles.sin(), angles.cos()], dim=-1).reshape(grid.shape[0], -1).to(dtype)


class TextConnector(nn.Module):
    """Trainable MLP from the frozen sentence embedding to query space (OpenVocabCT)."""

    def __init__(self, cfg: NetworkConfig) -> None:
        super().__init__()
        self.mlp = nn.Sequential(
            nn.Linear(cfg.text_dim, 2 * cfg.query_dim),
            nn.GELU(),
            nn.Linear(2 * cfg.query_dim, cfg.query_dim),
            nn.LayerNorm(cfg.query_dim),
        )

    def forward(self, text: torch.Tensor) -> torch.Tensor:
        return self.mlp(text)  # type: ignore[no-any-return]


class QueryDecoderLayer(nn.Module):
    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.norm_q = nn.LayerNorm(dim)
        self.cross = nn.MultiheadAttention(dim, heads, batch_first=True)
        self.norm_ff = nn.LayerNorm(dim)
        self.ff = nn.Sequential(nn.Linear(dim, 4 * dim), nn.GELU(), nn.Linear(4 * dim, dim))

    def forward(self, queries: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        attended, _ = self.cross(self.norm_q(queries), tokens, tokens, need_weights=False)
        queries = queries + attended
        return queries + self.ff(self.norm_ff(queries))  # type: ignore[no-any-return]


class UnifiedCTNet(nn.Module):
    """Image + text queries → per-query mask logits, detection heatmap/size, slice distribution."""

    def __init__(self, cfg: NetworkConfig) -> None:
        super().__init__()
        self.cfg = cfg
        d = cfg.query_dim
        self.backbone = ImageBackbone(cfg)
        self.connector = TextConnector(cfg)
        # Learned task-routing tokens, one per task, added to every text query of that task.
        self.task_tokens = nn.Embedding(len(TASK_IDS), d)
        self.token_norm = nn.LayerNorm(d)
        self.layers = nn.ModuleList(
            QueryDecoderLayer(d, cfg.attention_heads) for _ in range(cfg.decoder_layers)
        )
        self.out_norm = nn.LayerNorm(d)
        e, f = cfg.voxel_embed_dim, cfg.stem_channels
        self.seg_head = nn.Sequential(nn.Linear(d, d), nn.GELU(), nn.Linear(d, e + f + 1))  # half, stem, bias
        heat_hidden = nn.Linear(d, d)
        heat_out = nn.Linear(d, e + 1)
        self.det_heat_head = nn.Sequential(heat_hidden, nn.GELU(), heat_out)
        self.det_film = nn.Linear(d, 2 * e)
        self.det_size = nn.Sequential(nn.Conv3d(e, e, 1), nn.GELU(), nn.Conv3d(e, 3, 1))
        self.loc_z_head = nn.Sequential(nn.Linear(d, d), nn.GELU(), nn.Linear(d, cfg.loc_embed_dim + 1))
        self.loc_point_head = nn.Sequential(nn.Linear(d, d), nn.GELU(), nn.Linear(d, e + 1))
        with torch.no_grad():  # start detection heatmaps near the CenterNet prior (p ≈ 0.01)
            heat_out.bias[-1].fill_(-4.6)

    def encode_image(self, image: torch.Tensor) -> ImageFeatures:
        return self.backbone(image)  # type: ignore[no-any-return]

    def decode_queries(self, feats: ImageFeatures, text: torch.Tensor, task: torch.Tensor) -> torch.Tensor:
        """Hidden states ``[B, Q, D]`` for text embeddings ``[B, Q, T]`` routed by ``task`` ``[B, Q]``."""
        q = self.token_norm(self.connector(text) + self.task_tokens(task))
        for layer in self.layers:
            q = layer(q, feats.tokens)
        return self.out_norm(q)  # type: ignore[no-any-return]

    def seg_logits(self, feats: ImageFeatures, hidden: torch.Tensor) -> torch.Tensor:
        """Mask logits ``[B, Q, S, R, K]`` at full input resolution.

        ``upsample(query · half-resolution embeddings) + query · stem features + bias``.
        """
        e = self.cfg.voxel_embed_dim
        w = self.seg_head(hidden)
        coarse = torch.einsum("bqe,besrk->bqsrk", w[..., :e], feats.voxel)
        coarse = F.interpolate(coarse, size=feats.full_shape, mode="trilinear")
        detail = torch.einsum("bqf,bfsrk->bqsrk", w[..., e:-1], feats.stem)
        logits: torch.Tensor = coarse + detail + w[..., -1, None, None, None]
        return logits

    def det_outputs(self, feats: ImageFeatures, hidden: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Centre-heatmap logits ``[B, Q, S/2, R/2, K/2]``; log box sizes ``[B, Q, 3, ...]`` (half-res)."""
        w = self.det_heat_head(hidden)
        heat = torch.einsum("bqe,besrk->bqsrk", w[..., :-1], feats.det) + w[..., -1, None, None, None]
        b, q = hidden.shape[:2]
        gamma, beta = self.det_film(hidden).chunk(2, dim=-1)
        film = feats.det[:, None] * (1 + gamma[..., None, None, None]) + beta[..., None, None, None]
        size = self.det_size(F.gelu(film.flatten(0, 1)))
        return heat, size.view(b, q, 3, *size.shape[2:])

    def loc_outputs(self, feats: ImageFeatures, hidden: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Axial logits ``[B, Q, S]`` (distribution over slices) and 3D point logits at half resolution."""
        wz = self.loc_z_head(hidden)
        z = torch.einsum("bql,bls->bqs", wz[..., :-1], feats.slices) + wz[..., -1, None]
        wp = self.loc_point_head(hidden)
        point = torch.einsum("bqe,besrk->bqsrk", wp[..., :-1], feats.voxel) + wp[..., -1, None, None, None]
        return z, point


def count_parameters(net: nn.Module, *, trainable_only: bool = True) -> int:
    return sum(p.numel() for p in net.parameters() if p.requires_grad or not trainable_only)
