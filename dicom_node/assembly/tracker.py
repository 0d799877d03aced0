"""The study tracker: instances in, ``StudyStable`` out, with the reason recorded.

::

    tracker = StudyTracker(settings, on_stable=submit)   # submit(StudyStable) -> None
    tracker.recover(settings.storage.staging_dir,
                    read_instance=partial(read_staged_instance, uid_root=settings.uid_root))
    tracker.start()                                      # sweeper thread
    scp = StoreSCP(settings, on_instance=tracker.instance_stored,
                   on_association_released=lambda s: tracker.association_released(
                       s.association_id, released=s.released))

* :meth:`instance_stored` takes each ``InstanceStored``; duplicates and non-routable instances
  (results, SEG/SR/PR/SC) are ignored: they never start or delay work.
* :meth:`association_released` records the end of an association (a completion signal for the
  studies it carried, see :mod:`dicom_node.assembly.completion`).
* :meth:`sweep` (the sweeper thread calls it every ``completion.sweep_interval_s``; tests call it
  with an explicit ``now``) decides with the pure :func:`~dicom_node.assembly.completion.decide`
  and hands each stable study to ``on_stable``. Only when ``on_stable`` returns is the study
  marked dispatched (in memory and in its marker file); if it raises, the study stays pending
  and is offered again after a backoff (never lost, possibly repeated: routing deduplicates by
  job id).
* Late instances for a study already dispatched re-open it; its next ``StudyStable`` carries
  ``reason_detail`` "late instances after stable (N new)"; routing decides re-run vs ignore.
* Restart safety: :meth:`recover` walks the staging folder; a study whose staged routable SOP set
  differs from what its marker says was dispatched is tracked again, with file mtimes as receive
  times (so a long-quiet study completes at the first sweep, reason "recovered after restart").

Quiet period per study: ``quiet_period_for(study_uid, calling_ae)`` when given and not None, else
the calling AE's ``AllowedPeer.quiet_period_s``, else ``completion.quiet_period_s``.
Dispatched studies are forgotten from memory ``retain_dispatched_s`` after their last instance;
their marker keeps what a late instance needs.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from dicom_node.assembly.completion import CompletionPolicy, StudyFacts, decide
from dicom_node.assembly.markers import DispatchMarker, MarkerStore, is_uid
from dicom_node.backoff import backoff_cap_s
from dicom_node.contracts import CompletionReason, InstanceStored, StudySource, StudyStable
from dicom_node.settings import Settings

logger = logging.getLogger(__name__)

QuietPeriodOverride = Callable[[str, str], float | None]
_MAX_RETRY_DELAY_S = 60.0


@dataclass
class _Study:
    study_instance_uid: str
    staging_path: str
    calling_ae_title: str = ""
    called_ae_title: str = ""
    # routable SOP Instance UID -> (Series Instance UID, received at)
    sops: dict[str, tuple[str, float]] = field(default_factory=dict)
    series_counts: dict[str, int] = field(default_factory=dict)
    series_expected: dict[str, int] = field(default_factory=dict)
    last_received_at: float = 0.0
    open_associations: set[str] = field(default_factory=set)
    released_at: float | None = None
    dispatched: frozenset[str] = frozenset()
    dispatch_count: int = 0
    in_flight: bool = False
    failures: int = 0
    retry_at: float = 0.0
    recovered: bool = False

    def pending(self) -> list[str]:
        return [uid for uid in self.sops if uid not in self.dispatched]


@dataclass(frozen=True)
class RecoveryReport:
    studies_scanned: int
    studies_pending: int
    instances_read: int


class StudyTracker:
    """Tracks studies being received and emits ``StudyStable`` (thread-safe)."""

    def __init__(
        self,
        settings: Settings,
        *,
        on_stable: Callable[[StudyStable], None],
        clock: Callable[[], float] = time.time,
        state_dir: Path | None = None,
        quiet_period_for: QuietPeriodOverride | None = None,
        retain_dispatched_s: float = 3600.0,
    ) -> None:
        """``state_dir`` holds the dispatch markers (default ``<storage.root>/assembly``)."""
        self.completion = settings.completion
        self._on_stable = on_stable
        self._clock = clock
        self._markers = MarkerStore(state_dir or settings.storage.root / "assembly")
        self._quiet_period_for = quiet_period_for
        self._peer_quiet_s = {
            p.ae_title.strip(): p.quiet_period_s for p in settings.dicom.allowed_peers if p.quiet_period_s
        }
        self.retain_dispatched_s = retain_dispatched_s
        self._studies: dict[str, _Study] = {}
        self._associations: dict[str, set[str]] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # -- events ---------------------------------------------------------------------------------

    def instance_stored(self, event: InstanceStored) -> None:
        """Feed one staged instance (called by the SCP / STOW handlers)."""
        if event.duplicate or not event.routable:
            return
        received_at = event.received_at.timestamp()
        with self._lock:
            study = self._studies.get(event.study_instance_uid)
            if study is None:
                study = self._new_study(event)
                self._studies[event.study_instance_uid] = study
            if event.sop_instance_uid in study.sops:
                return
            study.sops[event.sop_instance_uid] = (event.series_instance_uid, received_at)
            study.series_counts[event.series_instance_uid] = (
                study.series_counts.get(event.series_instance_uid, 0) + 1
            )
            if event.expected_series_instances is not None:
                study.series_expected[event.series_instance_uid] = max(
                    event.expected_series_instances, study.series_expected.get(event.series_instance_uid, 0)
                )
            study.last_received_at = max(study.last_received_at, received_at)
            if event.calling_ae_title:
                study.calling_ae_title = event.calling_ae_title
                study.called_ae_title = event.called_ae_title
            # A new instance supersedes an earlier release: wait for the next signal.
            study.released_at = None
            if event.association_id:
                study.open_associations.add(event.association_id)
                self._associations.setdefault(event.association_id, set()).add(event.study_instance_uid)

    def association_released(
        self, association_id: str, *, released: bool = True, at: float | None = None
    ) -> None:
        """An association ended; ``released`` False for an abort or a lost connection."""
        when = self._clock() if at is None else at
        with self._lock:
            for uid in self._associations.pop(association_id, set()):
                study = self._studies.get(uid)
                if study is None:
                    continue
                study.open_associations.discard(association_id)
                if released:
                    study.released_at = when

    def _new_study(self, event: InstanceStored) -> _Study:
        """State for a study not in memory: from its dispatch marker when it has one."""
        study = _Study(
            study_instance_uid=event.study_instance_uid,
            staging_path=str(Path(event.path).parent.parent),
            calling_ae_title=event.calling_ae_title,
            called_ae_title=event.called_ae_title,
        )
        marker = self._markers.read(event.study_instance_uid)
        if marker is not None:
            for series_uid, uids in marker.series.items():
                for uid in uids:
                    study.sops[uid] = (series_uid, marker.last_received_at)
                study.series_counts[series_uid] = len(uids)
            study.series_expected.update(marker.expected)
            study.dispatched = marker.sop_instance_uids
            study.dispatch_count = marker.dispatch_count
            study.last_received_at = marker.last_received_at
            study.calling_ae_title = study.calling_ae_title or marker.calling_ae_title
            study.called_ae_title = study.called_ae_title or marker.called_ae_title
        return study

    # -- decisions ------------------------------------------------------------------------------

    def quiet_period_s(self, study_instance_uid: str, calling_ae_title: str) -> float:
        if self._quiet_period_for is not None:
            override = self._quiet_period_for(study_instance_uid, calling_ae_title)
            if override is not None:
                return override
        peer_value = self._peer_quiet_s.get(calling_ae_title.strip())
        return peer_value if peer_value is not None else self.completion.quiet_period_s

    def _facts(self, study: _Study, pending: list[str]) -> StudyFacts:
        return StudyFacts(
            first_received_at=min(study.sops[uid][1] for uid in pending),
            last_received_at=study.last_received_at,
            open_associations=len(study.open_associations),
            released_at=study.released_at,
            series_counts={
                series: (count, study.series_expected.get(series))
                for series, count in study.series_counts.items()
            },
        )

    def _stable_event(
        self, study: _Study, now: float, reason_detail: str, reason: CompletionReason
    ) -> StudyStable:
        times = [t for _, t in study.sops.values()]
        return StudyStable(
            study_instance_uid=study.study_instance_uid,
            source=StudySource(kind="staging", staging_path=study.staging_path),
            reason=reason,
            reason_detail=reason_detail,
            calling_ae_title=study.calling_ae_title,
            called_ae_title=study.called_ae_title,
            instance_count=len(study.sops),
            first_received_at=datetime.fromtimestamp(min(times), tz=UTC),
            last_received_at=datetime.fromtimestamp(max(times), tz=UTC),
            stable_at=datetime.fromtimestamp(now, tz=UTC),
        )

    def pending_studies(self) -> list[str]:
        """Study UIDs with instances not yet dispatched."""
        with self._lock:
            return sorted(uid for uid, s in self._studies.items() if s.pending())

    def sweep(self, now: float | None = None) -> list[StudyStable]:
        """Decide every pending study at ``now``; dispatch the stable ones; return what was sent."""
        now = self._clock() if now is None else now
        ready: list[tuple[_Study, frozenset[str], StudyStable]] = []
        with self._lock:
            for study in list(self._studies.values()):
                pending = study.pending()
                if not pending:
                    self._maybe_forget(study, now)
                    continue
                if study.in_flight or now < study.retry_at:
                    continue
                policy = CompletionPolicy.from_settings(
                    self.completion,
                    quiet_period_s=self.quiet_period_s(study.study_instance_uid, study.calling_ae_title),
                )
                decision = decide(self._facts(study, pending), now, policy)
                if decision is None:
                    continue
                notes = []
                if study.recovered:
                    notes.append("recovered after restart")
                if study.dispatched:
                    notes.append(f"late instances after stable ({len(pending)} new)")
                detail = "; ".join([*notes, decision.detail])
                study.in_flight = True
                ready.append(
                    (study, frozenset(study.sops), self._stable_event(study, now, detail, decision.reason))
                )
        sent: list[StudyStable] = []
        for study, snapshot, event in ready:
            if self._dispatch(study, snapshot, event, now):
                sent.append(event)
        return sent

    def _dispatch(self, study: _Study, snapshot: frozenset[str], event: StudyStable, now: float) -> bool:
        try:
            self._on_stable(event)
        except Exception:  # process edge for the hand-off: keep the study, retry with backoff
            with self._lock:
                study.in_flight = False
                study.failures += 1
                delay = backoff_cap_s(
                    study.failures + 1,
                    base_s=self.completion.sweep_interval_s,
                    max_s=max(_MAX_RETRY_DELAY_S, self.completion.sweep_interval_s),
                )
                study.retry_at = now + delay
            logger.exception(
                "assembly: handing on a stable study failed; retrying",
                extra={"stage": "assembly", "study": study.study_instance_uid, "retry_in_s": delay},
            )
            return False
        with self._lock:
            study.dispatched = snapshot
            study.dispatch_count += 1
            study.in_flight = False
            study.failures = 0
            study.retry_at = 0.0
            study.recovered = False
            marker = self._marker_for(study, snapshot, event, now)
        try:
            self._markers.write(marker)
        except (OSError, ValueError):
            logger.exception("assembly: cannot write dispatch marker", extra={"stage": "assembly"})
        logger.info(
            "study stable",
            extra={
                "stage": "assembly",
                "study": event.study_instance_uid,
                "reason": str(event.reason),
                "reason_detail": event.reason_detail,
                "instances": event.instance_count,
                "calling_ae_title": event.calling_ae_title,
            },
        )
        return True

    def _marker_for(
        self, study: _Study, snapshot: frozenset[str], event: StudyStable, now: float
    ) -> DispatchMarker:
        series: dict[str, list[str]] = {}
        for uid in snapshot:
            series.setdefault(study.sops[uid][0], []).append(uid)
        return DispatchMarker(
            study_instance_uid=study.study_instance_uid,
            dispatch_count=study.dispatch_count,
            dispatched_at=now,
            reason=str(event.reason),
            calling_ae_title=study.calling_ae_title,
            called_ae_title=study.called_ae_title,
            first_received_at=event.first_received_at.timestamp(),
            last_received_at=event.last_received_at.timestamp(),
            series={k: tuple(v) for k, v in series.items()},
            expected={k: v for k, v in study.series_expected.items() if k in series},
        )

    def _maybe_forget(self, study: _Study, now: float) -> None:
        """Drop a dispatched, idle study from memory (its marker remembers it). Lock held."""
        if study.in_flight:
            return
        if now - study.last_received_at >= self.retain_dispatched_s:
            del self._studies[study.study_instance_uid]

    # -- restart recovery -----------------------------------------------------------------------

    def recover(
        self, staging_root: Path, *, read_instance: Callable[[Path], InstanceStored | None]
    ) -> RecoveryReport:
        """Re-track staged studies whose routable SOP set was never dispatched (see module doc).

        ``read_instance`` describes a staged file (``dicom_node.ingest.staging.read_staged_instance``,
        wired by the entry point: assembly does not import ingest). Only files not named in a
        study's dispatch marker are read.
        """
        scanned = pending = read = 0
        root = Path(staging_root)
        if not root.is_dir():
            return RecoveryReport(0, 0, 0)
        for study_dir in sorted(root.iterdir()):
            if not study_dir.is_dir() or not is_uid(study_dir.name):
                continue
            scanned += 1
            marker = self._markers.read(study_dir.name)
            dispatched = marker.sop_instance_uids if marker else frozenset()
            unknown = [p for p in sorted(study_dir.glob("*/*.dcm")) if p.stem not in dispatched]
            events = []
            for path in unknown:
                read += 1
                event = read_instance(path)
                if event is not None and event.routable and event.study_instance_uid == study_dir.name:
                    events.append(event)
            if not events:
                continue
            pending += 1
            for event in events:
                self.instance_stored(event.model_copy(update={"association_id": "", "duplicate": False}))
            with self._lock:
                study = self._studies.get(study_dir.name)
                if study is not None:
                    study.recovered = True
        logger.info(
            "assembly: recovery scanned staging",
            extra={"stage": "assembly", "studies": scanned, "pending": pending, "files_read": read},
        )
        return RecoveryReport(studies_scanned=scanned, studies_pending=pending, instances_read=read)

    # -- sweeper thread -------------------------------------------------------------------------

    def start(self) -> None:
        """Run :meth:`sweep` every ``completion.sweep_interval_s`` in a daemon thread."""
        if self._thread is not None:
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="study-sweeper", daemon=True)
        self._thread.start()

    def stop(self, timeout_s: float = 10.0) -> None:
        thread, self._thread = self._thread, None
        if thread is None:
            return
        self._stop.set()
        thread.join(timeout_s)

    def _run(self) -> None:
        while not self._stop.wait(self.completion.sweep_interval_s):
            try:
                self.sweep()
            except Exception:  # process edge: the sweeper must survive a bad study
                logger.exception("assembly: sweep failed", extra={"stage": "assembly"})

    def __enter__(self) -> StudyTracker:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
