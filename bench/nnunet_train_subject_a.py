"""Train a small nnU-Net v2 model on the real CT subject_a, with nnU-Net's own planner and trainer.

Not a benchmark: it makes "a model folder made independently of the project's tests" for the
check in issue 11 — ``ctnode model import`` the folder (or its zip), then
``ctnode infer --pipeline nnunet:NAME`` on subject_a converted to DICOM (docs/models-installed.md).

Labels: a few TotalSegmentator v1 classes of subject_a's silver label map (predictions of
TotalSegmentator, not manual contours). One training case, fold "all": the model learns this
one CT; that it gives these structures back on it says the plumbing is right, not that the
model generalises.

    nice -n 19 .venv/bin/python bench/nnunet_train_subject_a.py --out out/nnunet-subject-a --epochs 40

Run it under ``nice``, in the background: ~25 CPU minutes at the defaults on a 2-core machine.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import time
from pathlib import Path

import nibabel as nib
import numpy as np

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "totalseg-examples" / "subject_a"
# TotalSegmentator class names (dataset.json keeps them, the vocabulary maps them to codes)
CLASSES = ("liver", "spleen", "kidney_right", "kidney_left", "aorta", "vertebrae_L3")
DATASET_ID = 501
DATASET_NAME = f"Dataset{DATASET_ID}_SubjectA"


def make_raw(raw: Path, data: Path) -> None:
    folder = raw / DATASET_NAME
    (folder / "imagesTr").mkdir(parents=True, exist_ok=True)
    (folder / "labelsTr").mkdir(parents=True, exist_ok=True)
    classes = {v: int(k) for k, v in json.loads((data / "classes.json").read_text()).items()}
    ct = nib.load(str(data / "ct.nii.gz"))
    lab = nib.load(str(data / "labels.nii.gz"))
    source = np.asarray(lab.dataobj).astype(np.int16)
    target = np.zeros(source.shape, dtype=np.uint8)
    for value, name in enumerate(CLASSES, start=1):
        target[source == classes[name]] = value
    image = nib.Nifti1Image(np.asarray(ct.dataobj).astype(np.int16), ct.affine)
    nib.save(image, folder / "imagesTr" / "subja_0000.nii.gz")
    nib.save(nib.Nifti1Image(target, lab.affine), folder / "labelsTr" / "subja.nii.gz")
    dataset = {
        "channel_names": {"0": "CT"},
        "labels": {"background": 0, **{name: i for i, name in enumerate(CLASSES, start=1)}},
        "numTraining": 1,
        "file_ending": ".nii.gz",
        "name": "subject_a_small",
        "licence": "CC BY 4.0 (TotalSegmentator dataset image; labels are TotalSegmentator predictions)",
        "description": "ct-ai-node check model: trained briefly on one CT (bench/nnunet_train_subject_a.py)",
    }
    (folder / "dataset.json").write_text(json.dumps(dataset, indent=2))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("out/nnunet-subject-a"))
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--epochs", type=int, default=40)
    parser.add_argument("--iterations", type=int, default=25, help="training iterations per epoch")
    parser.add_argument("--base-features", type=int, default=8, help="channels of the first stage")
    parser.add_argument("--gpu-memory-gb", type=float, default=1.0, help="planner target: small patches")
    args = parser.parse_args()
    out = args.out.resolve()
    for sub in ("raw", "preprocessed", "results"):
        (out / sub).mkdir(parents=True, exist_ok=True)
    os.environ["nnUNet_raw"] = str(out / "raw")  # noqa: SIM112 (nnU-Net's names)
    os.environ["nnUNet_preprocessed"] = str(out / "preprocessed")  # noqa: SIM112 (nnU-Net's names)
    os.environ["nnUNet_results"] = str(out / "results")  # noqa: SIM112 (nnU-Net's names)
    os.environ.setdefault("nnUNet_n_proc_DA", "1")

    import torch
    from nnunetv2.experiment_planning.plan_and_preprocess_api import (
        extract_fingerprints,
        plan_experiments,
        preprocess,
    )
    from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer

    torch.set_num_threads(2)
    t0 = time.perf_counter()
    make_raw(out / "raw", args.data)
    extract_fingerprints([DATASET_ID], num_processes=1, check_dataset_integrity=True)
    plan_experiments([DATASET_ID], gpu_memory_target_in_gb=args.gpu_memory_gb)
    plans_file = out / "preprocessed" / DATASET_NAME / "nnUNetPlans.json"
    plans = json.loads(plans_file.read_text())
    arch = plans["configurations"]["3d_fullres"]["architecture"]["arch_kwargs"]
    # nnU-Net's own stages and strides, narrower: 32..320 channels take ~12 s a step on 2 cores.
    base = args.base_features
    arch["features_per_stage"] = [min(base * 2**i, 8 * base) for i in range(arch["n_stages"])]
    plans_file.write_text(json.dumps(plans, indent=2))
    preprocess([DATASET_ID], configurations=("3d_fullres",), num_processes=(1,))
    plans = json.loads(plans_file.read_text())
    dataset_json = json.loads((out / "preprocessed" / DATASET_NAME / "dataset.json").read_text())
    config = plans["configurations"]["3d_fullres"]
    print(
        "patch", config["patch_size"], "batch", config["batch_size"], "spacing", config["spacing"], flush=True
    )

    plans["continue_training"] = False  # what nnunetv2.run.run_training sets for a fresh run
    trainer = nnUNetTrainer(plans, "3d_fullres", "all", dataset_json, device=torch.device("cpu"))
    # Shorter than nnU-Net's 1000 x 250: this is a plumbing check on CPU, not a model to use.
    trainer.num_epochs = args.epochs
    trainer.num_iterations_per_epoch = args.iterations
    trainer.num_val_iterations_per_epoch = 2
    trainer.save_every = 10_000
    trainer.initialize()
    trainer.run_training()
    trainer.perform_actual_validation(False)
    model_dir = Path(trainer.output_folder).parent
    for stale in model_dir.glob("fold_all/checkpoint_best.pth"):
        stale.unlink()
    archive = shutil.make_archive(str(out / "subject_a_small"), "zip", root_dir=model_dir)
    print(f"model folder {model_dir}\nzip {archive}\nseconds {time.perf_counter() - t0:.0f}", flush=True)


if __name__ == "__main__":
    main()
