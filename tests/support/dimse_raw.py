"""A C-STORE sender that can misbehave on the wire, for tests and the ingest fuzz bench.

pynetdicom negotiates the association (a real A-ASSOCIATE-RQ/AC); then the data set goes out as
P-DATA-TF PDUs this module encodes with pynetdicom's own DIMSE/PDU classes, so a test can stop in
the middle of a data set, drop the connection, or send a data set no encoder would write, and
still read the C-STORE-RSP when the node answers.
"""

from __future__ import annotations

import contextlib
import socket
import struct
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from io import BytesIO
from typing import Any

from pydicom.filebase import DicomBytesIO
from pydicom.filereader import read_dataset
from pynetdicom import AE
from pynetdicom.dimse_messages import C_STORE_RQ
from pynetdicom.dimse_primitives import C_STORE
from pynetdicom.pdu import P_DATA_TF

MAX_PDU = 16_384


@dataclass
class RawAssociation:
    """An established association whose socket this side drives directly."""

    assoc: Any  # pynetdicom Association (requestor), only for its negotiated contexts
    sock: socket.socket
    context_id: int  # the first accepted context
    context_ids: dict[tuple[str, str], int] = field(default_factory=dict)
    message_id: int = 0

    def p_data_pdus(
        self,
        data_set: bytes,
        *,
        sop_class_uid: str,
        sop_instance_uid: str,
        context_id: int | None = None,
        max_pdu: int = MAX_PDU,
    ) -> list[bytes]:
        """The encoded P-DATA-TF PDUs of one C-STORE-RQ carrying ``data_set`` as given."""
        context_id = self.context_id if context_id is None else context_id
        self.message_id += 1
        primitive = C_STORE()
        primitive.MessageID = self.message_id
        primitive.AffectedSOPClassUID = sop_class_uid
        primitive.AffectedSOPInstanceUID = sop_instance_uid
        primitive.Priority = 2
        primitive.DataSet = BytesIO(data_set)
        message = C_STORE_RQ()
        message.primitive_to_message(primitive)
        pdus = []
        for p_data in message.encode_msg(context_id, max_pdu):
            pdu = P_DATA_TF()
            pdu.from_primitive(p_data)
            pdus.append(pdu.encode())
        return pdus

    def send(self, raw: bytes) -> None:
        self.sock.sendall(raw)

    def read_store_status(self, *, timeout_s: float = 60.0) -> int | None:
        """The Status of the next C-STORE-RSP; None when the node closed or aborted instead."""
        return self.read_store_status_and_comment(timeout_s=timeout_s)[0]

    def read_store_status_and_comment(self, *, timeout_s: float = 60.0) -> tuple[int | None, str]:
        """Status and ErrorComment (0000,0902) of the next C-STORE-RSP; (None, "") when the node
        closed or aborted instead."""
        self.sock.settimeout(timeout_s)
        command = b""
        while True:
            header = _recv_exactly(self.sock, 6)
            if header is None:
                return None, ""
            pdu_type, _, length = struct.unpack(">BBI", header)
            body = _recv_exactly(self.sock, length)
            if body is None or pdu_type != 0x04:  # A-ABORT, A-RELEASE-RQ, ...: no status
                return None, ""
            position = 0
            while position < len(body):
                item_length = struct.unpack(">I", body[position : position + 4])[0]
                control = body[position + 5]
                command += body[position + 6 : position + 4 + item_length]
                position += 4 + item_length
                if control & 0x03 == 0x03:  # last fragment of a command
                    response = read_dataset(DicomBytesIO(command), True, True)
                    status = response.get("Status")
                    comment = str(response.get("ErrorComment", "") or "")
                    return (None if status is None else int(status)), comment

    def release(self) -> bool:
        """A-RELEASE-RQ; True when the node answered A-RELEASE-RP."""
        self.sock.sendall(bytes([0x05, 0x00, 0, 0, 0, 4, 0, 0, 0, 0]))
        header = _recv_exactly(self.sock, 6)
        return header is not None and header[0] == 0x06

    def abort(self) -> None:
        """A-ABORT (PS3.8 9.3.8: source 0 = service-user)."""
        with contextlib.suppress(OSError):
            self.sock.sendall(bytes([0x07, 0x00, 0, 0, 0, 4, 0, 0, 0, 0]))

    def close(self) -> None:
        """Drop the TCP connection (after whatever was or was not sent)."""
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)
        self.sock.close()


def _recv_exactly(sock: socket.socket, count: int) -> bytes | None:
    data = b""
    while len(data) < count:
        try:
            chunk = sock.recv(count - len(data))
        except (OSError, TimeoutError):
            return None
        if not chunk:
            return None
        data += chunk
    return data


@contextlib.contextmanager
def raw_association(
    port: int,
    *,
    sop_class_uid: str = "",
    transfer_syntax_uid: str = "",
    contexts: Sequence[tuple[str, str]] = (),
    calling: str = "PYSCU",
    called: str = "CTAINODE",
) -> Iterator[RawAssociation]:
    """Associate with pynetdicom, then drive the socket by hand (the requestor's own reactor
    is stopped: this side sends and reads everything itself).

    One presentation context per (SOP class, transfer syntax) of ``contexts`` (or the one pair
    given); :attr:`RawAssociation.context_ids` maps each accepted pair to its context ID.
    """
    pairs = list(contexts) or [(sop_class_uid, transfer_syntax_uid)]
    ae = AE(ae_title=calling)
    for abstract, ts in dict.fromkeys(pairs):
        ae.add_requested_context(abstract, ts)
    assoc = ae.associate("127.0.0.1", port, ae_title=called)
    if not assoc.is_established:
        raise ConnectionError("association not established")
    ids = {
        (str(cx.abstract_syntax), str(cx.transfer_syntax[0])): int(cx.context_id)
        for cx in assoc.accepted_contexts
    }
    sock = assoc.dul.socket.socket
    # Take the socket over: stop pynetdicom's reader threads (they would eat the responses)
    # without closing it. Test-only use of pynetdicom internals.
    assoc._kill = True
    assoc.dul._kill_thread = True
    assoc.dul.join(timeout=10)
    assoc.join(timeout=10)
    raw = RawAssociation(assoc=assoc, sock=sock, context_id=next(iter(ids.values()), 1), context_ids=ids)
    try:
        yield raw
    finally:
        raw.close()
