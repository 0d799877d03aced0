"""The routing step on a real staged study and a real job store: idempotent re-routing, and the
late-series policies (rerun supersedes the earlier job, ignore records the new one as skipped)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from dicom_node.contracts import CompletionReason, JobState, StudySource, StudyStable
from dicom_node.settings import Settings
from tests.support.ct_series import make_ct_series
from worker.context import WorkerContext
from worker.steps.routing import route_study

STUDY = "1.2.826.0.1.3680043.10.1111.77.1"
SERIES = "1.2.826.0.1.3680043.10.1111.77.2"

RULES = """version: 1
rules:
  - name: chest
    when: {{modality: CT, image_count: {{min: 10}}}}
    pipeline: ct-anatomy-basic
    shadow: true
    late_series: {policy}
"""


def _context(tmp_path: Path, policy: str) -> WorkerContext:
    rules = tmp_path / "routing.yaml"
    rules.write_text(RULES.format(policy=policy))
    (tmp_path / "var").mkdir()
    settings = Settings(storage={"root": tmp_path / "var"}, rules_file=rules)  # type: ignore[arg-type]
    return WorkerContext.open(settings)


def _stage(ctx: WorkerContext, n_slices: int) -> StudyStable:
    study_dir = ctx.settings.storage.staging_dir / STUDY
    series_dir = study_dir / SERIES
    make_ct_series(series_dir, n_slices=n_slices, rows=32, cols=32, study_uid=STUDY, series_uid=SERIES)
    now = datetime.now(UTC)
    return StudyStable(
        study_instance_uid=STUDY,
        source=StudySource(kind="staging", staging_path=str(study_dir)),
        reason=CompletionReason.QUIET_PERIOD,
        calling_ae_title="STORESCU",
        called_ae_title="CTAINODE",
        instance_count=n_slices,
        first_received_at=now,
        last_received_at=now,
        stable_at=now,
    )


@pytest.fixture
def rerun_ctx(tmp_path: Path) -> Iterator[WorkerContext]:
    ctx = _context(tmp_path, "rerun")
    yield ctx
    ctx.close()


def test_routing_the_same_study_twice_makes_one_job(rerun_ctx: WorkerContext) -> None:
    stable = _stage(rerun_ctx, 12)
    first = route_study(rerun_ctx, stable)
    again = route_study(rerun_ctx, stable)
    assert len(first.to_enqueue) == 1
    assert again.to_enqueue == first.to_enqueue  # still QUEUED: its message may have been lost
    rerun_ctx.store.claim(first.to_enqueue[0].job_id, "w")
    third = route_study(rerun_ctx, stable)
    assert third.to_enqueue == () and [j.job_id for j in third.existing] == [first.to_enqueue[0].job_id]
    assert len(rerun_ctx.store.jobs_for_study(STUDY)) == 1
    assert rerun_ctx.store.get_manifest(STUDY) is not None  # kept for rule replay


def test_late_images_rerun_and_supersede(rerun_ctx: WorkerContext) -> None:
    early = route_study(rerun_ctx, _stage(rerun_ctx, 12)).to_enqueue[0]
    late = route_study(rerun_ctx, _stage(rerun_ctx, 15)).to_enqueue[0]
    assert late.job_id != early.job_id
    old = rerun_ctx.store.require_job(early.job_id)
    assert old.state == JobState.SUPERSEDED and old.superseded_by == late.job_id
    assert rerun_ctx.store.require_job(late.job_id).state == JobState.QUEUED


def test_late_images_ignored_keep_the_first_job(tmp_path: Path) -> None:
    ctx = _context(tmp_path, "ignore")
    try:
        early = route_study(ctx, _stage(ctx, 12)).to_enqueue[0]
        outcome = route_study(ctx, _stage(ctx, 15))
        assert outcome.to_enqueue == ()
        (skipped,) = outcome.skipped
        record = ctx.store.require_job(skipped.job_id)
        assert record.state == JobState.SKIPPED and "late_series: ignore" in record.reason
        assert ctx.store.require_job(early.job_id).state == JobState.QUEUED
    finally:
        ctx.close()


def test_real_work_is_queued_before_shadow_work(tmp_path: Path) -> None:
    """A shadow rule placed first (stop: false) still has its job sent after the real one."""
    rules = tmp_path / "routing.yaml"
    rules.write_text(
        """version: 1
rules:
  - name: shadow-try
    when: {modality: CT}
    pipeline: ct-anatomy-basic
    select: first
    shadow: true
    stop: false
  - name: real
    when: {modality: CT}
    pipeline: ct-anatomy-basic
    select: largest
    destinations: [pacs]
"""
    )
    (tmp_path / "var").mkdir()
    settings = Settings(
        storage={"root": tmp_path / "var"},  # type: ignore[arg-type]
        rules_file=rules,
        destinations={"pacs": {"kind": "dicom", "ae_title": "PACS", "host": "127.0.0.1", "port": 11199}},  # type: ignore[dict-item]
    )
    ctx = WorkerContext.open(settings)
    try:
        stable = _stage(ctx, 12)
        # a second, smaller series with a lower series number: "first" picks it, "largest" the other
        make_ct_series(
            ctx.settings.storage.staging_dir / STUDY / (SERIES + ".9"),
            n_slices=3,
            rows=32,
            cols=32,
            study_uid=STUDY,
            series_uid=SERIES + ".9",
            series_number=0,
        )
        outcome = route_study(ctx, stable)
        assert [(j.rule_name, j.shadow) for j in outcome.to_enqueue] == [
            ("real", False),
            ("shadow-try", True),
        ]
    finally:
        ctx.close()
