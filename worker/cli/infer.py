"""``ctnode infer DICOM_DIR --out OUT_DIR``: the worker's pipeline and encoders on a folder, no queue."""

from __future__ import annotations

import time
from collections import defaultdict
from pathlib import Path

import click

from dicom_node.constants import INPUT_SOP_CLASSES
from dicom_node.errors import NodeError
from dicom_node.identity import job_id_for, sop_set_digest
from dicom_node.result_kinds import check_role, known_roles
from dicom_node.routing.manifest import read_headers
from worker.cli.common import config_option, settings_or_exit


def roles_from_options(objects: str, seg_type: str) -> set[str]:
    """``--objects`` (result kinds, comma-separated) with the ``--seg-type`` shorthand applied."""
    roles = {check_role(o.strip()) for o in objects.split(",") if o.strip()}
    if "seg" in roles and seg_type in ("labelmap", "both"):
        roles.add("seg-labelmap")
        if seg_type == "labelmap":
            roles.discard("seg")
    return roles


def pick_series(dicom_dir: Path, series_uid: str | None) -> tuple[str, list[Path]]:
    """The CT series to analyse: ``series_uid``, else the one with the most images."""
    scan = read_headers(dicom_dir)
    by_series: dict[str, list[Path]] = defaultdict(list)
    for ds in scan.datasets:
        sop_class = str(ds.get("SOPClassUID", ""))
        if sop_class in INPUT_SOP_CLASSES:
            by_series[str(ds.SeriesInstanceUID)].append(Path(ds.filename))
    if not by_series:
        raise click.ClickException(
            f"no CT image found under {dicom_dir} ({len(scan.skipped)} file(s) could not be read as DICOM)"
        )
    if series_uid is not None:
        if series_uid not in by_series:
            raise click.ClickException(
                f"series {series_uid} not found; CT series here: {', '.join(by_series)}"
            )
        return series_uid, by_series[series_uid]
    chosen = max(by_series, key=lambda uid: len(by_series[uid]))
    return chosen, by_series[chosen]


@click.command()
@click.argument("dicom_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False, path_type=Path))
@click.option("--pipeline", default="ct-anatomy-basic", show_default=True, help="Registered pipeline name.")
@click.option(
    "--prompt", "prompts", multiple=True, help="A prompt (repeatable): 'liver', 'detect: lung nodule', …"
)
@click.option(
    "--series", "series_uid", default=None, help="SeriesInstanceUID (default: the largest CT series)."
)
@click.option(
    "--objects",
    default="seg,sr,gsps",
    show_default=True,
    help="Result objects to write (comma-separated): any of " + ", ".join(known_roles()) + ".",
)
@click.option(
    "--seg-type",
    type=click.Choice(["binary", "labelmap", "both"]),
    default="binary",
    show_default=True,
    help="Shorthand: which SEG 'seg' in --objects means.",
)
@config_option
def infer(
    dicom_dir: Path,
    out_dir: Path,
    pipeline: str,
    prompts: tuple[str, ...],
    series_uid: str | None,
    objects: str,
    seg_type: str,
    config_path: str | None,
) -> None:
    """Run PIPELINE on the CT series in DICOM_DIR and write SEG, SR, GSPS and a preview to OUT_DIR."""
    from dicom_node.imaging.reader import load_series
    from dicom_node.results.preview import render_preview
    from inference.contracts import VolumeInput, parse_prompt
    from inference.registry import get_pipeline, info, pipeline_version
    from worker.context import use_model_directory
    from worker.steps.compute import write_results

    settings = settings_or_exit(config_path)
    use_model_directory(settings)
    try:
        roles = roles_from_options(objects, seg_type)
        requests = [parse_prompt(p) for p in prompts]
    except ValueError as exc:
        raise click.ClickException(str(exc)) from exc
    try:
        needs_torch = info(pipeline).needs_torch
    except KeyError as exc:
        raise click.ClickException(str(exc.args[0])) from exc
    series_uid, paths = pick_series(dicom_dir, series_uid)
    timings: dict[str, float] = {}
    try:
        t = time.perf_counter()
        series = load_series(paths)
        timings["load"] = time.perf_counter() - t
        t = time.perf_counter()
        runner = get_pipeline(pipeline)
        requests = requests or [parse_prompt(p) for p in runner.default_prompts]
        volume = VolumeInput(hu=series.hu, affine_lps=series.affine_lps)
        outputs = runner.run(volume, requests)
        timings["inference"] = time.perf_counter() - t
        # The node's job id scheme (with "infer" for the rules): same input → same result UIDs.
        job_id = job_id_for(
            study_instance_uid=str(series.datasets[0].StudyInstanceUID),
            series_instance_uids=[series_uid],
            pipeline=pipeline,
            model_version=pipeline_version(pipeline),
            ruleset_digest="infer:" + "|".join(prompts),
            sop_digest=sop_set_digest(series.sop_instance_uids),
        )
        t = time.perf_counter()
        written = write_results(
            settings,
            job_id=job_id,
            series=series,
            volume=volume,
            outputs=outputs,
            out_dir=out_dir,
            roles=roles,
            ai_model=needs_torch,
            content_datetime=None,
        )
        timings["encode"] = time.perf_counter() - t
    except (NodeError, ValueError) as exc:
        raise click.ClickException(str(exc)) from exc
    preview = render_preview(
        series.hu,
        written.labelmap,
        segments=written.analysis.segments,
        findings=written.analysis.findings,
        out_path=out_dir / "preview.png",
        sources=series.datasets,
    )
    click.echo(f"{pipeline} {outputs.model_version} on {len(paths)} images ({series.hu.shape[0]} slices)")
    for seg in outputs.segments:
        click.echo(f"  {seg.name:<16} {seg.description}")
    for det in outputs.detections:
        click.echo(f"  {det.name:<16} {det.description}")
    for loc in outputs.localisations:
        click.echo(f"  snippet → slice {loc.slice_index} (z {loc.z_mm:.1f} mm): {loc.text}")
    for miss in outputs.unmatched:
        click.echo(f"  '{miss.prompt}': {miss.reason}")
    for f in written.bundle.files:
        click.echo(f"  wrote {f.role.upper():<12} {f.path}")
    click.echo(f"  preview {preview}")
    click.echo("  timings: " + ", ".join(f"{k} {v:.2f} s" for k, v in timings.items()))
