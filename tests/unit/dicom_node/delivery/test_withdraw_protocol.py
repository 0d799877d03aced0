"""Withdrawing is an optional part of the destination protocol: which kinds implement it and how."""

from __future__ import annotations

from dicom_node.delivery import open_destination
from dicom_node.delivery.destination import Withdraws
from dicom_node.delivery.dicom_peer import DicomPeer
from dicom_node.delivery.orthanc import OrthancServer
from dicom_node.settings import DicomDestinationSettings, OrthancDestinationSettings, Settings


def test_orthanc_is_a_kind_of_its_own() -> None:
    settings = Settings(destinations={"viewer": {"kind": "orthanc", "url": "http://127.0.0.1:8042"}})
    dest = settings.destinations["viewer"]
    assert isinstance(dest, OrthancDestinationSettings)
    assert dest.username_env == "CTNODE_ORTHANC_USERNAME" and dest.withdraw_superseded is True
    opened = open_destination("viewer", dest, calling_ae_title="N", environ={})
    assert isinstance(opened, OrthancServer) and isinstance(opened, Withdraws)
    assert opened.needs_rejection_note is False  # Orthanc deletes; IOCM notes hide nothing there


def test_dicom_and_dicomweb_withdraw_by_rejection_note() -> None:
    peer = open_destination("pacs", DicomDestinationSettings(), calling_ae_title="N")
    web = open_destination(
        "web",
        Settings(destinations={"w": {"kind": "dicomweb", "url": "http://h/"}}).destinations["w"],
        calling_ae_title="N",
    )
    for destination in (peer, web):
        assert isinstance(destination, Withdraws) and destination.needs_rejection_note is True
    assert isinstance(peer, DicomPeer)
    result = peer.withdraw([], study_instance_uid="1.2.3", rejection_note=None)
    assert not result.ok and result.method == "rejection-note" and "no rejection note" in result.detail
