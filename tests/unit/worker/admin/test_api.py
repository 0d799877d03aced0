"""The admin API over a real SQLite job store and the embedded SQLite broker (messages read back)."""

from __future__ import annotations

import pytest

from dicom_node.contracts import Job, JobState
from dicom_node.identity import delivery_id_for
from dicom_node.jobs import DeliveryState
from tests.unit.dicom_node.jobs.builders import make_bundle, make_job
from tests.unit.worker.admin.conftest import ADMIN, RULES, VIEWER, Node, make_manifest, record_routed_study

WRITES = [
    ("post", "/api/jobs/{job}/requeue"),
    ("post", "/api/jobs/{job}/retry"),
    ("post", "/api/jobs/{job}/cancel"),
    ("post", "/api/destinations/pacs/echo"),
]
READS = [
    "/api/overview",
    "/api/studies",
    "/api/jobs",
    "/api/jobs/{job}",
    "/api/dead-letters",
    "/api/failures",
    "/api/rules",
    "/api/queues",
    "/api/workers",
    "/api/config-changes",
    "/metrics",
]


def _dead_job(node: Node) -> Job:
    job = make_job()
    node.store.create_job(job)
    node.store.claim(job.job_id, "w1")
    node.store.transition(
        job.job_id, JobState.DEAD, reason="TransientError: PACS down (gave up after 6 retries)"
    )
    return job


def test_health_is_anonymous_and_openapi_is_published(node: Node) -> None:
    assert node.client.get("/healthz").json() == {"status": "ok"}
    ready = node.client.get("/readyz")
    assert ready.status_code == 200 and ready.json()["ready"] is True
    assert set(ready.json()["checks"]) == {"job_store", "broker", "rules", "staging_disk", "pipelines"}
    spec = node.client.get("/api/openapi.json").json()
    assert "/api/jobs/{job_id}/requeue" in spec["paths"] and "/api/rules/replay" in spec["paths"]


def test_readyz_503_when_the_staging_disk_is_below_its_watermark(node: Node) -> None:
    storage = node.settings.storage.model_copy(update={"min_free_bytes": 10**18})
    node.ctx.settings = node.settings.model_copy(update={"storage": storage})
    ready = node.client.get("/readyz")
    assert ready.status_code == 503
    disk = ready.json()["checks"]["staging_disk"]
    assert disk["ok"] is False and "below" in disk["detail"]


@pytest.mark.parametrize("path", READS)
def test_reads_need_a_token(node: Node, path: str) -> None:
    job = _dead_job(node)
    url = path.format(job=job.job_id)
    assert node.client.get(url).status_code == 401
    bad = node.client.get(url, headers={"Authorization": "Bearer not-the-token"})
    assert bad.status_code == 401 and bad.headers["www-authenticate"].startswith("Bearer")
    assert (
        node.client.get(
            url, headers={"Authorization": VIEWER["Authorization"].replace("Bearer", "Basic")}
        ).status_code
        == 401
    )
    assert node.client.get(url, headers=VIEWER).status_code == 200
    assert node.client.get(url, headers=ADMIN).status_code == 200


@pytest.mark.parametrize(("method", "path"), WRITES)
def test_writes_need_the_admin_token(node: Node, method: str, path: str) -> None:
    job = _dead_job(node)
    url = path.format(job=job.job_id)
    call = getattr(node.client, method)
    assert call(url).status_code == 401
    assert call(url, headers={"Authorization": "Bearer wrong"}).status_code == 401
    assert call(url, headers=VIEWER).status_code == 403
    assert node.store.require_job(job.job_id).state == JobState.DEAD  # nothing changed
    assert node.messages() == []


def test_requeue_dead_job_from_the_api(node: Node) -> None:
    job = _dead_job(node)
    dead = node.client.get("/api/dead-letters", headers=VIEWER).json()
    assert [j["job_id"] for j in dead] == [job.job_id] and "gave up" in dead[0]["reason"]

    response = node.client.post(
        f"/api/jobs/{job.job_id}/requeue", headers=ADMIN, json={"reason": "PACS fixed"}
    )
    assert response.status_code == 200, response.text
    out = response.json()
    assert out["state"] == "queued" and out["stage"] == "inference"
    assert node.store.require_job(job.job_id).state == JobState.QUEUED
    last = node.store.events(job.job_id)[-1]
    assert last.reason.startswith("requeued by admin@") and last.reason.endswith("(inference): PACS fixed")
    (message,) = node.messages()
    assert message == {
        "queue": "inference",
        "task": "worker.tasks.run_pipeline",
        "id": job.job_id,
        "args": [job.model_dump(mode="json")],
    }
    again = node.client.post(f"/api/jobs/{job.job_id}/requeue", headers=ADMIN)
    assert again.status_code == 409 and "only failed or dead" in again.json()["detail"]
    assert node.client.post("/api/jobs/nope/requeue", headers=ADMIN).status_code == 404


