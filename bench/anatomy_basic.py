"""Speed and agreement of ``ct-anatomy-basic``, and speed of ``make_synthetic_study``.

    PYTHONPATH=. .venv/bin/python bench/anatomy_basic.py [--seeds 0,1,11] [--slices 300]

1. A 512×512×N synthetic phantom (2.5 mm slices, 0.9 mm pixels, arterial and non-contrast
   phases): pipeline wall time per stage (default prompts) and Dice against the phantom truth.
2. TotalSegmentator's subject_a (real CT, 3 mm) against its silver labels (lungs, bone).
3. ``make_synthetic_study`` at its defaults (seconds to generate, write and store the truth).
Results: bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np

from inference.contracts import VolumeInput
from inference.pipelines.anatomy_basic import AnatomyBasicPipeline, segment_anatomy
from inference.pipelines.nifti import load_nifti_axial
from inference.synth import make_case
from worker.demo.synth_study import make_synthetic_study

SUBJECT_A = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "totalseg-examples" / "subject_a"
NAMES = ("body", "left lung", "right lung", "airway", "bone")


def dice(a: np.ndarray, b: np.ndarray) -> float:
    total = float(a.sum() + b.sum())
    return 2.0 * float((a & b).sum()) / total if total else float("nan")


def phantom(seed: int, slices: int, phase: str) -> None:
    case = make_case(seed, shape=(slices, 512, 512), spacing_mm=(2.5, 0.9, 0.9), lesions=True, phase=phase)
    volume = VolumeInput(case.hu, case.affine_lps)
    t = time.perf_counter()
    out = AnatomyBasicPipeline().run(volume, [])
    total = time.perf_counter() - t
    found = segment_anatomy(volume, list(NAMES))  # whole masks (the label map paints body last)
    row = {n: round(dice(found.masks[n], case.mask(n)), 3) for n in NAMES if n in found.masks}
    stages = {k: round(v, 2) for k, v in out.timings_s.items()}
    print(f"phantom seed {seed} {case.protocol} {phase} {case.hu.shape}: {total:.1f} s {stages}")
    print(f"  Dice {row}  missing {found.missing}")


def subject_a() -> None:
    hu, affine = load_nifti_axial(SUBJECT_A / "ct.nii.gz")
    labels, _ = load_nifti_axial(SUBJECT_A / "labels.nii.gz", dtype=np.int16)
    classes = {n: int(v) for v, n in json.loads((SUBJECT_A / "classes.json").read_text()).items()}
    t = time.perf_counter()
    found = segment_anatomy(VolumeInput(hu, affine), list(NAMES))
    seconds = time.perf_counter() - t
    bones = ("vertebrae_", "rib_", "hip_", "femur_", "sacrum", "humerus_", "scapula_", "clavicula_")
    truth = {
        "left lung": np.isin(
            labels, [v for n, v in classes.items() if n.startswith("lung_") and n.endswith("left")]
        ),
        "right lung": np.isin(
            labels, [v for n, v in classes.items() if n.startswith("lung_") and n.endswith("right")]
        ),
        "bone": np.isin(labels, [v for n, v in classes.items() if n.startswith(bones)]),
    }
    row = {n: round(dice(found.masks[n], t), 3) for n, t in truth.items()}
    print(f"subject_a {hu.shape} 3 mm: {seconds:.2f} s  Dice vs silver {row}  missing {found.missing}")


def synth_study() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        t = time.perf_counter()
        study = make_synthetic_study(Path(tmp) / "study", seed=7)
        total = time.perf_counter() - t
        parts = {k: round(v, 2) for k, v in study.seconds.items()}
        print(f"make_synthetic_study seed 7: {study.shape} {study.protocol}: {total:.1f} s {parts}")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seeds", default="0,1,11")
    parser.add_argument("--slices", type=int, default=300)
    args = parser.parse_args()
    for seed in (int(s) for s in args.seeds.split(",")):
        for phase in ("non-contrast", "arterial"):
            phantom(seed, args.slices, phase)
    if (SUBJECT_A / "ct.nii.gz").exists():
        subject_a()
    synth_study()


if __name__ == "__main__":
    main()
