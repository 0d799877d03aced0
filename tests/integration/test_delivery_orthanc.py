"""Destination kind ``orthanc`` against a real Orthanc (REST API, HTTP authentication on): send,
confirm, health, and withdrawing superseded results by REST delete."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from dicom_node.delivery import DeliveryIncomplete, deliver, open_destination
from dicom_node.delivery.destination import Withdraws
from dicom_node.settings import OrthancDestinationSettings
from tests.support.orthanc import OrthancServer, orthanc
from tests.support.processes import free_port
from tests.unit.dicom_node.delivery.objects import UID_ROOT, make_result_bundle

pytestmark = pytest.mark.integration

USER, PASSWORD = "ctnode-worker", "a-test-password-not-a-secret"
ENV = {"CTNODE_ORTHANC_USERNAME": USER, "CTNODE_ORTHANC_PASSWORD": PASSWORD}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OrthancServer]:
    with orthanc(tmp_path_factory.mktemp("orthanc"), credentials=(USER, PASSWORD), dicomweb=False) as running:
        yield running


def _dest(url: str, **kw: object) -> OrthancDestinationSettings:
    return OrthancDestinationSettings(kind="orthanc", url=url, timeout_s=10, **kw)


def test_send_confirm_and_withdraw_by_delete(server: OrthancServer, tmp_path: Path) -> None:
    bundle = make_result_bundle(
        tmp_path / "r", study_instance_uid=UID_ROOT + "601", kinds=("seg-binary", "sr", "gsps")
    )
    dest = _dest(server.url, objects=["seg", "sr", "gsps"])
    report = deliver(bundle, "orthanc", dest, calling_ae_title="CTAINODE", environ=ENV)
    sent = {f.sop_instance_uid for f in bundle.files}
    assert set(report.delivered_sop_instance_uids) == sent and report.failed == {}
    assert report.confirmed, report.confirmation_detail
    assert sent <= server.sop_instance_uids()  # Orthanc's own listing, not our lookup

    destination = open_destination("orthanc", dest, calling_ae_title="CTAINODE", environ=ENV)
    health = destination.health()
    assert health.ok and health.status == 200 and "Orthanc" in health.detail
    assert isinstance(destination, Withdraws) and destination.needs_rejection_note is False
    result = destination.withdraw(
        bundle.files, study_instance_uid=bundle.study_instance_uid, rejection_note=None
    )
    assert result.ok and result.method == "delete", result.detail
    assert "deleted 3 instance(s)" in result.detail
    assert not sent & server.sop_instance_uids()
    again = destination.withdraw(
        bundle.files, study_instance_uid=bundle.study_instance_uid, rejection_note=None
    )
    assert again.ok and "3 already gone" in again.detail  # a retried withdrawal is harmless


def test_a_resend_is_already_stored_and_bad_credentials_are_refused(
    server: OrthancServer, tmp_path: Path
) -> None:
    bundle = make_result_bundle(tmp_path / "r", study_instance_uid=UID_ROOT + "602", kinds=("sr",))
    dest = _dest(server.url, objects=["sr"])
    deliver(bundle, "orthanc", dest, calling_ae_title="N", environ=ENV)
    again = deliver(bundle, "orthanc", dest, calling_ae_title="N", environ=ENV)
    assert "AlreadyStored" in next(iter(again.warnings.values()))
    wrong = {"CTNODE_ORTHANC_USERNAME": USER, "CTNODE_ORTHANC_PASSWORD": "wrong"}
    health = open_destination("orthanc", dest, calling_ae_title="N", environ=wrong).health()
    assert not health.ok and health.status == 401


def test_a_server_that_is_down_is_transient(tmp_path: Path) -> None:
    bundle = make_result_bundle(
        tmp_path / "r", study_instance_uid=UID_ROOT + "603", kinds=("seg-binary", "sr")
    )
    dest = _dest(f"http://127.0.0.1:{free_port()}", objects=["seg", "sr"])
    with pytest.raises(DeliveryIncomplete) as info:
        deliver(bundle, "orthanc", dest, calling_ae_title="N", environ=ENV)
    assert len(info.value.report.failed) == 2 and all(
        "transient" in v for v in info.value.report.failed.values()
    )
    destination = open_destination("orthanc", dest, calling_ae_title="N", environ=ENV)
    assert not destination.health().ok
    result = destination.withdraw(
        bundle.files, study_instance_uid=bundle.study_instance_uid, rejection_note=None
    )
    assert not result.ok and result.transient
