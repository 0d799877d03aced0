"""Server TLS context from settings (certificate made with openssl in the test)."""

from __future__ import annotations

import socket
import ssl
import threading
from pathlib import Path

import pytest

from dicom_node.errors import ConfigError
from dicom_node.ingest.tls import DeferredHandshakeContext, server_ssl_context
from dicom_node.settings import TLSSettings
from tests.unit.dicom_node.ingest.conftest import make_self_signed_certificate


@pytest.fixture(scope="module")
def cert_pair(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return make_self_signed_certificate(tmp_path_factory.mktemp("tls"))


def test_context_from_settings_is_tls12_plus(cert_pair: tuple[Path, Path]) -> None:
    cert, key = cert_pair
    context = server_ssl_context(TLSSettings(enabled=True, certificate=cert, private_key=key))
    assert isinstance(context, DeferredHandshakeContext)
    assert context.minimum_version >= ssl.TLSVersion.TLSv1_2
    assert context.verify_mode == ssl.CERT_NONE


def test_ca_certificates_turn_on_mutual_tls(cert_pair: tuple[Path, Path]) -> None:
    cert, key = cert_pair
    context = server_ssl_context(
        TLSSettings(enabled=True, certificate=cert, private_key=key, ca_certificates=cert)
    )
    assert context.verify_mode == ssl.CERT_REQUIRED


def test_missing_files_are_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError):
        server_ssl_context(
            TLSSettings(enabled=True, certificate=tmp_path / "nope.pem", private_key=tmp_path / "nope.key")
        )


def test_handshake_happens_on_first_read_not_on_accept(cert_pair: tuple[Path, Path]) -> None:
    """A silent client must not block the accepting thread (pynetdicom wraps in its accept loop)."""
    cert, key = cert_pair
    context = server_ssl_context(TLSSettings(enabled=True, certificate=cert, private_key=key))
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    silent = socket.create_connection(("127.0.0.1", port))  # connects, never says hello
    accepted, _ = listener.accept()
    wrapped = context.wrap_socket(accepted, server_side=True)  # returns at once: no handshake yet
    assert isinstance(wrapped, ssl.SSLSocket)

    # a real TLS client on a second connection still completes its handshake and exchanges data
    client_context = ssl.create_default_context(cafile=str(cert))
    received: list[bytes] = []

    def serve() -> None:
        conn, _ = listener.accept()
        tls_conn = context.wrap_socket(conn, server_side=True)
        received.append(tls_conn.recv(5))
        tls_conn.close()

    server = threading.Thread(target=serve)
    server.start()
    with (
        socket.create_connection(("127.0.0.1", port)) as raw,
        client_context.wrap_socket(raw, server_hostname="localhost") as tls_client,
    ):
        tls_client.sendall(b"hello")
    server.join(10)
    assert received == [b"hello"]
    for s in (wrapped, silent, listener):
        s.close()