def test_requeue_delivery_only_to_undelivered(node: Node) -> None:
    job = make_job(destinations=("pacs", "archive"))
    node.store.create_job(job)
    node.store.claim(job.job_id, "w1")
    node.store.record_result(job.job_id, make_bundle(job))
    node.store.transition(job.job_id, JobState.DELIVERING, reason="deliver")
    for dest, state in (("pacs", DeliveryState.FAILED), ("archive", DeliveryState.DELIVERED)):
        node.store.start_delivery(job.job_id, dest)
        node.store.set_delivery_state(job.job_id, dest, state, reason="test")
    node.store.settle_deliveries(job.job_id)
    assert node.store.require_job(job.job_id).state == JobState.FAILED

    bad = node.client.post(f"/api/jobs/{job.job_id}/requeue", headers=ADMIN, json={"destinations": ["NOPE"]})
    assert bad.status_code == 409 and "NOPE" in bad.json()["detail"]
    out = node.client.post(f"/api/jobs/{job.job_id}/retry", headers=ADMIN).json()
    assert out["stage"] == "delivery" and out["state"] == "delivering"
    (message,) = node.messages()
    assert message["id"] == delivery_id_for(job.job_id, "pacs") and message["args"] == [job.job_id, "pacs"]
    assert node.store.get_delivery(job.job_id, "pacs").state == DeliveryState.PENDING  # type: ignore[union-attr]


def test_cancel_queued_and_failed_jobs_but_not_running_ones(node: Node) -> None:
    queued = make_job(pipeline="a")
    running = make_job(pipeline="b")
    for job in (queued, running):
        node.store.create_job(job)
    node.store.claim(running.job_id, "w1")

    out = node.client.post(
        f"/api/jobs/{queued.job_id}/cancel", headers=ADMIN, json={"reason": "wrong protocol"}
    )
    assert out.status_code == 200 and out.json()["state"] == "skipped"
    assert "cancelled by admin@" in node.store.require_job(queued.job_id).reason
    assert node.store.require_job(queued.job_id).reason.endswith("wrong protocol")
    assert node.store.claim(queued.job_id, "w2") is False  # a message still on the broker runs nothing

    refused = node.client.post(f"/api/jobs/{running.job_id}/cancel", headers=ADMIN)
    assert refused.status_code == 409 and "running" in refused.json()["detail"]
    assert node.store.require_job(running.job_id).state == JobState.RUNNING


def test_studies_and_jobs_with_timings_and_events(node: Node) -> None:
    manifest = make_manifest("1.2.826.0.1.3680043.8.498.2001")
    record_routed_study(node.store, manifest)
    job = make_job(study_instance_uid=manifest.study_instance_uid)
    node.store.create_job(job)
    node.store.claim(job.job_id, "w1")
    node.store.record_result(
        job.job_id, make_bundle(job), timings_s={"fetch": 0.5, "inference": 3.25, "encode": 0.75}
    )

    studies = node.client.get("/api/studies", headers=VIEWER).json()
    assert (
        studies[0]["study_instance_uid"] == manifest.study_instance_uid and studies[0]["has_manifest"] is True
    )
    assert studies[0]["jobs"][0]["timings_s"] == {"fetch": 0.5, "inference": 3.25, "encode": 0.75}
    one = node.client.get(f"/api/studies/{manifest.study_instance_uid}", headers=VIEWER).json()
    assert one["manifest"]["series"][0]["series_description"] == "Abdomen 1.0 B30f"
    assert node.client.get("/api/studies/1.2.3", headers=VIEWER).status_code == 404

    detail = node.client.get(f"/api/jobs/{job.job_id}", headers=VIEWER).json()
    assert [e["to_state"] for e in detail["events"]] == ["queued", "running", "encoded"]
    listed = node.client.get("/api/jobs", headers=VIEWER, params={"state": "encoded"}).json()
    assert [j["job_id"] for j in listed] == [job.job_id] and listed[0]["result_files"] == 3
    assert node.client.get("/api/jobs", headers=VIEWER, params={"state": "dead"}).json() == []


