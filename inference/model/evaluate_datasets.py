"""``ctnode model eval --real-dir DIR``: Dice against every labelled case of a dataset folder
(nnU-Net raw or TotalSegmentator layout, ``inference.datasets``), e.g. the subject_c crops.

Structures are asked for by their vocabulary name; only names the model is trained to segment
(``vocab.SEG_NAMES``) are scored, the others are listed as ``not_trained`` (a prompt for them
answers through the text embedding and says nothing about this model's training). Masks on a
grid other than the image's are resampled onto it (``inference.datasets.nifti.on_grid``).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np

from inference.contracts import VolumeInput
from inference.model.evaluate import dice_on_input
from inference.model.predictor import UnifiedCTModel
from inference.model.vocab import SEG_NAMES

NOTE = "agreement with TotalSegmentator silver labels on a few cases, not a benchmark"


def evaluate_dataset(model: UnifiedCTModel, root: Path, layout: str = "auto") -> dict[str, Any]:
    """Per case and structure: Dice of the coarse and look-closer answers, truth volume."""
    from inference.datasets.totalseg import read_dataset

    index = read_dataset(root, layout)
    cases: dict[str, Any] = {}
    for case in index.cases:
        loaded = case.load()
        truths: dict[str, np.ndarray] = {}
        not_trained: list[str] = []
        for raw, mask in loaded.masks():
            name = index.mapping.mapped.get(raw)
            if name is None:
                continue
            if name not in SEG_NAMES:
                not_trained.append(name)
                continue
            truths[name] = truths[name] | mask if name in truths else mask
        volume = VolumeInput(loaded.hu, loaded.affine_lps)
        t0 = time.perf_counter()
        analysis = model.analyse(volume.hu, volume.affine_lps, seg=[(n, n) for n in truths], look_closer=True)
        voxel_ml = abs(float(np.linalg.det(loaded.affine_lps[:3, :3]))) / 1000.0
        rows = {
            a.name: {
                "coarse": dice_on_input(a.coarse, truths[a.name], volume),
                "look_closer": dice_on_input(a.final, truths[a.name], volume),
                "truth_ml": float(truths[a.name].sum() * voxel_ml),
            }
            for a in analysis.segments
            if a.name in truths
        }
        cases[case.case_id] = {
            "image": str(case.image),
            "dice": rows,
            "not_trained": sorted(set(not_trained)),
            "seconds": time.perf_counter() - t0,
        }
    return {"root": str(root), "cases": cases, "unknown_names": list(index.unknown), "note": NOTE}


def format_dataset_markdown(result: dict[str, Any]) -> str:
    lines = [f"Real CT {result['root']} ({result['note']}):", ""]
    lines += ["| case | structure | Dice coarse | Dice look-closer | truth ml |", "|---|---|---|---|---|"]
    for case_id, c in result["cases"].items():
        for name, v in c["dice"].items():
            lines.append(
                f"| {case_id} | {name} | {v['coarse']:.3f} | {v['look_closer']:.3f} | {v['truth_ml']:.1f} |"
            )
        if c["not_trained"]:
            lines.append(f"| {case_id} | not scored (not trained): {', '.join(c['not_trained'])} | | | |")
    return "\n".join(lines) + "\n"
