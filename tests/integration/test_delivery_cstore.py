"""C-STORE delivery to a real DCMTK storescp, with retries driven by the pure retry policy."""

from __future__ import annotations

import contextlib
import random
import time
from pathlib import Path

import pytest
from pydicom import dcmread

from dicom_node.contracts import JobState, ResultBundle
from dicom_node.delivery import DeliveryIncomplete, confirm_cfind, deliver
from dicom_node.jobs import DeliveryState, JobStore
from dicom_node.settings import DicomDestinationSettings
from tests.support.dcmtk import storescp
from tests.support.orthanc import orthanc
from tests.support.processes import free_port
from tests.unit.dicom_node.delivery.objects import LABELMAP_SEG, make_result_bundle, write_object
from tests.unit.dicom_node.jobs.builders import make_job
from worker.tasks.outcomes import RetryAction, RetryPolicy

pytestmark = pytest.mark.integration


def _received(folder: Path) -> dict[str, str]:
    """SOP Instance UID -> SOP Class UID of every object storescp wrote."""
    out = {}
    for path in folder.rglob("*"):
        if path.is_file() and not path.name.endswith(".log"):
            ds = dcmread(path, stop_before_pixels=True)
            out[str(ds.SOPInstanceUID)] = str(ds.SOPClassUID)
    return out


def test_delivers_binary_and_labelmap_seg_sr_gsps(tmp_path: Path) -> None:
    bundle = make_result_bundle(tmp_path / "results")
    with storescp(tmp_path / "pacs" / "in", ae_title="PACS") as (_proc, port):
        dest = DicomDestinationSettings(
            ae_title="PACS", port=port, objects=["seg", "sr", "gsps"], seg_type="labelmap"
        )
        report = deliver(bundle, "PACS", dest, calling_ae_title="CTAINODE")
        binary = DicomDestinationSettings(ae_title="PACS", port=port)
        report_binary = deliver(bundle, "PACS-B", binary, calling_ae_title="CTAINODE")
    received = _received(tmp_path / "pacs" / "in")
    expected = {f.sop_instance_uid: f.sop_class_uid for f in bundle.files}
    assert received == expected  # every object arrived, with its SOP class, labelmap SEG included
    assert LABELMAP_SEG in received.values()
    assert len(report.delivered_sop_instance_uids) == 3 and report.failed == {}
    assert len(report_binary.delivered_sop_instance_uids) == 3


def test_destination_down_then_up_is_delivered_after_retries(tmp_path: Path) -> None:
    """The deliver task's loop, in miniature: record each attempt in the job store, back off with
    the pure policy (0.1 s base), bring the PACS up after the second failure."""
    bundle: ResultBundle = make_result_bundle(tmp_path / "results", kinds=("seg-binary", "sr", "gsps"))
    job = make_job(destinations=("PACS",))
    store = JobStore.open(f"sqlite:///{tmp_path / 'jobs.sqlite'}")
    store.create_job(job.model_copy(update={"job_id": bundle.job_id}))
    store.claim(bundle.job_id, "test-worker")
    store.record_result(bundle.job_id, bundle)
    store.transition(bundle.job_id, JobState.DELIVERING, reason="deliver to PACS")

    port = free_port()
    dest = DicomDestinationSettings(ae_title="PACS", port=port, timeout_s=2)
    policy = RetryPolicy(max_retries=6, base_s=0.1, max_s=0.5)
    rng = random.Random(7)
    pacs_dir = tmp_path / "pacs" / "in"
    attempts = 0
    delays: list[float] = []
    with contextlib.ExitStack() as pacs:
        while True:
            record = store.start_delivery(bundle.job_id, "PACS")
            attempts = record.attempts
            if attempts == 3:  # the PACS comes back
                pacs.enter_context(storescp(pacs_dir, ae_title="PACS", port=port))
            try:
                report = deliver(
                    bundle,
                    "PACS",
                    dest,
                    calling_ae_title="CTAINODE",
                    already_delivered=store.delivered_uids(bundle.job_id, "PACS"),
                    attempt=attempts,
                )
            except DeliveryIncomplete as exc:
                store.record_delivery(exc.report, state=DeliveryState.RETRYING, error=str(exc))
                plan = policy.plan(exc, attempts - 1, jitter=rng)
                assert plan.action is RetryAction.RETRY, plan
                delays.append(plan.delay_s)
                time.sleep(plan.delay_s)
                continue
            store.record_delivery(report, state=DeliveryState.DELIVERED)
            break

    assert attempts == 3
    assert len(delays) == 2 and all(0 <= d <= 0.5 for d in delays)
    assert store.settle_deliveries(bundle.job_id) == JobState.DELIVERED
    delivery = store.get_delivery(bundle.job_id, "PACS")
    assert delivery is not None and delivery.attempts == 3
    assert set(delivery.delivered_sop_instance_uids) == {f.sop_instance_uid for f in bundle.files}
    assert set(_received(pacs_dir)) == {f.sop_instance_uid for f in bundle.files}
    events = [e.to_state for e in store.events(bundle.job_id)]
    assert events[-1] == JobState.DELIVERED
    store.close()


