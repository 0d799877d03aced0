"""``ctnode model import PATH --name NAME``: install a model folder or zip, offline, with a card.

Added to the ``ctnode model`` group (``worker.cli.model``, the research model's commands) by
:data:`model`, so both live under one command without sharing a module.
"""

from __future__ import annotations

from pathlib import Path

import click

from worker.cli.common import config_option, settings_or_exit
from worker.cli.model import model


@model.command("import")
@click.argument("path", type=click.Path(exists=True, path_type=Path))
@click.option(
    "--name", required=True, help="Installed name: the pipeline becomes nnunet:NAME or bundle:NAME."
)
@click.option("--licence", default=None, help="Licence of the weights (default: what the model states).")
@click.option("--version", "model_version", default=None, help="Version (default: what the model states).")
@click.option("--tile-step", type=float, default=None, help="nnU-Net sliding-window step (default 0.5).")
@click.option("--mirroring/--no-mirroring", default=None, help="nnU-Net test-time mirroring (default off).")
@click.option(
    "--orientation",
    type=click.Choice(["RAS", "as-is"]),
    default=None,
    help="Array layout the nnU-Net model was trained on (default RAS, as TotalSegmentator).",
)
@click.option("--replace", is_flag=True, help="Replace an installed model of the same name.")
@config_option
def import_model_cmd(
    path: Path,
    name: str,
    licence: str | None,
    model_version: str | None,
    tile_step: float | None,
    mirroring: bool | None,
    orientation: str | None,
    replace: bool,
    config_path: str | None,
) -> None:
    """Install the nnU-Net v2 model folder or MONAI bundle at PATH (folder or zip) as NAME."""
    from inference.installed.card import ModelError, installed_dir
    from inference.installed.importer import import_model
    from worker.context import use_model_directory

    settings = settings_or_exit(config_path)
    use_model_directory(settings)
    options: dict[str, object] = {}
    if tile_step is not None:
        options["tile_step_size"] = tile_step
    if mirroring is not None:
        options["use_mirroring"] = mirroring
    if orientation is not None:
        options["orientation"] = orientation
    try:
        card = import_model(
            path, name=name, licence=licence, version=model_version, replace=replace, options=options
        )
    except ModelError as exc:
        raise click.ClickException(str(exc)) from exc
    prefix = "nnunet" if card.kind == "nnunet" else "bundle"
    click.echo(f"installed {prefix}:{card.name} ({card.version_tag}) in {installed_dir() / card.name}")
    click.echo(f"  licence: {card.licence}; version: {card.version}; {len(card.files)} file(s) hashed")
    click.echo(f"  classes: {', '.join(card.classes.values())}")
    if card.kind == "nnunet" and card.nnunet.get("dataset_id") is not None:
        click.echo(f"  nnU-Net dataset {card.nnunet['dataset']}, folds {', '.join(card.nnunet['folds'])}")


__all__ = ["model"]
