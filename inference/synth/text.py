"""Words of a synthetic case: lesion locations, report snippets, the report, organ captions.

Image numbers: a snippet "series S, image I" refers to slice ``I − 1`` of the volume sorted by
increasing position along the slice normal, i.e. the writer gives slice k InstanceNumber k + 1
(``dicom_node.imaging.writer.write_ct_series`` does). So on a head-first scan image 1 is the
most inferior slice.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from inference.synth.grid import Grid
from inference.synth.labels import STRUCTURE_LABELS as SL
from inference.synth.records import Lesion, Snippet
from inference.vocabulary import LESIONS, STRUCTURES, captions_for

Box = tuple[slice, slice, slice]


def _organ_extent(grid: Grid, box: Box) -> tuple[np.ndarray, np.ndarray]:
    """LPS min and max corners of an index box."""
    corners = np.array(
        [
            grid.index_to_lps((float(s), float(r), float(c)))
            for s in (box[0].start, box[0].stop - 1)
            for r in (box[1].start, box[1].stop - 1)
            for c in (box[2].start, box[2].stop - 1)
        ]
    )
    return corners.min(axis=0), corners.max(axis=0)


def lesion_location(
    kind: str, organ: str, center_lps: Sequence[float], grid: Grid, organ_boxes: dict[str, Box]
) -> str:
    """Radiology words for where a lesion sits, from its position within the organ's extent."""
    box = organ_boxes.get(organ)
    if box is None:
        return organ
    lo, hi = _organ_extent(grid, box)
    span = np.maximum(hi - lo, 1e-3)
    f = (np.asarray(center_lps) - lo) / span  # fractions along x (to patient left), y (back), z (up)
    if kind == "lung nodule":
        side = "right" if organ == "right lung" else "left"
        if side == "right":
            if f[2] > 0.6:
                return "right upper lobe"
            if f[2] > 0.3 and f[1] < 0.5:
                return "right middle lobe"
            return "right lower lobe"
        return "left upper lobe" if f[2] > 0.5 or (f[2] > 0.35 and f[1] < 0.4) else "left lower lobe"
    if kind == "liver lesion":
        if f[2] > 0.85:
            return "hepatic dome"
        return "left hepatic lobe" if f[0] > 0.62 else "right hepatic lobe"
    if kind == "kidney cyst":
        pole = "upper pole" if f[2] > 0.66 else "lower pole" if f[2] < 0.33 else "interpolar region"
        return f"{pole} of the {organ}"
    return organ


_DESCRIPTORS: dict[tuple[str, str], tuple[str, ...]] = {
    ("lung nodule", "solid"): ("solid nodule", "nodule", "solid pulmonary nodule", "noncalcified nodule"),
    ("lung nodule", "ground-glass"): ("ground-glass nodule", "ground glass opacity", "subsolid nodule"),
    ("liver lesion", "hypodense"): (
        "hypodense lesion",
        "hypoattenuating lesion",
        "low-density lesion",
        "focal hypodense lesion",
    ),
    ("kidney cyst", "simple"): ("simple cyst", "cyst", "fluid-density cyst", "cortical cyst"),
}

_SNIPPET_TEMPLATES: tuple[str, ...] = (
    "series {s}, image {i}: {d} mm {desc} in the {loc}",
    "Series {s} image {i}: {desc} in the {loc} measuring {d} mm",
    "{d} mm {desc} in the {loc} (series {s}, image {i})",
    "{desc}, {loc}, {d} mm (series {s}, image {i})",
    "series {s} image {i}: {loc} {desc}, {d} mm",
)


def _fmt_mm(d: float) -> str:
    """Whole millimetres, as reports state lesion sizes."""
    return f"{round(d):d}"


def lesion_phrase(lesion: Lesion, rng: np.random.Generator, *, series_number: int) -> str:
    desc_options = _DESCRIPTORS.get((lesion.kind, lesion.subtype), (lesion.kind,))
    desc = desc_options[int(rng.integers(len(desc_options)))]
    template = _SNIPPET_TEMPLATES[int(rng.integers(len(_SNIPPET_TEMPLATES)))]
    return template.format(
        s=series_number,
        i=lesion.slice_index + 1,
        d=_fmt_mm(lesion.diameter_mm),
        desc=desc,
        loc=lesion.location,
    )


_ORGAN_SNIPPETS: tuple[str, ...] = (
    "series {s}, image {i}: the {name} is unremarkable",
    "Series {s} image {i}: normal {name}",
    "{name} appears normal (series {s}, image {i})",
)


