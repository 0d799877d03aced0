from __future__ import annotations

import random
from pathlib import Path

import pytest

from dicom_node.contracts import CompletionReason
from plugins.orthanc.config import PluginConfig
from plugins.orthanc.dispatcher import WATERMARK_KEY, Dispatcher, Event, EventKind, backoff_s
from plugins.orthanc.guard import NodeResultClassifier
from plugins.orthanc.spool import Spool
from tests.unit.plugins.orthanc.fakes import CT, SEG, SR, FakeBroker, FakeOrthanc, FakeSeries, ManualClock

URL = "http://127.0.0.1:8042"


def make(
    tmp_path: Path, fake: FakeOrthanc, broker: FakeBroker, clock: ManualClock, **cfg: object
) -> Dispatcher:
    config = PluginConfig(
        node_config=None,
        orthanc_url=URL,
        spool_path=tmp_path / "spool.sqlite",
        stable_age_s=3.0,
        **cfg,  # type: ignore[arg-type]
    )
    d = Dispatcher(
        api=fake,
        spool=Spool(config.spool_path),
        publisher=broker,
        classifier=NodeResultClassifier(uid_root="1.2.826.0.1.999999.", manufacturer="ct-ai-node"),
        config=config,
        clock=clock,
        rng=random.Random(7),
    )
    d.notify(Event(EventKind.STARTED))
    d.run_once()
    return d


def ct_study(fake: FakeOrthanc, n: int = 4, *, announce: int | None = None) -> None:
    fake.add_series(
        FakeSeries("s1", "st", "1.2.3.4.100", "CT", CT, images_in_acquisition=announce), "1.2.3.4"
    )
    fake.add_instances("s1", n, uid_prefix="1.2.3.4.100")


def stable(d: Dispatcher, study: str = "st") -> None:
    d.notify(Event(EventKind.STABLE_STUDY, study))
    d.run_once()


def test_stable_study_submitted_once_and_own_results_do_not_loop(tmp_path: Path) -> None:
    fake, broker, clock = FakeOrthanc(), FakeBroker(), ManualClock()
    d = make(tmp_path, fake, broker, clock)
    ct_study(fake)
    stable(d)
    assert len(broker.sent) == 1
    task_id, study = broker.sent[0]
    assert study.reason is CompletionReason.ORTHANC_STABLE
    assert study.source.orthanc_study_id == "st" and study.instance_count == 4
    # The node stores its SEG and SR into the same study: Orthanc fires STABLE_STUDY again.
    fake.add_series(FakeSeries("s2", "st", "1.2.826.0.1.999999.5", "SEG", SEG, manufacturer="ct-ai-node"))
    fake.add_instances("s2", 1, uid_prefix="1.2.826.0.1.999999.5")
    fake.add_series(FakeSeries("s3", "st", "1.2.826.0.1.999999.6", "SR", SR, manufacturer="ct-ai-node"))
    fake.add_instances("s3", 1, uid_prefix="1.2.826.0.1.999999.6")
    for _ in range(6):  # six re-stable events, as the unguarded plugin in dicom-notes.md saw
        clock.advance(4)
        stable(d)
    assert len(broker.sent) == 1
    assert d.stats.skipped == 6 and all("unchanged" in r for r in d.stats.skip_reasons)
    # A late CT image is real new input: submitted again, with a different task id.
    fake.add_instances("s1", 1, uid_prefix="1.2.3.4.100")
    stable(d)
    assert len(broker.sent) == 2
    assert broker.sent[1][0] != task_id and broker.sent[1][1].instance_count == 5


def test_results_only_study_is_never_submitted(tmp_path: Path) -> None:
    fake, broker, clock = FakeOrthanc(), FakeBroker(), ManualClock()
    d = make(tmp_path, fake, broker, clock)
    fake.add_series(FakeSeries("s2", "st", "1.2.9.5", "SEG", SEG))
    fake.add_instances("s2", 1)
    stable(d)
    assert broker.sent == [] and "no routable" in d.stats.skip_reasons[0]


def test_expected_counts_submit_before_stable_and_stable_then_skips(tmp_path: Path) -> None:
    fake, broker, clock = FakeOrthanc(), FakeBroker(), ManualClock()
    d = make(tmp_path, fake, broker, clock)
    fake.add_series(FakeSeries("s1", "st", "1.2.3.4.100", "CT", CT, images_in_acquisition=3), "1.2.3.4")
    for _ in range(2):
        fake.add_instances("s1", 1, uid_prefix="1.2.3.4.100")
        d.notify(Event(EventKind.INSTANCE_IN_STUDY, "st"))
        d.notify(Event(EventKind.INSTANCE_IN_SERIES, "s1"))
        d.run_once()
        clock.advance(0.1)
    assert broker.sent == []
    fake.add_instances("s1", 1, uid_prefix="1.2.3.4.100")
    d.notify(Event(EventKind.INSTANCE_IN_SERIES, "s1"))
    d.run_once()
    assert len(broker.sent) == 1
    assert broker.sent[0][1].reason is CompletionReason.EXPECTED_COUNT
    clock.advance(3)
    stable(d)
    assert len(broker.sent) == 1 and "unchanged" in d.stats.skip_reasons[-1]


