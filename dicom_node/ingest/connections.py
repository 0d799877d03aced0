"""Which TCP connections reach the SCP, and how long one may stay silent.

pynetdicom 3.0.4 (``transport.RequestHandler.handle``) starts an association thread for every
accepted TCP connection; that thread counts against ``AE.maximum_associations``
(``acse._negotiate_as_acceptor``) while it waits up to ``acse_timeout`` for the A-ASSOCIATE-RQ,
and our allowlist (``EVT_REQUESTED``) only runs once the RQ has arrived. So 16 idle connections,
from any address, locked every sender out for the ACSE timeout. With TLS it was worse: pynetdicom's
``AssociationServer.get_request`` does the TLS handshake in the accept loop itself, so one silent
TLS client stalled every accept.

:class:`GuardedAssociationServer` is a ``ThreadedAssociationServer`` whose socketserver hooks
(``get_request``, ``verify_request``, ``service_actions``: documented ``socketserver.TCPServer``
extension points, no pynetdicom internals) decide **before** a connection takes a slot:

1. ``verify_request``, in the accept loop, per new connection:

   ======================================================  ==========================================
   refused when                                             answer (PS3.8 9.3.4, Table 9-21)
   ======================================================  ==========================================
   source address outside every ``allowed_peers`` network   A-ASSOCIATE-RJ 1/1/3 (rejected-permanent,
   (``require_known_peers``)                                 service-user, calling-AE-not-recognized)
   ``max_associations_per_peer`` connections already open   A-ASSOCIATE-RJ 2/3/2 (rejected-transient,
   from that address                                         service-provider presentation,
                                                             local-limit-exceeded)
   ``max_associations`` connections already open            A-ASSOCIATE-RJ 2/3/2
   ======================================================  ==========================================

   Before refusing for a limit, the oldest connection of that address (or, for the total, of any
   address) that has been silent for a second, without a complete A-ASSOCIATE-RQ, is shut down
   and the new one admitted instead: silent sockets can never hold every slot (a real sender's RQ
   follows its connect within milliseconds). Only connections that asked for an association count
   to the end. A refused connection never gets an association thread: one :class:`_Rejecter`
   thread reads its A-ASSOCIATE-RQ (discarding it; at most ``acse_timeout_s``), sends the 10-byte
   A-ASSOCIATE-RJ and closes. Over TLS, or when 64 refusals are already pending, it is simply
   closed.
2. The TLS handshake runs in the connection's own thread (``setup`` of the request handler),
   bounded by ``acse_timeout_s``.
3. ``acse_timeout_s`` (default 5 s) is pynetdicom's wait for the A-ASSOCIATE-RQ (and its ARTIM
   timer); ``service_actions`` (every 0.5 s) shuts down a connection whose A-ASSOCIATE-RQ has not
   *completely* arrived by then, which also ends a sender trickling a PDU byte by byte.
4. Accepted sockets get ``network_timeout_s`` as their socket timeout (Python's ``accept`` returns
   a blocking socket otherwise, and a peer stalled in the middle of a PDU held its thread forever).

The per-peer count is by source IP address: modalities behind one NAT address share it.
"""

from __future__ import annotations

import contextlib
import logging
import selectors
import socket
import socketserver
import struct
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from pynetdicom import evt
from pynetdicom.pdu_primitives import A_ASSOCIATE
from pynetdicom.transport import RequestHandler, ThreadedAssociationServer

from dicom_node.ingest.peers import (
    REASON_CALLING_AE_NOT_RECOGNIZED,
    REJECTED_PERMANENT,
    SOURCE_SERVICE_USER,
    PeerPolicy,
    normalize_address,
)
from dicom_node.settings import DicomSettings

logger = logging.getLogger(__name__)

REJECTED_TRANSIENT = 0x02
SOURCE_PROVIDER_PRESENTATION = 0x03
REASON_LOCAL_LIMIT_EXCEEDED = 0x02

