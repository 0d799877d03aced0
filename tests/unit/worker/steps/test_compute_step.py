"""The compute step on a real staged series and job store: only a claimant runs, outputs are
deterministic (a re-run writes the same UIDs and the same bytes), shadow jobs settle unsent."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator
from pathlib import Path

import pytest

from dicom_node.contracts import JobState, ResultFile
from dicom_node.settings import Settings
from tests.unit.worker.steps.test_routing_step import RULES, STUDY, _stage
from worker.context import WorkerContext
from worker.steps.compute import run_job, settle_without_delivery
from worker.steps.routing import route_study


@pytest.fixture
def ctx(tmp_path: Path) -> Iterator[WorkerContext]:
    rules = tmp_path / "routing.yaml"
    rules.write_text(RULES.format(policy="rerun"))
    (tmp_path / "var").mkdir()
    settings = Settings(storage={"root": tmp_path / "var"}, rules_file=rules)  # type: ignore[arg-type]
    context = WorkerContext.open(settings)
    yield context
    context.close()


def _digests(files: Iterable[ResultFile]) -> dict[str, str]:
    return {f.sop_instance_uid: hashlib.sha256(Path(f.path).read_bytes()).hexdigest() for f in files}


def test_a_rerun_writes_the_same_objects(ctx: WorkerContext) -> None:
    (job,) = route_study(ctx, _stage(ctx, 12)).to_enqueue
    first = run_job(ctx, job)
    assert first.ran and first.state == JobState.ENCODED and first.bundle is not None
    roles = sorted(f.role for f in first.bundle.files)
    assert roles == ["gsps", "seg", "sr"]
    before = _digests(first.bundle.files)

    # a second message for the same job (at-least-once delivery) does not run it again
    assert run_job(ctx, job).ran is False

    # an operator requeues it: the model runs again and writes identical objects
    ctx.store.transition(job.job_id, JobState.FAILED, reason="test: pretend a delivery failed")
    ctx.store.transition(job.job_id, JobState.QUEUED, reason="test: requeued")
    second = run_job(ctx, job)
    assert second.ran and second.bundle is not None
    assert _digests(second.bundle.files) == before


def test_a_shadow_job_settles_without_delivery(ctx: WorkerContext) -> None:
    (job,) = route_study(ctx, _stage(ctx, 12)).to_enqueue
    assert job.shadow
    run_job(ctx, job)
    assert settle_without_delivery(ctx, job) == JobState.DELIVERED
    record = ctx.store.require_job(job.job_id)
    assert "shadow" in record.reason and ctx.store.deliveries_for(job.job_id) == []
    assert record.study_instance_uid == STUDY
