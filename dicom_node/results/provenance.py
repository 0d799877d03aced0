"""Dates, times and identities stamped on every result object.

highdicom stamps "now" into Instance Creation, Content and Series date/time and into the
Contributing Equipment's Contribution DateTime. The bundle passes one ``content_datetime`` per job
instead (the job's creation time by default in the worker), so that encoding the same job twice
yields identical objects, not only identical UIDs.
"""

from __future__ import annotations

import uuid
from datetime import datetime

from pydicom.dataset import Dataset

from dicom_node.identity import NODE_NAMESPACE
from dicom_node.results.carried import body_part


def stamp_datetime(ds: Dataset, when: datetime) -> None:
    """Set the creation/content/series dates and times highdicom filled in to ``when``.

    Only attributes already present are changed, so each IOD keeps its own set (a presentation state
    has Presentation Creation Date/Time and no Content Date, PS3.3 C.11.10).
    """
    da, tm = when.strftime("%Y%m%d"), when.strftime("%H%M%S")
    for date_keyword, time_keyword in (
        ("InstanceCreationDate", "InstanceCreationTime"),
        ("ContentDate", "ContentTime"),
        ("SeriesDate", "SeriesTime"),
        ("PresentationCreationDate", "PresentationCreationTime"),
        ("DateOfSecondaryCapture", "TimeOfSecondaryCapture"),
    ):
        if date_keyword in ds:
            setattr(ds, date_keyword, da)
        if time_keyword in ds:
            setattr(ds, time_keyword, tm)
    for item in ds.get("ContributingEquipmentSequence", []):
        if "ContributionDateTime" in item:
            item.ContributionDateTime = da + tm


def copy_body_part(target: Dataset, source: Dataset) -> None:
    """Copy BodyPartExamined (cleaned) and send Laterality (Type 2C, PS3.3 C.7.3.1) where the body
    part may be paired or is unknown: the CT's "R"/"L", else empty ("unknown"). highdicom copies
    neither for GSPS/SC; a missing Laterality is a dciodvfy error there, and one present for an
    unpaired part is one too (dicom-notes.md, issue 12 item 4)."""
    part, laterality = body_part(source)
    if part:
        target.BodyPartExamined = part
    if laterality is not None:
        target.Laterality = laterality


def uuid_uid(*parts: str) -> str:
    """A deterministic "2.25." UID from a UUID5 of ``parts`` (PS3.5 B.2), for callers without a root."""
    return f"2.25.{uuid.uuid5(NODE_NAMESPACE, '|'.join(parts)).int}"
