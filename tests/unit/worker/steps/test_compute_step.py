"""The compute step on a real staged series and job store: only a claimant runs, outputs are
deterministic (a re-run writes the same UIDs and the same bytes), shadow jobs settle unsent."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator
from pathlib import Path

import pydicom
import pytest
from pydicom.dataelem import RawDataElement
from pydicom.tag import BaseTag

from dicom_node.constants import SECONDARY_CAPTURE_IMAGE_STORAGE
from dicom_node.contracts import JobState, ResultFile
from dicom_node.settings import Settings
from tests.support.fake_task import FakeTask
from tests.unit.worker.steps.test_routing_step import RULES, SERIES, STUDY, _stage
from worker.context import WorkerContext
from worker.steps.compute import run_job, settle_without_delivery
from worker.steps.routing import route_study
from worker.tasks.shells import run_pipeline_task


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


def test_an_implausible_series_fails_the_job_with_the_reason_and_sends_nothing(ctx: WorkerContext) -> None:
    """Issue 12 item 6: RescaleSlope NaN used to give a delivered SR "nothing measured"."""
    stable = _stage(ctx, 12)
    for path in sorted((ctx.settings.storage.staging_dir / STUDY).rglob("*.dcm")):
        ds = pydicom.dcmread(path)
        ds[0x00281053] = RawDataElement(BaseTag(0x00281053), "DS", 4, b"NaN ", 0, False, True)
        ds.save_as(path)
    (job,) = route_study(ctx, stable).to_enqueue
    outcome = run_pipeline_task(FakeTask(), ctx, job.model_dump(mode="json"))  # type: ignore[arg-type]
    record = ctx.store.require_job(job.job_id)
    assert outcome["state"] == "failed" and record.state == JobState.FAILED
    assert "RescaleSlope nan" in record.reason and "not finite" in record.reason
    assert record.result_bundle is None and ctx.store.deliveries_for(job.job_id) == []


def test_a_stray_object_filed_in_the_series_stays_out_of_the_volume(ctx: WorkerContext) -> None:
    """Issue 12 item 9: a Secondary Capture in the CT series is set aside by routing and the job
    computes on exactly the instances routing counted (it used to enter the volume, or hide it)."""
    stable = _stage(ctx, 12)
    series_dir = ctx.settings.storage.staging_dir / STUDY / SERIES
    first = pydicom.dcmread(sorted(series_dir.glob("*.dcm"))[0])
    stray = first.copy()
    stray.SOPClassUID = SECONDARY_CAPTURE_IMAGE_STORAGE
    stray.file_meta.MediaStorageSOPClassUID = SECONDARY_CAPTURE_IMAGE_STORAGE
    stray.SOPInstanceUID = first.SOPInstanceUID + ".99"
    stray.file_meta.MediaStorageSOPInstanceUID = stray.SOPInstanceUID
    stray.Modality = "OT"
    stray.save_as(series_dir / f"{stray.SOPInstanceUID}.dcm")
    (job,) = route_study(ctx, stable).to_enqueue
    assert len(job.sop_instance_uids) == 12 and stray.SOPInstanceUID not in job.sop_instance_uids
    outcome = run_job(ctx, job)
    assert outcome.state == JobState.ENCODED and outcome.bundle is not None
    seg = pydicom.dcmread(next(f.path for f in outcome.bundle.files if f.role == "seg"))
    referenced = {
        item.ReferencedSOPInstanceUID for item in seg.ReferencedSeriesSequence[0].ReferencedInstanceSequence
    }
    assert referenced == set(job.sop_instance_uids)
