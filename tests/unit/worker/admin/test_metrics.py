"""/metrics built from the job store's audit trail: stage histograms, failures by class, gauges."""

from __future__ import annotations

from datetime import UTC, datetime

from prometheus_client.parser import text_string_to_metric_families

from dicom_node.contracts import DeliveryReport, JobState
from dicom_node.jobs import DeliveryState
from tests.unit.dicom_node.jobs.builders import make_bundle, make_job
from tests.unit.worker.admin.conftest import VIEWER, Node, make_manifest, record_routed_study
from worker.admin.metrics import StoreMetrics, failure_category


def samples(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, frozenset(s.labels.items()))] = s.value
    return out


def value(text: str, name: str, **labels: str) -> float | None:
    return samples(text).get((name, frozenset(labels.items())))


def _deliver(node: Node, study_uid: str) -> str:
    job = make_job(study_instance_uid=study_uid, destinations=("pacs",))
    store = node.store
    store.create_job(job)
    store.claim(job.job_id, "w1")
    timings = {"fetch": 1.0, "load": 0.5, "inference": 4.0, "encode": 0.25}
    store.record_result(job.job_id, make_bundle(job), timings_s=timings)
    store.transition(job.job_id, JobState.DELIVERING, reason="deliver")
    store.start_delivery(job.job_id, "pacs")
    report = DeliveryReport(job_id=job.job_id, destination="pacs", finished_at=datetime.now(UTC))
    store.record_delivery(report, state=DeliveryState.DELIVERED)
    store.add_timings(job.job_id, {"deliver.pacs": 0.75})
    store.settle_deliveries(job.job_id)
    return job.job_id


def test_stage_histograms_and_failures_from_the_trail(node: Node) -> None:
    old = make_job(pipeline="before-start")
    node.store.create_job(old)  # history before the metrics started: not counted
    metrics = StoreMetrics(node.store, broker_url=node.settings.broker_url)

    manifest = make_manifest("1.2.826.0.1.3680043.8.498.4001")
    record_routed_study(node.store, manifest, received_s_ago=30.0)  # stable 10 s after the first instance
    _deliver(node, manifest.study_instance_uid)
    failing = make_job(pipeline="lesions")
    node.store.create_job(failing)
    node.store.claim(failing.job_id, "w1")
    node.store.transition(
        failing.job_id, JobState.DEAD, reason="TransientError: PACS down (gave up after 6 retries)"
    )

    text = metrics.render().decode()
    labels = {"rule": "ct-abdomen", "pipeline": "organs", "destination": ""}
    for stage in ("stable", "queued", "started", "inferred", "encoded", "end_to_end"):
        assert value(text, "ctnode_stage_duration_seconds_count", stage=stage, **labels) == 1, stage
    assert value(text, "ctnode_stage_duration_seconds_sum", stage="stable", **labels) == 10.0
    assert value(text, "ctnode_stage_duration_seconds_sum", stage="inferred", **labels) == 5.5
    assert value(text, "ctnode_stage_duration_seconds_sum", stage="encoded", **labels) == 0.25
    delivered = {**labels, "destination": "pacs"}
    assert value(text, "ctnode_stage_duration_seconds_sum", stage="delivered", **delivered) == 0.75
    e2e = value(text, "ctnode_stage_duration_seconds_sum", stage="end_to_end", **labels)
    assert e2e is not None and 30.0 <= e2e < 120.0
    assert (
        value(
            text,
            "ctnode_stage_duration_seconds_count",
            stage="queued",
            rule="ct-abdomen",
            pipeline="before-start",
            destination="",
        )
        is None
    )

    failure = {"category": "TransientError", "state": "dead", "rule": "ct-abdomen", "pipeline": "lesions"}
    assert value(text, "ctnode_job_failures_total", **failure) == 1
    assert (
        value(text, "ctnode_jobs", state="delivered") == 1 and value(text, "ctnode_jobs", state="dead") == 1
    )
    assert value(text, "ctnode_broker_up") == 1
    assert value(text, "ctnode_queue_depth", queue="inference") == 0

    again = metrics.render().decode()  # a second scrape observes nothing twice
    assert value(again, "ctnode_stage_duration_seconds_count", stage="stable", **labels) == 1
    assert value(again, "ctnode_job_failures_total", **failure) == 1


def test_metrics_endpoint_needs_a_token_and_speaks_prometheus(node: Node) -> None:
    assert node.client.get("/metrics").status_code == 401
    response = node.client.get("/metrics", headers=VIEWER)
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/plain")
    assert "ctnode_stage_duration_seconds" in response.text and "ctnode_queue_depth" in response.text


def test_failure_category_is_a_bounded_set() -> None:
    assert failure_category("TransientError: PACS down") == "TransientError"
    assert failure_category("deliveries settled: {'pacs': 'failed'}") == "other"
    assert failure_category("sweeper: worker gone; claimed 7 times, giving up (WorkerLost)") == "WorkerLost"
    assert failure_category("Patient Smith John was here") == "other"  # free text never becomes a label
    assert failure_category("x", {"error_class": "PermanentError"}) == "PermanentError"