def test_rules_in_force_and_a_bad_file_keeps_them(node: Node) -> None:
    rules = node.client.get("/api/rules", headers=VIEWER).json()
    assert rules["file_problems"] is None
    assert [r["name"] for r in rules["in_force"]["rules"]] == ["ct-thin"] and rules["in_force"]["rules"][0][
        "line"
    ] == 3
    digest = rules["in_force"]["digest"]

    node.settings.rules_file.write_text(
        RULES.replace("pipeline: ct-anatomy-basic", "pipeline: no-such-pipeline")
    )
    broken = node.client.get("/api/rules", headers=VIEWER).json()
    assert broken["in_force"]["digest"] == digest  # the old rules stay in force
    (problem,) = broken["file_problems"]
    assert problem["line"] == 7 and "no-such-pipeline" in problem["message"]


def test_validate_a_draft_reports_lines(node: Node) -> None:
    ok = node.client.post("/api/rules/validate", headers=VIEWER, json={"text": RULES}).json()
    assert ok["valid"] is True and ok["rule_count"] == 1 and len(ok["digest"]) == 64
    draft = RULES + "  - name: ct-thin\n    pipeline: ct-anatomy-basic\n    destinations: [nowhere]\n"
    bad = node.client.post("/api/rules/validate", headers=VIEWER, json={"text": draft}).json()
    assert bad["valid"] is False
    lines = {p["line"] for p in bad["problems"]}
    assert lines == {9, 11}  # the duplicate name (rule at line 9) and the unknown destination (line 11)
    assert any("nowhere" in p["message"] for p in bad["problems"])
    syntax = node.client.post("/api/rules/validate", headers=VIEWER, json={"text": "rules: [\n"}).json()
    assert syntax["valid"] is False and "YAML" in syntax["problems"][0]["message"]
    assert node.client.post("/api/rules/validate", headers=VIEWER, json={"nope": 1}).status_code == 422


def test_replay_a_draft_on_stored_manifests_sends_nothing(node: Node) -> None:
    thin = make_manifest("1.2.826.0.1.3680043.8.498.3001", thickness_mm=1.0)
    thick = make_manifest("1.2.826.0.1.3680043.8.498.3002", thickness_mm=5.0)
    for manifest in (thin, thick):
        record_routed_study(node.store, manifest)
    draft = RULES.replace("{max: 3.0}", "{max: 6.0}")

    out = node.client.post("/api/rules/replay", headers=VIEWER, json={"text": draft, "limit": 10}).json()
    assert out["valid"] is True and out["studies_replayed"] == 2 and out["studies_changed"] == 1
    by_uid = {s["study_instance_uid"]: s for s in out["studies"]}
    assert [f["rule"] for f in by_uid[thick.study_instance_uid]["draft"]["fired"]] == ["ct-thin"]
    assert by_uid[thick.study_instance_uid]["current"]["fired"] == []
    assert "slice" in " ".join(by_uid[thick.study_instance_uid]["current"]["missed"][0]["reasons"]).lower()
    assert by_uid[thin.study_instance_uid]["changed"] is False
    assert by_uid[thin.study_instance_uid]["draft"]["jobs"][0]["series"] == [thin.study_instance_uid + ".1"]
    assert node.messages() == [] and node.store.list_jobs() == []

    one = node.client.post("/api/rules/replay", headers=VIEWER, json={"text": draft, "limit": 1}).json()
    assert one["studies_replayed"] == 1
    bad = node.client.post("/api/rules/replay", headers=VIEWER, json={"text": "rules: 3"}).json()
    assert bad["valid"] is False and bad["studies"] == []


def test_echo_unknown_and_unreachable_destination(node: Node) -> None:
    assert node.client.post("/api/destinations/nope/echo", headers=ADMIN).status_code == 404
    out = node.client.post("/api/destinations/pacs/echo", headers=ADMIN).json()  # nothing listens on 11199
    assert out["ok"] is False and "PACS@127.0.0.1:11199" in out["detail"]


def test_dashboard_page_is_self_contained(node: Node) -> None:
    page = node.client.get("/dashboard")
    assert page.status_code == 200 and "sessionStorage" in page.text
    assert "http://" not in page.text and "https://" not in page.text  # no CDN: the node is offline
    assert "default-src 'self'" in page.headers["content-security-policy"]
