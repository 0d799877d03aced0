"""``ctnode rules``: check a rules file, dry-run the rules on a folder of DICOM files, print the schema.

* ``ctnode rules check [FILE] [--config NODE_YAML]`` — validate (default: the settings' rules
  file) against the pipelines available here and the destinations the node settings define
  (``--config``, ``$CTNODE_CONFIG``, else the ``node.yaml`` beside the rules file, else
  ``configs/node.yaml``: so ``ctnode rules check configs/routing.yaml`` checks the shipped pair);
  prints ``OK`` with the rule count, digest and the settings used, or every error as
  ``file:line``; exit 1 on error.
* ``ctnode rules test DICOM_DIR [--rules FILE] [--calling-ae AE] [--called-ae AE] [--json]`` —
  build the manifest of each study under DICOM_DIR (any layout, recursive), evaluate the rules and
  print which fire and why, which do not (with the failing condition), the selected series and the
  jobs that would be created. A dry run: nothing is queued or sent.
* ``ctnode rules schema`` — the JSON Schema of the rules file (``configs/routing.schema.json``
  is this output; regenerate it with ``ctnode rules schema > configs/routing.schema.json``).
"""

from __future__ import annotations

import json
import os
import re
import sys
from collections.abc import Collection
from datetime import UTC, datetime
from pathlib import Path
from typing import NoReturn

import click

from dicom_node.contracts import Job, StudyManifest, StudySource
from dicom_node.errors import ConfigError, PermanentError
from dicom_node.routing import (
    RoutingDecision,
    RulesConfigError,
    RuleSet,
    build_manifest_from_headers,
    evaluate,
    group_by_study,
    is_input_series,
    load_rules,
    plan_jobs,
    read_headers,
    rules_json_schema,
)
from dicom_node.routing.match import is_image_series, series_label
from dicom_node.settings import Settings, load_settings

_CONFIG_HELP = "Node settings YAML (default: $CTNODE_CONFIG, else built-in defaults)."


def known_pipelines() -> list[str]:
    """Pipelines whose implementation is importable in this installation."""
    from inference.registry import available  # the CLI is the only routing caller that sees inference

    try:
        return available()
    except ImportError as exc:  # a registered pipeline whose package is missing altogether
        click.echo(f"warning: cannot list the installed pipelines ({exc})", err=True)
        return []


def model_version(pipeline: str) -> str:
    """The model version that goes into the job id; a readable placeholder when it cannot be read."""
    from inference.registry import pipeline_version

    try:
        return pipeline_version(pipeline)
    except Exception as exc:  # a CLI edge: a missing model file must not hide the routing answer
        return f"unknown ({type(exc).__name__})"


def schema_text() -> str:
    return json.dumps(rules_json_schema(), indent=2, ensure_ascii=False) + "\n"


@click.group()
def rules() -> None:
    """Routing rules: check a rules file, try it on a study, print its JSON Schema."""


@rules.command("check")
@click.argument("file", required=False, type=click.Path(path_type=Path, dir_okay=False))
@click.option("--config", "config", type=click.Path(path_type=Path, dir_okay=False), help=_CONFIG_HELP)
def check(file: Path | None, config: Path | None) -> None:
    """Validate a rules FILE (default: the settings' rules_file); exit 1 with every error on failure."""
    settings, source = _settings_near(config, file)
    path = file or settings.rules_file
    ruleset = _load(path, settings, source=source)
    enabled = sum(1 for r in ruleset.rules if r.enabled)
    click.echo(f"OK {path}: {len(ruleset.rules)} rules ({enabled} enabled), digest {ruleset.digest}")
    click.echo(f"   pipelines and destinations checked against {source}")