def make_snippets(
    lesions: Sequence[Lesion],
    *,
    grid: Grid,
    organ_boxes: dict[str, Box],
    organ_centroids: dict[str, tuple[float, float, float]],
    rng: np.random.Generator,
    series_number: int,
    n_organ_snippets: int = 3,
) -> tuple[Snippet, ...]:
    """One snippet per lesion (its centroid slice), plus a few normal-organ snippets."""
    z = grid.slice_z_mm
    out: list[Snippet] = []
    for lesion in lesions:
        text = lesion_phrase(lesion, rng, series_number=series_number)
        out.append(
            Snippet(
                text=text,
                slice_index=lesion.slice_index,
                z_mm=float(z[lesion.slice_index]),
                target=lesion.kind,
                point_lps_mm=lesion.center_lps_mm,
            )
        )
    organs = [
        o
        for o in (
            "liver",
            "spleen",
            "left kidney",
            "right kidney",
            "pancreas",
            "urinary bladder",
            "stomach",
            "heart",
            "gallbladder",
        )
        if o in organ_centroids
    ]
    if organs:
        picks = rng.choice(len(organs), size=min(n_organ_snippets, len(organs)), replace=False)
        for k in sorted(int(p) for p in picks):
            name = organs[k]
            c = organ_centroids[name]
            s = int(np.clip(round(c[0]), 0, grid.shape[0] - 1))
            template = _ORGAN_SNIPPETS[int(rng.integers(len(_ORGAN_SNIPPETS)))]
            point = grid.index_to_lps((float(s), c[1], c[2]))
            out.append(
                Snippet(
                    text=template.format(s=series_number, i=s + 1, name=name),
                    slice_index=s,
                    z_mm=float(z[s]),
                    target=name,
                    point_lps_mm=point,
                )
            )
    return tuple(out)


_SECTIONS: tuple[tuple[str, str, str], ...] = (
    ("Lungs", "lung nodule", "No pulmonary nodule."),
    ("Liver", "liver lesion", "No focal liver lesion."),
    ("Kidneys", "kidney cyst", "No renal cyst."),
)


def make_report(
    lesions: Sequence[Lesion],
    *,
    structures_present: Sequence[str],
    protocol: str,
    phase: str,
    series_number: int,
    rng: np.random.Generator,
) -> str:
    """A short structured report; every lesion is cited as "series S, image I"."""
    lines = [
        f"EXAMINATION: CT {protocol.replace('-', ', ')}, {phase} (synthetic case, not a patient).",
        "",
        "FINDINGS:",
    ]
    present = set(structures_present)
    organ_of = {
        "lung nodule": ("left lung", "right lung"),
        "liver lesion": ("liver",),
        "kidney cyst": ("left kidney", "right kidney"),
    }
    impressions: list[str] = []
    for section, kind, normal in _SECTIONS:
        found = [lesion for lesion in lesions if lesion.kind == kind]
        if not found and not any(o in present for o in organ_of[kind]):
            continue
        if not found:
            lines.append(f"{section}: {normal}")
            continue
        parts = []
        for lesion in found:
            desc = _DESCRIPTORS.get((lesion.kind, lesion.subtype), (lesion.kind,))[0]
            ref = f"series {series_number}, image {lesion.slice_index + 1}"
            parts.append(f"{_fmt_mm(lesion.diameter_mm)} mm {desc} in the {lesion.location} ({ref})")
            impressions.append(f"{_fmt_mm(lesion.diameter_mm)} mm {desc}, {lesion.location} ({ref}).")
        lines.append(f"{section}: " + "; ".join(parts) + ".")
    lines += ["", "IMPRESSION:"]
    if impressions:
        lines += [f"{k}. {text[:1].upper()}{text[1:]}" for k, text in enumerate(impressions, start=1)]
    else:
        lines.append("1. No focal lesion.")
    del rng  # the report wording is fixed; kept in the signature for future variation
    return "\n".join(lines) + "\n"


def make_captions(
    structures_present: Sequence[str],
    lesion_kinds: Sequence[str],
    *,
    volumes_ml: dict[str, float],
    rng: np.random.Generator,
) -> dict[str, tuple[str, ...]]:
    """Organ-level captions naming each present structure by its name or synonyms."""
    out: dict[str, tuple[str, ...]] = {}
    for name in structures_present:
        structure = STRUCTURES.get(name)
        if structure is None:
            continue
        texts = list(captions_for(structure, rng, n=4))
        if name in volumes_ml and name in SL and name != "soft tissue":
            texts.append(f"the {name}, volume about {volumes_ml[name]:.0f} mL")
        out[name] = tuple(texts)
    for kind in dict.fromkeys(lesion_kinds):
        out[kind] = captions_for(LESIONS[kind], rng, n=4)
    return out
