"""Options and helpers shared by the node's long-running commands."""

from __future__ import annotations

import click

from dicom_node.errors import NodeError
from dicom_node.phi import configure_logging
from dicom_node.settings import Settings, load_settings

config_option = click.option(
    "--config",
    "config_path",
    type=click.Path(dir_okay=False, exists=True),
    default=None,
    help="Settings YAML (default: $CTNODE_CONFIG, else built-in defaults).",
)


def settings_or_exit(config_path: str | None) -> Settings:
    """Load settings; a bad file ends the command with the problem and where it is."""
    try:
        settings = load_settings(config_path)
    except NodeError as exc:
        raise click.ClickException(str(exc)) from exc
    configure_logging(settings.log_level)
    return settings
