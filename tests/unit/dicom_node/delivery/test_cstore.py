"""C-STORE delivery against a pynetdicom fake peer answering chosen statuses."""

from __future__ import annotations

import logging
import ssl
import subprocess
from pathlib import Path

import pytest

from dicom_node.contracts import ResultBundle
from dicom_node.delivery import DeliveryIncomplete, DeliveryRejected, deliver, send_cstore
from dicom_node.delivery.outcome import OutcomeKind
from dicom_node.settings import DicomDestinationSettings, TLSSettings
from tests.support.processes import free_port
from tests.unit.dicom_node.delivery.fake_peer import fake_peer
from tests.unit.dicom_node.delivery.objects import (
    BINARY_SEG,
    COMPREHENSIVE_3D_SR,
    GSPS,
    LABELMAP_SEG,
    make_result_bundle,
)

ALL_CLASSES = [BINARY_SEG, LABELMAP_SEG, COMPREHENSIVE_3D_SR, GSPS]


def _dest(port: int, **kw: object) -> DicomDestinationSettings:
    return DicomDestinationSettings(
        kind="dicom", ae_title="FAKEPACS", host="127.0.0.1", port=port, timeout_s=5, **kw
    )


@pytest.fixture
def bundle(tmp_path: Path) -> ResultBundle:
    return make_result_bundle(tmp_path / "results")


def _uid(bundle: ResultBundle, sop_class: str) -> str:
    return next(f.sop_instance_uid for f in bundle.files if f.sop_class_uid == sop_class)


def test_all_delivered_with_exact_contexts(bundle: ResultBundle) -> None:
    with fake_peer(ALL_CLASSES) as peer:
        report = deliver(bundle, "PACS", _dest(peer.port), calling_ae_title="CTAINODE")
    # default destination: binary SEG + SR + GSPS; the labelmap SEG is not sent
    expected = {_uid(bundle, c) for c in (BINARY_SEG, COMPREHENSIVE_3D_SR, GSPS)}
    assert set(report.delivered_sop_instance_uids) == expected
    assert set(peer.received) == expected
    assert report.failed == {} and report.warnings == {}
    assert report.destination == "PACS" and report.job_id == bundle.job_id
    assert set(peer.calling_ae_titles) == {"CTAINODE"}
    # the fake peer offers no C-FIND: delivered, but the query-back says it cannot confirm
    assert report.confirmed is False and "offers no Study Root C-FIND" in report.confirmation_detail


def test_labelmap_destination_gets_the_labelmap_seg(bundle: ResultBundle) -> None:
    # LABELMAP SEG is not among pynetdicom's default contexts: delivery must propose it itself.
    with fake_peer(ALL_CLASSES) as peer:
        report = deliver(
            bundle, "PACS", _dest(peer.port, seg_type="labelmap", objects=["seg"]), calling_ae_title="N"
        )
    assert report.delivered_sop_instance_uids == (_uid(bundle, LABELMAP_SEG),)
    assert set(peer.received) == {_uid(bundle, LABELMAP_SEG)}


@pytest.mark.parametrize(
    ("status", "kind"),
    [
        (0xB000, OutcomeKind.WARNING),  # coercion of data elements: stored
        (0x0111, OutcomeKind.WARNING),  # duplicate SOP instance: the peer has this very object
        (0xA700, OutcomeKind.TRANSIENT),  # out of resources
        (0xA7FF, OutcomeKind.TRANSIENT),
        (0x0110, OutcomeKind.TRANSIENT),  # processing failure
        (0xA900, OutcomeKind.PERMANENT),  # data set does not match SOP class
        (0xC001, OutcomeKind.PERMANENT),  # cannot understand
        (0x0122, OutcomeKind.PERMANENT),  # SOP class not supported
        (0x0124, OutcomeKind.PERMANENT),  # not authorized
    ],
)
def test_each_status_is_classified(bundle: ResultBundle, status: int, kind: OutcomeKind) -> None:
    sr = next(f for f in bundle.files if f.sop_class_uid == COMPREHENSIVE_3D_SR)
    with fake_peer(ALL_CLASSES, statuses={sr.sop_instance_uid: status}) as peer:
        result = send_cstore([sr], _dest(peer.port), calling_ae_title="N")
    (outcome,) = result.outcomes
    assert outcome.kind == kind
    assert outcome.status == status
    assert f"0x{status:04X}" in outcome.detail


