"""Connection admission pieces: the A-ASSOCIATE-RJ bytes, the address check, the rejecter thread
over real sockets, the settings' cross-check."""

from __future__ import annotations

import socket
import struct

import pytest
from pydantic import ValidationError

from dicom_node.ingest.connections import (
    ADDRESS_NOT_ALLOWED,
    PEER_LIMIT,
    AdmissionLimits,
    _Rejecter,
    a_associate_rj_pdu,
)
from dicom_node.ingest.peers import PeerPolicy, normalize_address
from dicom_node.settings import AllowedPeer, DicomSettings


def test_a_associate_rj_pdu_layout() -> None:
    # PS3.8 Table 9-21: 03H, reserved, length 4 (big endian), reserved, result, source, reason
    assert a_associate_rj_pdu(2, 3, 2) == bytes([0x03, 0x00, 0, 0, 0, 4, 0x00, 2, 3, 2])
    assert PEER_LIMIT.pdu()[-3:] == bytes([2, 3, 2])
    assert ADDRESS_NOT_ALLOWED.pdu()[-3:] == bytes([1, 1, 3])


def test_address_allowed_is_the_union_of_the_peers_networks() -> None:
    dicom = DicomSettings(
        allowed_peers=[
            AllowedPeer(ae_title="CT", networks=["10.0.0.0/24"]),
            AllowedPeer(ae_title="PACS", networks=["fd00::/8"]),
        ]
    )
    policy = PeerPolicy(dicom)
    assert policy.address_allowed(normalize_address("10.0.0.9"))
    assert policy.address_allowed(normalize_address("::ffff:10.0.0.9"))
    assert policy.address_allowed(normalize_address("fd00::1"))
    assert not policy.address_allowed(normalize_address("10.0.1.9"))
    assert not policy.address_allowed(None)
    assert PeerPolicy(dicom.model_copy(update={"require_known_peers": False})).address_allowed(None)


def test_limits_come_from_settings_and_are_cross_checked() -> None:
    limits = AdmissionLimits.from_settings(
        DicomSettings(max_associations=10, max_associations_per_peer=3, acse_timeout_s=2.5)
    )
    assert (limits.max_connections, limits.max_connections_per_peer, limits.request_timeout_s) == (10, 3, 2.5)
    with pytest.raises(ValidationError, match="max_associations_per_peer"):
        DicomSettings(max_associations=4, max_associations_per_peer=5)
    with pytest.raises(ValidationError):
        DicomSettings(max_pdu_bytes=0)  # "unlimited" lets one PDU hold a whole data set


def _pair() -> tuple[socket.socket, socket.socket]:
    a, b = socket.socketpair()
    b.settimeout(10)
    return a, b


def _read_all(sock: socket.socket) -> bytes:
    data = b""
    while chunk := sock.recv(4096):
        data += chunk
    return data


def test_rejecter_answers_a_fragmented_association_request_then_closes() -> None:
    rejecter = _Rejecter(request_timeout_s=10)
    rejecter.start()
    try:
        server_side, client = _pair()
        rejecter.reject(server_side, PEER_LIMIT)
        body = b"\x00" * 300
        client.sendall(struct.pack(">BBI", 0x01, 0x00, len(body))[:4])  # header split in two
        client.sendall(struct.pack(">BBI", 0x01, 0x00, len(body))[4:] + body[:100])
        client.sendall(body[100:])
        assert client.recv(10) == PEER_LIMIT.pdu()
        client.shutdown(socket.SHUT_WR)
        assert _read_all(client) == b""  # then the rejecter closed its side
        client.close()
    finally:
        rejecter.stop()


def test_rejecter_closes_what_is_not_an_association_request() -> None:
    rejecter = _Rejecter(request_timeout_s=10)
    rejecter.start()
    try:
        server_side, client = _pair()
        rejecter.reject(server_side, ADDRESS_NOT_ALLOWED)
        client.sendall(b"GET / HTTP/1.1\r\n\r\n")
        assert _read_all(client) == b""  # no A-ASSOCIATE-RJ for an HTTP request
        client.close()
    finally:
        rejecter.stop()
