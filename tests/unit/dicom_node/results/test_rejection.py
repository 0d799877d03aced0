"""The KOS rejection note on real result objects (SEG, SR, GSPS, SC from encode_results): its
document title and modifier (PS3.16 CID 7010 / 7011, TID 2010), every rejected object referenced,
dciodvfy-clean, and the same note on a second build."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydicom import dcmread

from dicom_node.constants import KEY_OBJECT_SELECTION_DOCUMENT_STORAGE
from dicom_node.errors import PermanentError
from dicom_node.result_kinds import ResultRole
from dicom_node.results.rejection import build_rejection_note
from tests.support.dcmtk import dciodvfy_errors
from tests.unit.dicom_node.results.cases import JOB_ID, UID_ROOT
from tests.unit.dicom_node.results.conftest import Encoded


def _note(encoded: Encoded, out_dir: Path) -> Path:
    made = build_rejection_note(
        encoded.bundle.files,
        superseded_job_id=JOB_ID,
        destination="pacs",
        description="Superseded: results computed before series 3 arrived; see the revised results.",
        out_dir=out_dir,
        uid_root=UID_ROOT,
        manufacturer="ct-ai-node",
    )
    assert made.role == ResultRole.REJECTION and made.sop_class_uid == KEY_OBJECT_SELECTION_DOCUMENT_STORAGE
    return Path(made.path)


def test_the_note_rejects_every_object_for_quality_reasons(encoded: Encoded, tmp_path: Path) -> None:
    path = _note(encoded, tmp_path)
    note = dcmread(path)
    assert note.Modality == "KO" and note.SeriesNumber == 910
    assert note.SeriesDescription == "AI RESULTS WITHDRAWN"
    title = note.ConceptNameCodeSequence[0]
    assert (title.CodeValue, title.CodingSchemeDesignator, title.CodeMeaning) == (
        "113001",
        "DCM",
        "Rejected for Quality Reasons",
    )
    assert note.ContentTemplateSequence[0].TemplateIdentifier == "2010"
    first, description, *references = note.ContentSequence
    assert first.RelationshipType == "HAS CONCEPT MOD"
    assert first.ConceptNameCodeSequence[0].CodeValue == "113011"  # Document Title Modifier
    assert first.ConceptCodeSequence[0].CodeValue == "111220"  # CID 7011 "Other failure"
    assert description.ConceptNameCodeSequence[0].CodeValue == "113012"
    assert "before series 3 arrived" in description.TextValue
    rejected = {f.sop_instance_uid for f in encoded.bundle.files}
    in_tree = {r.ReferencedSOPSequence[0].ReferencedSOPInstanceUID for r in references}
    (study,) = note.CurrentRequestedProcedureEvidenceSequence
    in_evidence = {
        sop.ReferencedSOPInstanceUID
        for series in study.ReferencedSeriesSequence
        for sop in series.ReferencedSOPSequence
    }
    assert in_tree == in_evidence == rejected
    source = dcmread(encoded.bundle.files[0].path, stop_before_pixels=True)
    assert note.StudyInstanceUID == source.StudyInstanceUID and note.PatientID == source.PatientID
    assert dciodvfy_errors(path) == []


def test_the_same_note_on_a_second_build(encoded: Encoded, tmp_path: Path) -> None:
    first = _note(encoded, tmp_path)
    before = first.read_bytes()
    again = _note(encoded, tmp_path)
    assert again == first and again.read_bytes() == before
    other = build_rejection_note(
        encoded.bundle.files[:1],
        superseded_job_id=JOB_ID,
        destination="archive",
        description="x",
        out_dir=tmp_path,
        uid_root=UID_ROOT,
        manufacturer="ct-ai-node",
    )
    assert other.sop_instance_uid != dcmread(first).SOPInstanceUID  # one note per destination


def test_nothing_to_reject_or_files_gone(encoded: Encoded, tmp_path: Path) -> None:
    with pytest.raises(PermanentError, match="at least one"):
        build_rejection_note(
            (),
            superseded_job_id=JOB_ID,
            destination="pacs",
            description="x",
            out_dir=tmp_path,
            uid_root=UID_ROOT,
            manufacturer="m",
        )
    gone = encoded.bundle.files[0].model_copy(update={"path": str(tmp_path / "missing.dcm")})
    with pytest.raises(PermanentError, match="cannot read superseded object"):
        build_rejection_note(
            (gone,),
            superseded_job_id=JOB_ID,
            destination="pacs",
            description="x",
            out_dir=tmp_path / "n",
            uid_root=UID_ROOT,
            manufacturer="m",
        )


def test_results_that_supersede_say_so_in_their_series(tmp_path: Path) -> None:
    from tests.unit.dicom_node.results.cases import make_case
    from tests.unit.dicom_node.results.conftest import encode

    case = make_case(tmp_path, geometry="oblique", shape=(7, 24, 32))
    plain = encode(case, tmp_path / "plain", roles=(ResultRole.SEG, ResultRole.SR))
    revised = encode(
        case, tmp_path / "revised", roles=(ResultRole.SEG, ResultRole.SR), supersedes=("earlier-job",)
    )
    for before, after in zip(plain.bundle.files, revised.bundle.files, strict=True):
        old = dcmread(before.path, stop_before_pixels=True).SeriesDescription
        new = dcmread(after.path, stop_before_pixels=True).SeriesDescription
        assert not old.endswith("(revised)") and new.endswith(" (revised)") and len(new) <= 64
        assert new.startswith(old.split(" - ")[0])  # the label a radiologist looks for stays first
        assert after.sop_instance_uid == before.sop_instance_uid  # same job, same UIDs
