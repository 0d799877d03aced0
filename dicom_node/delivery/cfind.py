"""C-FIND query-back: after a C-STORE delivery, ask the destination which instances it holds.

Study Root Query/Retrieve Information Model - FIND (PS3.4 C.6.2), IMAGE level, one query per
series of the delivered files, ``SOPInstanceUID`` as return key. Evidence for the audit trail,
never a verdict on delivery: a destination that offers no C-FIND (DCMTK storescp), refuses our
AE for queries, or has not indexed the objects yet gives ``confirmed=False`` with the reason.
Storage commitment (PS3.4 J) is not implemented.
"""

from __future__ import annotations

import logging
import ssl
from collections.abc import Sequence

from pydicom.dataset import Dataset
from pynetdicom import AE

from dicom_node.constants import STUDY_ROOT_QR_FIND
from dicom_node.contracts import ResultFile
from dicom_node.delivery.cstore import client_ssl_context
from dicom_node.settings import DicomDestinationSettings

logger = logging.getLogger(__name__)

_PENDING = (0xFF00, 0xFF01)  # PS3.4 C.4.1.1.4: a match follows


def confirm_cfind(
    files: Sequence[ResultFile],
    dest: DicomDestinationSettings,
    *,
    calling_ae_title: str,
    study_instance_uid: str,
) -> tuple[bool, str]:
    """(confirmed, detail): True when the destination lists every SOP Instance of ``files``."""
    if not files:
        return True, "nothing to confirm"
    where = f"{dest.ae_title}@{dest.host}:{dest.port}"
    ae = AE(ae_title=calling_ae_title)
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = ae.connection_timeout = dest.timeout_s
    ae.add_requested_context(STUDY_ROOT_QR_FIND)
    tls_args = (client_ssl_context(dest.tls), dest.host) if dest.tls.enabled else None
    try:
        assoc = ae.associate(dest.host, dest.port, ae_title=dest.ae_title, tls_args=tls_args)
    except (OSError, ssl.SSLError) as exc:
        return False, f"C-FIND query-back: cannot connect to {where}: {exc}"
    wanted: dict[str, set[str]] = {}
    for f in files:
        wanted.setdefault(f.series_instance_uid, set()).add(f.sop_instance_uid)
    found: set[str] = set()
    try:
        if not assoc.is_established:
            return False, f"C-FIND query-back: {where} offers no Study Root C-FIND to us"
        for series_uid in wanted:
            query = Dataset()
            query.QueryRetrieveLevel = "IMAGE"
            query.StudyInstanceUID = study_instance_uid
            query.SeriesInstanceUID = series_uid
            query.SOPInstanceUID = ""
            for status, identifier in assoc.send_c_find(query, STUDY_ROOT_QR_FIND):
                code = int(status.Status) if status is not None and "Status" in status else None
                if code is None:
                    return False, f"C-FIND query-back: no response from {where}"
                if code in _PENDING and identifier is not None and "SOPInstanceUID" in identifier:
                    found.add(str(identifier.SOPInstanceUID))
                elif code not in _PENDING and code != 0x0000:
                    return False, f"C-FIND query-back: {where} answered 0x{code:04X}"
    finally:
        if assoc.is_established:
            assoc.release()
        ae.shutdown()
    expected = set().union(*wanted.values())
    missing = sorted(expected - found)
    if missing:
        return False, f"C-FIND: {len(missing)} of {len(expected)} instances not found: {missing[:5]}"
    return True, f"C-FIND: all {len(expected)} instances found"
