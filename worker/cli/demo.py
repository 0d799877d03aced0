"""``ctnode demo``: the whole node on embedded defaults, on one synthetic study, in about a minute.

It starts the real node (SCP + study tracker + HTTP + a ``ctnode worker`` process on the SQLite
broker and job store), makes a synthetic CT study, sends it over DICOM like a PACS would, waits
for the results to arrive at a local PACS (a C-STORE SCP), and prints a per-stage timing table,
what was found and how it compares with the synthetic truth. ``out/preview.png`` shows the SEG
overlay and the GSPS boxes on key slices. Nothing outside ``--out`` is written.
"""

from __future__ import annotations

import json
import shutil
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import click
import numpy as np
import yaml

from dicom_node.contracts import AnalysisResult, JobState
from dicom_node.jobs.records import JobEvent, JobRecord, StudyRecord
from dicom_node.result_kinds import title_for_sop_class

FINAL = (JobState.DELIVERED, JobState.FAILED, JobState.DEAD, JobState.SKIPPED, JobState.SUPERSEDED)


def _write_config(out: Path, *, pipeline: str, prompts: tuple[str, ...], pacs_port: int) -> Path:
    rules = out / "demo-routing.yaml"
    rule: dict[str, Any] = {
        "name": "demo-ct",
        "when": {"modality": "CT", "image_count": {"min": 10}},
        "select": "largest",
        "pipeline": pipeline,
        "destinations": ["pacs"],
    }
    if prompts:
        rule["prompts"] = list(prompts)
    rules.write_text(yaml.safe_dump({"version": 1, "rules": [rule]}, sort_keys=False))
    config = out / "demo-node.yaml"
    settings = {
        "storage": {"root": str((out / "var").resolve()), "min_free_bytes": 64 * 1024**2},
        "rules_file": str(rules.resolve()),
        "completion": {"quiet_period_s": 3.0},
        "destinations": {
            "pacs": {"kind": "dicom", "ae_title": "DEMO_PACS", "host": "127.0.0.1", "port": pacs_port}
        },
        "log_level": "WARNING",
    }
    config.write_text(yaml.safe_dump(settings, sort_keys=False))
    return config


def _event_time(events: list[JobEvent], state: JobState) -> datetime | None:
    times = [e.at for e in events if e.to_state == state]
    return times[-1] if times else None


def _seconds(a: datetime | None, b: datetime | None) -> float | None:
    return None if a is None or b is None else (b - a).total_seconds()


def timing_rows(
    study: StudyRecord, job: JobRecord, events: list[JobEvent], send_s: float
) -> list[tuple[str, float | None]]:
    """(stage, seconds) from the job store's audit trail and the worker's per-stage timings."""
    t = job.timings_s
    running = _event_time(events, JobState.RUNNING)
    delivered = _event_time(events, JobState.DELIVERED)
    deliver = sum(v for k, v in t.items() if k.startswith("deliver."))
    return [
        ("send study (C-STORE)", send_s),
        ("wait for completion", _seconds(study.last_received_at, study.stable_at)),
        ("route + queue", _seconds(study.stable_at, running)),
        ("load series", t.get("load")),
        ("inference", t.get("inference")),
        ("encode SEG/SR/GSPS", t.get("encode")),
        ("deliver to PACS", deliver or None),
        ("total: first image → delivered", _seconds(study.first_received_at, delivered)),
    ]


def _expressible(names: list[str]) -> list[str]:
    """The segment names the synthetic truth has labels for (a lesion or vessel may not)."""
    from inference.synth import atomic_parts

    out = []
    for name in names:
        try:
            atomic_parts(name)
        except KeyError:
            continue
        out.append(name)
    return out


def _dice_rows(
    analysis: AnalysisResult, labelmap: np.ndarray, truth: np.ndarray, names: dict[int, str]
) -> list[str]:
    by_name = {name: value for value, name in names.items()}
    rows = []
    for seg in analysis.segments:
        value = by_name.get(seg.label)
        if value is None:
            continue
        a, b = labelmap == seg.segment_number, truth == value
        denom = int(a.sum()) + int(b.sum())
        if denom:
            rows.append(f"  {seg.label:<14} Dice {2 * int((a & b).sum()) / denom:.3f}")
    return rows