@rules.command("test")
@click.argument("dicom_dir", type=click.Path(path_type=Path, exists=True, file_okay=False))
@click.option("--rules", "rules_file", type=click.Path(path_type=Path, dir_okay=False), help="Rules file.")
@click.option("--config", "config", type=click.Path(path_type=Path, dir_okay=False), help=_CONFIG_HELP)
@click.option("--calling-ae", default="", help="Calling AE title the study is taken to come from.")
@click.option("--called-ae", default=None, help="Called AE title (default: the node's own AE title).")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def test_rules(
    dicom_dir: Path,
    rules_file: Path | None,
    config: Path | None,
    calling_ae: str,
    called_ae: str | None,
    as_json: bool,
) -> None:
    """Dry run: which rules fire on the study (or studies) in DICOM_DIR, and which jobs would follow."""
    settings, settings_source = _settings_near(config, rules_file)
    ruleset = _load(rules_file or settings.rules_file, settings, source=settings_source)
    called = settings.dicom.ae_title if called_ae is None else called_ae
    scan = read_headers(dicom_dir)
    studies = group_by_study(scan.datasets)
    if not studies:
        _fail(f"no DICOM instance found under {dicom_dir} ({len(scan.skipped)} files could not be used)")
    source = StudySource(kind="staging", staging_path=str(dicom_dir))
    versions: dict[str, str] = {}
    results: list[tuple[StudyManifest, RoutingDecision, tuple[Job, ...]]] = []
    for datasets in studies.values():
        try:
            manifest = build_manifest_from_headers(
                datasets,
                source=source,
                calling_ae_title=calling_ae,
                called_ae_title=called,
                uid_root=settings.uid_root,
                manufacturer=settings.manufacturer,
            )
        except PermanentError as exc:
            _fail(str(exc))
        decision = evaluate(manifest, ruleset)
        for match in decision.matches:
            if match.pipeline not in versions:
                versions[match.pipeline] = model_version(match.pipeline)
        jobs = plan_jobs(
            manifest,
            decision,
            ruleset_digest=ruleset.digest,
            model_versions=versions,
            created_at=datetime.now(UTC),
        )
        results.append((manifest, decision, jobs))

    if as_json:
        payload = {
            "rules": {"source": ruleset.source_name, "digest": ruleset.digest, "count": len(ruleset.rules)},
            "skipped_files": [{"path": s.path, "reason": s.reason} for s in scan.skipped],
            "studies": [
                {
                    "manifest": m.model_dump(mode="json"),
                    "decision": d.model_dump(mode="json"),
                    "jobs": [j.model_dump(mode="json") for j in js],
                }
                for m, d, js in results
            ],
            "dry_run": True,
        }
        click.echo(json.dumps(payload, indent=2, ensure_ascii=False))
        return
    click.echo(f"Rules: {ruleset.source_name} ({len(ruleset.rules)} rules, digest {ruleset.digest[:16]}…)")
    if scan.skipped:
        click.echo(f"Skipped {len(scan.skipped)} files that are not usable DICOM:")
        for skipped in scan.skipped:
            click.echo(f"  {skipped.path}: {skipped.reason}")
    order = {rule.name: index for index, rule in enumerate(ruleset.rules)}
    for manifest, decision, jobs in results:
        _print_study(manifest, decision, jobs, order)
    click.echo("Dry run: nothing was queued or sent.")


@rules.command("schema")
def schema() -> None:
    """Print the JSON Schema of the rules file."""
    click.echo(schema_text(), nl=False)


# ---------------------------------------------------------------------------------------------


def _settings(config: Path | None) -> Settings:
    try:
        return load_settings(config)
    except ConfigError as exc:
        _fail(f"invalid node settings: {exc}")


def _settings_near(config: Path | None, rules_file: Path | None) -> tuple[Settings, str]:
    """The node settings to check rules against, and where they came from.

    ``--config`` or ``$CTNODE_CONFIG`` when given; else the ``node.yaml`` beside the rules file
    (the shipped ``configs/`` pair), else ``configs/node.yaml`` under the working folder; else
    the built-in defaults (which define no destination).
    """
    if config is not None or os.environ.get("CTNODE_CONFIG"):
        return _settings(config), str(config or os.environ["CTNODE_CONFIG"])
    candidates = [rules_file.parent / "node.yaml"] if rules_file is not None else []
    candidates.append(Path("configs") / "node.yaml")
    for candidate in candidates:
        if candidate.is_file():
            return _settings(candidate), str(candidate)
    return _settings(None), "the built-in default settings (no destinations; give --config NODE_YAML)"


def _load(path: Path, settings: Settings, *, source: str = "") -> RuleSet:
    pipelines = known_pipelines()
    try:
        return load_rules(path, known_pipelines=pipelines, known_destinations=settings.destinations.keys())
    except RulesConfigError as exc:
        for problem in exc.problems:
            click.echo(str(problem), err=True)
        _hint_unavailable(exc, pipelines)
        if source and any("unknown destination" in p.message for p in exc.problems):
            click.echo(f"(destinations were checked against {source})", err=True)
        click.echo(f"{len(exc.problems)} error(s): rules not valid", err=True)
        sys.exit(1)


def _hint_unavailable(exc: RulesConfigError, available: Collection[str]) -> None:
    """Say when an 'unknown' pipeline is registered but not importable here (e.g. no torch)."""
    from inference.registry import info

    named = {m.group(1) for p in exc.problems if (m := re.search(r"unknown pipeline '([^']+)'", p.message))}
    for name in sorted(named):
        try:
            info(name)
        except KeyError:
            continue
        if name not in available:
            click.echo(
                f"  note: pipeline {name!r} is registered but its implementation is not installed here",
                err=True,
            )


def _fail(message: str) -> NoReturn:
    click.echo(f"error: {message}", err=True)
    sys.exit(1)