_A_ASSOCIATE_RQ = 0x01
_MAX_RQ_BYTES = 1024**2  # an A-ASSOCIATE-RQ of 128 contexts is ~20 KB; more is not a real RQ
_REJECTER_MAX_PENDING = 64
_REJECTER_DRAIN_S = 2.0
_LOG_EVERY_S = 60.0
_EVICT_AFTER_S = 1.0  # a connection this long without its A-ASSOCIATE-RQ may be evicted


def a_associate_rj_pdu(result: int, source: int, reason: int) -> bytes:
    """The A-ASSOCIATE-RJ PDU (PS3.8 Table 9-21): type 03H, reserved, length 4, reserved,
    result, source, reason/diagnostic."""
    return struct.pack(">BBIBBBB", 0x03, 0x00, 4, 0x00, result, source, reason)


@dataclass(frozen=True)
class Refusal:
    """Why a connection is not admitted, and the A-ASSOCIATE-RJ that says so."""

    result: int
    source: int
    reason: int
    text: str

    def pdu(self) -> bytes:
        return a_associate_rj_pdu(self.result, self.source, self.reason)


ADDRESS_NOT_ALLOWED = Refusal(
    REJECTED_PERMANENT,
    SOURCE_SERVICE_USER,
    REASON_CALLING_AE_NOT_RECOGNIZED,
    "source address outside every allowed_peers network",
)
PEER_LIMIT = Refusal(
    REJECTED_TRANSIENT,
    SOURCE_PROVIDER_PRESENTATION,
    REASON_LOCAL_LIMIT_EXCEEDED,
    "max_associations_per_peer connections already open from this address",
)
TOTAL_LIMIT = Refusal(
    REJECTED_TRANSIENT,
    SOURCE_PROVIDER_PRESENTATION,
    REASON_LOCAL_LIMIT_EXCEEDED,
    "max_associations connections already open",
)


@dataclass(frozen=True)
class AdmissionLimits:
    """settings.dicom's connection limits, in the units the server uses."""

    max_connections: int = 16
    max_connections_per_peer: int = 8
    request_timeout_s: float = 5.0
    network_timeout_s: float = 60.0

    @classmethod
    def from_settings(cls, dicom: DicomSettings) -> AdmissionLimits:
        return cls(
            max_connections=dicom.max_associations,
            max_connections_per_peer=dicom.max_associations_per_peer,
            request_timeout_s=dicom.acse_timeout_s,
            network_timeout_s=dicom.network_timeout_s,
        )


@dataclass
class _Connection:
    peer: str  # normalised source IP address
    accepted_at: float  # time.monotonic()
    socket: socket.socket  # the one pynetdicom reads (TLS-wrapped once the handshake is done)
    assoc: Any = None  # pynetdicom Association (a thread), once EVT_CONN_OPEN has fired
    requested: bool = False  # the A-ASSOCIATE-RQ has completely arrived
    shut_down: bool = False


class _RateLimitedLog:
    """One warning per (peer, what) per minute, with how many were suppressed: a flood of
    refused connections must not flood the log."""

    def __init__(self) -> None:
        self._last: dict[tuple[str, str], tuple[float, int]] = {}
        self._lock = threading.Lock()

    def warning(self, peer: str, what: str) -> None:
        now = time.monotonic()
        with self._lock:
            last, suppressed = self._last.get((peer, what), (-_LOG_EVERY_S, 0))
            if now - last < _LOG_EVERY_S:
                self._last[(peer, what)] = (last, suppressed + 1)
                return
            self._last[(peer, what)] = (now, 0)
            if len(self._last) > 4096:  # many addresses: forget the oldest
                for key in sorted(self._last, key=lambda k: self._last[k][0])[:2048]:
                    del self._last[key]
        logger.warning(
            "connection refused: %s%s",
            what,
            f" ({suppressed} more in the last minute)" if suppressed else "",
            extra={"stage": "ingest", "peer": peer},
        )


