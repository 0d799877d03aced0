"""Speed of the ``unified-ct`` pipeline on a whole 512×512×300 CT on this machine's CPU.

    .venv/bin/python bench/model_speed.py [--slices 300] [--repeat 1] [--no-look-closer]

Prints the wall time per stage (default prompts: 12 structures + 3 lesion types, look-closer
on) and the peak RSS. Target (issue 3): ≤ 60 s at 3 mm on the 2-core CPU. The H100 target
(≤ 3 s, ≤ 16 GB, bf16) needs a GPU; none is lent to this task, so it is not measured here.
"""

from __future__ import annotations

import argparse
import platform
import resource
import time

import torch


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--slices", type=int, default=300)
    parser.add_argument("--seed", type=int, default=4242)
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--no-look-closer", action="store_true")
    args = parser.parse_args()

    from inference.contracts import VolumeInput
    from inference.model.pipeline import UnifiedCTPipeline
    from inference.synth import make_case

    t0 = time.perf_counter()
    case = make_case(args.seed, shape=(args.slices, 512, 512))
    print(
        f"synthetic CT {case.hu.shape} spacing {tuple(round(s, 2) for s in case.spacing_mm)} mm "
        f"({case.protocol}), generated in {time.perf_counter() - t0:.1f} s"
    )
    t0 = time.perf_counter()
    pipe = UnifiedCTPipeline(device="cpu", look_closer=not args.no_look_closer)
    print(
        f"model {pipe.version} loaded in {time.perf_counter() - t0:.1f} s; "
        f"torch threads {torch.get_num_threads()}"
    )
    volume = VolumeInput(case.hu, case.affine_lps)
    for i in range(args.repeat):
        t0 = time.perf_counter()
        out = pipe.run(volume, [])
        wall = time.perf_counter() - t0
        stages = ", ".join(f"{k} {v:.1f}" for k, v in out.timings_s.items())
        print(f"run {i + 1}: {wall:.1f} s wall — {stages}")
        print(
            f"  {len(out.segments)} segments, {len(out.detections)} detections, "
            f"{len(out.unmatched)} unmatched; look-closer {'off' if args.no_look_closer else 'on'}"
        )
    peak_gb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 / 1024
    print(
        f"peak RSS {peak_gb:.2f} GB; machine {platform.processor() or platform.machine()}, "
        f"{torch.get_num_threads()} threads"
    )


if __name__ == "__main__":
    main()
