"""Training step time of the unified CT network on this CPU (the number that sets the budget).

    .venv/bin/python bench/model_train_step.py [--config configs/models/unified-ct.yaml] [--steps 8]

Random inputs of the configured crop size and batch, all query slots active (6 SEG + DET + LOC):
forward + backward + AdamW step. Prints each step and the median.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import torch


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, default=Path("configs/models/unified-ct.yaml"))
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument(
        "--crop", type=int, nargs=3, default=None, help="override the crop (slices rows cols)"
    )
    parser.add_argument(
        "--threads", type=int, default=None, help="torch CPU threads (default: the config's train.threads)"
    )
    args = parser.parse_args()

    from inference.model.config import load_config
    from inference.model.losses import seg_loss
    from inference.model.network import TASK_IDS, UnifiedCTNet, count_parameters

    cfg = load_config(args.config)
    threads = args.threads if args.threads is not None else cfg.train.threads
    if threads:
        torch.set_num_threads(threads)
    crop = tuple(args.crop) if args.crop else cfg.train.crop_voxels
    b, q_seg = cfg.train.batch_size, cfg.train.seg_queries
    torch.manual_seed(0)
    net = UnifiedCTNet(cfg.network)
    opt = torch.optim.AdamW(net.parameters(), lr=1e-3)
    image = torch.randn(b, 3, *crop)
    text = torch.nn.functional.normalize(torch.randn(b, q_seg + 2, 384), dim=-1)
    task = torch.tensor([[TASK_IDS["seg"]] * q_seg + [TASK_IDS["det"], TASK_IDS["loc"]]] * b)
    target = (torch.rand(b, q_seg, *crop) > 0.5).to(torch.uint8)
    times = []
    for i in range(args.steps):
        t0 = time.perf_counter()
        feats = net.encode_image(image)
        hidden = net.decode_queries(feats, text, task)
        loss = seg_loss(
            net.seg_logits(feats, hidden[:, :q_seg]), target, torch.ones(b, q_seg, dtype=torch.bool)
        )
        heat, size = net.det_outputs(feats, hidden[:, q_seg : q_seg + 1])
        z, point = net.loc_outputs(feats, hidden[:, q_seg + 1 :])
        loss = loss + heat.float().sigmoid().mean() + size.mean() + z.logsumexp(-1).mean() + point.mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        times.append(time.perf_counter() - t0)
        print(f"step {i + 1}: {times[-1]:.2f} s")
    print(
        f"{count_parameters(net)} parameters, crop {crop} × batch {b}: "
        f"median {statistics.median(times[1:]):.2f} s/step "
        f"({torch.get_num_threads()} threads)"
    )


if __name__ == "__main__":
    main()