@dataclass
class _Pending:
    sock: socket.socket
    pdu: bytes
    deadline: float
    header: bytearray = field(default_factory=bytearray)
    remaining: int | None = None  # bytes of the RQ body still to discard
    draining: bool = False  # RJ sent; waiting for the peer to close


class _Rejecter:
    """One thread that answers refused connections with their A-ASSOCIATE-RJ (non-blocking
    sockets, one selector): no association thread, no slot."""

    def __init__(self, *, request_timeout_s: float) -> None:
        self._timeout_s = request_timeout_s
        self._selector = selectors.DefaultSelector()
        self._lock = threading.Lock()
        self._incoming: list[_Pending] = []
        self._count = 0
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="ingest-rejecter", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._wake()
        if self._thread.is_alive():
            self._thread.join(timeout=5)
        for key in list(self._selector.get_map().values()):
            if isinstance(key.data, _Pending):
                _close(key.data.sock)
        self._selector.close()
        self._wake_r.close()
        self._wake_w.close()

    def reject(self, sock: socket.socket, refusal: Refusal) -> None:
        """Take ownership of ``sock``: answer its A-ASSOCIATE-RQ with ``refusal``, then close."""
        with self._lock:
            if self._count >= _REJECTER_MAX_PENDING or self._stop.is_set():
                _close(sock)
                return
            self._count += 1
            sock.setblocking(False)
            self._incoming.append(
                _Pending(sock=sock, pdu=refusal.pdu(), deadline=time.monotonic() + self._timeout_s)
            )
        self._wake()

    def _wake(self) -> None:
        with contextlib.suppress(OSError):
            self._wake_w.send(b"\0")

    def _done(self, pending: _Pending) -> None:
        with contextlib.suppress(KeyError, ValueError):
            self._selector.unregister(pending.sock)
        _close(pending.sock)
        with self._lock:
            self._count -= 1

    def _run(self) -> None:
        self._selector.register(self._wake_r, selectors.EVENT_READ, None)
        while not self._stop.is_set():
            with self._lock:
                incoming, self._incoming = self._incoming, []
            for pending in incoming:
                self._selector.register(pending.sock, selectors.EVENT_READ, pending)
            for key, _ in self._selector.select(timeout=0.25):
                if key.data is None:
                    with contextlib.suppress(OSError):
                        self._wake_r.recv(4096)
                    continue
                self._read(key.data)
            now = time.monotonic()
            for key in list(self._selector.get_map().values()):
                if isinstance(key.data, _Pending) and now > key.data.deadline:
                    self._done(key.data)

    def _read(self, pending: _Pending) -> None:
        try:
            data = pending.sock.recv(65536)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            self._done(pending)
            return
        if not data:  # the peer closed
            self._done(pending)
            return
        if pending.draining:
            return  # discard whatever follows the RQ until the peer closes
        if pending.remaining is None:
            pending.header += data
            if len(pending.header) < 6:
                return
            pdu_type, _, length = struct.unpack(">BBI", bytes(pending.header[:6]))
            if pdu_type != _A_ASSOCIATE_RQ or length > _MAX_RQ_BYTES:
                self._done(pending)  # not an association request: nothing to answer
                return
            pending.remaining = length - (len(pending.header) - 6)
        else:
            pending.remaining -= len(data)
        if pending.remaining > 0:
            return
        try:
            pending.sock.send(pending.pdu)  # 10 bytes into an empty send buffer
            pending.sock.shutdown(socket.SHUT_WR)
        except OSError:
            self._done(pending)
            return
        pending.draining = True
        pending.deadline = time.monotonic() + _REJECTER_DRAIN_S


