"""``ctnode pipelines list``: every pipeline this node can run, what it answers, and whether its
weights are installed."""

from __future__ import annotations

import json

import click

from worker.cli.common import config_option, settings_or_exit


@click.group()
def pipelines() -> None:
    """Pipelines: built-in, TotalSegmentator, installed models, entry points."""


@pipelines.command("list")
@click.option("--json", "as_json", is_flag=True, help="One JSON document instead of a table.")
@config_option
def list_pipelines(as_json: bool, config_path: str | None) -> None:
    """Name, version, what it answers, device, and whether it can run here."""
    from inference.registry import registry
    from worker.context import use_model_directory

    settings = settings_or_exit(config_path)
    use_model_directory(settings)
    device = settings.model.device
    rows = []
    for name, info in sorted(registry().items()):
        try:
            version = info.version()
        except Exception as exc:  # a broken plugin or card must not hide the others
            version = f"unreadable ({exc})"
        answers: tuple[str, ...] = ()
        try:
            answers = info.answers()
            missing = info.missing()
        except Exception as exc:
            missing = f"cannot be read: {exc}"
        rows.append(
            {
                "name": name,
                "version": version,
                "source": info.source,
                "answers": list(answers),
                "device": device if info.needs_torch else "cpu",
                "installed": missing is None,
                "missing": missing,
                "fallback": info.fallback,
                "description": info.description,
            }
        )
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    for row in rows:
        state = "ready" if row["installed"] else "NOT INSTALLED"
        listed = [str(a) for a in row["answers"]]  # type: ignore[attr-defined]
        shown = ", ".join(listed[:8]) + (f", … ({len(listed)} in all)" if len(listed) > 8 else "")
        click.echo(f"{row['name']:<28} {state:<14} {row['source']:<17} device={row['device']}")
        click.echo(f"    version: {row['version']}")
        click.echo(f"    {row['description']}")
        if listed:
            click.echo(f"    answers: {shown}")
        if row["missing"]:
            fallback = f" (rules fall back to {row['fallback']})" if row["fallback"] else ""
            click.echo(f"    missing: {row['missing']}{fallback}")
