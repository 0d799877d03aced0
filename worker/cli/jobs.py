"""``ctnode jobs``: look at jobs, their audit trail and deliveries; requeue failed or dead ones.

::

    ctnode jobs list [--state S]... [--study UID] [--since 2h|ISO] [--limit N] [--json]
    ctnode jobs show JOB_ID [--json]
    ctnode jobs retry JOB_ID [--stage inference|delivery] [--destination NAME]... [--reason TEXT]
    ctnode jobs dead [--limit N] [--json]

Settings come from ``--config`` (on the group or a subcommand) or ``$CTNODE_CONFIG``.

``retry`` is :func:`worker.node.requeue.requeue` (shared with the admin API): it resets the job's state
with an audited reason, then sends the Celery task by *name*. It requeues FAILED and DEAD jobs,
and a RUNNING job whose worker is gone (no change for longer than the task's hard time limit).
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta

import click

from dicom_node.contracts import JobState
from dicom_node.errors import NodeError
from dicom_node.jobs import JobNotFound, JobRecord, JobStore
from dicom_node.settings import Settings
from worker.cli.common import admin_config_option, command_settings

_RELATIVE = re.compile(r"^(\d+(?:\.\d+)?)\s*([smhd])$")
_UNIT_S = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_since(text: str, *, now: datetime | None = None) -> datetime:
    """``90s``, ``30m``, ``2h``, ``1d`` (ago) or an ISO 8601 time (UTC when no zone is given)."""
    now = now or datetime.now(UTC)
    match = _RELATIVE.match(text.strip())
    if match:
        return now - timedelta(seconds=float(match.group(1)) * _UNIT_S[match.group(2)])
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        raise click.BadParameter(f"{text!r}: use e.g. 30m, 2h, 1d or 2026-11-23T08:00") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _when(moment: datetime | None) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S") if moment else "-"


def _store(settings: Settings) -> JobStore:
    try:
        return JobStore.open(settings.database_url)
    except NodeError as exc:
        raise click.ClickException(str(exc)) from exc


@click.group("jobs")
@admin_config_option
@click.pass_context
def jobs(ctx: click.Context, config_path: str | None) -> None:
    """Jobs, their audit trail and deliveries; requeue failed or dead jobs."""
    ctx.ensure_object(dict)
    ctx.obj["config_path"] = config_path


def _summary_row(r: JobRecord) -> str:
    reason = r.reason if len(r.reason) <= 60 else r.reason[:57] + "..."
    return (
        f"{_when(r.created_at)}  {r.job_id}  {r.state.value:<10}  {r.priority:<7}  {r.rule_name[:20]:<20}  "
        f"{r.pipeline[:16]:<16}  {r.attempts:>3}  {reason}"
    )


_HEADER = (
    f"{'created (UTC)':<19}  {'job id':<36}  {'state':<10}  {'prio':<7}  {'rule':<20}  {'pipeline':<16}  "
    f"{'try':>3}  reason"
)


def _print_records(records: list[JobRecord], as_json: bool) -> None:
    if as_json:
        click.echo(
            json.dumps(
                [r.model_dump(mode="json", exclude={"job", "result_bundle"}) for r in records], indent=2
            )
        )
        return
    if not records:
        click.echo("no jobs")
        return
    click.echo(_HEADER)
    for r in records:
        click.echo(_summary_row(r))


@jobs.command("list")
@click.option(
    "--state", "states", multiple=True, type=click.Choice([s.value for s in JobState]), help="Repeatable."
)
@click.option("--study", "study_instance_uid", default=None, help="Study Instance UID.")
@click.option("--since", default=None, help="Created since: 30m, 2h, 1d or an ISO time.")
@click.option("--limit", default=50, show_default=True, type=click.IntRange(1, 10000))
@click.option("--json", "as_json", is_flag=True, help="JSON instead of a table.")
@admin_config_option
@click.pass_context
def list_jobs(
    ctx: click.Context,
    states: tuple[str, ...],
    study_instance_uid: str | None,
    since: str | None,
    limit: int,
    as_json: bool,
    config_path: str | None,
) -> None:
    """Jobs, newest first."""
    with _store(command_settings(ctx, config_path)) as store:
        records = store.list_jobs(
            state=[JobState(s) for s in states] or None,
            study_instance_uid=study_instance_uid,
            since=parse_since(since) if since else None,
            limit=limit,
        )
    _print_records(records, as_json)


@jobs.command("dead")
@click.option("--limit", default=50, show_default=True, type=click.IntRange(1, 10000))
@click.option("--json", "as_json", is_flag=True, help="JSON instead of a table.")
@admin_config_option
@click.pass_context
def dead(ctx: click.Context, limit: int, as_json: bool, config_path: str | None) -> None:
    """Dead letters: jobs whose retries ran out (requeue with `ctnode jobs retry`)."""
    with _store(command_settings(ctx, config_path)) as store:
        records = store.dead_letters(limit=limit)
    _print_records(records, as_json)


@jobs.command("show")
@click.argument("job_id")
@click.option("--json", "as_json", is_flag=True, help="JSON instead of text.")
@admin_config_option
@click.pass_context
def show(ctx: click.Context, job_id: str, as_json: bool, config_path: str | None) -> None:
    """One job: its fields, every state change with time and reason, and its deliveries."""
    with _store(command_settings(ctx, config_path)) as store:
        detail = store.job_detail(job_id)
    if detail is None:
        raise click.ClickException(f"no job {job_id}")
    if as_json:
        click.echo(json.dumps(detail.model_dump(mode="json"), indent=2))
        return
    j = detail.job
    lines = [
        f"job          {j.job_id}",
        f"state        {j.state.value}  ({j.reason})",
        f"study        {j.study_instance_uid}",
        f"series       {', '.join(j.job.series_instance_uids)}",
        f"rule         {j.rule_name}  (rule set {j.ruleset_digest[:12]})",
        f"pipeline     {j.pipeline}  model {j.model_version}",
        f"priority     {j.priority}{'  shadow' if j.shadow else ''}",
        f"destinations {', '.join(j.destinations) or '-'}",
        f"attempts     {j.attempts}  worker {j.worker or '-'}",
        f"created      {_when(j.created_at)}  updated {_when(j.updated_at)}",
    ]
    if j.superseded_by:
        lines.append(f"superseded   by {j.superseded_by}")
    if j.timings_s:
        lines.append("timings (s)  " + ", ".join(f"{k} {v:.2f}" for k, v in sorted(j.timings_s.items())))
    if j.result_bundle:
        lines.append(f"results      {len(j.result_bundle.files)} files")
        lines += [f"  {f.role:<12} {f.sop_instance_uid}  {f.path}" for f in j.result_bundle.files]
    lines.append("events")
    for e in detail.events:
        origin = e.from_state.value if e.from_state else "-"
        lines.append(f"  {_when(e.at)}  {origin:>10} → {e.to_state.value:<10}  {e.reason}")
    lines.append("deliveries" if detail.deliveries else "deliveries   none")
    for d in detail.deliveries:
        confirmed = "confirmed" if d.confirmed else "unconfirmed"
        lines.append(
            f"  {d.destination:<16} {d.state.value:<10} attempts {d.attempts}  "
            f"delivered {len(d.delivered_sop_instance_uids)}  failed {len(d.failed)}  {confirmed}"
        )
        lines += [f"    failed  {uid}: {why}" for uid, why in d.failed.items()]
        lines += [f"    warning {uid}: {why}" for uid, why in d.warnings.items()]
        if d.last_error:
            lines.append(f"    last error: {d.last_error}")
        if d.confirmation_detail:
            lines.append(f"    {d.confirmation_detail}")
        if d.first_failed_at is not None:
            lines.append(
                f"    failing since {_when(d.first_failed_at)}; next attempt {_when(d.next_attempt_at)}"
            )
    if detail.withdrawals:
        lines.append("withdrawn (superseded results taken back)")
    for w in detail.withdrawals:
        lines.append(
            f"  {w.destination:<16} {w.state.value:<11} {w.method or '-'}  "
            f"{len(w.sop_instance_uids)} object(s)  by job {w.by_job_id}"
        )
        lines.append(f"    {w.detail}")
    click.echo("\n".join(lines))


@jobs.command("retry")
@click.argument("job_id")
@click.option(
    "--stage",
    type=click.Choice(["inference", "delivery"]),
    default=None,
    help="What to redo (default: delivery when the job has results, else inference).",
)
@click.option("--destination", "destinations", multiple=True, help="Delivery only: these destinations.")
@click.option("--reason", default="", help="Why (goes into the audit trail).")
@admin_config_option
@click.pass_context
def retry(
    ctx: click.Context,
    job_id: str,
    stage: str | None,
    destinations: tuple[str, ...],
    reason: str,
    config_path: str | None,
) -> None:
    """Requeue a failed, dead or abandoned (stale running) job."""
    from dicom_node.constants import TASK_DELIVER
    from worker.node.requeue import requeue
    from worker.tasks.app import make_celery

    settings = command_settings(ctx, config_path)
    with _store(settings) as store:
        app = make_celery(settings, include=[])
        try:
            outcome = requeue(
                store,
                app,
                settings,
                job_id,
                stage="delivery" if stage == "delivery" else ("inference" if stage else None),
                destinations=destinations,
                reason=reason,
            )
        except JobNotFound:
            raise click.ClickException(f"no job {job_id}") from None
        except NodeError as exc:
            raise click.ClickException(str(exc)) from exc
    for message in outcome.messages:
        if message.task == TASK_DELIVER:
            click.echo(
                f"requeued delivery of job {job_id} to {message.args[1]}: {message.task} → {message.queue}"
            )
        else:
            click.echo(f"requeued job {job_id}: {message.task} → {message.queue}")