def _grouped(reasons: tuple[str, ...], mark: str) -> list[str]:
    """Reasons as lines, each series' label printed once above its conditions."""
    lines: list[str] = []
    current = None
    for reason in reasons:
        label, sep, rest = reason.partition("]: ")
        if sep and label.startswith("series"):
            if label != current:
                lines.append(f"         {label}]")
                current = label
            lines.append(f"           {mark} {rest}")
        else:
            current = None
            lines.append(f"         {mark} {reason}")
    return lines


def _print_study(
    manifest: StudyManifest, decision: RoutingDecision, jobs: tuple[Job, ...], order: dict[str, int]
) -> None:
    click.echo("")
    click.echo(
        f"Study {manifest.study_instance_uid}: {len(manifest.series)} series, calling AE "
        f"{manifest.calling_ae_title or '(none)'!r}, called AE {manifest.called_ae_title or '(none)'!r}"
    )
    for series in manifest.series:
        if series.is_node_result:
            role = "node result, not input"
        elif not is_image_series(series):
            role = "not images, not input"
        else:
            role = "input" if is_input_series(series) else "not input"
        thickness = f"{series.slice_thickness_mm!r} mm" if series.slice_thickness_mm is not None else "? mm"
        click.echo(
            f"  {series_label(series)}: {series.modality or '?'}, {series.image_count} images, "
            f"{thickness}, body part {series.body_part_examined or '(none)'} — {role}"
        )
    outcomes: list[tuple[int, str, list[str]]] = []
    for match in decision.matches:
        where = f" (line {match.rule_line})" if match.rule_line else ""
        lane = ", SHADOW (stored, not delivered)" if match.shadow else ""
        head = (
            f"FIRES    {match.rule_name}{where} → pipeline {match.pipeline}, {match.priority.value}, "
            f"destinations [{', '.join(match.destinations)}]{lane}"
        )
        outcomes.append((order.get(match.rule_name, 0), head, _grouped(match.reasons, "✓")))
    for rule_miss in decision.misses:
        where = f" (line {rule_miss.rule_line})" if rule_miss.rule_line else ""
        head = f"no match {rule_miss.rule_name}{where}"
        outcomes.append((order.get(rule_miss.rule_name, 0), head, _grouped(rule_miss.reasons, "✗")))
    for _, head, lines in sorted(outcomes, key=lambda o: o[0]):
        click.echo(head)
        for line in lines:
            click.echo(line)
    if not jobs:
        click.echo("No job would be created.")
    for job in jobs:
        series_text = ", ".join(job.series_instance_uids)
        click.echo(
            f"Job {job.job_id}: {job.pipeline} (model {job.model_version}) on series {series_text}; "
            f"rule {job.rule_name}, {job.priority.value}, "
            f"{'shadow' if job.shadow else 'to ' + (', '.join(job.destinations) or 'nowhere')}"
        )
        if job.prompts:
            click.echo(f"           prompts: {'; '.join(job.prompts)}")


@rules.command("replay")
@click.argument("draft", type=click.Path(path_type=Path, exists=True, dir_okay=False))
@click.option("--config", "config", type=click.Path(path_type=Path, dir_okay=False), help=_CONFIG_HELP)
@click.option("--last", "limit", default=100, show_default=True, help="How many recent studies to replay.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def replay(draft: Path, config: Path | None, limit: int, as_json: bool) -> None:
    """What a DRAFT rules file would have fired on the last studies the node routed (dry run).

    Uses the routing manifests kept in the job store (headers only); nothing is queued or sent.
    """
    from tqdm import tqdm

    from worker.admin.rules_api import replay_draft
    from worker.context import WorkerContext

    settings = _settings(config)
    ctx = WorkerContext.open(settings)
    try:
        result = replay_draft(
            ctx,
            draft.read_text(),
            limit=limit,
            progress=lambda studies: tqdm(studies, desc="replay", disable=not sys.stderr.isatty()),
        )
    finally:
        ctx.close()
    if as_json:
        click.echo(json.dumps(result, indent=2, default=str))
        return
    if not result["valid"]:
        for problem in result["problems"]:
            click.echo(f"{draft}:{problem.get('line') or '?'}: {problem.get('message')}", err=True)
        raise SystemExit(1)
    click.echo(
        f"draft {result['digest'][:12]} on {result['studies_replayed']} studies: "
        f"{result['studies_changed']} would route differently from the rules in force"
    )
    for study in result["studies"]:
        fired = ", ".join(f["rule"] for f in study["draft"]["fired"]) or "no rule"
        before = ", ".join(f["rule"] for f in study.get("current", {}).get("fired", [])) or "no rule"
        mark = "*" if study.get("changed") else " "
        click.echo(
            f" {mark} {study['study_instance_uid']}: {fired}" + (f" (now: {before})" if mark == "*" else "")
        )
