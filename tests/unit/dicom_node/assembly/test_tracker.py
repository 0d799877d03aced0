"""The study tracker with an injected clock: each completion reason, per-AE quiet periods, late
instances, failures of the hand-off, markers and restart recovery."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from dicom_node.assembly.tracker import StudyTracker
from dicom_node.contracts import CompletionReason, InstanceStored, StudyStable
from dicom_node.identity import sop_set_digest
from dicom_node.settings import Settings, load_settings

STUDY = "1.2.3.100"
T0 = 1_800_000_000.0


class Clock:
    def __init__(self, now: float = T0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def make_settings(tmp_path: Path, **completion: Any) -> Settings:
    return load_settings(
        overrides={
            "storage": {"root": str(tmp_path)},
            "completion": {"quiet_period_s": 8.0, "association_release_grace_s": 1.0, "max_age_s": 600.0}
            | completion,
            "dicom": {
                "allowed_peers": [
                    {"ae_title": "FASTCT", "quiet_period_s": 2.0},
                    {"ae_title": "SLOWPACS"},
                    {"ae_title": "MODALITY", "one_association_per_study": True},
                ]
            },
        }
    )


def instance(
    sop: str,
    at: float,
    *,
    study: str = STUDY,
    series: str = "1.2.3.100.1",
    association: str = "assoc-1",
    calling: str = "SLOWPACS",
    routable: bool = True,
    duplicate: bool = False,
    expected: int | None = None,
    staging: Path = Path("/staging"),
) -> InstanceStored:
    return InstanceStored(
        study_instance_uid=study,
        series_instance_uid=series,
        sop_instance_uid=sop,
        sop_class_uid="1.2.840.10008.5.1.4.1.1.2",
        path=str(staging / study / series / f"{sop}.dcm"),
        calling_ae_title=calling,
        called_ae_title="CTAINODE",
        peer_address="127.0.0.1",
        association_id=association,
        received_at=datetime.fromtimestamp(at, tz=UTC),
        duplicate=duplicate,
        routable=routable,
        expected_series_instances=expected,
    )


class Harness:
    def __init__(self, tmp_path: Path, **completion: Any) -> None:
        self.clock = Clock()
        self.sent: list[StudyStable] = []
        self.fail_next = 0
        self.settings = make_settings(tmp_path, **completion)
        self.tracker = self.make_tracker()

    def make_tracker(self, **kwargs: Any) -> StudyTracker:
        return StudyTracker(self.settings, on_stable=self.on_stable, clock=self.clock, **kwargs)

    def on_stable(self, event: StudyStable) -> None:
        if self.fail_next:
            self.fail_next -= 1
            raise ConnectionError("broker down")
        self.sent.append(event)

    def feed(
        self, n: int, *, start: float, step: float = 0.1, prefix: str = "1.2.3.100.1.", **kw: Any
    ) -> float:
        t = start
        for i in range(n):
            t = start + i * step
            self.tracker.instance_stored(instance(f"{prefix}{i + 1}", t, **kw))
        return t

    def sweep_at(self, now: float) -> list[StudyStable]:
        self.clock.now = now
        return self.tracker.sweep()


def test_quiet_period_with_the_reason_recorded(tmp_path: Path) -> None:
    h = Harness(tmp_path, association_release=False)
    last = h.feed(20, start=T0)
    assert h.sweep_at(last + 7.9) == []
    [event] = h.sweep_at(last + 8.0)
    assert event.reason == CompletionReason.QUIET_PERIOD
    assert event.instance_count == 20
    assert event.calling_ae_title == "SLOWPACS"
    assert event.source.kind == "staging" and event.source.staging_path == f"/staging/{STUDY}"
    assert event.first_received_at.timestamp() == T0
    assert event.last_received_at.timestamp() == pytest.approx(last)
    assert h.sweep_at(last + 100) == []  # dispatched once


def test_association_release_after_grace_for_a_one_association_per_study_sender(tmp_path: Path) -> None:
    h = Harness(tmp_path)
    last = h.feed(20, start=T0, calling="MODALITY")
    h.clock.now = last + 0.2
    h.tracker.association_released("assoc-1", released=True)
    assert h.sweep_at(last + 1.1) == []
    [event] = h.sweep_at(last + 1.2)
    assert event.reason == CompletionReason.ASSOCIATION_RELEASED
    assert "one association per study" in event.reason_detail


def test_series_by_series_sender_gets_one_stable_study(tmp_path: Path) -> None:
    """A PACS sending each series in its own association, seconds apart: release is no signal."""
    h = Harness(tmp_path)
    first = h.feed(20, start=T0, association="series-1")
    h.tracker.association_released("series-1", at=first + 0.1)
    assert h.sweep_at(first + 1.5) == []  # the old default (release + 1 s grace) fired here
    assert h.sweep_at(first + 4.0) == []
    second = h.feed(
        30, start=first + 4.0, association="series-2", series="1.2.3.100.2", prefix="1.2.3.100.2."
    )
    h.tracker.association_released("series-2", at=second + 0.1)
    assert h.sweep_at(second + 7.9) == []
    [event] = h.sweep_at(second + 8.0)
    assert event.reason == CompletionReason.QUIET_PERIOD
    assert event.instance_count == 50
    assert h.sweep_at(second + 100) == []


def test_association_release_for_every_sender_when_settings_say_so(tmp_path: Path) -> None:
    h = Harness(tmp_path, association_release=True)
    last = h.feed(5, start=T0, calling="SLOWPACS")
    h.tracker.association_released("assoc-1", at=last)
    [event] = h.sweep_at(last + 1.0)
    assert event.reason == CompletionReason.ASSOCIATION_RELEASED


def test_aborted_association_is_no_signal(tmp_path: Path) -> None:
    h = Harness(tmp_path)
    last = h.feed(5, start=T0, calling="MODALITY")
    h.tracker.association_released("assoc-1", released=False, at=last)
    assert h.sweep_at(last + 5) == []
    [event] = h.sweep_at(last + 8)
    assert event.reason == CompletionReason.QUIET_PERIOD


def test_release_of_one_association_waits_for_the_other(tmp_path: Path) -> None:
    h = Harness(tmp_path)
    h.feed(5, start=T0, association="a", calling="MODALITY")
    last = h.feed(5, start=T0 + 0.5, association="b", prefix="1.2.3.100.1.9", calling="MODALITY")
    h.tracker.association_released("a", at=last)
    assert h.sweep_at(last + 3) == []  # "b" is still open
    h.tracker.association_released("b", at=last + 3)
    [event] = h.sweep_at(last + 4)
    assert event.reason == CompletionReason.ASSOCIATION_RELEASED
    assert event.instance_count == 10


def test_announced_counts_met_do_not_complete_a_study(tmp_path: Path) -> None:
    """A full series says nothing about the series that may follow: the quiet period decides."""
    h = Harness(tmp_path)
    last = h.feed(10, start=T0, expected=10)
    assert h.sweep_at(last + 2.0) == []
    [event] = h.sweep_at(last + 8.0)
    assert event.reason == CompletionReason.QUIET_PERIOD


def test_series_short_of_its_announced_count_holds_the_study(tmp_path: Path) -> None:
    h = Harness(tmp_path, incomplete_series_quiet_s=60.0)
    last = h.feed(9, start=T0, expected=10, calling="MODALITY")
    h.tracker.association_released("assoc-1", at=last)
    assert h.sweep_at(last + 8.0) == []  # neither the release nor the quiet period
    assert h.sweep_at(last + 59.0) == []
    [event] = h.sweep_at(last + 60.0)
    assert event.reason == CompletionReason.QUIET_PERIOD
    assert "1 series short of its announced size (e.g. 9 of 10)" in event.reason_detail


def test_the_missing_instance_lets_the_release_count_again(tmp_path: Path) -> None:
    h = Harness(tmp_path)
    last = h.feed(9, start=T0, expected=10, calling="MODALITY", association="a")
    h.tracker.association_released("a", at=last)
    assert h.sweep_at(last + 8.0) == []
    h.tracker.instance_stored(
        instance("1.2.3.100.1.99", last + 9, expected=10, calling="MODALITY", association="b")
    )
    h.tracker.association_released("b", at=last + 9.1)
    [event] = h.sweep_at(last + 10.2)
    assert event.reason == CompletionReason.ASSOCIATION_RELEASED
    assert event.instance_count == 10


def test_announced_counts_can_be_ignored(tmp_path: Path) -> None:
    h = Harness(tmp_path, expected_counts=False)
    last = h.feed(9, start=T0, expected=10)
    [event] = h.sweep_at(last + 8.0)
    assert event.reason == CompletionReason.QUIET_PERIOD


def test_max_age_while_a_sender_never_stops(tmp_path: Path) -> None:
    h = Harness(tmp_path, max_age_s=30.0)
    sent: list[StudyStable] = []
    for i in range(40):  # one instance per second for 40 s: never quiet
        t = T0 + i
        h.tracker.instance_stored(instance(f"1.2.3.100.1.{i + 1}", t))
        sent += h.sweep_at(t + 0.5)
    assert [e.reason for e in sent] == [CompletionReason.MAX_AGE]
    assert sent[0].instance_count == 31


def test_per_ae_quiet_period(tmp_path: Path) -> None:
    h = Harness(tmp_path, association_release=False)
    fast = h.feed(3, start=T0, calling="FASTCT", study="1.2.3.200", association="f")
    slow = h.feed(3, start=T0, calling="SLOWPACS", study="1.2.3.300", association="s")
    [event] = h.sweep_at(max(fast, slow) + 2.0)
    assert event.study_instance_uid == "1.2.3.200" and "quiet period 2 s" in event.reason_detail
    [event] = h.sweep_at(max(fast, slow) + 8.0)
    assert event.study_instance_uid == "1.2.3.300"


def test_per_study_override_function(tmp_path: Path) -> None:
    h = Harness(tmp_path, association_release=False)
    calls: list[tuple[str, str]] = []

    def override(study: str, calling: str) -> float | None:
        calls.append((study, calling))
        return 30.0 if study == STUDY else None

    h.tracker = h.make_tracker(quiet_period_for=override)
    last = h.feed(3, start=T0, calling="FASTCT")
    assert h.sweep_at(last + 20) == []  # the override beats FASTCT's 2 s
    assert h.sweep_at(last + 30) != []
    assert (STUDY, "FASTCT") in calls


def test_duplicates_and_derived_objects_do_not_count(tmp_path: Path) -> None:
    h = Harness(tmp_path, association_release=False)
    last = h.feed(3, start=T0)
    [first] = h.sweep_at(last + 8)
    # a resend (duplicate) and the node's own SEG stored back: no new StudyStable
    h.tracker.instance_stored(instance("1.2.3.100.1.1", last + 20, duplicate=True))
    h.tracker.instance_stored(instance("1.2.3.100.9.1", last + 21, routable=False, series="1.2.3.100.9"))
    assert h.sweep_at(last + 100) == []
    # non-routable first instances never even open a study
    h.tracker.instance_stored(instance("1.2.3.400.1", last, study="1.2.3.400", routable=False))
    assert h.tracker.pending_studies() == []
    assert first.instance_count == 3


def test_late_series_reopens_the_study(tmp_path: Path) -> None:
    h = Harness(tmp_path, association_release=False)
    last = h.feed(10, start=T0)
    [first] = h.sweep_at(last + 8)
    late = h.feed(4, start=last + 60, series="1.2.3.100.2", prefix="1.2.3.100.2.")
    assert h.tracker.pending_studies() == [STUDY]
    [second] = h.sweep_at(late + 8)
    assert second.reason == CompletionReason.QUIET_PERIOD
    assert "late instances after stable (4 new)" in second.reason_detail
    assert second.instance_count == 14
    assert second.first_received_at == first.first_received_at


def test_failed_hand_off_is_retried_not_lost(tmp_path: Path) -> None:
    h = Harness(tmp_path, association_release=False)
    last = h.feed(3, start=T0)
    h.fail_next = 2
    assert h.sweep_at(last + 8) == []
    assert h.tracker.pending_studies() == [STUDY]
    assert h.sweep_at(last + 8.1) == []  # backing off
    assert h.sweep_at(last + 10) == []  # second failure
    [event] = h.sweep_at(last + 20)
    assert event.instance_count == 3
    assert h.tracker.pending_studies() == []


def test_marker_records_the_dispatched_sop_set(tmp_path: Path) -> None:
    h = Harness(tmp_path, association_release=False)
    last = h.feed(3, start=T0)
    h.sweep_at(last + 8)
    data = json.loads((tmp_path / "assembly" / f"{STUDY}.json").read_text())
    sops = [f"1.2.3.100.1.{i}" for i in (1, 2, 3)]
    assert data["sop_set_digest"] == sop_set_digest(sops)
    assert data["series"] == {"1.2.3.100.1": sorted(sops)}
    assert data["dispatch_count"] == 1 and data["reason"] == "quiet-period"


def test_forgotten_study_remembers_dispatch_through_its_marker(tmp_path: Path) -> None:
    h = Harness(tmp_path, association_release=False)
    h.tracker = h.make_tracker(retain_dispatched_s=60.0)
    last = h.feed(3, start=T0)
    h.sweep_at(last + 8)
    h.sweep_at(last + 120)  # forgotten from memory
    assert h.tracker._studies == {}
    # a resent copy the SCP did not flag (e.g. staged under another study path) is still known
    h.tracker.instance_stored(instance("1.2.3.100.1.2", last + 130))
    assert h.tracker.pending_studies() == []
    h.tracker.instance_stored(instance("1.2.3.100.1.50", last + 131))
    [event] = h.sweep_at(last + 140)
    assert "late instances after stable (1 new)" in event.reason_detail
    assert event.instance_count == 4


def _write_staged(root: Path, study: str, series: str, sop: str, mtime: float) -> Path:
    path = root / study / series / f"{sop}.dcm"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"stub")
    import os

    os.utime(path, (mtime, mtime))
    return path


def _reader(calling: str = "SLOWPACS"):  # type: ignore[no-untyped-def]
    """Stands in for dicom_node.ingest.staging.read_staged_instance (assembly does not import ingest)."""
    reads: list[Path] = []

    def read(path: Path) -> InstanceStored | None:
        reads.append(path)
        study, series, sop = path.parent.parent.name, path.parent.name, path.stem
        return instance(
            sop,
            path.stat().st_mtime,
            study=study,
            series=series,
            association="",
            calling=calling,
            routable=not series.endswith(".9"),
            staging=path.parent.parent.parent,
        )

    return read, reads


def test_recovery_retracks_a_study_never_dispatched(tmp_path: Path) -> None:
    staging = tmp_path / "staging"
    for i in range(5):
        _write_staged(staging, STUDY, "1.2.3.100.1", f"1.2.3.100.1.{i}", T0 + i)
    h = Harness(tmp_path)
    h.clock.now = T0 + 3600  # the node was down for an hour
    read, _ = _reader()
    report = h.tracker.recover(staging, read_instance=read)
    assert (report.studies_scanned, report.studies_pending, report.instances_read) == (1, 1, 5)
    # long quiet since the mtimes, but a restart never shortens the quiet period: it counts anew
    assert h.sweep_at(T0 + 3600) == []
    assert h.sweep_at(T0 + 3607.9) == []
    [event] = h.sweep_at(T0 + 3608)
    assert event.instance_count == 5
    assert event.reason == CompletionReason.QUIET_PERIOD
    assert event.reason_detail.startswith("recovered after restart")
    assert "since the serve process restarted" in event.reason_detail
    assert event.calling_ae_title == "SLOWPACS"
    assert event.first_received_at.timestamp() == T0


def test_recovery_skips_what_was_dispatched_and_reads_only_new_files(tmp_path: Path) -> None:
    staging = tmp_path / "staging"
    h = Harness(tmp_path, association_release=False)
    for i in range(3):
        path = _write_staged(staging, STUDY, "1.2.3.100.1", f"1.2.3.100.1.{i}", T0 + i)
        h.tracker.instance_stored(instance(path.stem, T0 + i, staging=staging))
    h.sweep_at(T0 + 20)
    assert len(h.sent) == 1

    restarted = h.make_tracker()
    read, reads = _reader()
    report = restarted.recover(staging, read_instance=read)
    assert report.studies_pending == 0 and reads == []
    assert restarted.sweep(T0 + 3600) == []

    # results stored back (non-routable) are read once but start nothing
    _write_staged(staging, STUDY, "1.2.3.100.9", "1.2.3.100.9.1", T0 + 30)
    restarted = h.make_tracker()
    read, reads = _reader()
    assert restarted.recover(staging, read_instance=read).studies_pending == 0
    assert [p.stem for p in reads] == ["1.2.3.100.9.1"]

    # a late image staged while the node was down re-opens the study
    _write_staged(staging, STUDY, "1.2.3.100.2", "1.2.3.100.2.1", T0 + 40)
    restarted = h.make_tracker()
    read, reads = _reader()
    assert restarted.recover(staging, read_instance=read).studies_pending == 1
    h.clock.now = T0 + 3600
    [event] = restarted.sweep()
    assert event.instance_count == 4
    assert "recovered after restart" in event.reason_detail
    assert "late instances after stable (1 new)" in event.reason_detail


def test_a_study_killed_mid_transfer_waits_for_the_rest_after_a_restart(tmp_path: Path) -> None:
    """serve killed while series 1 arrived, restarted later: series 2 still joins the same round."""
    staging = tmp_path / "staging"
    for i in range(5):
        _write_staged(staging, STUDY, "1.2.3.100.1", f"1.2.3.100.1.{i}", T0 + i)
    h = Harness(tmp_path)
    h.clock.now = T0 + 20  # restarted 16 s after the last file: more than the quiet period
    read, _ = _reader()
    h.tracker.recover(staging, read_instance=read)
    assert h.sweep_at(T0 + 21) == []
    last = h.feed(6, start=T0 + 24, series="1.2.3.100.2", prefix="1.2.3.100.2.")
    assert h.sweep_at(last + 7) == []
    [event] = h.sweep_at(last + 8)
    assert event.instance_count == 11
    assert h.sent == [event]


def test_recovery_ignores_non_uid_folders(tmp_path: Path) -> None:
    staging = tmp_path / "staging"
    (staging / ".incoming").mkdir(parents=True)
    (staging / "not-a-uid").mkdir()
    h = Harness(tmp_path)
    read, _ = _reader()
    assert h.tracker.recover(staging, read_instance=read).studies_scanned == 0
    assert h.tracker.recover(tmp_path / "missing", read_instance=read).studies_scanned == 0


def test_sweeper_thread_emits_without_explicit_sweeps(tmp_path: Path) -> None:
    import threading
    import time

    settings = make_settings(tmp_path, sweep_interval_s=0.05, quiet_period_s=0.2, association_release=False)
    got = threading.Event()
    events: list[StudyStable] = []

    def on_stable(event: StudyStable) -> None:
        events.append(event)
        got.set()

    with StudyTracker(settings, on_stable=on_stable) as tracker:
        tracker.instance_stored(instance("1.2.3.100.1.1", time.time()))
        assert got.wait(5.0)
    assert [e.reason for e in events] == [CompletionReason.QUIET_PERIOD]
