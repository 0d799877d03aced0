"""``ctnode model eval``: the model on a seeded synthetic held-out set, and on real NIfTI with
(silver) labels. One analysis per case gives both arms of the look-closer ablation: the coarse
answers are kept beside the refined ones.

Synthetic cases are drawn at the generator's realistic size (512×512, 0.6–1 mm in-plane) from
seeds that training never uses (``data.first_val_seed`` onwards), and scored on their own grid.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from inference.contracts import VolumeInput
from inference.model.metrics import (
    Detection,
    TrueLesion,
    dice_from_counts,
    false_positives_per_scan,
    localisation_errors_mm,
    match_lesions,
    mean_absolute_error,
    sensitivity,
    summarise,
)
from inference.model.pipeline import to_input_grid
from inference.model.predictor import DetAnswer, ProbMap, UnifiedCTModel
from inference.model.vocab import DEFAULT_SEG_PROMPTS, LESION_KINDS, synonym_prompts

log = logging.getLogger(__name__)


def dice_on_input(pm: ProbMap, truth: np.ndarray, volume: VolumeInput, *, threshold: float = 0.5) -> float:
    """Dice of a canonical-grid answer against a full-size truth mask on the input grid."""
    truth_count = int(np.count_nonzero(truth))
    m = to_input_grid(pm, volume, threshold=threshold)
    if m is None:
        return dice_from_counts(0, 0, truth_count)
    inter = int(np.count_nonzero(m.mask & truth[m.box]))
    return dice_from_counts(inter, m.count, truth_count)


def _detections(dets: Sequence[DetAnswer]) -> list[Detection]:
    return [
        Detection(d.name, (float(d.center_lps[0]), float(d.center_lps[1]), float(d.center_lps[2])), d.score)
        for d in dets
    ]


def evaluate_synthetic(
    model: UnifiedCTModel,
    seeds: Sequence[int],
    *,
    structures: Sequence[str] = DEFAULT_SEG_PROMPTS,
    synonym_cases: int = 6,
    shape: tuple[int, int, int] | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Per-structure Dice (coarse vs look-closer), synonym Dice, lesion sensitivity/FP, snippet MAE."""
    from tqdm import tqdm

    from inference.synth import make_case

    dice_coarse: dict[str, list[float]] = {}
    dice_fine: dict[str, list[float]] = {}
    syn_rows: list[dict[str, Any]] = []
    match_coarse, match_fine = [], []
    lesion_sizes: list[tuple[float, bool, bool]] = []  # (diameter, hit coarse, hit refined)
    loc_err_lesion: list[float] = []
    loc_err_organ: list[float] = []
    absent_false_alarms = 0
    seconds: list[float] = []
    for i, seed in enumerate(tqdm(seeds, desc="eval cases", disable=not progress)):
        case = make_case(seed, shape=shape)
        volume = VolumeInput(case.hu, case.affine_lps)
        present = set(case.structures_present)
        seg = [(n, n) for n in structures]
        if i < synonym_cases:
            for name in structures:
                if name in present:
                    seg += [(syn, name) for syn, _ in synonym_prompts(name)]
        t0 = time.perf_counter()
        analysis = model.analyse(
            case.hu,
            case.affine_lps,
            seg=seg,
            det=[(k, k) for k in LESION_KINDS],
            loc=[s.text for s in case.snippets],
            look_closer=True,
        )
        seconds.append(time.perf_counter() - t0)
        canonical_fine: dict[str, float] = {}
        for answer in analysis.segments:
            truth = case.mask(answer.name)
            if not truth.any():
                if answer.prompt == answer.name and to_input_grid(answer.final, volume) is not None:
                    absent_false_alarms += 1
                continue
            d_fine = dice_on_input(answer.final, truth, volume)
            if answer.prompt == answer.name:
                dice_coarse.setdefault(answer.name, []).append(dice_on_input(answer.coarse, truth, volume))
                dice_fine.setdefault(answer.name, []).append(d_fine)
                canonical_fine[answer.name] = d_fine
            else:
                held = dict(synonym_prompts(answer.name)).get(answer.prompt, False)
                syn_rows.append(
                    {"name": answer.name, "prompt": answer.prompt, "held_out": held, "dice": d_fine}
                )
        for row in syn_rows:
            if "canonical" not in row and row["name"] in canonical_fine:
                row["canonical"] = canonical_fine[row["name"]]
        truths = [TrueLesion(le.kind, le.center_lps_mm, le.diameter_mm) for le in case.lesions]
        mc = match_lesions(_detections(analysis.coarse_detections), truths)
        mf = match_lesions(_detections(analysis.detections), truths)
        match_coarse.append(mc)
        match_fine.append(mf)
        lesion_sizes += [
            (le.diameter_mm, hc, hf)
            for le, hc, hf in zip(case.lesions, mc.hit_flags, mf.hit_flags, strict=True)
        ]
        for snippet, loc_answer in zip(case.snippets, analysis.localisations, strict=True):
            err = float(localisation_errors_mm([loc_answer.point_lps[2]], [snippet.z_mm])[0])
            (loc_err_lesion if snippet.target in LESION_KINDS else loc_err_organ).append(err)
    small = [(h_c, h_f) for d, h_c, h_f in lesion_sizes if d < 10]
    syn_seen = [r["dice"] - r["canonical"] for r in syn_rows if not r["held_out"] and "canonical" in r]
    syn_held = [r["dice"] - r["canonical"] for r in syn_rows if r["held_out"] and "canonical" in r]
    coarse_summary = summarise(dice_coarse)
    fine_summary = summarise(dice_fine)
    return {
        "cases": len(seeds),
        "seeds": [int(seeds[0]), int(seeds[-1])] if seeds else [],
        "case_shape": "generator default (512×512)" if shape is None else list(shape),
        "dice": {
            name: {
                "coarse": coarse_summary[name]["mean"],
                "look_closer": fine_summary[name]["mean"],
                "n": fine_summary[name]["n"],
            }
            for name in fine_summary
        },
        "mean_dice": {
            "coarse": float(np.mean([v["mean"] for v in coarse_summary.values()]))
            if coarse_summary
            else float("nan"),
            "look_closer": float(np.mean([v["mean"] for v in fine_summary.values()]))
            if fine_summary
            else float("nan"),
        },
        "absent_structure_false_alarms": absent_false_alarms,
        "synonyms": {
            "rows": syn_rows,
            "seen_mean_delta": float(np.mean(syn_seen)) if syn_seen else float("nan"),
            "held_out_mean_delta": float(np.mean(syn_held)) if syn_held else float("nan"),
            "cases": min(synonym_cases, len(seeds)),
        },
        "lesions": {
            "total": sum(m.hits + m.misses for m in match_fine),
            "coarse": {
                "sensitivity": sensitivity(match_coarse),
                "fp_per_scan": false_positives_per_scan(match_coarse),
            },
            "look_closer": {
                "sensitivity": sensitivity(match_fine),
                "fp_per_scan": false_positives_per_scan(match_fine),
            },
            "small_lt_10mm": {
                "n": len(small),
                "coarse_sensitivity": float(np.mean([c for c, _ in small])) if small else float("nan"),
                "look_closer_sensitivity": float(np.mean([f for _, f in small])) if small else float("nan"),
            },
        },
        "localisation_mae_mm": {
            "lesion_snippets": mean_absolute_error(loc_err_lesion),
            "organ_snippets": mean_absolute_error(loc_err_organ),
            "all": mean_absolute_error(loc_err_lesion + loc_err_organ),
            "n": len(loc_err_lesion) + len(loc_err_organ),
        },
        "seconds_per_case": float(np.mean(seconds)) if seconds else float("nan"),
    }


