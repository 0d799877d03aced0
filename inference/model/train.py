"""The training loop: seeded, resumable, with a progress bar, periodic checkpoints and a JSON log.

``ctnode model train --config configs/models/unified-ct.yaml`` calls :func:`train`. Batches are
drawn from the on-disk case cache (``dataset.py``) in a background thread so sample making
overlaps the step; batch ``k`` depends only on ``(seed, k)``, so a resumed run sees exactly the
batches an uninterrupted one would have. On CUDA the step runs under bf16 autocast (GPU path,
not exercised here: this project's machine has no GPU); on CPU in float32.
"""

from __future__ import annotations

import json
import logging
import math
import queue
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from inference.model.config import ModelConfig
from inference.model.dataset import Sample, SampleMaker, build_cache, case_seeds, load_text_table
from inference.model.losses import focal_heatmap_loss, loc_point_loss, loc_z_loss, seg_loss, size_loss
from inference.model.network import UnifiedCTNet

log = logging.getLogger(__name__)

STATE_FILE = "last.pt"
LOG_FILE = "train_log.jsonl"
INIT_FILE = "init_from.json"  # the warm-start checkpoint of this run, if any
REAL_FILE = "real_datasets.json"  # real cases and dataset cards of this run, if any


def resolve_device(name: str) -> torch.device:
    if name == "cuda" or (name == "auto" and torch.cuda.is_available()):
        if not torch.cuda.is_available():
            raise RuntimeError("device 'cuda' requested but no CUDA device is available")
        return torch.device("cuda")
    return torch.device("cpu")


def seed_everything(seed: int) -> None:
    torch.manual_seed(seed)
    np.random.seed(seed % (2**32))


def collate(samples: Sequence[Sample]) -> dict[str, torch.Tensor]:
    """Stack samples into tensors (CPU)."""
    return {
        "image": torch.from_numpy(np.stack([s.image for s in samples])),
        "text": torch.from_numpy(np.stack([s.text for s in samples])),
        "task": torch.from_numpy(np.stack([s.task for s in samples])),
        "valid": torch.from_numpy(np.stack([s.valid for s in samples])),
        "seg_target": torch.from_numpy(np.stack([s.seg_target for s in samples])),
        "det_heat": torch.from_numpy(np.stack([s.det_heat for s in samples])),
        "det_size": torch.from_numpy(np.stack([s.det_size for s in samples])),
        "det_size_mask": torch.from_numpy(np.stack([s.det_size_mask for s in samples])),
        "loc_z": torch.tensor([s.loc_z for s in samples], dtype=torch.int64),
        "loc_point": torch.from_numpy(np.stack([s.loc_point for s in samples])),
    }


def make_batch(maker: SampleMaker, cfg: ModelConfig, step: int) -> dict[str, torch.Tensor]:
    """Batch ``step`` of a run: a function of (seed, step) only."""
    rng = np.random.default_rng([cfg.train.seed, step])
    fine = bool(rng.random() < cfg.train.fine_fraction)
    return collate([maker.sample(rng, fine=fine) for _ in range(cfg.train.batch_size)])


def compute_losses(
    net: UnifiedCTNet, batch: dict[str, torch.Tensor], weights: dict[str, float]
) -> tuple[torch.Tensor, dict[str, float]]:
    """Forward all query slots and sum the weighted head losses."""
    n_seg = batch["seg_target"].shape[1]
    feats = net.encode_image(batch["image"])
    hidden = net.decode_queries(feats, batch["text"], batch["task"])
    valid = batch["valid"]
    parts: dict[str, torch.Tensor] = {}
    parts["seg"] = seg_loss(net.seg_logits(feats, hidden[:, :n_seg]), batch["seg_target"], valid[:, :n_seg])
    det_valid = valid[:, n_seg]
    if bool(det_valid.any()):
        heat, size = net.det_outputs(feats, hidden[:, n_seg : n_seg + 1])
        parts["det_heat"] = focal_heatmap_loss(heat[:, 0], batch["det_heat"], det_valid)
        parts["det_size"] = size_loss(size[:, 0], batch["det_size"], batch["det_size_mask"], det_valid)
    loc_valid = valid[:, n_seg + 1] & (batch["loc_z"] >= 0)
    if bool(loc_valid.any()):
        z_logits, point_logits = net.loc_outputs(feats, hidden[:, n_seg + 1 :])
        loc_z = torch.where(loc_valid, batch["loc_z"], torch.full_like(batch["loc_z"], -1))
        parts["loc_z"] = loc_z_loss(z_logits[:, 0], loc_z)
        parts["loc_point"] = loc_point_loss(point_logits[:, 0], batch["loc_point"], loc_valid)
    total = sum(
        (weights.get(k, 1.0) * v for k, v in parts.items()), start=torch.zeros((), device=feats.voxel.device)
    )
    return total, {k: float(v.detach()) for k, v in parts.items()}