def _close(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        sock.close()


def _shutdown(sock: socket.socket) -> None:
    """Shut the connection down under whoever is blocked reading it (the base class's method:
    on a TLS socket, ``SSLSocket.shutdown`` would also unwrap it under the reading thread)."""
    with contextlib.suppress(OSError):
        socket.socket.shutdown(sock, socket.SHUT_RDWR)


class _GuardedRequestHandler(RequestHandler):
    """pynetdicom's request handler with the TLS handshake in the connection's own thread."""

    server: GuardedAssociationServer

    def setup(self) -> None:
        self.request = self.server.prepare_socket(self.request, self.client_address)


class GuardedAssociationServer(ThreadedAssociationServer):
    """See the module docstring. Made with ``AE.make_server(..., server_class=...)``."""

    def __init__(
        self,
        ae: Any,
        address: tuple[str, int] | tuple[str, int, int, int],
        ae_title: str,
        contexts: list[Any],
        ssl_context: Any = None,
        evt_handlers: list[Any] | None = None,
        *,
        policy: PeerPolicy,
        limits: AdmissionLimits,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._policy = policy
        self._limits = limits
        self._clock = clock
        self._connections: dict[Any, _Connection] = {}
        self._by_assoc: dict[Any, _Connection] = {}
        self._lock = threading.Lock()
        self._log = _RateLimitedLog()
        self._rejecter = _Rejecter(request_timeout_s=limits.request_timeout_s)
        handlers = [
            *(evt_handlers or []),
            (evt.EVT_CONN_OPEN, self._on_conn_open),
            (evt.EVT_ACSE_RECV, self._on_acse_recv),
        ]
        super().__init__(
            ae,
            address,
            ae_title,
            contexts,
            ssl_context,
            evt_handlers=handlers,
            request_handler=_GuardedRequestHandler,
        )
        self._rejecter.start()

    # -- socketserver hooks -----------------------------------------------------------------------

    def get_request(self) -> tuple[socket.socket, Any]:
        """Accept only; TLS is negotiated in the connection's thread (:meth:`prepare_socket`)."""
        assert self.socket is not None
        sock, address = self.socket.accept()
        sock.settimeout(self._limits.network_timeout_s)
        return sock, address

    def verify_request(self, request: Any, client_address: Any) -> bool:
        peer_address = normalize_address(str(client_address[0]))
        peer = str(peer_address) if peer_address is not None else str(client_address[0])
        now = self._clock()
        refusal: Refusal | None = None
        evicted: _Connection | None = None
        with self._lock:
            self._prune_locked()
            live = [c for c in self._connections.values() if not c.shut_down]
            same_peer = [c for c in live if c.peer == peer]
            if not self._policy.address_allowed(peer_address):
                refusal = ADDRESS_NOT_ALLOWED
            elif len(same_peer) >= self._limits.max_connections_per_peer:
                evicted = self._evictable(same_peer, now)
                refusal = PEER_LIMIT if evicted is None else None
            elif len(live) >= self._limits.max_connections:
                evicted = self._evictable(live, now)
                refusal = TOTAL_LIMIT if evicted is None else None
            if evicted is not None:
                evicted.shut_down = True
            if refusal is None:
                self._connections[client_address] = _Connection(peer=peer, accepted_at=now, socket=request)
        if evicted is not None:
            # A connection that has said nothing makes room for one that may: silent sockets
            # cannot hold every slot until they time out (a real sender's RQ follows its
            # connect within milliseconds).
            self._log.warning(evicted.peer, "silent connection closed to admit a new one")
            _shutdown(evicted.socket)
        if refusal is None:
            return True
        self._log.warning(peer, refusal.text)
        if self.ssl_context is None:
            # Hand the connection over; socketserver then "closes" the detached shell it keeps.
            self._rejecter.reject(socket.socket(fileno=request.detach()), refusal)
        return False

    def _evictable(self, connections: list[_Connection], now: float) -> _Connection | None:
        """The oldest connection silent for at least ``_EVICT_AFTER_S`` (no complete
        A-ASSOCIATE-RQ yet), or None."""
        silent = [
            c
            for c in connections
            if not c.requested and now - c.accepted_at >= min(_EVICT_AFTER_S, self._limits.request_timeout_s)
        ]
        return min(silent, key=lambda c: c.accepted_at) if silent else None

    def service_actions(self) -> None:
        """Each serve_forever tick: shut down connections silent past ``acse_timeout_s``."""
        super().service_actions()
        now = self._clock()
        expired: list[_Connection] = []
        with self._lock:
            for connection in self._connections.values():
                if (
                    not connection.requested
                    and not connection.shut_down
                    and now - connection.accepted_at > self._limits.request_timeout_s
                ):
                    connection.shut_down = True
                    expired.append(connection)
            self._prune_locked()
        for connection in expired:
            self._log.warning(connection.peer, "no A-ASSOCIATE-RQ within acse_timeout_s: closed")
            _shutdown(connection.socket)

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A connection whose set-up failed (TLS handshake, timeout): log it, free its slot."""
        with self._lock:
            connection = self._connections.pop(client_address, None)
        peer = connection.peer if connection else str(client_address[0])
        self._log.warning(peer, "connection set-up failed (TLS handshake or timeout)")

    def shutdown(self) -> None:
        """Stop accepting and close the listening socket (pynetdicom's own ``shutdown`` also
        unregisters from ``AE._servers``, which a server made by ``make_server`` is not in)."""
        socketserver.BaseServer.shutdown(self)
        self.server_close()
        self._rejecter.stop()

    # -- connection life ----------------------------------------------------------------------------

    def prepare_socket(self, sock: socket.socket, client_address: Any) -> socket.socket:
        """In the connection's thread, before pynetdicom uses it: the TLS handshake (bounded)."""
        if self.ssl_context is None:
            return sock
        sock.settimeout(self._limits.request_timeout_s)
        tls = self.ssl_context.wrap_socket(sock, server_side=True, do_handshake_on_connect=False)
        with self._lock:
            connection = self._connections.get(client_address)
            if connection is not None:
                connection.socket = tls  # the watchdog shuts down the socket in use
        try:
            tls.do_handshake()
        except BaseException:
            _close(tls)  # the plain socket it was made from is detached: close the TLS one
            raise
        tls.settimeout(self._limits.network_timeout_s)
        return tls

    def _on_conn_open(self, event: evt.Event) -> None:
        with self._lock:
            connection = self._connections.get(event.address)  # type: ignore[attr-defined]
            if connection is not None:
                connection.assoc = event.assoc
                self._by_assoc[event.assoc] = connection

    def _on_acse_recv(self, event: evt.Event) -> None:
        if isinstance(getattr(event, "primitive", None), A_ASSOCIATE):
            with self._lock:
                connection = self._by_assoc.get(event.assoc)
                if connection is not None:
                    connection.requested = True

    def _prune_locked(self) -> None:
        """Forget connections whose association thread has ended (or that never got one)."""
        now = self._clock()
        stale = self._limits.request_timeout_s + 5.0
        for key, connection in list(self._connections.items()):
            assoc = connection.assoc
            # EVT_CONN_OPEN fires just before the association thread starts: not started yet
            # (ident None) is not ended.
            ended = (assoc is not None and assoc.ident is not None and not assoc.is_alive()) or (
                assoc is None and now - connection.accepted_at > stale
            )
            if ended:
                del self._connections[key]
                self._by_assoc.pop(assoc, None)

    # -- introspection (tests, status) ---------------------------------------------------------------

    def open_connections(self) -> dict[str, int]:
        """Open connections per source address."""
        with self._lock:
            self._prune_locked()
            counts: dict[str, int] = {}
            for connection in self._connections.values():
                if not connection.shut_down:
                    counts[connection.peer] = counts.get(connection.peer, 0) + 1
            return counts
