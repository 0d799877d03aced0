"""Return results to PACS: C-STORE SCU (pynetdicom) and STOW-RS (+ QIDO-RS confirmation).

Public API::

    from dicom_node.delivery import deliver, DeliveryIncomplete, DeliveryRejected

    report = deliver(bundle, "PACS", settings.destinations["PACS"],
                     calling_ae_title=settings.dicom.ae_title,
                     already_delivered=store.delivered_uids(job_id, "PACS"))

Destinations by kind: :func:`open_destination` (the :class:`Destination` protocol: send, confirm,
health); lower level: :func:`send_cstore`, :func:`send_stow`, :func:`confirm_qido`,
:func:`confirm_cfind`, :func:`select_files`;
status classification in :mod:`dicom_node.delivery.outcome`.
"""

from __future__ import annotations

from dicom_node.delivery.cfind import confirm_cfind
from dicom_node.delivery.cstore import send_cstore
from dicom_node.delivery.deliver import deliver
from dicom_node.delivery.destination import Destination, HealthResult, open_destination
from dicom_node.delivery.outcome import (
    DeliveryIncomplete,
    DeliveryRejected,
    InstanceOutcome,
    OutcomeKind,
    SendResult,
    classify_dimse_status,
    classify_http_status,
)
from dicom_node.delivery.selection import presentation_contexts, select_files
from dicom_node.delivery.stow import confirm_qido, send_stow

__all__ = [
    "DeliveryIncomplete",
    "DeliveryRejected",
    "Destination",
    "HealthResult",
    "InstanceOutcome",
    "OutcomeKind",
    "SendResult",
    "classify_dimse_status",
    "classify_http_status",
    "confirm_cfind",
    "confirm_qido",
    "deliver",
    "open_destination",
    "presentation_contexts",
    "select_files",
    "send_cstore",
    "send_stow",
]
