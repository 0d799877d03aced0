"""``ctnode synth-study OUT_DIR``: a synthetic CT study (DICOM series + truth + report) on disk.

The work is :func:`worker.demo.synth_study.make_synthetic_study`; this is only its command line. The
output never names the patient (even a synthetic one): UIDs, counts and paths only.
"""

from __future__ import annotations

from pathlib import Path

import click


@click.command("synth-study")
@click.argument("out_dir", type=click.Path(file_okay=False, path_type=Path))
@click.option("--seed", default=7, show_default=True, help="Same seed and options → same pixels and UIDs.")
@click.option(
    "--slices",
    type=click.IntRange(1, 2000),
    default=None,
    help="Number of slices (default: cover the seed's body region at --slice-spacing).",
)
@click.option(
    "--slice-spacing",
    "slice_spacing_mm",
    type=click.FloatRange(0.1, 20.0),
    default=2.5,
    show_default=True,
    help="Slice spacing and thickness (mm).",
)
@click.option(
    "--pixel-spacing",
    "pixel_spacing_mm",
    type=click.FloatRange(0.1, 5.0),
    default=None,
    help="In-plane pixel size (mm; default: a 461 mm field of view).",
)
@click.option(
    "--matrix", type=click.IntRange(16, 1024), default=512, show_default=True, help="Rows = columns."
)
@click.option("--lesions/--no-lesions", default=True, show_default=True, help="Add lesions (in truth.npz).")
@click.option(
    "--mode",
    type=click.Choice(["phantom", "template"]),
    default="phantom",
    show_default=True,
    help="Procedural phantom, or the TotalSegmentator example label map re-rendered.",
)
@click.option("--series-number", type=click.IntRange(1, 99999), default=3, show_default=True)
@click.option("--patient-name", default=None, help="DICOM PN (default SYNTHETIC^PHANTOM<seed>).")
@click.option("--patient-id", default=None, help="Default SYN<seed, 8 digits>.")
@click.option(
    "--uid-root",
    default="1.2.826.0.1.3680043.8.498.",
    show_default=True,
    help="Root of the study, series and instance UIDs.",
)
def synth_study(
    out_dir: Path,
    seed: int,
    slices: int | None,
    slice_spacing_mm: float,
    pixel_spacing_mm: float | None,
    matrix: int,
    lesions: bool,
    mode: str,
    series_number: int,
    patient_name: str | None,
    patient_id: str | None,
    uid_root: str,
) -> None:
    """Write a synthetic CT study to OUT_DIR: dicom/*.dcm, truth.npz, report.txt, study.json."""
    from worker.demo.synth_study import make_synthetic_study

    if (out_dir / "dicom").exists() and any((out_dir / "dicom").iterdir()):
        raise click.ClickException(f"{out_dir / 'dicom'} is not empty: choose a new OUT_DIR")
    try:
        study = make_synthetic_study(
            out_dir,
            seed=seed,
            slices=slices,
            slice_spacing_mm=slice_spacing_mm,
            pixel_spacing_mm=pixel_spacing_mm,
            matrix=matrix,
            lesions=lesions,
            mode="template" if mode == "template" else "phantom",
            series_number=series_number,
            patient_name=patient_name,
            patient_id=patient_id,
            uid_root=uid_root,
        )
    except (ValueError, FileNotFoundError) as exc:
        raise click.ClickException(str(exc)) from exc
    _, r, c = study.shape
    dz, dr, _ = study.spacing_mm
    click.echo(
        f"{len(study.dicom_paths)} CT images {r}×{c} ({study.protocol}, {dz:g} mm slices, {dr:.2f} mm pixels)"
    )
    click.echo(f"  study  {study.study_instance_uid}")
    click.echo(f"  series {study.series_instance_uid}")
    click.echo(f"  structures: {', '.join(sorted(study.label_names.values()))}")
    for lesion in study.lesions:
        click.echo(f"  lesion: {lesion.kind}, {lesion.diameter_mm:.0f} mm, image {lesion.slice_index + 1}")
    timing = ", ".join(f"{k} {v:.1f} s" for k, v in study.seconds.items())
    click.echo(f"  wrote {out_dir}/{{dicom/, truth.npz, report.txt, study.json}} ({timing})")
