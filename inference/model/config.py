"""Typed configuration of the unified CT model and its training, read from YAML.

No torch here: the CLI validates a config (and ``ctnode model info`` prints it) without loading
the model. Unknown keys are errors (``extra="forbid"``) so a typo never silently trains the
wrong model.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, model_validator


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class NetworkConfig(_Strict):
    """Shape of the network. Stored in the checkpoint's metadata so loading rebuilds the same net."""

    # Input channels: wide HU window, soft-tissue window, look-closer prior (0 in the coarse pass).
    in_channels: int = 3
    channels: tuple[int, ...] = (24, 48, 96)  # encoder widths at strides 2, 4, 8...
    stem_channels: int = 16  # full-resolution features (boundary detail)
    voxel_embed_dim: int = 32  # per-voxel embedding that masks/heatmaps are read from
    query_dim: int = 96  # width of the query decoder (hidden states the heads read)
    text_dim: int = 384  # all-MiniLM-L6-v2 sentence embedding size
    decoder_layers: int = 2
    attention_heads: int = 4
    loc_embed_dim: int = 32  # per-slice features for axial localisation

    @model_validator(mode="after")
    def _check(self) -> NetworkConfig:
        if len(self.channels) < 2:
            raise ValueError("channels needs at least two levels")
        if self.query_dim % self.attention_heads:
            raise ValueError("query_dim must be divisible by attention_heads")
        return self

    @property
    def stride(self) -> int:
        """Total downsampling factor of the encoder (input sizes must be multiples of it)."""
        return int(2 ** len(self.channels))


class InferenceConfig(_Strict):
    coarse_spacing_mm: float = 3.0  # whole-volume pass (CPU fallback resolution)
    fine_spacing_mm: float = 1.5  # look-closer pass, coarsened for big structures to fit the crop
    fine_max_voxels: tuple[int, int, int] = (96, 96, 96)  # look-closer field of view cap
    fine_margin_mm: float = 12.0  # margin around the coarse finding
    # Segmentation in the coarse pass by overlapping windows of this size (half overlap), None =
    # the whole volume at once. A net trained on crops reads token positions relative to its
    # field of view; on a whole volume they mean something else (docs/model.md, "Results").
    coarse_window_voxels: tuple[int, int, int] | None = None
    # Whether the pipeline runs the look-closer pass by default (a checkpoint whose ablation
    # shows it hurting says so here; `ctnode model eval` always reports both arms).
    look_closer: bool = True
    mask_threshold: float = 0.5
    det_score_threshold: float = 0.3
    det_max_per_query: int = 20
    match_threshold: float = 0.68  # cosine similarity for "no match" (docs/model.md, calibration)
    loc_match_threshold: float = 0.55  # same, for a snippet's finding (its image reference removed)


class RealDataset(_Strict):
    """A labelled real-CT dataset on disk (``inference.datasets``): nnU-Net raw or TotalSegmentator."""

    path: Path
    layout: Literal["auto", "nnunet", "totalsegmentator"] = "auto"
    name: str | None = None  # cache and card name (default: the folder's name)


class RealAugment(_Strict):
    """Augmentation of real-CT samples (synthetic ones keep their own small jitter): real scans
    differ in calibration, noise, slice thickness and field of view, and the few cases there are
    must not be memorised voxel for voxel."""

    intensity_scale: float = 0.08  # HU × U(1 − s, 1 + s)
    intensity_shift_hu: float = 25.0  # + U(−shift, shift)
    noise_hu_max: float = 25.0  # + N(0, U(0, max)) per voxel
    resolution_prob: float = 0.3  # thick-slice/soft-kernel look: z averaging + in-plane blur
    max_slice_factor: float = 3.0  # slice thickness up to this × the cache spacing
    # Left-right mirror that also swaps left/right labels ("left kidney" ↔ "right kidney"): the
    # mirrored anatomy is situs inversus, so it is kept rare; it teaches that the words, not the
    # side of the image, carry the laterality.
    flip_lr_prob: float = 0.1
    # Crops centred on a labelled structure drawn with weight volume^-power (else a random body
    # voxel): small structures (gallbladder, pancreas, adrenal-sized) are seen as often as large.
    small_structure_prob: float = 0.6
    small_structure_power: float = 0.5


class DataConfig(_Strict):
    cache_dir: Path = Path(tempfile.gettempdir()) / "ctnode-model-cache"
    train_cases: int = 240
    val_cases: int = 24
    first_train_seed: int = 1000
    first_val_seed: int = 900_000  # held-out seeds never overlap the training seeds
    template_fraction: float = 0.5  # share of SynthSeg-style template cases (0 = phantom only)
    generation_workers: int = 2
    # Case size handed to the generator (None = its own random realistic size, slow on CPU).
    synth_shape: tuple[int, int, int] | None = None
    synth_spacing_mm: tuple[float, float, float] | None = None
    # Training phrases per name (None = all ~55): tests use a few to keep text embedding fast.
    phrases_per_name: int | None = None
    # Real labelled CT beside the generator: SEG samples from their labels, DET and LOC from
    # synthetic cases only (real labels name no lesions and carry no report snippets).
    real_datasets: tuple[RealDataset, ...] = ()
    real_fraction: float = 0.5  # share of samples drawn from real cases when there are any
    real_augment: RealAugment = RealAugment()


class TrainConfig(_Strict):
    name: str = "unified-ct"
    seed: int = 0
    device: Literal["auto", "cpu", "cuda"] = "auto"
    bf16: bool = True  # autocast on CUDA only; CPU trains in float32
    steps: int = 3000
    batch_size: int = 2
    crop_voxels: tuple[int, int, int] = (48, 80, 80)  # coarse training crop at coarse spacing
    fine_crop_voxels: tuple[int, int, int] = (48, 64, 64)  # look-closer training crop
    fine_fraction: float = 0.35  # share of samples that train the look-closer (fine) pass
    lr: float = 2e-3
    weight_decay: float = 1e-4
    warmup_steps: int = 100
    grad_clip: float = 1.0
    seg_queries: int = 6  # structures sampled per sample
    checkpoint_every: int = 250
    log_every: int = 25
    out_dir: Path = Path(tempfile.gettempdir()) / "ctnode-model-run"
    threads: int = 0  # torch CPU threads (0 = torch default)
    # Warm start: network weights from an exported checkpoint (fresh optimiser and schedule).
    # Lets a later budget continue a finished run whose optimiser state is gone (docs/model.md).
    init_from: Path | None = None
    loss_weights: dict[str, float] = Field(
        default_factory=lambda: {"seg": 1.0, "det_heat": 1.0, "det_size": 0.5, "loc_z": 0.5, "loc_point": 0.2}
    )


class ModelConfig(_Strict):
    network: NetworkConfig = NetworkConfig()
    inference: InferenceConfig = InferenceConfig()
    data: DataConfig = DataConfig()
    train: TrainConfig = TrainConfig()


def load_config(path: Path) -> ModelConfig:
    """Read a model/training YAML; relative cache/out paths stay as written (CLI may override)."""
    try:
        raw = yaml.safe_load(Path(path).read_text()) or {}
    except FileNotFoundError:
        raise FileNotFoundError(f"model config not found: {path}") from None
    return ModelConfig.model_validate(raw)