def test_partial_success_then_retry_resends_only_the_failed(bundle: ResultBundle) -> None:
    seg = _uid(bundle, BINARY_SEG)
    sr = _uid(bundle, COMPREHENSIVE_3D_SR)
    gsps = _uid(bundle, GSPS)
    with fake_peer(ALL_CLASSES, statuses={sr: 0xA700, gsps: 0xB007}) as peer:
        with pytest.raises(DeliveryIncomplete) as info:
            deliver(bundle, "PACS", _dest(peer.port), calling_ae_title="N")
        report = info.value.report
        assert set(report.delivered_sop_instance_uids) == {seg, gsps}
        assert list(report.failed) == [sr] and "0xA700" in report.failed[sr]
        assert "0xB007" in report.warnings[gsps]

        peer.statuses.clear()  # the peer has room again
        second = deliver(
            bundle,
            "PACS",
            _dest(peer.port),
            calling_ae_title="N",
            already_delivered=report.delivered_sop_instance_uids,
            attempt=2,
        )
    assert peer.received == {seg: 1, gsps: 1, sr: 2}  # only the failed one went again
    assert set(second.delivered_sop_instance_uids) == {seg, sr, gsps}
    assert second.failed == {} and second.attempts == 2


def test_permanent_rejection_keeps_per_instance_reasons(bundle: ResultBundle) -> None:
    seg = _uid(bundle, BINARY_SEG)
    sr = _uid(bundle, COMPREHENSIVE_3D_SR)
    with (
        fake_peer(ALL_CLASSES, statuses={seg: 0xA900, sr: 0xA700}) as peer,
        pytest.raises(DeliveryRejected) as info,
    ):
        deliver(bundle, "PACS", _dest(peer.port), calling_ae_title="N")
    report = info.value.report
    assert "permanent" in report.failed[seg] and "0xA900" in report.failed[seg]
    assert "transient" in report.failed[sr]
    assert report.delivered_sop_instance_uids == (_uid(bundle, GSPS),)


def test_connection_refused_is_transient(bundle: ResultBundle) -> None:
    with pytest.raises(DeliveryIncomplete) as info:
        deliver(bundle, "PACS", _dest(free_port()), calling_ae_title="N")
    report = info.value.report
    assert report.delivered_sop_instance_uids == ()
    assert len(report.failed) == 3
    assert all(reason.startswith("transient") for reason in report.failed.values())


def test_association_rejected_permanently(bundle: ResultBundle) -> None:
    # Peer checks the called AE title: a wrong one is "rejected-permanent" (PS3.8 9.3.4).
    with (
        fake_peer(ALL_CLASSES, ae_title="REALPACS", require_called_aet=True) as peer,
        pytest.raises(DeliveryRejected) as info,
    ):
        deliver(bundle, "PACS", _dest(peer.port), calling_ae_title="N")
    assert all("rejected the association" in r for r in info.value.report.failed.values())
    assert peer.received == {}


def test_sop_class_the_peer_does_not_support_is_permanent_for_that_object(bundle: ResultBundle) -> None:
    with (
        fake_peer([COMPREHENSIVE_3D_SR, GSPS]) as peer,
        pytest.raises(DeliveryRejected) as info,
    ):  # no SEG support
        deliver(bundle, "PACS", _dest(peer.port), calling_ae_title="N")
    report = info.value.report
    seg = _uid(bundle, BINARY_SEG)
    assert list(report.failed) == [seg]
    assert "SOP Class not supported" in report.failed[seg]
    assert set(report.delivered_sop_instance_uids) == {_uid(bundle, COMPREHENSIVE_3D_SR), _uid(bundle, GSPS)}


def test_peer_supporting_nothing_we_send(bundle: ResultBundle) -> None:
    with fake_peer(["1.2.840.10008.5.1.4.1.1.2"]) as peer, pytest.raises(DeliveryRejected) as info:  # CT only
        deliver(bundle, "PACS", _dest(peer.port), calling_ae_title="N")
    assert all("no presentation context" in r for r in info.value.report.failed.values())


def test_abort_mid_association_is_transient_for_the_rest(bundle: ResultBundle) -> None:
    seg = _uid(bundle, BINARY_SEG)
    with fake_peer(ALL_CLASSES, statuses={seg: "abort"}) as peer, pytest.raises(DeliveryIncomplete) as info:
        deliver(bundle, "PACS", _dest(peer.port), calling_ae_title="N")
    report = info.value.report
    assert seg in report.failed
    assert report.delivered_sop_instance_uids == ()
    assert all(r.startswith("transient") for r in report.failed.values())


