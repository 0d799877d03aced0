"""The two DICOM peers of ``ctnode demo``: a modality that sends a study, a PACS that receives results.

Both are plain pynetdicom AEs in the demo process, so the demo needs no DCMTK or Orthanc; the node
in between is the real one (``worker.node.service.NodeService`` + a ``ctnode worker`` process).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pydicom import dcmread
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian
from pynetdicom import AE, ALL_TRANSFER_SYNTAXES, StoragePresentationContexts, evt
from pynetdicom.sop_class import Verification  # type: ignore[attr-defined]

from dicom_node.constants import CT_IMAGE_STORAGE, LABEL_MAP_SEGMENTATION_STORAGE
from dicom_node.errors import TransientError


class DemoPACS:
    """A C-STORE SCP that writes what it receives under ``out_dir/<SOP class>/<SOP instance>.dcm``."""

    def __init__(self, out_dir: Path, *, ae_title: str = "DEMO_PACS", port: int = 0) -> None:
        self.out_dir = out_dir
        self.ae_title = ae_title
        self._port = port
        self._server: Any = None
        self.received: list[Path] = []
        self._lock = threading.Lock()

    def _on_store(self, event: Any) -> int:
        ds = event.dataset
        ds.file_meta = event.file_meta
        folder = self.out_dir / str(ds.SOPClassUID)
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"{ds.SOPInstanceUID}.dcm"
        ds.save_as(path, enforce_file_format=True)
        with self._lock:
            self.received.append(path)
        return 0x0000

    def start(self) -> int:
        # The node's C-FIND query-back finds no C-FIND here (a storescp-like PACS): pynetdicom
        # logs that refusal as an ERROR on this side, which is expected, not a demo failure.
        logging.getLogger("pynetdicom").setLevel(logging.CRITICAL)
        ae = AE(ae_title=self.ae_title)
        for context in StoragePresentationContexts:
            if context.abstract_syntax is not None:
                ae.add_supported_context(context.abstract_syntax, ALL_TRANSFER_SYNTAXES)
        # LABELMAP SEG is not among pynetdicom's default storage contexts (dicom-notes.md).
        ae.add_supported_context(LABEL_MAP_SEGMENTATION_STORAGE, ALL_TRANSFER_SYNTAXES)
        ae.add_supported_context(Verification)
        self._server = ae.start_server(
            ("127.0.0.1", self._port), block=False, evt_handlers=[(evt.EVT_C_STORE, self._on_store)]
        )
        self.port = int(self._server.server_address[1])
        return self.port

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()


def send_study(
    paths: Sequence[Path], *, host: str, port: int, called_ae_title: str, calling_ae_title: str
) -> int:
    """C-STORE every file in one association (a modality or PACS auto-routing); returns how many
    the node accepted. Raises TransientError when the node cannot be reached."""
    ae = AE(ae_title=calling_ae_title)
    ae.add_requested_context(CT_IMAGE_STORAGE, [ExplicitVRLittleEndian, ImplicitVRLittleEndian])
    assoc = ae.associate(host, port, ae_title=called_ae_title)
    if not assoc.is_established:
        raise TransientError(
            f"node {called_ae_title}@{host}:{port} refused or did not answer the association"
        )
    accepted = 0
    try:
        for path in paths:
            status = assoc.send_c_store(dcmread(path))
            if status and int(status.Status) in (0x0000, 0xB000, 0xB007, 0xB006):
                accepted += 1
    finally:
        assoc.release()
    return accepted
