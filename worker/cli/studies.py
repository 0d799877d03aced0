"""``ctnode studies``: the studies the node has seen, and re-routing one with the rules in force.

::

    ctnode studies list [--limit N] [--json]
    ctnode studies reroute STUDY_UID [--reason TEXT] [--json]

Settings come from ``--config`` (on the group or a subcommand) or ``$CTNODE_CONFIG``.

``reroute`` is :func:`worker.node.reroute.reroute` (shared with the admin API,
``POST /api/studies/{uid}/reroute``): the study is routed again with the rules in force, new jobs
are queued, earlier ones they replace are superseded (their results withdrawn at each
destination once the new ones are there), and who (``user@host (cli)``) and why are audited.
"""

from __future__ import annotations

import getpass
import json
import socket

import click

from dicom_node.errors import NodeError
from worker.cli.common import admin_config_option, command_settings


def _who() -> str:
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = "?"
    return f"{user}@{socket.gethostname()} (cli)"


@click.group("studies")
@admin_config_option
@click.pass_context
def studies(ctx: click.Context, config_path: str | None) -> None:
    """Studies the node has seen; re-route one with the rules in force."""
    ctx.ensure_object(dict)
    ctx.obj["config_path"] = config_path


@studies.command("list")
@click.option("--limit", default=50, show_default=True, type=click.IntRange(1, 10000))
@click.option("--json", "as_json", is_flag=True, help="JSON instead of a table.")
@admin_config_option
@click.pass_context
def list_studies(ctx: click.Context, limit: int, as_json: bool, config_path: str | None) -> None:
    """Studies, most recently updated first, with their jobs' states."""
    from dicom_node.jobs import JobStore

    settings = command_settings(ctx, config_path)
    with JobStore.open(settings.database_url) as store:
        rows = [(s, store.jobs_for_study(s.study_instance_uid)) for s in store.list_studies(limit=limit)]
    if as_json:
        out = [
            s.model_dump(mode="json") | {"jobs": {j.job_id: j.state.value for j in jobs}} for s, jobs in rows
        ]
        click.echo(json.dumps(out, indent=2))
        return
    if not rows:
        click.echo("no studies")
        return
    click.echo(f"{'updated (UTC)':<19}  {'study instance uid':<64}  {'state':<14}  {'images':>6}  jobs")
    for study, jobs in rows:
        states = ", ".join(f"{j.rule_name}:{j.state.value}" for j in jobs) or "-"
        click.echo(
            f"{study.updated_at:%Y-%m-%d %H:%M:%S}  {study.study_instance_uid:<64}  {study.state:<14}  "
            f"{study.instance_count:>6}  {states}"
        )


@studies.command("reroute")
@click.argument("study_instance_uid")
@click.option("--reason", default="", help="Why (goes into the audit trail).")
@click.option("--json", "as_json", is_flag=True, help="JSON instead of text.")
@admin_config_option
@click.pass_context
def reroute_study(
    ctx: click.Context, study_instance_uid: str, reason: str, as_json: bool, config_path: str | None
) -> None:
    """Route STUDY_UID again with the rules in force (e.g. after a rules change); audited."""
    from worker.context import WorkerContext
    from worker.node.reroute import reroute
    from worker.tasks.app import make_celery

    settings = command_settings(ctx, config_path)
    try:
        context = WorkerContext.open(settings)
    except NodeError as exc:
        raise click.ClickException(str(exc)) from exc
    try:
        outcome = reroute(context, make_celery(settings), study_instance_uid, who=_who(), reason=reason)
    except NodeError as exc:
        raise click.ClickException(str(exc)) from exc
    finally:
        context.close()
    if as_json:
        click.echo(json.dumps(outcome.as_dict(), indent=2))
        return
    click.echo(f"study {study_instance_uid} re-routed with rules {outcome.ruleset_digest[:12]}")
    click.echo(f"  rules fired: {', '.join(outcome.rules_fired) or 'none'}")
    for job_id in outcome.queued:
        click.echo(f"  queued      {job_id}")
    for job_id in outcome.known:
        click.echo(f"  unchanged   {job_id} (the rules in force give this job again)")
    for old, new in outcome.superseded:
        click.echo(f"  superseded  {old} by {new} (its results are withdrawn once {new}'s are delivered)")
    if not outcome.queued:
        click.echo("  nothing queued: the rules in force give the same jobs, or none")
