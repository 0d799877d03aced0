"""``ctnode serve``: the DICOM SCP, study completion, STOW-RS and the admin API in one process."""

from __future__ import annotations

import os
import signal
import threading

import click

from dicom_node.errors import NodeError
from worker.cli.common import config_option, settings_or_exit


@click.command()
@config_option
@click.option("--port", type=int, default=None, help="DICOM port (default: dicom.port from settings).")
@click.option("--api-port", type=int, default=None, help="HTTP port (default: api.port from settings).")
@click.option(
    "--with-worker/--no-worker",
    default=None,
    help="Also run one worker process (default: queue.in_process_worker; the embedded setup).",
)
def serve(config_path: str | None, port: int | None, api_port: int | None, with_worker: bool | None) -> None:
    """Receive CT studies (C-STORE, STOW-RS), decide when each is complete, queue its routing."""
    from worker.node.service import NodeService

    settings = settings_or_exit(config_path)
    embedded = settings.queue.in_process_worker if with_worker is None else with_worker
    try:
        node = NodeService(
            settings, dicom_port=port, api_port=api_port, with_worker=embedded, config_path=config_path
        )
        node.start()
    except NodeError as exc:
        hint = ""
        if config_path is None and not os.environ.get("CTNODE_CONFIG"):
            hint = "\n(no settings file given: built-in defaults; try --config configs/node.yaml)"
        raise click.ClickException(f"{exc}{hint}") from exc
    status = node.status()
    click.echo(
        f"ctnode serve: {settings.dicom.ae_title} on DICOM port {status['dicom_port']}, "
        f"HTTP port {status['api_port']}" + (", with a worker" if embedded else "")
    )
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    stop.wait()
    click.echo("ctnode serve: stopping")
    node.stop()