def test_no_response_within_timeout_is_transient(bundle: ResultBundle) -> None:
    seg = _uid(bundle, BINARY_SEG)
    with fake_peer(ALL_CLASSES, statuses={seg: "hang"}) as peer:
        peer.hang_s = 2.0
        dest = DicomDestinationSettings(ae_title="FAKEPACS", host="127.0.0.1", port=peer.port, timeout_s=0.5)
        with pytest.raises(DeliveryIncomplete) as info:
            deliver(bundle, "PACS", dest, calling_ae_title="N")
    assert "no response" in info.value.report.failed[seg]


def test_missing_result_file_is_permanent(bundle: ResultBundle, tmp_path: Path) -> None:
    sr = next(f for f in bundle.files if f.sop_class_uid == COMPREHENSIVE_3D_SR)
    Path(sr.path).unlink()
    with fake_peer(ALL_CLASSES) as peer, pytest.raises(DeliveryRejected) as info:
        deliver(bundle, "PACS", _dest(peer.port), calling_ae_title="N")
    assert "unreadable" in info.value.report.failed[sr.sop_instance_uid]


def test_logs_carry_no_patient_identifiers(bundle: ResultBundle, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    seg = _uid(bundle, BINARY_SEG)
    with fake_peer(ALL_CLASSES, statuses={seg: 0xA700}) as peer, pytest.raises(DeliveryIncomplete):
        deliver(bundle, "PACS", _dest(peer.port), calling_ae_title="N")
    ours = [r.getMessage() for r in caplog.records if r.name.startswith("dicom_node")]
    assert ours, "delivery logs what it did"
    assert not any("DELIVERY^TEST" in m or "DLV-0001" in m for m in ours)


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=60)


_EC_KEY = ("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes")


def _make_pki(folder: Path, name: str) -> Path:
    """A CA, a server certificate for 127.0.0.1 and a client certificate (P-256 keys: fast)."""
    folder.mkdir(parents=True)
    ca = ("-keyout", "ca.key", "-out", "ca.pem", "-days", "2", "-subj", f"/CN={name}-ca")
    _openssl("req", "-x509", *_EC_KEY, *ca, cwd=folder)
    (folder / "ext.cnf").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    for who in ("server", "client"):
        _openssl(
            "req",
            *_EC_KEY,
            "-keyout",
            f"{who}.key",
            "-out",
            f"{who}.csr",
            "-subj",
            f"/CN={name}-{who}",
            cwd=folder,
        )
        sign = ("-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial", "-days", "2", "-extfile", "ext.cnf")
        _openssl("x509", "-req", "-in", f"{who}.csr", "-out", f"{who}.pem", *sign, cwd=folder)
    return folder


def _server_context(pki: Path) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=str(pki / "ca.pem"))
    context.load_cert_chain(str(pki / "server.pem"), str(pki / "server.key"))
    context.verify_mode = ssl.CERT_REQUIRED  # mutual TLS, PS3.15 B.1
    return context


def test_delivery_over_mutual_tls(bundle: ResultBundle, tmp_path: Path) -> None:
    pki = _make_pki(tmp_path / "pki", "node")
    tls = TLSSettings(
        enabled=True,
        certificate=pki / "client.pem",
        private_key=pki / "client.key",
        ca_certificates=pki / "ca.pem",
    )
    with fake_peer(ALL_CLASSES, ssl_context=_server_context(pki)) as peer:
        report = deliver(bundle, "PACS", _dest(peer.port, tls=tls), calling_ae_title="N")
        assert len(report.delivered_sop_instance_uids) == 3
        # the same peer, without TLS on our side: nothing is delivered, and it is not "delivered"
        plain = DicomDestinationSettings(ae_title="FAKEPACS", host="127.0.0.1", port=peer.port, timeout_s=1)
        with pytest.raises(DeliveryIncomplete):
            deliver(bundle, "PACS", plain, calling_ae_title="N")
    assert sum(peer.received.values()) == 3


def test_tls_peer_with_an_untrusted_certificate_is_not_sent_to(bundle: ResultBundle, tmp_path: Path) -> None:
    ours = _make_pki(tmp_path / "ours", "node")
    theirs = _make_pki(tmp_path / "theirs", "rogue")
    tls = TLSSettings(
        enabled=True,
        certificate=ours / "client.pem",
        private_key=ours / "client.key",
        ca_certificates=ours / "ca.pem",  # does not vouch for the rogue server certificate
    )
    with (
        fake_peer(ALL_CLASSES, ssl_context=_server_context(theirs)) as peer,
        pytest.raises(DeliveryIncomplete) as info,
    ):
        deliver(bundle, "PACS", _dest(peer.port, tls=tls), calling_ae_title="N")
    assert peer.received == {}
    assert len(info.value.report.failed) == 3
