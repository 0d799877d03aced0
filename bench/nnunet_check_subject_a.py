"""The issue-11 check on a real CT: an nnU-Net model folder made independently of the tests,
``ctnode model import`` (its zip), ``ctnode infer --pipeline nnunet:NAME`` on subject_a written as
a DICOM CT series by the project's writer; dciodvfy on every object; the SEG's segments compared
with subject_a's silver labels (TotalSegmentator predictions: agreement, not accuracy).

    .venv/bin/python bench/nnunet_check_subject_a.py MODEL.zip --name subject-a-small --out out/check

MODEL.zip: e.g. what bench/nnunet_train_subject_a.py writes.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data" / "totalseg-examples" / "subject_a"


def write_dicom(out: Path) -> None:
    from dicom_node.imaging.writer import PatientInfo, write_ct_series
    from inference.pipelines.nifti import load_nifti_axial

    hu, affine = load_nifti_axial(DATA / "ct.nii.gz")
    root = "1.2.826.0.1.3680043.10.1111.11."
    write_ct_series(
        hu,
        affine,
        out,
        study_instance_uid=root + "1",
        series_instance_uid=root + "2",
        uid_root=root,
        patient=PatientInfo(name="SUBJECT^A", id="TS-SUBJECT-A"),
        series_description="subject_a (TotalSegmentator example, CC BY 4.0)",
        body_part_examined="ABDOMEN",
    )


def ctnode(*args: str, model_dir: Path) -> str:
    env = {**os.environ, "CTNODE_MODEL_DIR": str(model_dir)}
    done = subprocess.run(
        [str(REPO / ".venv" / "bin" / "ctnode"), *args], capture_output=True, text=True, env=env
    )
    if done.returncode != 0:
        sys.exit(f"ctnode {' '.join(args)} failed:\n{done.stdout}\n{done.stderr}")
    return done.stdout


def agreement(out: Path, ct_dir: Path) -> dict[str, float]:
    """Dice of each SEG segment with subject_a's silver label of the same structure."""
    import highdicom as hd
    import pydicom

    from dicom_node.imaging.reader import load_series
    from inference.pipelines.nifti import load_nifti_axial
    from inference.vocabulary import lookup

    series = load_series(sorted(ct_dir.glob("*.dcm")))
    labels, _ = load_nifti_axial(DATA / "labels.nii.gz", dtype=np.int16)
    classes = {int(k): v for k, v in json.loads((DATA / "classes.json").read_text()).items()}
    seg_path = next(
        p for p in out.glob("*.dcm") if pydicom.dcmread(p, stop_before_pixels=True).Modality == "SEG"
    )
    seg = hd.seg.segread(seg_path)
    uids = [str(ds.SOPInstanceUID) for ds in series.datasets]
    rows = {}
    for number in seg.segment_numbers:
        desc = seg.get_segment_description(number)
        name = str(desc.segment_label)
        mask = seg.get_pixels_by_source_instance(uids, segment_numbers=[number], combine_segments=False)[
            ..., 0
        ]
        values = [v for v, c in classes.items() if (hit := lookup(c)) is not None and hit.name == name]
        truth = np.isin(labels, values)
        denominator = mask.sum() + truth.sum()
        rows[name] = round(
            float(2 * np.logical_and(mask, truth).sum() / denominator) if denominator else 0.0, 3
        )
    return rows


def pydicom_modality(path: Path) -> str:
    import pydicom

    return str(pydicom.dcmread(path, stop_before_pixels=True).Modality)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", type=Path, help="nnU-Net model folder or zip")
    parser.add_argument("--name", default="subject-a-small")
    parser.add_argument("--out", type=Path, default=Path("out/nnunet-check"))
    args = parser.parse_args()
    sys.path.insert(0, str(REPO))
    from tests.support.dcmtk import dciodvfy_errors

    with tempfile.TemporaryDirectory() as tmp:
        model_dir = Path(tmp) / "models"
        ct_dir = Path(tmp) / "ct"
        write_dicom(ct_dir)
        print(ctnode("model", "import", str(args.model), "--name", args.name, model_dir=model_dir))
        print(ctnode("pipelines", "list", model_dir=model_dir).split("\n\n")[0][:2000])
        out = args.out.resolve()
        print(
            ctnode(
                "infer",
                str(ct_dir),
                "--out",
                str(out),
                "--pipeline",
                f"nnunet:{args.name}",
                model_dir=model_dir,
            )
        )
        for path in sorted(out.glob("*.dcm")):
            errors = dciodvfy_errors(path)
            print(f"dciodvfy {path.name}: {len(errors)} error line(s)", *errors[:5], sep="\n  ")
        if not any(pydicom_modality(p) == "SEG" for p in out.glob("*.dcm")):
            print("no SEG written: the model found none of its structures in this CT")
            return
        print("Dice with subject_a's silver labels:", json.dumps(agreement(out, ct_dir)))


if __name__ == "__main__":
    main()
