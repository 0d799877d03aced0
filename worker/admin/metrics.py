"""Prometheus metrics for ``/metrics``, built from the job store's audit trail.

Why from the store: it is the only thing every process on every machine shares. A histogram
observed inside a worker would live in that worker's memory (lost on restart, one per GPU host,
invisible to the serve process that answers the scrape). Here the serve process **tails the
append-only ``job_events`` table** (by id) and observes each milestone once, as it appears:
counters and histograms grow monotonically for the life of the serve process (Prometheus
handles the reset at a restart), and a scrape costs only the events since the last one. Events
committed out of id order (PostgreSQL sequences are not commit-ordered) are caught by re-reading
a window of recent ids and skipping those already seen.

Stages (``ctnode_stage_duration_seconds{stage, rule, pipeline, destination}``), each the time
from the previous milestone to this one::

    received ─stable─▶ stable ─queued─▶ queued ─started─▶ running ─inferred─▶ ─encoded─▶ encoded
             ─delivered (per destination)─▶ delivered          (and end_to_end: received → delivered)

``stable``/``queued`` come from the study row (first instance received, completion) and the job's
creation; ``started`` from the queued → running events; ``inferred`` is the worker's recorded
fetch + load + inference seconds and ``encoded`` its encode seconds (``JobStore.add_timings``);
``delivered`` is ``deliver.<destination>`` seconds, else that delivery's last update minus the
encoded event. ``destination`` is empty except for ``delivered``.

Failures: ``ctnode_job_failures_total{category, state, rule, pipeline}`` where ``category`` is
the error class named in the reason (a bounded set: the node's error classes and Celery's worker
loss / time limit), else ``other``: never free text. Gauges on each scrape: jobs per state,
messages waiting per queue, whether the broker could be read.
"""

from __future__ import annotations

import inspect
import logging
import re
import threading
from collections.abc import Iterable, Iterator
from datetime import datetime
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from dicom_node import errors as node_errors
from dicom_node.constants import QUEUES
from dicom_node.contracts import JobState
from dicom_node.jobs import JobEvent, JobRecord, JobStore
from worker.admin.broker import BrokerUnavailable, inspect_broker

logger = logging.getLogger(__name__)

STAGES = ("stable", "queued", "started", "inferred", "encoded", "delivered", "end_to_end")
BUCKETS_S = (0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 30, 60, 120, 300, 600, 1200, 1800, 3600, 7200)
_LOOKBACK_IDS = 1000
_EXTRA_CATEGORIES = (
    "WorkerLost",
    "TimeLimitExceeded",
    "SoftTimeLimitExceeded",
    "InvalidTransition",
    "DeliveryRejected",
    "DeliveryIncomplete",
    "RulesConfigError",
)


def _error_class_names() -> frozenset[str]:
    names = {
        name
        for name, obj in inspect.getmembers(node_errors, inspect.isclass)
        if issubclass(obj, node_errors.NodeError)
    }
    return frozenset(names | set(_EXTRA_CATEGORIES))


FAILURE_CATEGORIES = _error_class_names()
_CLASS_WORD = re.compile(r"\b([A-Z][A-Za-z]+)\b")


def failure_category(reason: str, detail: dict[str, Any] | None = None) -> str:
    """The error class a failure reason names (bounded set), else ``other``."""
    named = (detail or {}).get("error_class")
    if isinstance(named, str) and named in FAILURE_CATEGORIES:
        return named
    for word in _CLASS_WORD.findall(reason):
        if word in FAILURE_CATEGORIES:
            return word
    return "other"


class _LiveGauges(Collector):
    """Read at scrape time: jobs per state and broker queue depths."""

    def __init__(self, store: JobStore, broker_url: str) -> None:
        self.store = store
        self.broker_url = broker_url

    def collect(self) -> Iterator[Metric]:
        jobs = GaugeMetricFamily("ctnode_jobs", "Jobs in the job store by state", labels=["state"])
        counts = self.store.count_by_state()
        for state in JobState:
            jobs.add_metric([state.value], counts.get(state, 0))
        yield jobs
        depth = GaugeMetricFamily("ctnode_queue_depth", "Task messages waiting per queue", labels=["queue"])
        up = GaugeMetricFamily("ctnode_broker_up", "1 when the broker could be read at this scrape")
        try:
            view = inspect_broker(self.broker_url, QUEUES, timeout_s=2.0)
        except BrokerUnavailable:
            up.add_metric([], 0)
        else:
            up.add_metric([], 1)
            for queue, n in view.depths.items():
                depth.add_metric([queue], n)
        yield depth
        yield up


