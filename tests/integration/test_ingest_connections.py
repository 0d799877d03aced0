"""Connection admission of the real SCP (dicom_node.ingest.connections): idle or refused TCP
connections never take the slots real senders need.

Idle connections are raw TCP sockets that never send a byte; "another machine" is another
loopback source address (127.0.0.2, 127.0.0.3), which Linux routes to 127.0.0.1. Waits are
bounded generously; what is asserted is who got in and what each side was told, never how fast.
"""

from __future__ import annotations

import contextlib
import socket
import ssl
import struct
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pydicom.uid import ExplicitVRLittleEndian
from pynetdicom import AE

from dicom_node.constants import CT_IMAGE_STORAGE
from tests.integration import test_ingest_scp
from tests.integration.test_ingest_scp import NODE_AE, Node, pyscu_statuses, store_successes, storescu
from tests.integration.test_ingest_tls import tls_args
from tests.support.ct_series import make_ct_series
from tests.support.processes import wait_until
from tests.unit.dicom_node.ingest.conftest import make_self_signed_certificate

pytestmark = pytest.mark.integration

start_node = test_ingest_scp.start_node  # the SCP fixture, shared

WAIT_S = 30.0  # upper bound for the server to act; never a speed claim


@pytest.fixture(scope="module")
def ct2(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    return make_ct_series(tmp_path_factory.mktemp("ct2"), n_slices=2, rows=64, cols=64)


@contextlib.contextmanager
def idle_sockets(port: int, count: int, *, source: str) -> Iterator[list[socket.socket]]:
    """``count`` TCP connections from ``source`` that send nothing."""
    sockets: list[socket.socket] = []
    try:
        for _ in range(count):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind((source, 0))
            s.connect(("127.0.0.1", port))
            sockets.append(s)
        yield sockets
    finally:
        for s in sockets:
            s.close()


def closed_by_server(sock: socket.socket, *, timeout_s: float = WAIT_S) -> bytes:
    """Read until the server closes the connection; return what it sent (raises on timeout)."""
    sock.settimeout(timeout_s)
    received = b""
    while True:
        try:
            chunk = sock.recv(4096)
        except ConnectionResetError:
            return received
        if not chunk:
            return received
        received += chunk


def associate_from(port: int, source: str, *, calling: str = "PYSCU") -> Any:
    ae = AE(ae_title=calling)
    ae.add_requested_context(CT_IMAGE_STORAGE, ExplicitVRLittleEndian)
    return ae.associate("127.0.0.1", port, ae_title=NODE_AE, bind_address=(source, 0))


def loopback_peers(**dicom: Any) -> dict[str, Any]:
    """PYSCU allowed from all of 127.0.0.0/8 (so 127.0.0.2 is an allowed address)."""
    return {
        "allowed_peers": [
            {"ae_title": "STORESCU", "networks": ["127.0.0.1/32"]},
            {"ae_title": "PYSCU", "networks": ["127.0.0.0/8"]},
        ],
        **dicom,
    }


def test_idle_connections_from_outside_the_allowlist_take_no_slot(start_node: Any, ct2: list[Path]) -> None:
    node: Node = start_node(
        dicom={"max_associations": 4, "max_associations_per_peer": 2, "acse_timeout_s": 60}
    )
    with idle_sockets(node.port, 20, source="127.0.0.3") as idle:
        # every sender on an allowed address still gets in while the 20 sockets stay open
        assert store_successes(storescu(node.port, ct2)) == 2
        assert "127.0.0.3" not in node.scp.open_connections()
        # and the refused ones are told why once they ask: A-ASSOCIATE-RJ 1/1/3 (PS3.8 Table 9-21)
        rejected = associate_from(node.port, "127.0.0.3")
        assert rejected.is_rejected
        answer = rejected.acceptor.primitive
        assert (answer.result, answer.result_source, answer.diagnostic) == (1, 1, 3)
        assert len(idle) == 20


def test_silent_connections_filling_every_slot_make_room_for_a_real_sender(
    start_node: Any, ct2: list[Path]
) -> None:
    """The issue's lockout from allowed addresses: two addresses fill both their per-peer quotas
    and so every slot with sockets that never speak."""
    node: Node = start_node(
        dicom=loopback_peers(max_associations=6, max_associations_per_peer=3, acse_timeout_s=60)
    )
    with idle_sockets(node.port, 3, source="127.0.0.2"), idle_sockets(node.port, 3, source="127.0.0.3"):
        wait_until(
            lambda: sum(node.scp.open_connections().values()) == 6, timeout_s=WAIT_S, what="6 admitted"
        )
        time.sleep(1.5)  # older than the eviction threshold (1 s), far from acse_timeout_s (60 s)
        assert store_successes(storescu(node.port, ct2)) == 2
        assert pyscu_statuses(node.port, ct2[:1]) == [0x0000]
        # associations that did ask are never evicted: all 6 slots held by real ones -> refused
        held = [associate_from(node.port, "127.0.0.1") for _ in range(3)]
        held += [associate_from(node.port, "127.0.0.2") for _ in range(3)]
        try:
            assert all(a.is_established for a in held)
            over = associate_from(node.port, "127.0.0.4")
            assert over.is_rejected
        finally:
            for assoc in held:
                assoc.release()


def test_idle_connections_from_an_allowed_address_are_limited_per_peer(
    start_node: Any, ct2: list[Path]
) -> None:
    node: Node = start_node(
        dicom=loopback_peers(max_associations=6, max_associations_per_peer=3, acse_timeout_s=60)
    )
    with idle_sockets(node.port, 10, source="127.0.0.2") as idle:
        # opened within far less than the eviction threshold: 3 admitted, 7 to the rejecter
        wait_until(
            lambda: node.scp.open_connections().get("127.0.0.2") == 3, timeout_s=WAIT_S, what="3 admitted"
        )
        # another sender is not locked out
        assert store_successes(storescu(node.port, ct2)) == 2
        assert pyscu_statuses(node.port, ct2[:1]) == [0x0000]
        assert len(idle) == 10


def test_a_peer_over_its_limit_of_real_associations_is_rejected_transiently(start_node: Any) -> None:
    node: Node = start_node(
        dicom=loopback_peers(max_associations=6, max_associations_per_peer=3, acse_timeout_s=60)
    )
    held = [associate_from(node.port, "127.0.0.2") for _ in range(3)]
    try:
        assert all(a.is_established for a in held)
        over = associate_from(node.port, "127.0.0.2")
        assert over.is_rejected  # established associations are never evicted
        answer = over.acceptor.primitive
        assert (answer.result, answer.result_source, answer.diagnostic) == (2, 3, 2)
        other = associate_from(node.port, "127.0.0.3")  # another address still gets in
        assert other.is_established
        other.release()
    finally:
        for assoc in held:
            assoc.release()


def test_total_limit_rejects_transiently(start_node: Any) -> None:
    node: Node = start_node(
        dicom=loopback_peers(max_associations=2, max_associations_per_peer=2, acse_timeout_s=60)
    )
    held = [associate_from(node.port, "127.0.0.1"), associate_from(node.port, "127.0.0.2")]
    try:
        assert all(a.is_established for a in held)
        third = associate_from(node.port, "127.0.0.3")
        assert third.is_rejected
        answer = third.acceptor.primitive
        assert (answer.result, answer.result_source, answer.diagnostic) == (2, 3, 2)
    finally:
        for assoc in held:
            assoc.release()
    # slots come back once the associations are released
    wait_until(lambda: sum(node.scp.open_connections().values()) == 0, timeout_s=WAIT_S, what="slots freed")
    again = associate_from(node.port, "127.0.0.3")
    assert again.is_established
    again.release()


def test_a_silent_connection_is_closed_after_acse_timeout(start_node: Any) -> None:
    # network_timeout far beyond the wait: only the A-ASSOCIATE-RQ timeout can close it
    node: Node = start_node(dicom={"acse_timeout_s": 1, "network_timeout_s": 600})
    with idle_sockets(node.port, 1, source="127.0.0.1") as [idle]:
        assert closed_by_server(idle) == b""
    wait_until(lambda: node.scp.open_connections() == {}, timeout_s=WAIT_S, what="slot freed")


def test_a_trickled_association_request_is_cut_off(start_node: Any) -> None:
    """A sender announcing a 1000-byte A-ASSOCIATE-RQ and sending 6 bytes of it."""
    node: Node = start_node(dicom={"acse_timeout_s": 1, "network_timeout_s": 600})
    with idle_sockets(node.port, 1, source="127.0.0.1") as [slow]:
        slow.sendall(struct.pack(">BBI", 0x01, 0x00, 1000))
        closed_by_server(slow)
    wait_until(lambda: node.scp.open_connections() == {}, timeout_s=WAIT_S, what="slot freed")


def test_a_silent_tls_client_does_not_stall_other_tls_senders(
    start_node: Any, tmp_path: Path, ct2: list[Path]
) -> None:
    cert, key = make_self_signed_certificate(tmp_path / "tls")
    node: Node = start_node(
        dicom={
            "tls": {"enabled": True, "certificate": str(cert), "private_key": str(key)},
            "acse_timeout_s": 60,
        }
    )
    with idle_sockets(node.port, 3, source="127.0.0.1"):
        result = storescu(node.port, ct2, extra=tls_args(cert, key))
        assert store_successes(result) == 2, (result.stdout + result.stderr)[-2000:]


def test_tls_handshake_timeout_frees_the_slot(start_node: Any, tmp_path: Path) -> None:
    cert, key = make_self_signed_certificate(tmp_path / "tls")
    node: Node = start_node(
        dicom={
            "tls": {"enabled": True, "certificate": str(cert), "private_key": str(key)},
            "acse_timeout_s": 1,
            "network_timeout_s": 600,
        }
    )
    with idle_sockets(node.port, 1, source="127.0.0.1") as [idle]:
        closed_by_server(idle)
    wait_until(lambda: node.scp.open_connections() == {}, timeout_s=WAIT_S, what="slot freed")
    # and a real TLS client still gets through afterwards
    context = ssl.create_default_context(cafile=str(cert))
    with (
        socket.create_connection(("127.0.0.1", node.port), timeout=WAIT_S) as raw,
        context.wrap_socket(raw, server_hostname="localhost") as tls,
    ):
        assert tls.version() is not None