def lr_at(step: int, cfg: ModelConfig) -> float:
    """Linear warm-up, then cosine decay to 5% of the peak."""
    t = cfg.train
    if step < t.warmup_steps:
        return t.lr * (step + 1) / t.warmup_steps
    progress = (step - t.warmup_steps) / max(1, t.steps - t.warmup_steps)
    return t.lr * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * min(1.0, progress))))


def _batches(
    maker: SampleMaker, cfg: ModelConfig, start: int, stop: int
) -> Iterator[dict[str, torch.Tensor]]:
    """Batches ``start..stop-1`` made in a background thread (numpy/scipy release the GIL)."""
    q: queue.Queue[dict[str, torch.Tensor] | BaseException | None] = queue.Queue(maxsize=3)

    def work() -> None:
        try:
            for step in range(start, stop):
                q.put(make_batch(maker, cfg, step))
            q.put(None)
        except BaseException as exc:
            q.put(exc)

    threading.Thread(target=work, daemon=True, name="batches").start()
    while True:
        item = q.get()
        if item is None:
            return
        if isinstance(item, BaseException):
            raise item
        yield item


@dataclass
class TrainResult:
    out_dir: Path
    steps_done: int
    last_loss: float
    seconds: float


def train(
    cfg: ModelConfig,
    *,
    max_steps: int | None = None,
    resume: bool = True,
    progress: bool = True,
    case_dirs: Sequence[Path] | None = None,
) -> TrainResult:
    """Train (or continue training) until ``cfg.train.steps`` (or ``max_steps`` more steps)."""
    t = cfg.train
    out = Path(t.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    if t.threads:
        torch.set_num_threads(t.threads)
    device = resolve_device(t.device)
    seed_everything(t.seed)
    dirs = (
        list(case_dirs)
        if case_dirs is not None
        else build_cache(cfg, case_seeds(cfg, "train"), progress=progress)
    )
    real_dirs: list[Path] = []
    if cfg.data.real_datasets:
        from inference.model.real_data import build_real_cache

        real_dirs, cards = build_real_cache(cfg, progress=progress)
        # The export names the datasets' cards in the model card (export reads this file).
        (out / REAL_FILE).write_text(
            json.dumps({"case_dirs": [str(d) for d in real_dirs], "cards": [str(c) for c in cards]}) + "\n"
        )
    maker = SampleMaker(cfg, dirs, load_text_table(cfg.data.cache_dir), real_dirs)

    net = UnifiedCTNet(cfg.network).to(device)
    opt = torch.optim.AdamW(net.parameters(), lr=t.lr, weight_decay=t.weight_decay)
    start = 0
    state_file = out / STATE_FILE
    if resume and state_file.is_file():
        state = torch.load(state_file, map_location=device, weights_only=True)
        net.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        start = int(state["step"])
        log.info("resumed", extra={"step": start, "path": str(state_file)})
    elif t.init_from is not None:
        warm_start(net, Path(t.init_from), out)
    else:
        # A fresh run in a reused directory began from nothing: its card must not name an old start.
        (out / INIT_FILE).unlink(missing_ok=True)
    stop = t.steps if max_steps is None else min(t.steps, start + max_steps)
    use_bf16 = device.type == "cuda" and t.bf16
    net.train()
    from tqdm import tqdm

    bar = tqdm(total=stop, initial=start, desc="train", disable=not progress, dynamic_ncols=True)
    began = time.perf_counter()
    last = float("nan")
    with (out / LOG_FILE).open("a") as logf:
        step = start
        for batch in _batches(maker, cfg, start, stop):
            step_began = time.perf_counter()
            for group in opt.param_groups:
                group["lr"] = lr_at(step, cfg)
            batch = {k: v.to(device, non_blocking=True) for k, v in batch.items()}
            with torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=use_bf16):
                total, parts = compute_losses(net, batch, t.loss_weights)
            opt.zero_grad(set_to_none=True)
            total.backward()  # type: ignore[no-untyped-call]
            torch.nn.utils.clip_grad_norm_(net.parameters(), t.grad_clip)
            opt.step()
            step += 1
            last = float(total.detach())
            bar.update()
            bar.set_postfix(loss=f"{last:.3f}")
            if step % t.log_every == 0 or step == stop:
                record = {
                    "step": step,
                    "loss": last,
                    "lr": lr_at(step - 1, cfg),
                    "step_s": round(time.perf_counter() - step_began, 3),
                    "elapsed_s": round(time.perf_counter() - began, 1),
                    "unix_time": round(time.time(), 1),
                    "cpu_s": round(time.process_time(), 1),
                    **parts,
                }
                logf.write(json.dumps(record) + "\n")
                logf.flush()
            if step % t.checkpoint_every == 0 or step == stop:
                _save_state(state_file, net, opt, step)
    bar.close()
    return TrainResult(out_dir=out, steps_done=step, last_loss=last, seconds=time.perf_counter() - began)


