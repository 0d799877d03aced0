from __future__ import annotations

from pathlib import Path

from plugins.orthanc.spool import Spool


def test_decision_pending_failure_sent_cycle(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "spool.sqlite")
    assert spool.last_digest("st") is None
    spool.record_decision(task_id="t1", orthanc_study_id="st", sop_set_digest="d1", payload="{}", now=100.0)
    assert spool.last_digest("st") == "d1"
    assert [p.task_id for p in spool.due(100.0)] == ["t1"]
    assert spool.mark_failed("t1", error="refused", next_attempt_at=110.0) == 1
    assert spool.due(105.0) == []
    assert spool.next_due_at() == 110.0
    item = spool.due(110.0)[0]
    assert (item.attempts, item.last_error) == (1, "refused")
    spool.mark_sent("t1", now=111.0)
    assert spool.pending() == [] and spool.next_due_at() is None
    assert spool.sent_at("t1") == 111.0
    assert spool.last_digest("st") == "d1"  # the guard still remembers what was submitted


def test_newer_decision_replaces_older_pending_of_same_study(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "spool.sqlite")
    spool.record_decision(task_id="t1", orthanc_study_id="st", sop_set_digest="d1", payload="{}", now=1.0)
    spool.record_decision(task_id="u1", orthanc_study_id="other", sop_set_digest="e1", payload="{}", now=1.5)
    spool.record_decision(task_id="t2", orthanc_study_id="st", sop_set_digest="d2", payload="{}", now=2.0)
    assert sorted(p.task_id for p in spool.pending()) == ["t2", "u1"]
    assert spool.last_digest("st") == "d2"


def test_survives_reopen(tmp_path: Path) -> None:
    path = tmp_path / "deep" / "spool.sqlite"
    spool = Spool(path)
    spool.record_decision(
        task_id="t1", orthanc_study_id="st", sop_set_digest="d1", payload='{"a": 1}', now=1.0
    )
    spool.set_meta("watermark", "42")
    spool.close()
    again = Spool(path)
    assert [(p.task_id, p.payload) for p in again.pending()] == [("t1", '{"a": 1}')]
    assert again.get_meta("watermark") == "42" and again.get_meta("missing") is None
    assert again.last_digest("st") == "d1"
