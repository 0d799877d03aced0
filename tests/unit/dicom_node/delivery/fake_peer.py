"""A pynetdicom Storage SCP that answers chosen statuses: a fake network peer for unit tests."""

from __future__ import annotations

import ssl
import threading
import time
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian
from pynetdicom import AE, evt

from tests.support.processes import free_port


@dataclass
class FakePeer:
    port: int
    ae_title: str
    # SOP Instance UID -> status to answer (default 0x0000); "abort" aborts the association,
    # "hang" waits ``hang_s`` before answering (a DIMSE timeout on the sender's side).
    statuses: dict[str, Any] = field(default_factory=dict)
    hang_s: float = 2.0
    received: Counter[str] = field(default_factory=Counter)
    calling_ae_titles: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def handle_store(self, event: Any) -> int:
        uid = str(event.request.AffectedSOPInstanceUID)
        with self.lock:
            self.received[uid] += 1
            self.calling_ae_titles.append(event.assoc.requestor.ae_title)
        answer = self.statuses.get(uid, 0x0000)
        if answer == "abort":
            event.assoc.abort()
            return 0x0000
        if answer == "hang":
            time.sleep(self.hang_s)
            return 0x0000
        return int(answer)


@contextmanager
def fake_peer(
    sop_classes: Sequence[str],
    *,
    ae_title: str = "FAKEPACS",
    statuses: Mapping[str, Any] | None = None,
    require_called_aet: bool = False,
    ssl_context: ssl.SSLContext | None = None,
) -> Iterator[FakePeer]:
    """Serve C-STORE for ``sop_classes`` on a free 127.0.0.1 port until the block ends."""
    peer = FakePeer(port=free_port(), ae_title=ae_title, statuses=dict(statuses or {}))
    ae = AE(ae_title=ae_title)
    ae.require_called_aet = require_called_aet
    for sop_class in sop_classes:
        ae.add_supported_context(sop_class, [ExplicitVRLittleEndian, ImplicitVRLittleEndian])
    server = ae.start_server(
        ("127.0.0.1", peer.port),
        block=False,
        evt_handlers=[(evt.EVT_C_STORE, peer.handle_store)],
        ssl_context=ssl_context,
    )
    try:
        yield peer
    finally:
        server.shutdown()
