"""``ctnode worker``: a Celery worker running the node's tasks (routing, inference, delivery)."""

from __future__ import annotations

import click

from dicom_node.constants import QUEUES
from worker.cli.common import config_option, settings_or_exit


@click.command(context_settings={"ignore_unknown_options": True})
@config_option
@click.option(
    "--queues",
    "-Q",
    default=",".join(QUEUES),
    show_default=True,
    help="Comma-separated queues: a GPU machine takes inference-stat,inference(,inference-shadow); a CPU "
    "one routing,delivery. Shadow jobs run on inference-shadow: a worker that also takes inference runs "
    "them only when no real job waits; a worker on inference-shadow alone runs them at once.",
)
@click.option("--concurrency", "-c", type=int, default=1, show_default=True, help="Pool processes.")
@click.option("--loglevel", default="INFO", show_default=True)
@click.option("--hostname", "-n", default=None, help="Celery node name (default celery@<host>).")
def worker(
    config_path: str | None, queues: str, concurrency: int, loglevel: str, hostname: str | None
) -> None:
    """Run the node's tasks. Prefork pool: each child keeps its pipeline (and model) loaded between
    jobs, and Celery's hard time limit can kill a stuck child."""
    from worker.tasks.app import make_celery
    from worker.tasks.runtime import WorkerRuntime
    from worker.tasks.shells import recover_orphans, register

    settings = settings_or_exit(config_path)
    unknown = [q for q in queues.split(",") if q and q not in QUEUES]
    if unknown:
        raise click.ClickException(f"unknown queue(s) {', '.join(unknown)}; known: {', '.join(QUEUES)}")
    from worker.context import use_model_directory
    from worker.pipeline_choice import problems_for_settings

    use_model_directory(settings)
    for problem in problems_for_settings(settings):  # loud at start: weights not installed
        level = "warning" if problem.fallback else "ERROR"
        click.echo(f"ctnode worker: {level}: {problem}", err=True)
    app = make_celery(settings)
    runtime = WorkerRuntime(settings, queues=[q for q in queues.split(",") if q])
    register(app, runtime)
    recovered = recover_orphans(app, runtime.context())
    if recovered:
        click.echo(f"ctnode worker: requeued {len(recovered)} job(s) left running by a dead worker")
    argv = [
        "worker",
        f"--queues={queues}",
        f"--concurrency={concurrency}",
        f"--loglevel={loglevel}",
        "--pool=prefork",
    ]
    if hostname:
        argv.append(f"--hostname={hostname}")
    app.worker_main(argv)