# TotalSegmentator v1 class names → our vocabulary (subject_a's classes.json).
REAL_CLASS_MAP: dict[str, tuple[str, ...]] = {
    "liver": ("liver",),
    "spleen": ("spleen",),
    "left kidney": ("kidney_left",),
    "right kidney": ("kidney_right",),
    "aorta": ("aorta",),
    "left lung": ("lung_upper_lobe_left", "lung_lower_lobe_left"),
    "right lung": ("lung_upper_lobe_right", "lung_middle_lobe_right", "lung_lower_lobe_right"),
    "vertebrae": tuple(
        f"vertebrae_{v}"
        for v in (
            "L5",
            "L4",
            "L3",
            "L2",
            "L1",
            *(f"T{i}" for i in range(12, 0, -1)),
            *(f"C{i}" for i in range(7, 0, -1)),
        )
    ),
    "heart": (
        "heart_myocardium",
        "heart_atrium_left",
        "heart_ventricle_left",
        "heart_atrium_right",
        "heart_ventricle_right",
    ),
    "stomach": ("stomach",),
    "pancreas": ("pancreas",),
    "urinary bladder": ("urinary_bladder",),
    "gallbladder": ("gallbladder",),
    "inferior vena cava": ("inferior_vena_cava",),
    "esophagus": ("esophagus",),
}


