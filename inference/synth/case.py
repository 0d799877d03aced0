"""``make_case``: one synthetic CT case (volume, truth, lesions, snippets, report, captions)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Literal

import numpy as np
from scipy import ndimage as ndi

from inference.synth.anatomy import draw_body_plan
from inference.synth.appearance import Appearance, Phase, draw_appearance, render
from inference.synth.canvas import Canvas
from inference.synth.grid import Grid, PatientPosition
from inference.synth.labels import LABEL_NAMES, composites_present, names_present
from inference.synth.lesions import PlacedLesion, place_lesions
from inference.synth.phantom import choose_geometry, paint_phantom
from inference.synth.records import Lesion, SynthCase
from inference.synth.text import lesion_location, make_captions, make_report, make_snippets

Mode = Literal["phantom", "template"]


def make_case(
    seed: int,
    *,
    mode: Mode = "phantom",
    shape: tuple[int, int, int] | None = None,
    spacing_mm: tuple[float, float, float] | None = None,
    lesions: bool = True,
    template_dir: Path | None = None,
    series_number: int = 3,
    patient_position: PatientPosition | None = None,
    phase: Phase | None = None,
) -> SynthCase:
    """A reproducible synthetic CT case: the same arguments always give identical arrays.

    ``shape`` is (slices, rows, columns); None picks a realistic 512×512 scan. ``spacing_mm`` is
    (slice, row, column) spacing; None picks one that fits the body in the field of view.
    ``mode="template"`` renders a real label map (TotalSegmentator classes, ``template_dir``,
    default ``../shared/data/totalseg-examples/subject_a``) with random deformation and HU.
    ``patient_position`` ("HFS"/"FFS") and ``phase`` override the random draw (the draw still
    happens, so other properties of the case stay those of its seed).
    """
    rng = np.random.default_rng(seed)
    if mode == "template":
        from inference.synth.template import render_template  # nibabel is imported there, lazily

        canvas, appearance, name, protocol, position = render_template(
            rng,
            shape=shape,
            spacing_mm=spacing_mm,
            template_dir=template_dir,
            position=patient_position,
            phase=phase,
        )
        source = f"template:{name}"
    elif mode == "phantom":
        plan = draw_body_plan(rng)
        geometry = choose_geometry(rng, plan, shape=shape, spacing_mm=spacing_mm, position=patient_position)
        canvas = Canvas(geometry.grid)
        paint_phantom(canvas, plan, rng)
        appearance = draw_appearance(rng, phase=phase)
        source, protocol, position = "phantom", geometry.protocol, geometry.position
    else:
        raise ValueError(f"mode must be 'phantom' or 'template', not {mode!r}")
    return finish_case(
        canvas,
        appearance,
        rng,
        seed=seed,
        source=source,
        protocol=protocol,
        position=position,
        lesions=lesions,
        series_number=series_number,
    )


def finish_case(
    canvas: Canvas,
    appearance: Appearance,
    rng: np.random.Generator,
    *,
    seed: int,
    source: str,
    protocol: str,
    position: str,
    lesions: bool,
    series_number: int,
) -> SynthCase:
    """Lesions, rendering and words: shared by the phantom and the template mode."""
    grid = canvas.grid
    if lesions:
        lesion_map, placed = place_lesions(canvas, appearance, rng)
    else:
        lesion_map, placed = np.zeros(grid.shape, dtype=np.uint8), []
    hu = render(canvas.tissue, appearance, rng, spacing_mm=grid.spacing_mm)
    labels = canvas.labels
    present = names_present(labels)
    structures = tuple(present.values()) + composites_present(present)
    objects = ndi.find_objects(labels)
    organ_boxes = {LABEL_NAMES[v]: objects[v - 1] for v in present if v - 1 < len(objects) and objects[v - 1]}
    centroids = _centroids(labels, organ_boxes)
    final = tuple(_finish_lesion(p, hu, lesion_map, grid, organ_boxes) for p in placed)
    snippets = make_snippets(
        final,
        grid=grid,
        organ_boxes=organ_boxes,
        organ_centroids=centroids,
        rng=rng,
        series_number=series_number,
    )
    report = make_report(
        final,
        structures_present=structures,
        protocol=protocol,
        phase=appearance.phase,
        series_number=series_number,
        rng=rng,
    )
    voxel_ml = float(np.prod(grid.spacing_mm)) / 1000.0
    counts = np.bincount(labels.ravel(), minlength=256)
    volumes = {name: float(counts[v]) * voxel_ml for v, name in present.items()}
    captions = make_captions(structures, [lesion.kind for lesion in final], volumes_ml=volumes, rng=rng)
    return SynthCase(
        hu=hu,
        affine_lps=grid.affine_lps.copy(),
        labels=labels,
        label_names=present,
        lesion_labels=lesion_map,
        lesions=final,
        snippets=snippets,
        report=report,
        captions=captions,
        seed=seed,
        source=source,
        series_number=series_number,
        phase=appearance.phase,
        protocol=protocol,
        patient_position=position,
        structures_present=structures,
    )


def _centroids(
    labels: np.ndarray, boxes: dict[str, tuple[slice, slice, slice]]
) -> dict[str, tuple[float, float, float]]:
    from inference.synth.labels import STRUCTURE_LABELS

    out = {}
    for name, box in boxes.items():
        idx = np.argwhere(labels[box] == STRUCTURE_LABELS[name])
        if idx.size:
            c = idx.mean(axis=0) + [b.start for b in box]
            out[name] = (float(c[0]), float(c[1]), float(c[2]))
    return out


def _finish_lesion(
    p: PlacedLesion,
    hu: np.ndarray,
    lesion_map: np.ndarray,
    grid: Grid,
    organ_boxes: dict[str, tuple[slice, slice, slice]],
) -> Lesion:
    s0, r0, c0, s1, r1, c1 = p.box_voxels
    box = (slice(s0, s1 + 1), slice(r0, r1 + 1), slice(c0, c1 + 1))
    mean_hu = float(hu[box][lesion_map[box] == p.label_value].mean())
    center = grid.index_to_lps(p.center_index)
    location = lesion_location(p.kind, p.organ, center, grid, organ_boxes)
    slice_index = int(np.clip(round(p.center_index[0]), s0, s1))
    return Lesion(
        kind=p.kind,
        organ=p.organ,
        label_value=p.label_value,
        box_voxels=p.box_voxels,
        center_lps_mm=center,
        diameter_mm=p.diameter_mm,
        mean_hu=round(mean_hu, 1),
        subtype=p.subtype,
        location=location,
        slice_index=slice_index,
    )


def timed_case(seed: int, **kwargs: object) -> tuple[SynthCase, float]:
    """``make_case`` and its wall time in seconds (for benchmarks)."""
    t0 = time.perf_counter()
    case = make_case(seed, **kwargs)  # type: ignore[arg-type]
    return case, time.perf_counter() - t0
