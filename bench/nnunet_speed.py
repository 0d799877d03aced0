"""Speed and memory of TotalSegmentator-sized nnU-Net networks on a whole 512×512×300 CT.

The networks are built from plans that nnU-Net's own ``ExperimentPlanner`` makes for a dataset
fingerprint like TotalSegmentator's (1.5 mm or 3 mm isotropic, the body's size in voxels,
8 GB target), with random weights made here — nothing is downloaded. Each model goes through
the node's real path: ``ctnode model import`` core → ``nnunet:<name>`` pipeline → 512×512×300
volume in HU (0.78 × 0.78 mm, 1.5 mm slices), cold (load + first run) and warm (second run),
each configuration in its own process so the peak RSS is its own.

    nice .venv/bin/python bench/nnunet_speed.py --mode 3mm            # TotalSegmentator --fast
    nice .venv/bin/python bench/nnunet_speed.py --mode 1.5mm --parts 1  # one of the five parts

Targets (issue 11): 3 mm ≤ 60 s on the 2-core CPU; 1.5 mm five parts ≤ 10 s on an H100/H200.
Results go to bench/RESULTS.md by hand, with machine and date.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

# TotalSegmentator v2: classes per 1.5 mm part (organs, vertebrae, cardiac, muscles, ribs) and
# of the 3 mm model (117), plus background (map_to_binary.class_map_5_parts / class_map["total"]).
PARTS = {291: 24, 292: 26, 293: 18, 294: 23, 295: 26}
FAST = {297: 117}
# a typical TotalSegmentator training CT in voxels at 1.5 mm (z, y, x), about 450 × 400 × 400 mm
MEDIAN_MM = (450.0, 400.0, 400.0)


def _fingerprint(spacing: float) -> dict[str, object]:
    shape = [round(mm / spacing) for mm in MEDIAN_MM]
    return {
        "foreground_intensity_properties_per_channel": {
            "0": {
                "max": 3000.0,
                "mean": 100.0,
                "median": 60.0,
                "min": -1024.0,
                "percentile_00_5": -950.0,
                "percentile_99_5": 1500.0,
                "std": 300.0,
            }
        },
        "median_relative_size_after_cropping": 1.0,
        "shapes_after_crop": [shape, shape],
        "spacings": [[spacing] * 3, [spacing] * 3],
    }


def _class_names(dataset_id: int, n_classes: int) -> dict[int, str]:
    """TotalSegmentator's own class names for the dataset (its map_to_binary), else class_N."""
    try:
        from totalsegmentator.map_to_binary import class_map, class_map_5_parts, map_taskid_to_partname_ct
    except ImportError:
        return {i: f"class_{i}" for i in range(1, n_classes + 1)}
    names = (
        class_map["total"] if dataset_id == 297 else class_map_5_parts[map_taskid_to_partname_ct[dataset_id]]
    )
    assert len(names) == n_classes, (dataset_id, len(names))
    return dict(names)


def make_model(root: Path, dataset_id: int, n_classes: int, spacing: float) -> Path:
    """An nnU-Net trained-model folder with nnU-Net's plans for a TotalSegmentator-like dataset."""
    import nibabel as nib
    import torch
    from nnunetv2.experiment_planning.experiment_planners.default_experiment_planner import ExperimentPlanner
    from nnunetv2.utilities.get_network_from_plans import get_network_from_plans
    from nnunetv2.utilities.plans_handling.plans_handler import PlansManager

    name = f"Dataset{dataset_id}_BenchTotalSegLike"
    for key in ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results"):
        os.environ[key] = str(root / key)
    raw = root / "nnUNet_raw" / name
    (raw / "imagesTr").mkdir(parents=True, exist_ok=True)
    (raw / "labelsTr").mkdir(parents=True, exist_ok=True)
    tiny = np.zeros((4, 4, 4), dtype=np.int16)  # the planner reads one file for its reader class
    nib.save(nib.Nifti1Image(tiny, np.eye(4)), raw / "imagesTr" / "c0_0000.nii.gz")
    nib.save(nib.Nifti1Image(tiny.astype(np.uint8), np.eye(4)), raw / "labelsTr" / "c0.nii.gz")
    labels = {"background": 0, **{name: i for i, name in _class_names(dataset_id, n_classes).items()}}
    dataset = {"channel_names": {"0": "CT"}, "labels": labels, "numTraining": 1, "file_ending": ".nii.gz"}
    (raw / "dataset.json").write_text(json.dumps(dataset))
    pre = root / "nnUNet_preprocessed" / name
    pre.mkdir(parents=True, exist_ok=True)
    (pre / "dataset_fingerprint.json").write_text(json.dumps(_fingerprint(spacing)))
    ExperimentPlanner(dataset_id).plan_experiment()
    plans = json.loads((pre / "nnUNetPlans.json").read_text())
    config = PlansManager(plans).get_configuration("3d_fullres")
    network = get_network_from_plans(
        config.network_arch_class_name,
        config.network_arch_init_kwargs,
        config.network_arch_init_kwargs_req_import,
        1,
        n_classes + 1,
        deep_supervision=False,
    )
    trainer = "nnUNetTrainerNoMirroring"
    folder = root / "export" / name / f"{trainer}__nnUNetPlans__3d_fullres"
    (folder / "fold_0").mkdir(parents=True, exist_ok=True)
    (folder / "plans.json").write_text(json.dumps(plans))
    (folder / "dataset.json").write_text(json.dumps(dataset))
    torch.save(
        {
            "network_weights": network.state_dict(),
            "trainer_name": trainer,
            "init_args": {"configuration": "3d_fullres"},
            "inference_allowed_mirroring_axes": (0, 1, 2),
        },
        folder / "fold_0" / "checkpoint_final.pth",
    )
    params = sum(p.numel() for p in network.parameters())
    print(
        f"  Dataset{dataset_id}: patch {config.patch_size}, "
        f"features {config.network_arch_init_kwargs['features_per_stage']}, "
        f"{params / 1e6:.1f} M parameters, {n_classes} classes",
        flush=True,
    )
    return folder.parent


