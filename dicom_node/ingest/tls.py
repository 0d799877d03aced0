"""DICOM TLS for the SCP (PS3.15 B.9 "BCP 195 TLS Secure Transport Connection Profile").

:func:`server_ssl_context` builds the context handed to pynetdicom (``start_server(ssl_context=)``):
TLS 1.2 or newer, our certificate and key, and, when ``ca_certificates`` is set, mutual TLS
(peers must present a certificate signed by one of those CAs).

pynetdicom wraps each accepted socket in the server's accept loop; with Python's default
``do_handshake_on_connect=True`` a peer that connects and then says nothing would stall every
other connection until the network timeout. :class:`DeferredHandshakeContext` makes the handshake
happen on the association's own thread instead (on its first read).
"""

from __future__ import annotations

import socket
import ssl
from typing import Any

from dicom_node.errors import ConfigError
from dicom_node.settings import TLSSettings


class DeferredHandshakeContext(ssl.SSLContext):
    """An SSLContext whose server sockets do the TLS handshake lazily, in the reading thread."""

    def wrap_socket(  # type: ignore[override]
        self,
        sock: socket.socket,
        server_side: bool = False,
        do_handshake_on_connect: bool = True,
        **kwargs: Any,
    ) -> ssl.SSLSocket:
        return super().wrap_socket(sock, server_side=server_side, do_handshake_on_connect=False, **kwargs)


def server_ssl_context(tls: TLSSettings) -> ssl.SSLContext:
    """The server-side context for ``tls`` (raise ConfigError when files are missing or bad)."""
    if tls.certificate is None or tls.private_key is None:
        raise ConfigError("dicom.tls needs certificate and private_key")
    context = DeferredHandshakeContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        context.load_cert_chain(certfile=str(tls.certificate), keyfile=str(tls.private_key))
        if tls.ca_certificates is not None:
            context.load_verify_locations(cafile=str(tls.ca_certificates))
            context.verify_mode = ssl.CERT_REQUIRED
        else:
            context.verify_mode = ssl.CERT_NONE
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(f"cannot load TLS certificate/key: {exc}", location="dicom.tls") from exc
    return context
