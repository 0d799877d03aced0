"""The job store and audit trail (SQLAlchemy: SQLite by default, PostgreSQL supported).

Public API::

    from dicom_node.jobs import JobStore, DeliveryState, InvalidTransition, JobNotFound

    store = JobStore.open(settings.database_url)  # migrates the schema to head

See :mod:`dicom_node.jobs.store` for the methods and :mod:`dicom_node.jobs.states` for the state
machine. The store keeps UIDs, states, reasons and contract JSON; never pixels, never PHI.
"""

from __future__ import annotations

from dicom_node.jobs.records import ConfigChange, DeliveryRecord, JobDetail, JobEvent, JobRecord, StudyRecord
from dicom_node.jobs.states import (
    ALLOWED_TRANSITIONS,
    DeliveryState,
    InvalidTransition,
    check_transition,
    job_state_after_deliveries,
)
from dicom_node.jobs.store import JobNotFound, JobStore

__all__ = [
    "ALLOWED_TRANSITIONS",
    "ConfigChange",
    "DeliveryRecord",
    "DeliveryState",
    "InvalidTransition",
    "JobDetail",
    "JobEvent",
    "JobNotFound",
    "JobRecord",
    "JobStore",
    "StudyRecord",
    "check_transition",
    "job_state_after_deliveries",
]
