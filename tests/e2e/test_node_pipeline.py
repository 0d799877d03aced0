"""The whole node, as an admin runs it: DCMTK storescu → ``ctnode serve`` → ``ctnode worker`` →
DCMTK storescp (the "PACS"), on both brokers, with the faults the issue names.

What each test proves is in its docstring; the pipeline is the classical ``ct-anatomy-basic`` on a
synthetic study whose truth is known (``worker.demo.synth_study``), so Dice is measured on the SEG the
PACS received, not on the worker's memory.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import highdicom as hd
import pytest
from pydicom import dcmread

from dicom_node.contracts import JobState
from tests.support.dcmtk import dciodvfy_errors, storescp
from tests.support.node import NodeHarness
from tests.support.processes import free_port
from tests.support.redis import redis_server
from worker.demo.synth_study import SyntheticStudy, make_synthetic_study

pytestmark = pytest.mark.e2e

SEG_BINARY = "1.2.840.10008.5.1.4.1.1.66.4"
SR_3D = "1.2.840.10008.5.1.4.1.1.88.34"
GSPS = "1.2.840.10008.5.1.4.1.1.11.1"
PROMPTS = ("body", "left lung", "right lung", "bone")


@pytest.fixture(scope="module")
def study(tmp_path_factory: pytest.TempPathFactory) -> SyntheticStudy:
    return make_synthetic_study(tmp_path_factory.mktemp("synthetic") / "study", seed=11)


def received(pacs_dir: Path) -> dict[str, list[Path]]:
    """Objects storescp wrote, by SOP class."""
    out: dict[str, list[Path]] = {}
    for path in sorted(p for p in pacs_dir.rglob("*") if p.is_file() and not p.name.endswith(".log")):
        ds = dcmread(path, stop_before_pixels=True)
        out.setdefault(str(ds.SOPClassUID), []).append(path)
    return out


def seg_dice(seg_path: Path, study: SyntheticStudy, structures: tuple[str, ...]) -> dict[str, float]:
    """Dice of each SEG segment against the synthetic truth of the same name, per source image
    (the truth painted like the pipeline paints: one label per voxel, largest first). Segment labels
    are display names ("Left lung"); the body segment holds the structures inside it (Segments
    Overlap YES), so its truth is every labelled voxel."""
    seg = hd.seg.segread(seg_path)
    truth, names = study.truth(list(structures))
    by_name = {name: value for value, name in names.items()}
    order = study.sop_instance_uids  # truth slice k ↔ this SOP instance
    dice = {}
    for number in seg.get_segment_numbers():
        label = seg.get_segment_description(number).segment_label.lower()
        if label not in by_name:
            continue
        mask = seg.get_pixels_by_source_instance(
            source_sop_instance_uids=list(order),
            segment_numbers=[number],
            combine_segments=True,
            ignore_spatial_locations=True,
            assert_missing_frames_are_empty=True,
        ).astype(bool)
        ref = truth != 0 if label == "body" else truth == by_name[label]
        dice[label] = 2 * float((mask & ref).sum()) / float(mask.sum() + ref.sum())
    return dice


def assert_no_phi_in_logs(node: NodeHarness, study: SyntheticStudy) -> None:
    """No PatientName, PatientID, BirthDate or AccessionNumber of the input in any process log."""
    ds = dcmread(study.dicom_paths[0], stop_before_pixels=True)
    identifiers = {
        str(ds.get(k, "")) for k in ("PatientName", "PatientID", "PatientBirthDate", "AccessionNumber")
    } - {""}
    assert identifiers, "the synthetic study should carry identifiers to look for"
    logs = node.logs(full=True)
    assert "association released" in logs  # the logs were read, and they are the node's
    for value in identifiers:
        assert value not in logs, f"an identifier of the input study is in the logs: {value[:2]}…"


@pytest.fixture
def pacs(tmp_path: Path) -> Iterator[tuple[Path, int]]:
    out = tmp_path / "pacs"
    with storescp(out) as (_proc, port):
        yield out, port


def _run_roundtrip(tmp_path: Path, study: SyntheticStudy, pacs: tuple[Path, int], broker_url: str) -> None:
    pacs_dir, pacs_port = pacs
    node = NodeHarness(tmp_path, pacs_port=pacs_port, broker_url=broker_url, prompts=PROMPTS)
    try:
        node.start_serve(with_worker=True)
        sent = node.storescu(study.dicom_paths)
        assert sent.returncode == 0, sent.stderr
        job = node.wait_for_job(study.study_instance_uid)
        assert job.state == JobState.DELIVERED, (job.reason, node.logs())
        objects = received(pacs_dir)
        assert set(objects) == {SEG_BINARY, SR_3D, GSPS}, objects
        for paths in objects.values():
            for path in paths:
                assert dciodvfy_errors(path) == [], path
        dice = seg_dice(objects[SEG_BINARY][0], study, PROMPTS)
        assert set(dice) >= {"body", "left lung", "right lung"}, dice
        assert all(d >= 0.95 for d in dice.values()), dice
        uids_before = sorted(p.name for ps in objects.values() for p in ps)

        # What an admin sees of it: the job with its stage timings, and stage histograms.
        detail = node.api_get(f"/api/jobs/{job.job_id}")
        assert isinstance(detail, dict) and json.dumps(detail).count(job.job_id) >= 1
        assert "inference" in json.dumps(detail) and "delivered" in json.dumps(detail)
        metrics = str(node.api_get("/metrics"))
        assert "ctnode_stage_duration_seconds_count{" in metrics and 'rule="e2e-ct"' in metrics

        # The same study again (a PACS re-sends): every instance is a duplicate the SCP accepts
        # and drops, so the study is not routed again: no job, no computation, no delivery.
        again = node.storescu(study.dicom_paths)
        assert again.returncode == 0, again.stderr
        study_record = node.store.get_study(study.study_instance_uid)
        time.sleep(2 * 2.0 + 3)  # two quiet periods and a margin for any (wrong) re-routing
        assert node.store.get_study(study.study_instance_uid) == study_record
        jobs = node.jobs(study.study_instance_uid)
        assert [j.job_id for j in jobs] == [job.job_id]
        events = node.store.events(job.job_id)
        assert [e.to_state for e in events].count(JobState.ENCODED) == 1
        assert sorted(p.name for ps in received(pacs_dir).values() for p in ps) == uids_before
        assert_no_phi_in_logs(node, study)
    finally:
        node.stop()


def test_roundtrip_embedded_broker(tmp_path: Path, study: SyntheticStudy, pacs: tuple[Path, int]) -> None:
    """storescu → serve (SQLite broker, worker child) → storescp: SEG+SR+GSPS, dciodvfy-clean, Dice
    ≥ 0.95 on what the PACS got, and a re-sent study makes no second job or result series."""
    _run_roundtrip(tmp_path, study, pacs, broker_url="")


def test_roundtrip_redis_broker(tmp_path: Path, study: SyntheticStudy, pacs: tuple[Path, int]) -> None:
    """The same on a real redis-server broker."""
    with redis_server(tmp_path / "redis") as redis:
        _run_roundtrip(tmp_path, study, pacs, broker_url=redis.url)


def test_worker_killed_mid_job_is_swept_and_completes_once(tmp_path: Path, study: SyntheticStudy) -> None:
    """kill -9 of the worker while the job runs → serve's sweeper finds the dead claimant and requeues
    the job (the SQLite broker lost its message) → a new worker finishes it; one result, sent once."""
    pacs_dir = tmp_path / "pacs"
    with storescp(pacs_dir) as (_proc, pacs_port):
        node = NodeHarness(tmp_path, pacs_port=pacs_port, prompts=PROMPTS)
        try:
            node.start_serve(with_worker=False)
            first = node.start_worker("first")
            assert node.storescu(study.dicom_paths).returncode == 0
            running = node.wait_for_job(
                study.study_instance_uid, timeout_s=120, done=lambda j: j.state == JobState.RUNNING
            )
            first.kill9()
            requeued = node.wait_for_job(
                study.study_instance_uid, timeout_s=90, done=lambda j: j.state == JobState.QUEUED
            )
            assert requeued.job_id == running.job_id
            assert "sweeper" in node.store.events(running.job_id)[-1].reason
            node.start_worker("second")
            job = node.wait_for_job(study.study_instance_uid)
            assert job.state == JobState.DELIVERED, job.reason
            events = node.store.events(job.job_id)
            assert [e.to_state for e in events].count(JobState.ENCODED) == 1
            assert [e.to_state for e in events].count(JobState.RUNNING) == 2  # the dead claim and the new one
            objects = received(pacs_dir)
            assert sorted(len(v) for v in objects.values()) == [1, 1, 1]
        finally:
            node.stop()


def test_destination_down_then_up(tmp_path: Path, study: SyntheticStudy) -> None:
    """The PACS is down when results are ready: retried with backoff, delivered once it is up."""
    pacs_port = free_port()
    pacs_dir = tmp_path / "pacs"
    node = NodeHarness(tmp_path, pacs_port=pacs_port, prompts=("body",))
    try:
        node.start_serve(with_worker=True)
        assert node.storescu(study.dicom_paths).returncode == 0
        node.wait_for_job(
            study.study_instance_uid,
            timeout_s=180,
            done=lambda j: any(d.attempts >= 2 for d in node.store.deliveries_for(j.job_id)),
        )
        job = node.jobs(study.study_instance_uid)[-1]
        assert job.state == JobState.DELIVERING
        with storescp(pacs_dir, port=pacs_port):
            job = node.wait_for_job(study.study_instance_uid, timeout_s=120)
        assert job.state == JobState.DELIVERED, job.reason
        (delivery,) = node.store.deliveries_for(job.job_id)
        assert delivery.attempts >= 3
        assert set(received(pacs_dir)) == {SEG_BINARY, SR_3D, GSPS}
    finally:
        node.stop()