def test_resend_of_already_stored_objects_is_harmless(tmp_path: Path) -> None:
    bundle = make_result_bundle(tmp_path / "results", kinds=("seg-binary", "sr"))
    with storescp(tmp_path / "pacs" / "in") as (_proc, port):
        dest = DicomDestinationSettings(ae_title="PACS", port=port)
        first = deliver(bundle, "PACS", dest, calling_ae_title="CTAINODE")
        again = deliver(bundle, "PACS", dest, calling_ae_title="CTAINODE", attempt=2)
    assert first.delivered_sop_instance_uids == again.delivered_sop_instance_uids
    # identical UIDs: the PACS holds each object once, whatever it does with the second copy
    assert set(_received(tmp_path / "pacs" / "in")) == {f.sop_instance_uid for f in bundle.files}


def test_cstore_to_orthanc_confirmed_by_cfind(tmp_path: Path) -> None:
    """Orthanc as a DICOM PACS: C-STORE, then the C-FIND query-back finds every instance."""
    bundle = make_result_bundle(tmp_path / "results", kinds=("seg-binary", "sr", "gsps"))
    overrides = {"DicomAlwaysAllowFind": True}  # Orthanc answers C-FIND from unlisted AEs
    with orthanc(tmp_path / "orthanc", overrides=overrides, dicomweb=False) as server:
        dest = DicomDestinationSettings(ae_title=server.aet, port=server.dicom_port, timeout_s=10)
        report = deliver(bundle, "ORTHANC", dest, calling_ae_title="CTAINODE")
        held = server.sop_instance_uids()
        # a query for one instance it lacks: the query-back notices
        missing = write_object(tmp_path / "results", "sc", study_instance_uid=bundle.study_instance_uid)
        ok, detail = confirm_cfind(
            [*bundle.files, missing],
            dest,
            calling_ae_title="CTAINODE",
            study_instance_uid=bundle.study_instance_uid,
        )
    assert set(report.delivered_sop_instance_uids) == {f.sop_instance_uid for f in bundle.files} <= held
    assert report.confirmed is True, report.confirmation_detail
    assert "all 3 instances found" in report.confirmation_detail
    assert ok is False and missing.sop_instance_uid in detail


def test_storescp_has_no_cfind_so_delivery_is_unconfirmed(tmp_path: Path) -> None:
    bundle = make_result_bundle(tmp_path / "results", kinds=("sr",))
    with storescp(tmp_path / "pacs" / "in") as (_proc, port):
        report = deliver(
            bundle, "PACS", DicomDestinationSettings(ae_title="PACS", port=port), calling_ae_title="N"
        )
    assert report.delivered_sop_instance_uids == (bundle.files[0].sop_instance_uid,)
    assert report.confirmed is False and "C-FIND" in report.confirmation_detail