class StoreMetrics:
    """The node's metrics registry; call :meth:`render` per scrape (it tails the audit trail first)."""

    def __init__(self, store: JobStore, *, broker_url: str, start_at_event_id: int | None = None) -> None:
        self.store = store
        self.registry = CollectorRegistry(auto_describe=True)
        self.stage_seconds = Histogram(
            "ctnode_stage_duration_seconds",
            "Time from the previous milestone to this one, per stage",
            ["stage", "rule", "pipeline", "destination"],
            buckets=BUCKETS_S,
            registry=self.registry,
        )
        self.failures = Counter(
            "ctnode_job_failures",
            "Jobs that failed or were dead-lettered, by error class",
            ["category", "state", "rule", "pipeline"],
            registry=self.registry,
        )
        self.transitions = Counter(
            "ctnode_job_transitions", "Audited job state changes seen", ["to_state"], registry=self.registry
        )
        self.registry.register(_LiveGauges(store, broker_url))
        self._lock = threading.Lock()
        self._high = store.last_event_id() if start_at_event_id is None else start_at_event_id
        # Events already in the window at start are history, not news.
        self._seen: set[int] = {
            e.id for e in store.events_after(max(0, self._high - _LOOKBACK_IDS)) if e.id <= self._high
        }

    # -- tailing ------------------------------------------------------------------------------

    def refresh(self) -> int:
        """Observe every event appended since the last call; returns how many were new."""
        with self._lock:
            floor = max(0, self._high - _LOOKBACK_IDS)
            fresh = [e for e in self.store.events_after(floor) if e.id not in self._seen]
            cache: dict[str, tuple[JobRecord | None, list[JobEvent]]] = {}
            for event in fresh:
                try:
                    self._observe(event, cache)
                except Exception:  # one odd row must not break the scrape
                    logger.exception("metrics: cannot observe event %d", event.id)
                self._seen.add(event.id)
                self._high = max(self._high, event.id)
            floor = self._high - _LOOKBACK_IDS
            self._seen = {i for i in self._seen if i > floor}
            return len(fresh)

    def render(self) -> bytes:
        self.refresh()
        return generate_latest(self.registry)

    # -- one event ----------------------------------------------------------------------------

    def _job(
        self, job_id: str, cache: dict[str, tuple[JobRecord | None, list[JobEvent]]]
    ) -> tuple[JobRecord | None, list[JobEvent]]:
        if job_id not in cache:
            cache[job_id] = (self.store.get_job(job_id), self.store.events(job_id))
        return cache[job_id]

    def _observe(self, event: JobEvent, cache: dict[str, tuple[JobRecord | None, list[JobEvent]]]) -> None:
        if event.from_state == event.to_state:
            return  # a note (e.g. a re-sent message), not a milestone
        self.transitions.labels(event.to_state.value).inc()
        job, events = self._job(event.job_id, cache)
        if job is None:
            return
        earlier = [e for e in events if e.id < event.id]

        def observe(stage: str, seconds: float | None, destination: str = "") -> None:
            if seconds is not None and seconds >= 0:
                self.stage_seconds.labels(stage, job.rule_name, job.pipeline, destination).observe(seconds)

        to = event.to_state
        if event.from_state is None and to == JobState.QUEUED:
            study = self.store.get_study(job.study_instance_uid)
            if study is not None and study.stable_at is not None:
                observe("stable", _between(study.first_received_at, study.stable_at))
                observe("queued", _between(study.stable_at, event.at))
        elif to == JobState.RUNNING:
            queued_at = _last_at(earlier, JobState.QUEUED)
            observe("started", _between(queued_at, event.at))
        elif to == JobState.ENCODED:
            t = job.timings_s
            inferred = [t[k] for k in ("fetch", "load", "inference") if k in t]
            observe("inferred", sum(inferred) if inferred else None)
            encode = t.get("encode")
            running_at = _last_at(earlier, JobState.RUNNING)
            observe("encoded", encode if encode is not None else _between(running_at, event.at))
        elif to == JobState.DELIVERED:
            encoded_at = _last_at(earlier, JobState.ENCODED)
            deliveries = {d.destination: d for d in self.store.deliveries_for(job.job_id)}
            for dest in job.destinations:
                seconds = job.timings_s.get(f"deliver.{dest}")
                if seconds is None and dest in deliveries:
                    seconds = _between(encoded_at, deliveries[dest].updated_at)
                observe("delivered", seconds, dest)
            study = self.store.get_study(job.study_instance_uid)
            if study is not None:
                observe("end_to_end", _between(study.first_received_at, event.at))
        elif to in (JobState.FAILED, JobState.DEAD):
            category = failure_category(event.reason, event.detail)
            self.failures.labels(category, to.value, job.rule_name, job.pipeline).inc()


def _between(start: datetime | None, end: datetime | None) -> float | None:
    if start is None or end is None:
        return None
    return (end - start).total_seconds()


def _last_at(events: Iterable[JobEvent], state: JobState) -> datetime | None:
    found = None
    for e in events:
        if e.to_state == state and e.from_state != e.to_state:
            found = e.at
    return found