def warm_start(net: UnifiedCTNet, checkpoint: Path, out_dir: Path) -> str:
    """Load an exported checkpoint's weights into ``net``; record its sha256 in the run directory.

    The network configs must match (a :class:`CheckpointError` says which file does not fit).
    Returns the sha256, which the export writes into the card (``training.init_from``).
    """
    from inference.model.card import CheckpointError, sha256_file
    from inference.model.checkpoint import load_network

    loaded, _, _, _ = load_network(checkpoint)
    if loaded.cfg != net.cfg:
        raise CheckpointError(
            f"init_from checkpoint {checkpoint} has network {loaded.cfg.model_dump()}, "
            f"the config asks for {net.cfg.model_dump()}"
        )
    net.load_state_dict(loaded.state_dict())
    digest = sha256_file(checkpoint)
    (out_dir / INIT_FILE).write_text(json.dumps({"file": checkpoint.name, "sha256": digest}) + "\n")
    log.info("warm start", extra={"path": str(checkpoint), "sha256": digest})
    return digest


def _save_state(path: Path, net: UnifiedCTNet, opt: torch.optim.Optimizer, step: int) -> None:
    tmp = path.with_suffix(".tmp")
    torch.save({"model": net.state_dict(), "optimizer": opt.state_dict(), "step": step}, tmp)
    tmp.replace(path)  # atomic: a crash mid-save never leaves a broken resume point


def recalibrate_batchnorm(
    net: UnifiedCTNet, cfg: ModelConfig, case_dirs: Sequence[Path], *, cases: int = 24
) -> int:
    """Replace the BatchNorm running statistics by their exact average over whole coarse scans.

    Training normalises each batch by its own statistics (2 crops, coarse and look-closer
    batches alternating); the running averages it leaves (momentum 0.1) follow the last few
    batches, whatever kind they were, and put a whole volume's features on the wrong scale
    (measured: bone Dice 0.82 with a volume's own statistics, 0.00 with the running ones). The
    coarse pass is what serves every query, so its statistics are the ones to keep: each of
    ``cases`` training scans, whole, at the coarse spacing, as the predictor feeds it.
    Returns the number of scans used. The net is left in eval mode.
    """
    from inference.model.dataset import CachedCase, network_input
    from inference.model.geometry import canonical_grid_for, resample

    norms = [m for m in net.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    saved = [m.momentum for m in norms]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # cumulative average over every forward pass below
    net.train()
    used = 0
    device = next(net.parameters()).device
    try:
        with torch.no_grad():
            for path in list(case_dirs)[:cases]:
                case = CachedCase.open(path)
                hu, _, _ = case.arrays("coarse")
                grid = canonical_grid_for(
                    hu.shape,
                    case.coarse.affine_lps,
                    cfg.inference.coarse_spacing_mm,
                    multiple_of=net.cfg.stride,
                )
                vol = resample(
                    np.asarray(hu, dtype=np.float32), case.coarse.affine_lps, grid.shape, grid.affine_lps
                )
                net.encode_image(torch.from_numpy(network_input(vol)[None]).to(device))
                used += 1
    finally:
        for m, mom in zip(norms, saved, strict=True):
            m.momentum = mom
        net.eval()
    return used


def load_trained(out_dir: Path, cfg: ModelConfig) -> UnifiedCTNet:
    """The network of a run directory's latest state (eval mode, CPU)."""
    state = torch.load(Path(out_dir) / STATE_FILE, map_location="cpu", weights_only=True)
    net = UnifiedCTNet(cfg.network)
    net.load_state_dict(state["model"])
    net.eval()
    return net
