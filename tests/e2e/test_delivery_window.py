"""Deliveries outlast a PACS outage (issue 12 item 5), on the real node: ``ctnode serve`` + worker,
the "PACS" a DCMTK ``storescp`` that is down when the results are ready and comes back later.

The quick retries are cut to one and slow attempts to one an hour, so only the serve process's
health check (a real C-ECHO to the PACS) can bring the delivery back: when the test sees it
delivered, the destination monitor resumed it the moment the PACS answered.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from dicom_node.contracts import JobState
from dicom_node.jobs import DeliveryState
from tests.support.dcmtk import storescp
from tests.support.node import NodeHarness
from tests.support.processes import free_port, wait_until
from worker.demo.synth_study import SyntheticStudy, make_synthetic_study

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def study(tmp_path_factory: pytest.TempPathFactory) -> SyntheticStudy:
    return make_synthetic_study(tmp_path_factory.mktemp("window") / "study", seed=3)


def test_a_delivery_waits_for_the_pacs_and_resumes_when_it_answers(
    tmp_path: Path, study: SyntheticStudy
) -> None:
    pacs_port = free_port()
    node = NodeHarness(
        tmp_path,
        pacs_port=pacs_port,
        prompts=("body",),
        extra_settings={
            "queue": {
                "max_retries": 1,
                "retry_backoff_base_s": 0.5,
                "retry_backoff_max_s": 1.0,
                "waiting_retry_interval_s": 3600.0,
                "destination_probe_interval_s": 1.0,
            }
        },
    )
    try:
        node.start_serve(with_worker=True)
        assert node.storescu(study.dicom_paths).returncode == 0

        def delivery_state() -> DeliveryState | None:
            jobs = node.jobs(study.study_instance_uid)
            deliveries = node.store.deliveries_for(jobs[-1].job_id) if jobs else []
            return deliveries[0].state if deliveries else None

        # quick retries used up: the delivery waits (it used to be DEAD here), the job is not settled
        wait_until(
            lambda: delivery_state() == DeliveryState.WAITING, timeout_s=300, what="a waiting delivery"
        )
        job = node.jobs(study.study_instance_uid)[-1]
        assert job.state == JobState.DELIVERING, job.reason
        wait_until(
            lambda: node.api_get("/api/destinations/status")[0]["state"] == "down",  # type: ignore[index]
            timeout_s=60,
            what="the PACS seen down",
        )
        (row,) = node.api_get("/api/destinations/status")  # type: ignore[misc]
        assert row["name"] == "pacs" and row["deliveries_waiting"] == 1 and row["retry_window_ends"]

        with storescp(tmp_path / "pacs", port=pacs_port):
            job = node.wait_for_job(study.study_instance_uid, timeout_s=120)
            assert job.state == JobState.DELIVERED, job.reason
            (row,) = node.api_get("/api/destinations/status")  # type: ignore[misc]
            assert row["state"] == "up" and row["deliveries_waiting"] == 0
        reasons = [e.reason for e in node.store.events(job.job_id)]
        assert any("waiting for the destination" in r for r in reasons), reasons
        assert any("answers its health check again" in r for r in reasons), reasons
        received = [p for p in (tmp_path / "pacs").rglob("*") if p.is_file() and not p.name.endswith(".log")]
        assert len(received) == 3  # SEG, SR, GSPS: once
    finally:
        node.stop()