def test_overannounced_series_waits_for_stable(tmp_path: Path) -> None:
    fake, broker, clock = FakeOrthanc(), FakeBroker(), ManualClock()
    d = make(tmp_path, fake, broker, clock)
    # Orthanc already holds 5 when the plugin first hears of the series: counted from Orthanc.
    ct_study(fake, 5, announce=3)
    d.notify(Event(EventKind.INSTANCE_IN_SERIES, "s1"))
    d.run_once()
    assert broker.sent == []  # 5 != 3: the count cannot prove completeness
    stable(d)
    assert [s.reason for _, s in broker.sent] == [CompletionReason.ORTHANC_STABLE]


def test_expected_counts_can_be_switched_off(tmp_path: Path) -> None:
    fake, broker, clock = FakeOrthanc(), FakeBroker(), ManualClock()
    d = make(tmp_path, fake, broker, clock, expected_counts=False)
    ct_study(fake, 3, announce=3)
    d.notify(Event(EventKind.INSTANCE_IN_SERIES, "s1"))
    d.run_once()
    assert broker.sent == [] and "/series/s1" not in fake.calls


def test_broker_outage_retries_with_backoff_until_sent(tmp_path: Path) -> None:
    fake, broker, clock = FakeOrthanc(), FakeBroker(up=False), ManualClock()
    d = make(tmp_path, fake, broker, clock, retry_base_s=1.0, retry_max_s=8.0)
    ct_study(fake)
    stable(d)
    assert broker.sent == [] and broker.refused == 1
    delays = []
    for _ in range(6):
        due = d.spool.next_due_at()
        assert due is not None
        delays.append(due - clock.now)
        clock.now = due
        d.run_once()
    assert broker.refused == 7
    # exponential 1, 2, 4, 8, 8, 8 s with ±25 % jitter
    for delay, nominal in zip(delays, [1, 2, 4, 8, 8, 8], strict=True):
        assert 0.75 * nominal <= delay <= min(8.0, 1.25 * nominal)
    broker.up = True
    clock.now = d.spool.next_due_at() or clock.now
    d.run_once()
    assert len(broker.sent) == 1 and d.spool.pending() == []


def test_pending_submission_survives_a_restart(tmp_path: Path) -> None:
    fake, broker, clock = FakeOrthanc(), FakeBroker(up=False), ManualClock()
    d = make(tmp_path, fake, broker, clock)
    ct_study(fake)
    stable(d)
    d.spool.close()
    broker.up = True
    again = make(tmp_path, fake, broker, clock)  # a new plugin process on the same spool
    assert len(broker.sent) == 1 and broker.sent[0][1].source.orthanc_study_id == "st"
    stable(again)  # and its own stable event for the same study is recognised as a repeat
    assert len(broker.sent) == 1


def test_restart_catch_up_rechecks_studies_changed_after_the_watermark(tmp_path: Path) -> None:
    fake, broker, clock = FakeOrthanc(), FakeBroker(), ManualClock()
    first = make(tmp_path, fake, broker, clock)
    assert first.spool.get_meta(WATERMARK_KEY) == "0"  # first run: history is not ours
    ct_study(fake)  # arrives, then Orthanc dies before STABLE_STUDY: nobody saw it stable
    first.spool.close()
    second = make(tmp_path, fake, broker, clock)
    assert second.stats.recovered_studies == 1 and broker.sent == []
    clock.advance(3.0)  # re-checked after StableAge
    second.run_once()
    assert len(broker.sent) == 1
    assert "restart" in broker.sent[0][1].reason_detail


def test_watermark_commits_only_after_a_quiet_grace_period(tmp_path: Path) -> None:
    fake, broker, clock = FakeOrthanc(), FakeBroker(), ManualClock()
    d = make(tmp_path, fake, broker, clock, watermark_grace_s=5.0, watermark_interval_s=10.0)
    ct_study(fake)
    d.notify(Event(EventKind.INSTANCE_IN_STUDY, "st"))
    d.run_once()
    clock.advance(30)
    d.run_once()
    assert d.spool.get_meta(WATERMARK_KEY) == "0"  # study open: no progress
    stable(d)
    d.run_once()  # reads the candidate sequence number
    clock.advance(2)
    d.notify(Event(EventKind.INSTANCE_IN_STUDY, "st"))  # activity inside the grace: candidate dropped
    d.run_once()
    stable(d)
    clock.advance(6)
    d.run_once()
    assert d.spool.get_meta(WATERMARK_KEY) == "0"
    clock.advance(10)
    d.run_once()  # new candidate after the interval
    clock.advance(5)
    d.run_once()
    assert d.spool.get_meta(WATERMARK_KEY) == str(len(fake.changes))


