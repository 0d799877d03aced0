"""The KOS rejection note: how the node withdraws results a re-run superseded (IHE IOCM).

When a late series (or a re-route) makes a new job whose results supersede an earlier job's, and
a destination already holds the earlier results, the node sends that destination a Key Object
Selection Document (PS3.3 A.35.4) whose document title is (113001, DCM, "Rejected for Quality
Reasons") from PS3.16 CID 7010, with the Document Title Modifier (113011, DCM) that TID 2010
requires for that title, from CID 7011 "Rejected for Quality Reasons": (111220, DCM, "Other
failure") — the honest one of that list: the objects were computed on an incomplete study, not
from a bad image. Its Key Object Description (113012) says in words what was withdrawn and why,
and every rejected object is listed in the content tree and in the Current Requested Procedure
Evidence Sequence. An IOCM-aware PACS (IHE RAD-66 "Rejection Note Stored") then hides or deletes
the rejected instances; others keep the note beside them, where a reader sees it.

The note is built from the superseded objects' own headers (Patient and Study modules, SOP
classes and instances), once per (superseded job, destination): a retry re-sends the same file.
This is one row of :mod:`dicom_node.result_kinds` (role ``rejection``) but never built with a
job's results: :func:`encode_rejection_kind` only says so; the withdraw step calls
:func:`build_rejection_note`. (The results engineer's KOS *key images* kind is a separate builder.)
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import highdicom as hd
from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.sr.codedict import codes

from dicom_node.contracts import ResultFile
from dicom_node.errors import PermanentError
from dicom_node.identity import derived_uid
from dicom_node.result_kinds import ResultKind, ResultRole, result_kind
from dicom_node.results.inputs import EncodeInputs, SkipKind, result_file, save_dataset

# PS3.16 CID 7010 Key Object Selection Document Title
REJECTED_FOR_QUALITY_REASONS = hd.sr.CodedConcept.from_code(codes.cid7010.RejectedForQualityReasons)
REJECTED_FOR_PATIENT_SAFETY_REASONS = hd.sr.CodedConcept.from_code(
    codes.cid7010.RejectedForPatientSafetyReasons
)
# TID 2010 row 2 and PS3.16 CID 7011 Rejected for Quality Reasons
DOCUMENT_TITLE_MODIFIER = hd.sr.CodedConcept("113011", "DCM", "Document Title Modifier")
OTHER_FAILURE = hd.sr.CodedConcept.from_code(codes.cid7011.OtherFailure)

_MAX_DESCRIPTION = 1024  # UT would hold more; PACS show the first lines


def encode_rejection_kind(
    inputs: EncodeInputs, kind: ResultKind, earlier: Sequence[ResultFile]
) -> list[ResultFile]:
    """The table's builder for ``rejection``: never part of a job's own results."""
    raise SkipKind("a rejection note is built when results are withdrawn, not with a job's results")


def build_rejection_note(
    rejected: Sequence[ResultFile],
    *,
    superseded_job_id: str,
    destination: str,
    description: str,
    out_dir: Path,
    uid_root: str,
    manufacturer: str,
    title: hd.sr.CodedConcept = REJECTED_FOR_QUALITY_REASONS,
) -> ResultFile:
    """Write (once) the KOS rejection note for ``rejected`` at ``destination``; return it.

    ``rejected`` are the superseded job's result files that destination holds (their files must
    still be on disk: their headers become the note's evidence). The note's UIDs derive from
    (superseded job, destination): the same note every time. Raises :class:`PermanentError` when
    nothing is to be rejected or the files are gone.
    """
    if not rejected:
        raise PermanentError("a rejection note needs at least one object to reject")
    kind = result_kind(ResultRole.REJECTION)
    out_dir.mkdir(parents=True, exist_ok=True)
    key = f"{kind.role}:{destination}"
    sop_instance_uid = derived_uid(uid_root, superseded_job_id, f"{key}:instance")
    path = out_dir / f"rejection-{sop_instance_uid}.dcm"
    if path.exists():  # built by an earlier attempt: the same object again
        return result_file(kind.role, path, dcmread(path, stop_before_pixels=True))
    evidence = [_header(f) for f in rejected]
    studies = {str(ds.StudyInstanceUID) for ds in evidence}
    if len(studies) != 1:
        raise PermanentError(f"objects to reject belong to {len(studies)} studies, not one")
    content = hd.ko.KeyObjectSelection(
        document_title=title,
        referenced_objects=evidence,
        description=description[:_MAX_DESCRIPTION],
    )
    if title == REJECTED_FOR_QUALITY_REASONS:
        # TID 2010 row 2: the title's modifier, first in the content tree (before the description)
        modifier = hd.sr.CodeContentItem(
            name=DOCUMENT_TITLE_MODIFIER,
            value=OTHER_FAILURE,
            relationship_type=hd.sr.RelationshipTypeValues.HAS_CONCEPT_MOD,
        )
        content[0].ContentSequence.insert(0, modifier)
    note = hd.ko.KeyObjectSelectionDocument(
        evidence=evidence,
        content=content,
        series_instance_uid=derived_uid(uid_root, superseded_job_id, f"{key}:series"),
        series_number=kind.series_number,
        sop_instance_uid=sop_instance_uid,
        instance_number=1,
        manufacturer=manufacturer,
        specific_character_set="ISO_IR 192",  # the description is UTF-8 text
    )
    note.SeriesDescription = kind.series_label
    return save_dataset(kind, note, path)


def _header(file: ResultFile) -> Dataset:
    try:
        return dcmread(file.path, stop_before_pixels=True)
    except (OSError, ValueError) as exc:
        raise PermanentError(
            f"cannot read superseded object {file.sop_instance_uid} for its rejection note: {exc}"
        ) from exc
