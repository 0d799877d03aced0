from __future__ import annotations

from datetime import UTC, datetime

from dicom_node.contracts import CompletionReason, StudyStable
from dicom_node.identity import sop_set_digest
from plugins.orthanc.guard import NodeResultClassifier
from plugins.orthanc.snapshot import (
    fetch_snapshot,
    parse_orthanc_time,
    route_task_id,
    snapshot_from_rest,
    study_stable_from,
)
from tests.unit.plugins.orthanc.fakes import CT, SEG, FakeOrthanc, FakeSeries

classifier = NodeResultClassifier(uid_root="1.2.826.0.1.999999.", manufacturer="ct-ai-node")
NOW = datetime(2026, 11, 23, 10, 20, tzinfo=UTC)


def study_with_ct_and_seg() -> FakeOrthanc:
    fake = FakeOrthanc()
    fake.add_series(FakeSeries("s1", "st", "1.2.3.4.100", "CT", CT, images_in_acquisition=3), "1.2.3.4")
    fake.add_instances("s1", 3, uid_prefix="1.2.3.4.100")
    fake.add_series(FakeSeries("s2", "st", "1.2.826.0.1.999999.5", "SEG", SEG, manufacturer="ct-ai-node"))
    fake.add_instances("s2", 1, uid_prefix="1.2.826.0.1.999999.5")
    return fake


def test_snapshot_separates_input_from_node_results() -> None:
    fake = study_with_ct_and_seg()
    snap = fetch_snapshot(fake, "st", classifier=classifier, now=NOW)
    assert snap is not None
    assert snap.study_instance_uid == "1.2.3.4"
    ct_uids = {f"1.2.3.4.100.1.{n}" for n in (1, 2, 3)}
    assert snap.routable_sop_instance_uids == ct_uids
    assert snap.node_result_count == 1
    assert snap.sop_set_digest == sop_set_digest(ct_uids)
    assert snap.complete_by_counts  # the SEG series announces nothing, but it is not input
    assert snap.calling_ae_title == "MODALITY1" and snap.called_ae_title == "ORTHANC"
    assert snap.first_received_at == datetime(2026, 11, 23, 10, 10, tzinfo=UTC)
    assert snap.last_received_at == datetime(2026, 11, 23, 10, 15, tzinfo=UTC)
    # 2 + one metadata read per series, never one per instance
    assert len(fake.calls) == 3 + 2


def test_counts_incomplete_and_unknown() -> None:
    fake = study_with_ct_and_seg()
    fake.series["s1"].images_in_acquisition = 4
    snap = fetch_snapshot(fake, "st", classifier=classifier, now=NOW)
    assert snap is not None and not snap.complete_by_counts
    fake.series["s1"].images_in_acquisition = None
    snap = fetch_snapshot(fake, "st", classifier=classifier, now=NOW)
    assert snap is not None and not snap.complete_by_counts


def test_missing_study_gives_none() -> None:
    assert fetch_snapshot(FakeOrthanc(), "nope", classifier=classifier, now=NOW) is None


def test_study_stable_carries_orthanc_source_and_no_patient_identifiers() -> None:
    snap = fetch_snapshot(study_with_ct_and_seg(), "st", classifier=classifier, now=NOW)
    assert snap is not None
    stable = study_stable_from(
        snap,
        reason=CompletionReason.ORTHANC_STABLE,
        reason_detail="Orthanc STABLE_STUDY",
        orthanc_url="http://127.0.0.1:8042",
        stable_at=NOW,
    )
    assert stable.source.kind == "orthanc"
    assert stable.source.orthanc_study_id == "st"
    assert stable.source.orthanc_url == "http://127.0.0.1:8042"
    assert stable.instance_count == 3
    as_json = stable.model_dump_json()
    for secret in ("DOE", "PID-SECRET", "ACC-SECRET"):
        assert secret not in as_json
    assert StudyStable.model_validate_json(as_json) == stable


def test_task_id_depends_on_study_and_content_only() -> None:
    a = route_task_id("st", "d1")
    assert a == route_task_id("st", "d1")
    assert a != route_task_id("st", "d2") and a != route_task_id("other", "d1")


def test_time_parsing_and_fallbacks() -> None:
    assert parse_orthanc_time("20261123T091953") == datetime(2026, 11, 23, 9, 19, 53, tzinfo=UTC)
    assert parse_orthanc_time("garbage") is None and parse_orthanc_time(None) is None
    snap = snapshot_from_rest(
        study={"ID": "x", "MainDicomTags": {"StudyInstanceUID": "1.2"}},
        series=[],
        instances=[],
        first_instance_metadata={},
        classifier=classifier,
        now=NOW,
    )
    assert snap.first_received_at == snap.last_received_at == NOW
    assert not snap.complete_by_counts and not snap.routable_sop_instance_uids
