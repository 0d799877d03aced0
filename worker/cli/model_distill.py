"""``ctnode model distill`` and ``ctnode model import-seg``: nnU-Net raw training datasets from
DICOM, labelled by an installed pipeline (a teacher) or by the DICOM SEGs beside the CT.

Added to the ``ctnode model`` group (``worker.cli.model`` → ``model_import`` → here).

Distillation runs the teacher through the registry (``inference.registry``: ct-anatomy-basic
always; ``nnunet:NAME`` / ``totalsegmentator`` when installed) on every CT series of a folder
and writes ``imagesTr``/``labelsTr``/``dataset.json`` with the teacher's name and version per
case and a dataset card. Case ids are hashes of the study and series UIDs
(``worker.datasets.case_ids``); a case already written is skipped, so an interrupted run resumes.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Any

import click

from worker.cli.common import config_option, settings_or_exit
from worker.cli.model_import import model


def ct_series(folder: Path) -> list[tuple[str, str, list[Path]]]:
    """``(study UID, series UID, files)`` of every CT series under ``folder`` (sorted by UID)."""
    from dicom_node.constants import INPUT_SOP_CLASSES
    from dicom_node.routing.manifest import read_headers

    by_series: dict[tuple[str, str], list[Path]] = defaultdict(list)
    for ds in read_headers(folder).datasets:
        if str(ds.get("SOPClassUID", "")) in INPUT_SOP_CLASSES:
            by_series[(str(ds.StudyInstanceUID), str(ds.SeriesInstanceUID))].append(Path(ds.filename))
    return [(study, series, sorted(paths)) for (study, series), paths in sorted(by_series.items())]


def distill_folder(
    teacher: str, studies: Path, out: Path, *, prompts: tuple[str, ...] = (), progress: bool = True
) -> dict[str, Any]:
    """Label every CT series under ``studies`` with ``teacher``; returns counts and the card path."""
    import numpy as np

    from dicom_node.imaging.reader import load_series
    from inference.contracts import VolumeInput, parse_prompt
    from inference.datasets.card import write_dataset_card
    from inference.datasets.names import map_names
    from inference.datasets.nnunet import NnUNetWriter, read_nnunet
    from inference.registry import get_pipeline, pipeline_version
    from worker.datasets.case_ids import case_id_for

    version = pipeline_version(teacher)
    info = {
        "name": out.name,
        "description": f"teacher labels: {teacher} {version} over CT series of a DICOM folder",
        "teacher": {"name": teacher, "version": version},
    }
    writer = NnUNetWriter(out, {}, info)
    found = ct_series(studies)
    written = skipped = 0
    unknown: set[str] = set()
    runner = None
    with click.progressbar(found, label=f"distill {teacher}", hidden=not progress) as bar:
        for study_uid, series_uid, paths in bar:
            case_id = case_id_for(study_uid, series_uid)
            if writer.has(case_id):
                skipped += 1
                continue
            series = load_series(paths)
            runner = runner or get_pipeline(teacher)
            requests = [parse_prompt(p) for p in (prompts or runner.default_prompts)]
            outputs = runner.run(VolumeInput(hu=series.hu, affine_lps=series.affine_lps), requests)
            mapping = map_names(s.name for s in outputs.segments)
            unknown.update(mapping.unknown)
            labelmap = np.zeros(outputs.labelmap.shape, dtype=np.uint8)
            for seg in outputs.segments:
                canonical = mapping.mapped.get(seg.name)
                if canonical is None:
                    continue
                labelmap[outputs.labelmap == seg.label_value] = writer.label_value(canonical)
            writer.write(
                case_id,
                series.hu,
                series.affine_lps,
                labelmap,
                {"teacher": teacher, "teacher_version": outputs.model_version or version, "source": "dicom"},
            )
            written += 1
    writer.info["unknown_names"] = sorted(unknown | set(writer.info.get("unknown_names", [])))
    writer.flush()
    card = write_dataset_card(read_nnunet(out), out)
    return {"written": written, "skipped": skipped, "series": len(found), "card": str(card)}


@model.command("distill")
@click.option(
    "--teacher", required=True, help="Installed pipeline: ct-anatomy-basic, nnunet:NAME, totalsegmentator…"
)
@click.option(
    "--studies",
    required=True,
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    help="Folder of DICOM CT series (any layout); every CT series becomes a case.",
)
@click.option(
    "--out",
    required=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="nnU-Net raw dataset folder.",
)
@click.option("--prompt", "prompts", multiple=True, help="Prompts for the teacher (default: its own).")
@click.option("--quiet", is_flag=True, help="No progress bar.")
@config_option
def distill(
    teacher: str, studies: Path, out: Path, prompts: tuple[str, ...], quiet: bool, config_path: str | None
) -> None:
    """Write TEACHER's labels of every CT series in STUDIES as an nnU-Net raw dataset (resumable)."""
    from inference.registry import PipelineUnavailable, info
    from worker.context import use_model_directory

    use_model_directory(settings_or_exit(config_path))
    try:
        info(teacher)
    except KeyError as exc:
        raise click.ClickException(str(exc.args[0])) from exc
    try:
        result = distill_folder(teacher, studies, out, prompts=prompts, progress=not quiet)
    except PipelineUnavailable as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(
        f"{result['written']} case(s) written, {result['skipped']} already there, "
        f"{result['series']} CT series; card {result['card']}"
    )


@model.command("import-seg")
@click.option(
    "--dicom",
    "dicom_dir",
    required=True,
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    help="Folder with CT series and the DICOM SEGs that reference them.",
)
@click.option("--out", required=True, type=click.Path(file_okay=False, path_type=Path))
@click.option("--quiet", is_flag=True)
def import_seg(dicom_dir: Path, out: Path, quiet: bool) -> None:
    """Write every CT + SEG pair in DICOM_DIR as an nnU-Net raw dataset (for training)."""
    from worker.datasets.dicom_seg import write_pairs_as_nnunet

    result = write_pairs_as_nnunet(dicom_dir, out, progress=not quiet)
    click.echo(
        f"{result['written']} case(s) written, {result['skipped']} already there; card {result['card']}"
    )
    if result["unknown"]:
        click.echo("names outside the vocabulary (not written): " + ", ".join(result["unknown"]))
