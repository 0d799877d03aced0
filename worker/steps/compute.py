"""Run a queued job: claim → load the series → pipeline → DICOM result objects → ENCODED.

Exactly-once in effect with at-least-once messages: only the claimant runs the model
(:meth:`JobStore.claim`), a redelivered message for a job past RUNNING does nothing, and every
output UID derives from the job id, so a re-run after a crash rewrites the same files with the
same UIDs. A job whose claimant died on this host (``kill -9``) is taken over at once; one on
another host only after the task's hard time limit.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Collection, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import numpy as np

from dicom_node.contracts import AnalysisResult, Job, JobState, ResultBundle
from dicom_node.errors import PermanentError
from dicom_node.imaging.reader import LoadedSeries, load_series
from dicom_node.ingest.orthanc_source import credentials_from_env
from dicom_node.result_kinds import DEFAULT_OBJECTS
from dicom_node.results.bundle import encode_results
from dicom_node.settings import Settings
from inference.contracts import ModelOutputs, Request, VolumeInput, parse_prompt
from inference.registry import get_pipeline, info
from inference.vocabulary import STRUCTURES
from worker.context import WorkerContext, claimant_is_dead
from worker.steps.adapter import to_analysis
from worker.steps.sources import local_study_dir, series_files

logger = logging.getLogger(__name__)

COLORS = {name: s.color_rgb for name, s in STRUCTURES.items()}
LABELMAP_FILE = "labelmap.npz"
ANALYSIS_FILE = "analysis.json"


@dataclass(frozen=True)
class ComputeOutcome:
    job_id: str
    ran: bool  # False: another worker has it, or it was done already (a redelivered message)
    state: JobState
    bundle: ResultBundle | None
    outputs_summary: str = ""
    timings_s: dict[str, float] | None = None


@contextmanager
def _timed(timings: dict[str, float], key: str) -> Iterator[None]:
    t0 = time.perf_counter()
    try:
        yield
    finally:
        timings[key] = round(time.perf_counter() - t0, 4)


def claim(ctx: WorkerContext, job: Job) -> bool:
    """Take the job for this process; a RUNNING job whose worker is gone is taken over."""
    store = ctx.store
    if store.claim(job.job_id, ctx.name, stale_after_s=ctx.settings.queue.task_time_limit_s):
        return True
    record = store.require_job(job.job_id)
    if record.state == JobState.RUNNING and record.worker != ctx.name and claimant_is_dead(record.worker):
        # Same host, process gone (start time differs): no need to wait for the time limit.
        return store.claim(job.job_id, ctx.name, stale_after_s=0.0)
    return False


def requests_for(job: Job, default_prompts: Sequence[str]) -> list[Request]:
    """The rule's prompts (or the pipeline's defaults) as inference requests."""
    prompts = list(job.prompts) or list(default_prompts)
    requests = []
    for text in prompts:
        try:
            requests.append(parse_prompt(text))
        except ValueError as exc:
            raise PermanentError(f"rule {job.rule_name!r}: {exc}") from exc
    return requests


def roles_for(ctx: WorkerContext, job: Job) -> set[str]:
    """Which result kinds to encode: everything any destination of the job takes.

    A shadow job (or one with no destination) gets the default objects (SEG, SR, GSPS) so the
    results can be inspected.
    """
    roles: set[str] = set()
    for name in job.destinations:
        dest = ctx.settings.destinations.get(name)
        if dest is None:
            raise PermanentError(f"job {job.job_id}: destination {name!r} is not configured on this node")
        roles |= set(dest.roles)
    if not job.destinations or job.shadow:
        roles |= set(DEFAULT_OBJECTS)
    return roles


def pipeline_options(ctx: WorkerContext, pipeline: str) -> dict[str, object]:
    if not info(pipeline).needs_torch:
        return {}
    device = ctx.settings.model.device
    return {"device": None if device == "auto" else device}


def run_job(ctx: WorkerContext, job: Job) -> ComputeOutcome:
    """Run ``job`` if this process can claim it; returns what happened (never raises for "not mine")."""
    store = ctx.store
    if not claim(ctx, job):
        record = store.require_job(job.job_id)
        logger.info(
            "job not claimed: it is %s",
            record.state.value,
            extra={"job_id": job.job_id, "stage": "compute"},
        )
        return ComputeOutcome(job.job_id, False, record.state, record.result_bundle)
    timings: dict[str, float] = {}
    with _timed(timings, "fetch"):
        study_dir = local_study_dir(
            ctx.settings,
            job.source,
            job.study_instance_uid,
            orthanc_auth=credentials_from_env(ctx.environ),
        )
        files = series_files(study_dir, job.series_instance_uids[0], job.sop_instance_uids)
    with _timed(timings, "load"):
        series = load_series(files)
    pipeline = get_pipeline(job.pipeline, **pipeline_options(ctx, job.pipeline))
    requests = requests_for(job, pipeline.default_prompts)
    volume = VolumeInput(hu=series.hu, affine_lps=series.affine_lps)
    with _timed(timings, "inference"):
        outputs = pipeline.run(volume, requests)
    with _timed(timings, "encode"):
        bundle = encode(ctx, job, series, volume, outputs)
    store.record_result(
        job.job_id,
        bundle,
        timings_s=timings,
        reason=f"results encoded: {len(bundle.files)} object(s); {outputs.summary}"[:500],
    )
    logger.info(
        "job encoded: %d segment(s), %d finding(s), %d unmatched prompt(s) in %.1f s",
        len(outputs.segments),
        len(outputs.detections),
        len(outputs.unmatched),
        sum(timings.values()),
        extra={"job_id": job.job_id, "stage": "compute"},
    )
    return ComputeOutcome(job.job_id, True, JobState.ENCODED, bundle, outputs.summary, timings)


def encode(
    ctx: WorkerContext, job: Job, series: LoadedSeries, volume: VolumeInput, outputs: ModelOutputs
) -> ResultBundle:
    written = write_results(
        ctx.settings,
        job_id=job.job_id,
        series=series,
        volume=volume,
        outputs=outputs,
        out_dir=ctx.results_dir(job.job_id),
        roles=roles_for(ctx, job),
        ai_model=info(job.pipeline).needs_torch,
        # the job's creation time, not "now": a re-run writes byte-identical objects
        content_datetime=job.created_at,
    )
    return written.bundle


@dataclass(frozen=True)
class WrittenResults:
    bundle: ResultBundle
    analysis: AnalysisResult
    labelmap: np.ndarray  # renumbered: values = SEG segment numbers


def write_results(
    settings: Settings,
    *,
    job_id: str,
    series: LoadedSeries,
    volume: VolumeInput,
    outputs: ModelOutputs,
    out_dir: Path,
    roles: Collection[str],
    ai_model: bool,
    content_datetime: datetime | None,
) -> WrittenResults:
    """Pipeline outputs → label map file + SEG/SR/GSPS(/SC) objects in ``out_dir`` (also ``ctnode infer``)."""
    analysis = to_analysis(
        outputs,
        volume,
        job_id=job_id,
        labelmap_path=out_dir / LABELMAP_FILE,
        colors=COLORS,
        ai_model=ai_model,
    )
    with np.load(out_dir / LABELMAP_FILE) as npz:
        labelmap = npz["labelmap"]
    bundle = encode_results(
        job_id=job_id,
        study_instance_uid=str(series.datasets[0].StudyInstanceUID),
        sources=series.datasets,
        labelmap=labelmap,
        analysis=analysis,
        out_dir=out_dir,
        uid_root=settings.uid_root,
        manufacturer=settings.manufacturer,
        roles=roles,
        hu=series.hu,
        content_datetime=content_datetime,
    )
    # What was found, in words and numbers, beside the objects (ctnode demo, the dashboard).
    (out_dir / ANALYSIS_FILE).write_text(analysis.model_dump_json(indent=1))
    return WrittenResults(bundle, analysis, labelmap)


def settle_without_delivery(ctx: WorkerContext, job: Job) -> JobState:
    """A shadow job (or one with no destination) ends here: stored, visible, sent nowhere."""
    why = "shadow rule: results stored, nothing sent" if job.shadow else "no destination: results stored"
    record = ctx.store.transition(job.job_id, JobState.DELIVERED, reason=why, expect_from={JobState.ENCODED})
    return record.state