def run_one(models: list[str], model_dir: str, device: str) -> dict[str, float]:
    """In a fresh process: import nothing twice; cold and warm runs of the installed models."""
    os.environ["CTNODE_MODEL_DIR"] = model_dir
    import torch

    from inference.contracts import Request, Task, VolumeInput
    from inference.installed.card import installed_models
    from inference.nnunet.pipeline import NnUNetPipeline

    torch.set_num_threads(os.cpu_count() or 1)
    rng = np.random.default_rng(0)
    hu = rng.normal(0.0, 200.0, size=(300, 512, 512)).astype(np.float32)
    affine = np.array([[0, 0, 0.78, -200.0], [0, 0.78, 0, -200.0], [1.5, 0, 0, 0.0], [0, 0, 0, 1.0]])
    volume = VolumeInput(hu, affine)
    cards = [installed_models()[m] for m in models]
    requests = [Request(Task.SEG, "liver")]  # the network runs in full whatever is asked

    def cpu_s() -> float:  # this process's CPU seconds: on a shared machine, wall time also counts others
        usage = resource.getrusage(resource.RUSAGE_SELF)
        return usage.ru_utime + usage.ru_stime

    t0, c0 = time.perf_counter(), cpu_s()
    pipeline = NnUNetPipeline("bench", "bench", cards, device=device, tile_step_size=0.8, use_mirroring=False)
    load = time.perf_counter() - t0
    t1 = time.perf_counter()
    pipeline.run(volume, requests)
    first, c1 = time.perf_counter() - t1, cpu_s()
    t2 = time.perf_counter()
    pipeline.run(volume, requests)
    warm, c2 = time.perf_counter() - t2, cpu_s()
    peak_gpu = float(torch.cuda.max_memory_allocated() / 2**30) if torch.cuda.is_available() else 0.0
    return {
        "load_s": round(load, 2),
        "cold_s": round(load + first, 2),
        "warm_s": round(warm, 2),
        "cold_cpu_s": round(c1 - c0, 1),
        "warm_cpu_s": round(c2 - c1, 1),
        "threads": torch.get_num_threads(),
        "peak_rss_gib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 2),
        "peak_gpu_gib": round(peak_gpu, 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mode", choices=["3mm", "1.5mm"], default="3mm")
    parser.add_argument("--parts", type=int, default=5, help="1.5 mm: how many of the five parts")
    parser.add_argument("--device", default="auto")
    parser.add_argument(
        "--export-only",
        type=Path,
        default=None,
        help="write the model folder(s) under this folder and stop (no timing): a random-weight "
        "model with TotalSegmentator's class names, e.g. for bench/nnunet_check_subject_a.py",
    )
    parser.add_argument("--child", nargs=2, metavar=("MODELS", "MODEL_DIR"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(run_one(args.child[0].split(","), args.child[1], args.device)))
        return
    from inference.installed.importer import import_model

    spec = FAST if args.mode == "3mm" else dict(list(PARTS.items())[: args.parts])
    spacing = 3.0 if args.mode == "3mm" else 1.5
    if args.export_only is not None:
        for dataset_id, n in spec.items():
            folder = make_model(args.export_only.resolve() / "work" / str(dataset_id), dataset_id, n, spacing)
            print(f"model folder {folder}")
        return
    with tempfile.TemporaryDirectory(prefix="nnunet-bench-") as tmp:
        root = Path(tmp)
        names = []
        for dataset_id, n in spec.items():
            folder = make_model(root / str(dataset_id), dataset_id, n, spacing)
            name = f"bench-{dataset_id}"
            import_model(folder, name=name, model_dir=root / "models")
            names.append(name)
        cmd = [
            sys.executable,
            __file__,
            "--device",
            args.device,
            "--child",
            ",".join(names),
            str(root / "models"),
        ]
        done = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            sys.exit(done.stderr[-3000:])
        result = json.loads(done.stdout.strip().splitlines()[-1])
    print(f"{args.mode} ({len(spec)} model(s)), 512x512x300 CT, device {args.device}: {json.dumps(result)}")


if __name__ == "__main__":
    main()