def load_nifti_lps(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """A NIfTI volume as ``[i, j, k]`` array + affine to LPS (NIfTI affines map to RAS)."""
    import nibabel as nib

    img: Any = nib.load(str(path))
    data = np.asarray(img.dataobj)
    ras_to_lps = np.diag([-1.0, -1.0, 1.0, 1.0])
    return data, ras_to_lps @ np.asarray(img.affine, dtype=np.float64)


def evaluate_real(
    model: UnifiedCTModel,
    image: Path,
    labels: Path,
    classes: Path,
    *,
    structures: Sequence[str] | None = None,
) -> dict[str, Any]:
    """Dice of coarse and look-closer answers against a label map (agreement with silver labels)."""
    hu, affine = load_nifti_lps(image)
    lab, lab_affine = load_nifti_lps(labels)
    if lab.shape != hu.shape or not np.allclose(lab_affine, affine, atol=1e-3):
        raise ValueError(f"{labels} is not on the grid of {image}")
    names = {v: int(k) for k, v in json.loads(Path(classes).read_text()).items()}
    wanted = [s for s in (structures or REAL_CLASS_MAP) if any(c in names for c in REAL_CLASS_MAP.get(s, ()))]
    volume = VolumeInput(hu.astype(np.float32), affine)
    t0 = time.perf_counter()
    analysis = model.analyse(volume.hu, affine, seg=[(s, s) for s in wanted], look_closer=True)
    seconds = time.perf_counter() - t0
    rows = {}
    for answer in analysis.segments:
        values = [names[c] for c in REAL_CLASS_MAP[answer.name] if c in names]
        truth = np.isin(lab, values)
        if not truth.any():
            continue
        rows[answer.name] = {
            "coarse": dice_on_input(answer.coarse, truth, volume),
            "look_closer": dice_on_input(answer.final, truth, volume),
            "truth_ml": float(truth.sum() * abs(np.linalg.det(affine[:3, :3])) / 1000.0),
        }
    return {
        "image": str(image),
        "labels": str(labels),
        "dice": rows,
        "seconds": seconds,
        "note": "agreement with TotalSegmentator silver labels on one case, not a benchmark",
    }


def format_markdown(synthetic: dict[str, Any] | None, real: dict[str, Any] | None) -> str:
    lines: list[str] = []
    if synthetic:
        s = synthetic
        lines += [
            f"Synthetic held-out: {s['cases']} cases (seeds {s['seeds'][0]}–{s['seeds'][-1]}), "
            f"{s['seconds_per_case']:.1f} s/case analysis on this CPU.",
            "",
            "| structure | Dice coarse (3 mm) | Dice look-closer | n |",
            "|---|---|---|---|",
        ]
        for name, v in s["dice"].items():
            lines.append(f"| {name} | {v['coarse']:.3f} | {v['look_closer']:.3f} | {v['n']} |")
        md = s["mean_dice"]
        lines.append(f"| **mean** | **{md['coarse']:.3f}** | **{md['look_closer']:.3f}** | |")
        le = s["lesions"]
        lc, sm = le["look_closer"], le["small_lt_10mm"]
        lines += [
            "",
            "| lesions | sensitivity | FP/scan |",
            "|---|---|---|",
            f"| coarse | {le['coarse']['sensitivity']:.3f} | {le['coarse']['fp_per_scan']:.2f} |",
            f"| look-closer | {lc['sensitivity']:.3f} | {lc['fp_per_scan']:.2f} |",
            f"| small (<10 mm, n={sm['n']}) coarse → look-closer | "
            f"{sm['coarse_sensitivity']:.3f} → {sm['look_closer_sensitivity']:.3f} | |",
            "",
            f"Lesions: {le['total']}. Absent-structure false alarms: {s['absent_structure_false_alarms']}.",
            "",
        ]
        lo = s["localisation_mae_mm"]
        lines.append(
            f"Snippet localisation MAE: {lo['all']:.1f} mm over {lo['n']} snippets "
            f"(lesion snippets {lo['lesion_snippets']:.1f} mm, organ snippets {lo['organ_snippets']:.1f} mm)."
        )
        sy = s["synonyms"]
        lines.append(
            f"Synonym prompts (look-closer Dice minus canonical, {sy['cases']} cases): seen in training "
            f"{sy['seen_mean_delta']:+.3f}, held out of training {sy['held_out_mean_delta']:+.3f}."
        )
    if real:
        lines += [
            "",
            f"Real CT ({real['image']}), agreement with silver labels (one case, not a benchmark):",
            "",
            "| structure | Dice coarse | Dice look-closer |",
            "|---|---|---|",
        ]
        for name, v in real["dice"].items():
            lines.append(f"| {name} | {v['coarse']:.3f} | {v['look_closer']:.3f} |")
    return "\n".join(lines) + "\n"
