"""The dashboard in headless Debian Chromium: it loads, shows a processed study with its per-stage
timings, and its Requeue button puts a failed job back on the queue (a task message lands on the
broker). Screenshots are kept under test-artifacts/dashboard/."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from dicom_node.contracts import DeliveryReport, JobState
from dicom_node.jobs import DeliveryState, JobStore
from tests.support.ohif import CHROMIUM, CHROMIUM_ARGS
from tests.unit.dicom_node.jobs.builders import make_bundle, make_job
from tests.unit.worker.admin.conftest import (
    ADMIN_TOKEN,
    VIEWER_TOKEN,
    make_manifest,
    record_routed_study,
    settings_for,
)
from worker.admin.app import create_app
from worker.admin.auth import TokenAuth
from worker.admin.broker import pending_task_ids
from worker.admin.server import AdminServer
from worker.context import WorkerContext
from worker.tasks.app import make_celery

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[2]
ARTIFACTS = REPO / "test-artifacts" / "dashboard"
STUDY = "1.2.826.0.1.3680043.8.498.8001"


def processed_study(store: JobStore) -> str:
    record_routed_study(store, make_manifest(STUDY), received_s_ago=40.0)
    job = make_job(study_instance_uid=STUDY, destinations=("pacs",))
    store.create_job(job)
    store.claim(job.job_id, "gpu-1:100:200")
    store.record_result(
        job.job_id, make_bundle(job), timings_s={"fetch": 1.5, "inference": 12.25, "encode": 0.75}
    )
    store.transition(job.job_id, JobState.DELIVERING, reason="deliver")
    store.start_delivery(job.job_id, "pacs")
    report = DeliveryReport(job_id=job.job_id, destination="pacs", finished_at=datetime.now(UTC))
    store.record_delivery(report, state=DeliveryState.DELIVERED)
    store.add_timings(job.job_id, {"deliver.pacs": 0.5})
    store.settle_deliveries(job.job_id)
    return job.job_id


@contextlib.contextmanager
def browser_page(tmp_path: Path) -> Iterator[object]:
    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} not found: scripts/setup installs Debian's chromium")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            str(tmp_path / "chromium-profile"),  # a fresh --user-data-dir
            executable_path=str(CHROMIUM),
            args=CHROMIUM_ARGS,
            headless=True,
            viewport={"width": 1400, "height": 1000},
        )
        try:
            yield context.new_page()
        finally:
            context.close()


def test_dashboard_shows_a_processed_study_and_requeues_a_failure(tmp_path: Path) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    settings = settings_for(tmp_path)
    ctx = WorkerContext(settings=settings, store=JobStore.open(settings.database_url))
    store = ctx.store
    delivered = processed_study(store)
    failed = make_job(pipeline="lesions")
    store.create_job(failed)
    store.claim(failed.job_id, "gpu-1:100:200")
    store.transition(failed.job_id, JobState.FAILED, reason="PermanentError: series has 2 slices, needs 20")

    environ = {"CTNODE_ADMIN_TOKEN": ADMIN_TOKEN, "CTNODE_VIEWER_TOKEN": VIEWER_TOKEN}
    app = create_app(ctx, make_celery(settings, include=[]), auth=TokenAuth(settings.api, environ=environ))
    try:
        with AdminServer(app, port=0) as server, browser_page(tmp_path) as page:
            page.goto(f"{server.url}/dashboard")  # type: ignore[attr-defined]
            page.fill("#token-input", ADMIN_TOKEN)  # type: ignore[attr-defined]
            page.click("#login button[type=submit]")  # type: ignore[attr-defined]
            page.wait_for_selector("body[data-loaded='1']", timeout=15000)  # type: ignore[attr-defined]

            studies = page.inner_text("#studies")  # type: ignore[attr-defined]
            assert STUDY in studies and "delivered" in studies
            assert "inference 12.25 s" in studies and "encode 0.75 s" in studies
            assert "ready" in page.inner_text("#ready")  # type: ignore[attr-defined]
            assert "ct-thin" in page.inner_text("#rules")  # type: ignore[attr-defined]
            failures = page.inner_text("#failures")  # type: ignore[attr-defined]
            assert failed.job_id in failures and "needs 20" in failures and delivered not in failures
            assert "inference" in page.inner_text("#queues")  # type: ignore[attr-defined]
            page.screenshot(path=str(ARTIFACTS / "dashboard.png"), full_page=True)  # type: ignore[attr-defined]

            page.click(f"button.requeue[data-job-id='{failed.job_id}']")  # type: ignore[attr-defined]
            # selectors, not wait_for_function: the page's CSP forbids eval, as it should
            page.wait_for_selector("#message:has-text('requeued')", timeout=15000)  # type: ignore[attr-defined]
            assert store.require_job(failed.job_id).state == JobState.QUEUED
            assert failed.job_id in pending_task_ids(settings.broker_url)
            assert (
                "requeued by admin@127.0.0.1 (inference): from the dashboard"
                in store.events(failed.job_id)[-1].reason
            )
            gone = f"#failures button.requeue[data-job-id='{failed.job_id}']"
            page.wait_for_selector(gone, state="detached", timeout=15000)  # type: ignore[attr-defined]
            page.screenshot(path=str(ARTIFACTS / "dashboard-after-requeue.png"), full_page=True)  # type: ignore[attr-defined]

            # the token lives in this tab only; "Forget token" brings the login back
            assert page.evaluate("sessionStorage.getItem('ctnode.adminToken')") == ADMIN_TOKEN  # type: ignore[attr-defined]
            page.click("#logout")  # type: ignore[attr-defined]
            assert page.is_visible("#login")  # type: ignore[attr-defined]
    finally:
        ctx.close()
    assert (ARTIFACTS / "dashboard.png").stat().st_size > 10_000
