"""The association allowlist: calling AE, called AE, source network."""

from __future__ import annotations

from dicom_node.ingest.peers import (
    REASON_CALLED_AE_NOT_RECOGNIZED,
    REASON_CALLING_AE_NOT_RECOGNIZED,
    PeerPolicy,
)
from dicom_node.settings import AllowedPeer, DicomSettings


def policy(require_known_peers: bool = True) -> PeerPolicy:
    return PeerPolicy(
        DicomSettings(
            ae_title="CTAINODE",
            require_known_peers=require_known_peers,
            allowed_peers=[
                AllowedPeer(ae_title="CT_SCANNER", networks=["10.0.0.0/24"]),
                AllowedPeer(ae_title="PACS", networks=["192.168.1.10/32", "fd00::/8"]),
            ],
        )
    )


def check(p: PeerPolicy, calling: str, address: str, called: str = "CTAINODE"):  # type: ignore[no-untyped-def]
    return p.check(calling_ae_title=calling, called_ae_title=called, peer_address=address)


def test_known_peer_from_its_network_is_accepted() -> None:
    p = policy()
    assert check(p, "CT_SCANNER", "10.0.0.17") is None
    assert check(p, "PACS  ", "192.168.1.10") is None  # trailing spaces are not significant (VR AE)
    assert check(p, "PACS", "fd00::5") is None
    assert check(p, "PACS", "::ffff:192.168.1.10") is None  # IPv4-mapped IPv6


def test_unknown_calling_ae_is_rejected_permanently_reason_3() -> None:
    rejection = check(policy(), "INTRUDER", "10.0.0.17")
    assert rejection is not None
    assert (rejection.result, rejection.source, rejection.diagnostic) == (
        1,
        1,
        REASON_CALLING_AE_NOT_RECOGNIZED,
    )


def test_known_ae_from_another_address_is_rejected() -> None:
    for address in ("10.0.1.17", "192.168.1.11", "not-an-ip", ""):
        rejection = check(policy(), "CT_SCANNER", address)
        assert rejection is not None and rejection.diagnostic == REASON_CALLING_AE_NOT_RECOGNIZED


def test_ae_titles_are_case_sensitive() -> None:
    assert check(policy(), "ct_scanner", "10.0.0.17") is not None


def test_wrong_called_ae_is_reason_7() -> None:
    rejection = check(policy(), "CT_SCANNER", "10.0.0.17", called="OTHERNODE")
    assert rejection is not None and rejection.diagnostic == REASON_CALLED_AE_NOT_RECOGNIZED


def test_allowlist_off_accepts_anyone() -> None:
    p = policy(require_known_peers=False)
    assert check(p, "ANYONE", "8.8.8.8", called="WHATEVER") is None


def test_default_settings_allow_local_storescu_only() -> None:
    p = PeerPolicy(DicomSettings())
    assert check(p, "STORESCU", "127.0.0.1") is None
    assert check(p, "STORESCU", "10.1.1.1") is not None
    assert check(p, "ECHOSCU", "127.0.0.1") is not None
