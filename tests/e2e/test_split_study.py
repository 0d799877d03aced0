"""A study sent series by series, as a PACS or router sends it: each series in its own DCMTK
``storescu`` association, a pause between them, into a real ``ctnode serve`` + ``ctnode worker``;
results at a DCMTK ``storescp``. Issue 12 item 1: one result set, on the complete study.

Series A (12 thin noise slices, 128 × 128) arrives first, then series B (the synthetic CT). The
rule selects the largest series: a study judged complete after series A would give a job on A (and
then a second one on the late series B); the complete study gives one job, on B.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from pydicom import dcmread

from dicom_node.contracts import CompletionReason, JobState
from tests.support.ct_series import make_ct_series
from tests.support.dcmtk import dciodvfy_errors, storescp
from tests.support.node import FINAL, NodeHarness
from tests.support.processes import port_open, wait_until
from worker.demo.synth_study import SyntheticStudy, make_synthetic_study

pytestmark = pytest.mark.e2e

SEG_BINARY = "1.2.840.10008.5.1.4.1.1.66.4"
PROMPTS = ("body", "bone")
QUIET_S = 6.0  # the node's quiet period here: longer than the pauses below, short enough for a test


@pytest.fixture(scope="module")
def study(tmp_path_factory: pytest.TempPathFactory) -> tuple[SyntheticStudy, list[Path]]:
    base = tmp_path_factory.mktemp("split")
    main = make_synthetic_study(base / "main", seed=5)
    first = make_ct_series(
        base / "first",
        n_slices=12,
        rows=128,
        cols=128,
        spacing_mm=(5.0, 1.5, 1.5),
        study_uid=main.study_instance_uid,
    )
    return main, first


@pytest.fixture
def pacs(tmp_path: Path) -> Iterator[tuple[Path, int]]:
    out = tmp_path / "pacs"
    with storescp(out) as (_proc, port):
        yield out, port


def segs_received(pacs_dir: Path) -> list[Path]:
    paths = [p for p in pacs_dir.rglob("*") if p.is_file() and not p.name.endswith(".log")]
    return [p for p in paths if str(dcmread(p, stop_before_pixels=True).SOPClassUID) == SEG_BINARY]


def _assert_one_result_set_on_the_whole_study(
    node: NodeHarness, main: SyntheticStudy, first: list[Path], pacs_dir: Path
) -> None:
    total = len(main.dicom_paths) + len(first)

    def settled() -> bool:  # routed with every instance, and every job of the study final
        record = node.store.get_study(main.study_instance_uid)
        jobs = node.jobs(main.study_instance_uid)
        routed = record is not None and record.state == "routed" and record.instance_count == total
        return routed and bool(jobs) and all(j.state in FINAL for j in jobs)

    wait_until(settled, timeout_s=300, what="the whole study routed and its jobs final")
    jobs = node.jobs(main.study_instance_uid)
    assert [(j.state, j.job.series_instance_uids) for j in jobs] == [
        (JobState.DELIVERED, (main.series_instance_uid,))
    ], [(j.state.value, j.reason) for j in jobs]
    record = node.store.get_study(main.study_instance_uid)
    assert record is not None and record.completion_reason == CompletionReason.QUIET_PERIOD
    assert len(segs_received(pacs_dir)) == 1


def test_series_in_separate_associations_give_one_result_set(
    tmp_path: Path, study: tuple[SyntheticStudy, list[Path]], pacs: tuple[Path, int]
) -> None:
    main, first = study
    pacs_dir, pacs_port = pacs
    node = NodeHarness(
        tmp_path,
        pacs_port=pacs_port,
        prompts=PROMPTS,
        extra_settings={"completion": {"quiet_period_s": QUIET_S}},
    )
    try:
        node.start_serve(with_worker=True)
        assert node.storescu(first).returncode == 0
        time.sleep(3.0)  # the sender's pause between series (the old default completed the study here)
        assert node.storescu(list(main.dicom_paths)).returncode == 0
        _assert_one_result_set_on_the_whole_study(node, main, first, pacs_dir)
    finally:
        node.stop()


def test_serve_killed_mid_study_waits_for_the_rest_after_restart(
    tmp_path: Path, study: tuple[SyntheticStudy, list[Path]], pacs: tuple[Path, int]
) -> None:
    """kill -9 of ``ctnode serve`` after series A, restart after more than the quiet period, then
    series B: the restart does not shorten the quiet period, so A is not processed alone."""
    main, first = study
    pacs_dir, pacs_port = pacs
    node = NodeHarness(
        tmp_path,
        pacs_port=pacs_port,
        prompts=PROMPTS,
        extra_settings={"completion": {"quiet_period_s": QUIET_S}},
    )
    try:
        serve = node.start_serve(with_worker=False)
        node.start_worker()
        assert node.storescu(first).returncode == 0
        serve.kill9()
        wait_until(lambda: not port_open(node.dicom_port), timeout_s=30, what="serve gone")
        time.sleep(QUIET_S + 2.0)  # down for longer than the quiet period
        node.start_serve(with_worker=False)
        assert node.storescu(list(main.dicom_paths)).returncode == 0
        _assert_one_result_set_on_the_whole_study(node, main, first, pacs_dir)
    finally:
        node.stop()


KOS = "1.2.840.10008.5.1.4.1.1.88.59"


def test_a_series_after_the_quiet_period_reruns_and_withdraws_the_first_results(
    tmp_path: Path, study: tuple[SyntheticStudy, list[Path]], pacs: tuple[Path, int]
) -> None:
    """A series that comes after the quiet period (late_series: rerun): the second job supersedes
    the first; once its results are at the PACS, the first job's are withdrawn there by a KOS
    rejection note (IHE IOCM) that references exactly them, the new series say "(revised)", and
    both jobs' audit trails tell it."""
    main, first = study
    pacs_dir, pacs_port = pacs
    node = NodeHarness(
        tmp_path, pacs_port=pacs_port, prompts=PROMPTS, extra_settings={"completion": {"quiet_period_s": 2.0}}
    )
    try:
        node.start_serve(with_worker=True)
        assert node.storescu(first).returncode == 0
        early = node.wait_for_job(main.study_instance_uid, timeout_s=300)
        assert early.state == JobState.DELIVERED, early.reason
        early_uids = set(node.store.delivered_uids(early.job_id, "pacs"))
        assert node.storescu(list(main.dicom_paths)).returncode == 0

        def withdrawn() -> bool:
            w = node.store.get_withdrawal(early.job_id, "pacs")
            return w is not None and w.state.value in ("done", "failed", "unsupported")

        wait_until(withdrawn, timeout_s=300, what="the first results withdrawn")
        jobs = node.jobs(main.study_instance_uid)
        assert [j.state for j in jobs] == [JobState.SUPERSEDED, JobState.DELIVERED]
        late = jobs[-1]
        withdrawal = node.store.get_withdrawal(early.job_id, "pacs")
        assert withdrawal is not None and withdrawal.state.value == "done", withdrawal
        assert withdrawal.by_job_id == late.job_id and withdrawal.method == "rejection-note"

        objects = [p for p in pacs_dir.rglob("*") if p.is_file() and not p.name.endswith(".log")]
        headers = [dcmread(p, stop_before_pixels=True) for p in objects]
        (note,) = [ds for ds in headers if ds.SOPClassUID == KOS]
        assert note.ConceptNameCodeSequence[0].CodeValue == "113001"  # Rejected for Quality Reasons
        rejected = {
            sop.ReferencedSOPInstanceUID
            for study_item in note.CurrentRequestedProcedureEvidenceSequence
            for series in study_item.ReferencedSeriesSequence
            for sop in series.ReferencedSOPSequence
        }
        assert rejected == early_uids
        late_uids = set(node.store.delivered_uids(late.job_id, "pacs"))
        revised = [ds for ds in headers if ds.SOPInstanceUID in late_uids]
        assert revised and all(str(ds.SeriesDescription).endswith("(revised)") for ds in revised)
        assert (
            dciodvfy_errors(next(p for p, ds in zip(objects, headers, strict=True) if ds.SOPClassUID == KOS))
            == []
        )

        early_trail = " | ".join(e.reason for e in node.store.events(early.job_id))
        late_trail = " | ".join(e.reason for e in node.store.events(late.job_id))
        assert "withdrawn at pacs by rejection note" in early_trail, early_trail
        assert f"job {early.job_id}: withdrawn at pacs" in late_trail, late_trail
    finally:
        node.stop()
