"""Case ids of datasets made from DICOM: a hash of the study and series UIDs.

Never a patient name, id or accession number, and not the UIDs themselves (a UID can be looked
up in the PACS it came from): sha256 of "StudyInstanceUID|SeriesInstanceUID", first 16 hex digits.
The same series always gets the same id, which is what makes distillation resumable.
"""

from __future__ import annotations

import hashlib

CASE_ID_HEX = 16


def case_id_for(study_instance_uid: str, series_instance_uid: str) -> str:
    digest = hashlib.sha256(f"{study_instance_uid}|{series_instance_uid}".encode()).hexdigest()
    return "ct_" + digest[:CASE_ID_HEX]
