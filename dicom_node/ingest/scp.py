"""The DICOM C-STORE / C-ECHO SCP (pynetdicom), a thin shell around the ingest core.

::

    scp = StoreSCP(settings, on_instance=tracker.instance_stored,
                   on_association_released=lambda s: tracker.association_released(
                       s.association_id, released=s.released))
    scp.start()          # non-blocking; binds settings.dicom.host:port (port=0 override: any free)
    ...
    scp.stop()

What it does per connection and association (PS3.7, PS3.8):

* **TCP connection**: admitted or refused before it takes an association slot
  (:mod:`dicom_node.ingest.connections`): source address within the allowlist's networks, at most
  ``max_associations_per_peer`` per address and ``max_associations`` in all, and closed when its
  A-ASSOCIATE-RQ has not arrived within ``acse_timeout_s`` (default 5 s).
* **A-ASSOCIATE**: the allowlist (:mod:`dicom_node.ingest.peers`) decides in pynetdicom's
  ``EVT_REQUESTED`` hook, before any presentation context is negotiated; a refusal is an
  A-ASSOCIATE-RJ with the reason from PS3.8 Table 9-21. Accepted contexts: Verification and the
  storage classes of :mod:`dicom_node.ingest.sop_classes`, each with every accepted transfer syntax.
* **C-ECHO**: Success.
* **C-STORE**: the received data set bytes go to
  :meth:`~dicom_node.ingest.receive.InstanceReceiver.receive`; an
  :class:`~dicom_node.errors.IngestError` becomes its DIMSE status with a short ErrorComment
  (0000,0902); any other exception becomes 0xC000 and is logged. The association stays up either
  way: one bad object never costs the others.
* **A-RELEASE / A-ABORT / connection lost**: ``on_association_released`` gets an
  :class:`AssociationSummary` once per association (``released`` False for an abort).

Optional DICOM TLS (settings.dicom.tls, :mod:`dicom_node.ingest.tls`).

Received data sets go to disk as they arrive, never into memory (issue 12 item 8: a 512 MB
Enhanced CT took the process from 167 MB to 2.1 GB): :meth:`StoreSCP.start` turns on pynetdicom's
``_config.STORE_RECV_CHUNKED_DATASET`` (a process-wide switch: ``ctnode serve`` hosts no other
C-STORE SCP; pynetdicom's ``event.dataset`` still works for any that does), so each data set is
written to a temporary file in ``tempfile.gettempdir()`` (``TMPDIR``: keep it on a disk, not a
tmpfs). :meth:`~dicom_node.ingest.receive.InstanceReceiver.receive_file` validates it through a
read-only memory map and the kernel copies it into staging behind our File Meta (which records the
sender's AE title); pynetdicom deletes its file after the handler, and one left by an association
that ended mid-transfer is deleted when its connection closes. Memory per association is then a
few PDUs (``max_pdu_bytes``, 256 KiB by default, is what a sender may put in one PDU). Measured in
bench/ingest_memory.py (bench/RESULTS.md): the server's resident memory no longer grows with the
instance size; the extra temporary-file copy costs a few percent of throughput on CT slices
(bench/ingest_cstore.py). A data set larger than ``max_instance_bytes`` is refused with 0xA701
once received; one past twice that is aborted mid-transfer, so an absurd size cannot fill a disk.
Durability (file fsync + directory fsync) is the largest single cost per image; it is not traded
away.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pydicom.dataset import Dataset
from pynetdicom import AE, _config, evt

from dicom_node.constants import VERIFICATION
from dicom_node.contracts import InstanceStored
from dicom_node.errors import IngestError
from dicom_node.ingest.connections import AdmissionLimits, GuardedAssociationServer
from dicom_node.ingest.peers import PeerPolicy
from dicom_node.ingest.receive import InstanceReceiver, Origin, data_set_offset
from dicom_node.ingest.sop_classes import ACCEPTED_TRANSFER_SYNTAXES, STORAGE_SOP_CLASSES
from dicom_node.ingest.staging import Staging
from dicom_node.ingest.tls import server_ssl_context
from dicom_node.ingest.validation import STATUS_GARBAGE, STATUS_SUCCESS, ImageLimits
from dicom_node.node_results import NodeIdentity
from dicom_node.settings import Settings

logger = logging.getLogger(__name__)

_ERROR_COMMENT_MAX = 64  # VR LO


@dataclass(frozen=True)
class AssociationSummary:
    """One finished association: who, how it ended, what it carried (no patient data)."""

    association_id: str
    calling_ae_title: str
    called_ae_title: str
    peer_address: str
    released: bool  # False: aborted or connection lost
    stored: int  # instances newly staged
    duplicates: int
    failed: int
    study_instance_uids: frozenset[str]
    started_at: datetime
    ended_at: datetime


@dataclass
class _AssociationState:
    origin: Origin
    started_at: datetime
    stored: int = 0
    duplicates: int = 0
    failed: int = 0
    studies: set[str] = field(default_factory=set)
    released: bool = False
    data_set_bytes: int = 0  # of the C-STORE data set arriving now (P-DATA fragments so far)
    aborting: bool = False


def _status(code: int, comment: str) -> Dataset:
    ds = Dataset()
    ds.Status = code
    ds.ErrorComment = comment[:_ERROR_COMMENT_MAX]
    return ds


class StoreSCP:
    """C-STORE/C-ECHO SCP that stages each accepted instance and reports it."""

    def __init__(
        self,
        settings: Settings,
        *,
        on_instance: Callable[[InstanceStored], None],
        on_association_released: Callable[[AssociationSummary], None],
        staging: Staging | None = None,
        port: int | None = None,
    ) -> None:
        """``staging`` defaults to settings.storage.staging_dir; ``port`` overrides
        settings.dicom.port (0 picks a free port; read it from :attr:`port` after start)."""
        self.settings = settings
        self._on_instance = on_instance
        self._on_association_released = on_association_released
        self.staging = staging or Staging(
            settings.storage.staging_dir, min_free_bytes=settings.storage.min_free_bytes
        )
        self.receiver = InstanceReceiver(
            self.staging,
            limits=ImageLimits.from_settings(settings.dicom),
            uid_root=settings.uid_root,
            manufacturer=settings.manufacturer,
        )
        self.policy = PeerPolicy(settings.dicom)
        self._requested_port = settings.dicom.port if port is None else port
        self._server: GuardedAssociationServer | None = None
        self._server_thread: threading.Thread | None = None
        self._associations: dict[Any, _AssociationState] = {}
        self._lock = threading.Lock()
        self.port: int | None = None

    # -- lifecycle ------------------------------------------------------------------------------

    def _make_ae(self) -> AE:
        dicom = self.settings.dicom
        ae = AE(ae_title=dicom.ae_title)
        # Admission is decided per connection (dicom_node.ingest.connections). pynetdicom's own
        # count also includes the threads of connections already shut down that wait out
        # acse_timeout_s: keep it as a loose backstop, not the limit.
        ae.maximum_associations = max(4 * dicom.max_associations, dicom.max_associations + 64)
        ae.maximum_pdu_size = dicom.max_pdu_bytes
        ae.network_timeout = dicom.network_timeout_s
        ae.acse_timeout = dicom.acse_timeout_s
        ae.dimse_timeout = dicom.dimse_timeout_s
        ae.add_supported_context(VERIFICATION)
        for sop_class in sorted(STORAGE_SOP_CLASSES):
            ae.add_supported_context(sop_class, list(ACCEPTED_TRANSFER_SYNTAXES))
        return ae

    def start(self) -> None:
        """Start listening (non-blocking)."""
        if self._server is not None:
            return
        dicom = self.settings.dicom
        ssl_context = server_ssl_context(dicom.tls) if dicom.tls.enabled else None
        # pynetdicom logs every C-STORE at INFO (two lines per image, plus a block per
        # association); unless the operator configured its logger, keep only its warnings.
        pynetdicom_logger = logging.getLogger("pynetdicom")
        if pynetdicom_logger.level == logging.NOTSET:
            pynetdicom_logger.setLevel(logging.WARNING)
        handlers: list[Any] = [
            (evt.EVT_REQUESTED, self._on_requested),
            (evt.EVT_ESTABLISHED, self._on_established),
            (evt.EVT_C_STORE, self._on_c_store),
            (evt.EVT_RELEASED, self._on_released),
            (evt.EVT_ABORTED, self._on_closed),
            (evt.EVT_CONN_CLOSE, self._on_conn_close),
            (evt.EVT_PDU_RECV, self._on_pdu_recv),
        ]
        # Stream every C-STORE data set to a file as it arrives (see the module docstring).
        _config.STORE_RECV_CHUNKED_DATASET = True
        # A server that admits connections before they take a slot (dicom_node.ingest.connections),
        # made through pynetdicom's documented make_server(server_class=...) and served here.
        server = self._make_ae().make_server(
            (dicom.host, self._requested_port),
            ssl_context=ssl_context,
            evt_handlers=handlers,
            server_class=GuardedAssociationServer,
            policy=self.policy,
            limits=AdmissionLimits.from_settings(dicom),
        )
        assert isinstance(server, GuardedAssociationServer)
        self._server = server
        self._server_thread = threading.Thread(
            target=server.serve_forever, name=f"ingest-scp-{dicom.ae_title}", daemon=True
        )
        self._server_thread.start()
        self.port = int(server.server_address[1])
        if not NodeIdentity(uid_root=self.settings.uid_root, manufacturer="").root_identifies_node:
            logger.warning(
                "uid_root is pydicom's shared root: node results are recognised by SOP class and "
                "Manufacturer only; "
                "set a registered uid_root for this site",
                extra={"stage": "ingest"},
            )
        logger.info(
            "SCP listening",
            extra={
                "stage": "ingest",
                "ae_title": dicom.ae_title,
                "host": dicom.host,
                "port": self.port,
                "tls": dicom.tls.enabled,
                "require_known_peers": dicom.require_known_peers,
            },
        )

    def stop(self) -> None:
        """Stop listening and abort associations still open (their senders will retry)."""
        server, self._server = self._server, None
        if server is None:
            return
        server.shutdown()  # no new connections
        for assoc in list(server.active_associations):
            assoc.abort()
        if self._server_thread is not None:
            self._server_thread.join(timeout=10)
        logger.info("SCP stopped", extra={"stage": "ingest", "port": self.port})

    def open_connections(self) -> dict[str, int]:
        """Open connections (associations and connections not yet past their A-ASSOCIATE-RQ)
        per source address."""
        return self._server.open_connections() if self._server is not None else {}

    def __enter__(self) -> StoreSCP:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- association events ---------------------------------------------------------------------

    def _on_requested(self, event: evt.Event) -> None:
        assoc = event.assoc
        primitive: Any = assoc.requestor.primitive
        calling = str(primitive.calling_ae_title).strip()
        called = str(primitive.called_ae_title).strip()
        address = str(assoc.requestor.address)
        rejection = self.policy.check(calling_ae_title=calling, called_ae_title=called, peer_address=address)
        if rejection is None:
            return
        logger.warning(
            "association rejected: %s",
            rejection.reason,
            extra={
                "stage": "ingest",
                "calling_ae_title": calling,
                "called_ae_title": called,
                "peer": address,
            },
        )
        # PS3.8 9.3.4; pynetdicom documents sending the A-ASSOCIATE-RJ from EVT_REQUESTED.
        assoc.acse.send_reject(rejection.result, rejection.source, rejection.diagnostic)
        assoc.kill()

    def _on_established(self, event: evt.Event) -> None:
        assoc = event.assoc
        state = _AssociationState(
            origin=Origin(
                calling_ae_title=str(assoc.requestor.ae_title).strip(),
                called_ae_title=str(assoc.acceptor.ae_title).strip(),
                peer_address=str(assoc.requestor.address),
                association_id=uuid.uuid4().hex[:16],
            ),
            started_at=datetime.now(UTC),
        )
        with self._lock:
            self._associations[assoc] = state
        logger.info(
            "association established",
            extra={
                "stage": "ingest",
                "association_id": state.origin.association_id,
                "calling_ae_title": state.origin.calling_ae_title,
                "peer": state.origin.peer_address,
            },
        )

    def _on_released(self, event: evt.Event) -> None:
        with self._lock:
            state = self._associations.get(event.assoc)
            if state is not None:
                state.released = True
        self._finish(event.assoc)

    def _on_closed(self, event: evt.Event) -> None:
        self._finish(event.assoc)

    def _on_conn_close(self, event: evt.Event) -> None:
        # Fired from the connection's own thread once it stops reading: nothing writes the
        # partial file any more.
        _discard_partial_data_set(event.assoc)
        self._finish(event.assoc)

    def _on_pdu_recv(self, event: evt.Event) -> None:
        """Count the data set bytes of the C-STORE arriving now; abort past twice
        ``max_instance_bytes`` (a refusal status would mean receiving all of it first)."""
        items = getattr(event.pdu, "presentation_data_value_items", None)
        if not items:
            return
        with self._lock:
            state = self._associations.get(event.assoc)
            if state is None or state.aborting:
                return
            for item in items:
                value = item.presentation_data_value or b"\x00"
                if value[0] & 0x01:  # PS3.8 E.2: a command fragment starts the next message
                    state.data_set_bytes = 0
                else:
                    state.data_set_bytes += len(value) - 1
            if state.data_set_bytes <= 2 * self.receiver.limits.max_instance_bytes:
                return
            state.aborting = True
        logger.warning(
            "C-STORE data set past twice max_instance_bytes (%d MiB so far): association aborted",
            state.data_set_bytes // 2**20,
            extra={"stage": "ingest", "association_id": state.origin.association_id},
        )
        # Not from this thread (the connection's reader): pynetdicom's blocking abort waits for it.
        threading.Thread(target=event.assoc.abort, name="ingest-abort", daemon=True).start()

    def _finish(self, assoc: Any) -> None:
        with self._lock:
            state = self._associations.pop(assoc, None)
        if state is None:
            return  # rejected, or already reported
        summary = AssociationSummary(
            association_id=state.origin.association_id,
            calling_ae_title=state.origin.calling_ae_title,
            called_ae_title=state.origin.called_ae_title,
            peer_address=state.origin.peer_address,
            released=state.released,
            stored=state.stored,
            duplicates=state.duplicates,
            failed=state.failed,
            study_instance_uids=frozenset(state.studies),
            started_at=state.started_at,
            ended_at=datetime.now(UTC),
        )
        logger.info(
            "association %s",
            "released" if summary.released else "aborted",
            extra={
                "stage": "ingest",
                "association_id": summary.association_id,
                "calling_ae_title": summary.calling_ae_title,
                "stored": summary.stored,
                "duplicates": summary.duplicates,
                "failed": summary.failed,
                "studies": len(summary.study_instance_uids),
            },
        )
        try:
            self._on_association_released(summary)
        except Exception:  # process edge: a listener bug must not break the SCP
            logger.exception("on_association_released failed", extra={"stage": "ingest"})

    # -- C-STORE --------------------------------------------------------------------------------

    def _on_c_store(self, event: evt.Event) -> int | Dataset:
        with self._lock:
            state = self._associations.get(event.assoc)
        if state is None:  # cannot happen after EVT_ESTABLISHED; be safe
            return _status(STATUS_GARBAGE, "association unknown")
        request: Any = event.request
        context = event.context
        sop_instance_uid = str(request.AffectedSOPInstanceUID or "") or None
        try:
            streamed = _streamed_data_set(event)
            if streamed is not None:
                stored = self.receiver.receive_file(
                    streamed,
                    offset=data_set_offset(streamed),
                    transfer_syntax_uid=str(context.transfer_syntax),
                    sop_class_uid=str(context.abstract_syntax),
                    sop_instance_uid=sop_instance_uid,
                    origin=state.origin,
                )
            else:  # STORE_RECV_CHUNKED_DATASET turned off by someone else in this process
                # A view of pynetdicom's buffer, not a copy; released before returning, as
                # pynetdicom may close the buffer afterwards.
                with request.DataSet.getbuffer() as data:
                    stored = self.receiver.receive(
                        data,
                        transfer_syntax_uid=str(context.transfer_syntax),
                        sop_class_uid=str(context.abstract_syntax),
                        sop_instance_uid=sop_instance_uid,
                        origin=state.origin,
                    )
        except IngestError as exc:
            state.failed += 1
            logger.warning(
                "C-STORE refused: %s",
                str(exc),  # the text, not the exception: its traceback holds views of the buffer
                extra={
                    "stage": "ingest",
                    "status": f"0x{exc.status:04X}",
                    "association_id": state.origin.association_id,
                    "sop_class_uid": str(context.abstract_syntax),
                },
            )
            return _status(exc.status, str(exc))
        except Exception:  # process edge: answer, log, keep serving
            state.failed += 1
            logger.exception(
                "C-STORE failed unexpectedly",
                extra={"stage": "ingest", "association_id": state.origin.association_id},
            )
            return _status(STATUS_GARBAGE, "internal error while storing")
        if stored.duplicate:
            state.duplicates += 1
        else:
            state.stored += 1
        state.studies.add(stored.study_instance_uid)
        logger.debug(
            "instance staged",
            extra={
                "stage": "ingest",
                "study": stored.study_instance_uid,
                "sop_instance_uid": stored.sop_instance_uid,
                "duplicate": stored.duplicate,
                "routable": stored.routable,
            },
        )
        try:
            self._on_instance(stored)
        except Exception:  # the instance is durably staged; restart recovery will find it
            logger.exception(
                "on_instance failed", extra={"stage": "ingest", "study": stored.study_instance_uid}
            )
        return STATUS_SUCCESS


def _streamed_data_set(event: evt.Event) -> Path | None:
    """pynetdicom's temporary Part 10 file of this C-STORE (``Event.dataset_path``), if any."""
    try:
        path = event.dataset_path
    except AttributeError:  # STORE_RECV_CHUNKED_DATASET off
        return None
    return Path(path) if path else None


def _discard_partial_data_set(assoc: Any) -> None:
    """Delete the temporary file of a C-STORE data set the association ended in the middle of.

    pynetdicom 3.0.4 creates it when the command set arrives (``DIMSEMessage.decode_msg``,
    ``NamedTemporaryFile(delete=False)``) and deletes it only after ``EVT_C_STORE``
    (``StorageServiceClass.SCP``); an abort or a dropped connection mid-data-set leaves it behind.
    No public API names the file of an unfinished message, hence the guarded look at the DIMSE
    provider's message in progress (``DIMSEServiceProvider.message``); a pynetdicom upgrade that
    moves it makes this a no-op, which tests/integration/test_ingest_streaming.py would show.
    """
    message = getattr(getattr(assoc, "dimse", None), "message", None)
    partial = getattr(message, "_data_set_file", None)
    path = getattr(message, "_data_set_path", None)
    if partial is None or not isinstance(path, Path):
        return
    with contextlib.suppress(OSError, ValueError):
        partial.close()
    with contextlib.suppress(OSError):
        path.unlink()
    logger.info("removed the partial data set of an interrupted C-STORE", extra={"stage": "ingest"})
