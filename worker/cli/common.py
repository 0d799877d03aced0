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


# The short admin commands (jobs, studies): a file that is not there is load_settings' own error,
# and the group's option (``ctnode --config F jobs list``) counts when the command has none.
admin_config_option = click.option(
    "--config",
    "config_path",
    type=click.Path(dir_okay=False),
    default=None,
    help="Settings YAML (default: $CTNODE_CONFIG, else built-in defaults).",
)


def command_settings(ctx: click.Context, config_path: str | None) -> Settings:
    """The command's --config, else the group's, else $CTNODE_CONFIG / defaults; errors end the command."""
    chosen = config_path or (ctx.obj or {}).get("config_path")
    try:
        return load_settings(chosen)
    except NodeError as exc:
        raise click.ClickException(str(exc)) from exc