def test_deleted_study_is_dropped_and_rest_failures_are_retried(tmp_path: Path) -> None:
    fake, broker, clock = FakeOrthanc(), FakeBroker(), ManualClock()
    d = make(tmp_path, fake, broker, clock)
    ct_study(fake)
    fake.delete_study("st")
    stable(d)
    assert broker.sent == [] and d.stats.checks == 1

    class Flaky(FakeOrthanc):
        failures = 1

        def get_json(self, uri: str) -> object:
            if uri.startswith("/studies/") and self.failures:
                self.failures -= 1
                raise OSError("Orthanc busy")
            return super().get_json(uri)

    flaky = Flaky()
    d2 = make(tmp_path / "2", flaky, broker, clock)
    ct_study(flaky)
    stable(d2)
    assert broker.sent == []
    clock.advance(2.0)
    d2.run_once()
    assert len(broker.sent) == 1


def test_no_rest_before_orthanc_started(tmp_path: Path) -> None:
    fake = FakeOrthanc()
    config = PluginConfig(node_config=None, orthanc_url=URL, spool_path=tmp_path / "s.sqlite", stable_age_s=3)
    d = Dispatcher(
        api=fake,
        spool=Spool(config.spool_path),
        publisher=FakeBroker(),
        classifier=NodeResultClassifier(uid_root="1.2.9.", manufacturer="x"),
        config=config,
    )
    d.notify(Event(EventKind.STABLE_STUDY, "st"))
    d.run_once()
    assert fake.calls == []


def test_thread_start_notify_stop(tmp_path: Path) -> None:
    fake, broker = FakeOrthanc(), FakeBroker()
    ct_study(fake)
    config = PluginConfig(node_config=None, orthanc_url=URL, spool_path=tmp_path / "s.sqlite", stable_age_s=3)
    d = Dispatcher(
        api=fake,
        spool=Spool(config.spool_path),
        publisher=broker,
        classifier=NodeResultClassifier(uid_root="1.2.9.", manufacturer="x"),
        config=config,
    )
    d.start()
    d.notify(Event(EventKind.STARTED))
    d.notify(Event(EventKind.STABLE_STUDY, "st"))
    import time

    deadline = time.monotonic() + 5
    while not broker.sent and time.monotonic() < deadline:
        time.sleep(0.01)
    d.stop()
    assert len(broker.sent) == 1
    assert d._thread is not None and not d._thread.is_alive()


@pytest.mark.parametrize("attempt", range(1, 12))
def test_backoff_bounds(attempt: int) -> None:
    rng = random.Random(attempt)
    nominal = min(60.0, 1.0 * 2 ** (attempt - 1))
    value = backoff_s(attempt, base_s=1.0, max_s=60.0, rng=rng)
    assert 0.75 * nominal <= value <= min(60.0, 1.25 * nominal)


def test_failed_catch_up_is_retried(tmp_path: Path) -> None:
    class ChangesDown(FakeOrthanc):
        failures = 1

        def get_json(self, uri: str) -> object:
            if uri.startswith("/changes") and self.failures:
                self.failures -= 1
                raise OSError("Orthanc busy")
            return super().get_json(uri)

    fake, broker, clock = ChangesDown(), FakeBroker(), ManualClock()
    Spool(tmp_path / "spool.sqlite").set_meta(WATERMARK_KEY, "0")  # not a first run
    ct_study(fake)
    config = PluginConfig(
        node_config=None, orthanc_url=URL, spool_path=tmp_path / "spool.sqlite", stable_age_s=3
    )
    d = Dispatcher(
        api=fake,
        spool=Spool(config.spool_path),
        publisher=broker,
        classifier=NodeResultClassifier(uid_root="1.2.9.", manufacturer="x"),
        config=config,
        clock=clock,
    )
    d.notify(Event(EventKind.STARTED))
    with pytest.raises(OSError):
        d.run_once()
    d.run_once()  # retried
    assert d.stats.recovered_studies == 1
    clock.advance(3)
    d.run_once()
    assert len(broker.sent) == 1


def test_non_outage_publish_errors_are_kept_and_logged_as_errors(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from dicom_node.errors import PermanentError

    class Misconfigured(FakeBroker):
        def publish(self, study: object, *, task_id: str) -> None:
            raise PermanentError("broker did not accept the message: TypeError: bad option")

    fake, clock = FakeOrthanc(), ManualClock()
    d = make(tmp_path, fake, Misconfigured(), clock)
    ct_study(fake)
    with caplog.at_level("WARNING"):
        stable(d)
    assert [p.attempts for p in d.spool.pending()] == [1]
    assert any(r.levelname == "ERROR" and "not sent" in r.getMessage() for r in caplog.records)