@click.command()
@click.option(
    "--out", "out_dir", default="out", show_default=True, type=click.Path(file_okay=False, path_type=Path)
)
@click.option(
    "--pipeline",
    default="ct-anatomy-basic",
    show_default=True,
    help="ct-anatomy-basic (classical, reliable on CPU) or unified-ct (the research model: docs/model.md).",
)
@click.option("--prompt", "prompts", multiple=True, help="Prompts for the rule (default: the pipeline's).")
@click.option("--seed", default=7, show_default=True, help="Synthetic study seed.")
@click.option(
    "--slices", type=int, default=None, help="Slices of the synthetic study (default: its protocol's)."
)
@click.option("--timeout", "timeout_s", default=900, show_default=True, help="Seconds to wait for results.")
def demo(
    out_dir: Path, pipeline: str, prompts: tuple[str, ...], seed: int, slices: int | None, timeout_s: int
) -> None:
    """Run the node end to end on a synthetic CT study: DICOM in, results back at a local PACS."""
    from dicom_node.phi import configure_logging
    from dicom_node.results.preview import render_preview
    from dicom_node.settings import load_settings
    from worker.demo.peers import DemoPACS, send_study
    from worker.demo.synth_study import make_synthetic_study
    from worker.node.service import NodeService
    from worker.steps.compute import ANALYSIS_FILE, LABELMAP_FILE

    out = out_dir.resolve()
    for stale in ("var", "pacs", "study"):
        shutil.rmtree(out / stale, ignore_errors=True)
    out.mkdir(parents=True, exist_ok=True)
    chosen = pipeline
    click.echo(f"ctnode demo: pipeline {chosen}; everything under {out}")
    if chosen != "unified-ct":
        click.echo("  (the research model: --pipeline unified-ct; its measured quality is in docs/model.md)")

    t = time.perf_counter()
    study = make_synthetic_study(out / "study", seed=seed, slices=slices)
    click.echo(
        f"  synthetic study: {len(study.dicom_paths)} CT images 512×512 ({time.perf_counter() - t:.1f} s)"
    )

    pacs = DemoPACS(out / "pacs")
    pacs_port = pacs.start()
    config = _write_config(out, pipeline=chosen, prompts=prompts, pacs_port=pacs_port)
    settings = load_settings(config)
    configure_logging(settings.log_level)
    node = NodeService(
        settings,
        dicom_port=0,
        api_port=0,
        with_worker=True,
        worker_args=("--loglevel=WARNING",),
        config_path=str(config),
        worker_log=out / "worker.log",
    )
    node.start()
    try:
        assert node.scp.port is not None
        worker_pid = node.status()["worker_pid"]
        click.echo(f"  node {settings.dicom.ae_title} on DICOM port {node.scp.port}; worker pid {worker_pid}")
        t = time.perf_counter()
        accepted = send_study(
            study.dicom_paths,
            host="127.0.0.1",
            port=node.scp.port,
            called_ae_title=settings.dicom.ae_title,
            calling_ae_title="CTNODE_DEMO",
        )
        send_s = time.perf_counter() - t
        click.echo(
            f"  sent {accepted}/{len(study.dicom_paths)} images in {send_s:.1f} s; waiting for results…"
        )
        job = _wait_for_job(node, study.study_instance_uid, timeout_s)
        store = node.ctx.store
        detail = store.job_detail(job.job_id)
        record = store.get_study(study.study_instance_uid)
        assert detail is not None and record is not None
    finally:
        node.stop()
        pacs.stop()

    click.echo(f"\njob {job.job_id}: {job.state.value} ({job.reason})")
    rows = timing_rows(record, job, list(detail.events), send_s)
    click.echo("\nstage                              seconds")
    for stage, seconds in rows:
        click.echo(f"  {stage:<32} {'-' if seconds is None else f'{seconds:7.2f}'}")
    click.echo("\nreceived at the PACS:")
    for path in sorted(pacs.received):
        click.echo(f"  {title_for_sop_class(path.parent.name):<34} {path.name}")
    if job.state != JobState.DELIVERED:
        raise click.ClickException(f"the job ended {job.state.value}: {job.reason}")

    results = settings.storage.results_dir / job.job_id
    analysis = AnalysisResult.model_validate_json((results / ANALYSIS_FILE).read_text())
    with np.load(results / LABELMAP_FILE) as npz:
        labelmap = npz["labelmap"]
    click.echo("\nfound:")
    for line in analysis.descriptions:
        click.echo(f"  {line}")
    truth, names = study.truth(_expressible([s.label for s in analysis.segments]))
    dice = _dice_rows(analysis, labelmap, truth, names)
    if dice:
        click.echo("\nagreement with the synthetic truth:")
        for line in dice:
            click.echo(line)
    from dicom_node.imaging.reader import load_series

    series = load_series(study.dicom_paths)
    preview = render_preview(
        series.hu,
        labelmap,
        segments=analysis.segments,
        findings=analysis.findings,
        out_path=out / "preview.png",
        sources=series.datasets,
    )
    (out / "demo-result.json").write_text(
        json.dumps(
            {
                "job_id": job.job_id,
                "pipeline": chosen,
                "slices": len(study.dicom_paths),
                "state": job.state.value,
                "stages_s": dict(rows),
                "last_instance_to_delivered_s": _seconds(
                    record.last_received_at, _event_time(list(detail.events), JobState.DELIVERED)
                ),
                "completion_wait_s": _seconds(record.last_received_at, record.stable_at),
                "timings_s": job.timings_s,
            },
            indent=1,
        )
    )
    click.echo(f"\npreview: {preview}")


_PROGRESS = (JobState.QUEUED, JobState.RUNNING, JobState.ENCODED, JobState.DELIVERING, JobState.DELIVERED)


def _wait_for_job(node: Any, study_instance_uid: str, timeout_s: float) -> JobRecord:
    """Poll the job store until the study's job is final; a progress bar on a terminal, lines otherwise."""
    from tqdm import tqdm

    interactive = sys.stderr.isatty()
    bar = tqdm(total=len(_PROGRESS), desc="waiting for completion", disable=not interactive, leave=True)
    deadline = time.monotonic() + timeout_s
    last = ""
    try:
        while time.monotonic() < deadline:
            jobs = node.ctx.store.jobs_for_study(study_instance_uid)
            if jobs:
                job = jobs[-1]
                if job.state.value != last:
                    last = job.state.value
                    if job.state in _PROGRESS:
                        bar.update(_PROGRESS.index(job.state) + 1 - bar.n)
                    bar.set_description(f"job {last}")
                    if not interactive:
                        click.echo(f"  … job {last}")
                if job.state in FINAL:
                    return job
            worker = node.worker_process
            if worker is not None and worker.poll() is not None:
                raise click.ClickException(
                    f"the worker process exited (code {worker.returncode}): see its log, worker.log"
                )
            time.sleep(0.25)
    finally:
        bar.close()
    raise click.ClickException(f"no result after {timeout_s:.0f} s (last state: {last or 'not routed'})")
