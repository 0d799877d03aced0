"""What a study in Orthanc holds, read over Orthanc's REST API, and the StudyStable it becomes.

A snapshot costs ``2 + number of series`` REST calls (never one per instance):
``/studies/{id}`` and ``/studies/{id}/instances`` (SOP Instance UIDs, parent series),
``/studies/{id}/series?expand`` (Modality, Manufacturer, ImagesInAcquisition), and the metadata
of one instance per series (SOP Class UID, RemoteAET, CalledAET, ReceptionDate: Orthanc keeps
these as instance metadata, not as main DICOM tags).

The pure part (:func:`snapshot_from_rest`, :func:`study_stable_from`) takes the decoded JSON and
is unit-tested; :func:`fetch_snapshot` is the thin part that calls an :class:`OrthancApi`.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

from dicom_node.contracts import CompletionReason, StudySource, StudyStable
from dicom_node.identity import NODE_NAMESPACE, sop_set_digest
from plugins.orthanc.guard import NodeResultClassifier

log = logging.getLogger(__name__)


class OrthancNotFound(LookupError):
    """The resource is gone (deleted between the event and the read)."""


class OrthancApi(Protocol):
    """Read access to Orthanc's REST API; in the plugin, ``orthanc.RestApiGet`` (no HTTP)."""

    def get_json(self, uri: str) -> Any:
        """GET ``uri`` (e.g. ``/studies/<id>``) and decode its JSON; OrthancNotFound on 404."""


@dataclass(frozen=True)
class SeriesSnapshot:
    orthanc_series_id: str
    series_instance_uid: str
    modality: str
    manufacturer: str
    sop_class_uid: str
    sop_instance_uids: tuple[str, ...]
    # Announced size of the series (ImagesInAcquisition) when the sender gives one.
    expected_instances: int | None
    # Why the series is not CT input (node result, SR, ...), None for input.
    non_input_reason: str | None

    @property
    def routable(self) -> bool:
        return self.non_input_reason is None

    @property
    def complete_by_count(self) -> bool:
        return self.expected_instances is not None and len(self.sop_instance_uids) == self.expected_instances


@dataclass(frozen=True)
class StudySnapshot:
    orthanc_study_id: str
    study_instance_uid: str
    series: tuple[SeriesSnapshot, ...]
    calling_ae_title: str
    called_ae_title: str
    first_received_at: datetime
    last_received_at: datetime

    @property
    def routable_sop_instance_uids(self) -> frozenset[str]:
        return frozenset(uid for s in self.series if s.routable for uid in s.sop_instance_uids)

    @property
    def node_result_count(self) -> int:
        return sum(len(s.sop_instance_uids) for s in self.series if not s.routable)

    @property
    def sop_set_digest(self) -> str:
        return sop_set_digest(self.routable_sop_instance_uids)

    @property
    def complete_by_counts(self) -> bool:
        """Every routable series announced its size and has exactly that many instances."""
        routable = [s for s in self.series if s.routable]
        return bool(routable) and all(s.complete_by_count for s in routable)


def parse_orthanc_time(text: str | None) -> datetime | None:
    """Orthanc's ``20261123T091953`` timestamps (UTC, as Orthanc writes them) → aware datetime."""
    if not text:
        return None
    try:
        return datetime.strptime(text[:15], "%Y%m%dT%H%M%S").replace(tzinfo=UTC)
    except ValueError:
        return None


def positive_int(value: Any) -> int | None:
    """A DICOM IS value as a positive int, None when absent, zero or not a number."""
    try:
        number = int(str(value).strip())
    except (TypeError, ValueError):
        return None
    return number if number > 0 else None


def snapshot_from_rest(
    *,
    study: Mapping[str, Any],
    series: Sequence[Mapping[str, Any]],
    instances: Sequence[Mapping[str, Any]],
    first_instance_metadata: Mapping[str, Mapping[str, Any]],
    classifier: NodeResultClassifier,
    now: datetime,
) -> StudySnapshot:
    """Assemble a snapshot from ``/studies/{id}``, ``.../series?expand``, ``.../instances`` and
    ``{series id: metadata of one of its instances}``."""
    uids_by_series: dict[str, list[str]] = {}
    for instance in instances:
        sop = str(instance.get("MainDicomTags", {}).get("SOPInstanceUID", ""))
        if sop:
            uids_by_series.setdefault(str(instance.get("ParentSeries", "")), []).append(sop)
    out: list[SeriesSnapshot] = []
    reception_times: list[datetime] = []
    calling = called = ""
    for s in series:
        series_id = str(s["ID"])
        tags = s.get("MainDicomTags", {})
        metadata = first_instance_metadata.get(series_id, {})
        uids = tuple(sorted(uids_by_series.get(series_id, [])))
        series_uid = str(tags.get("SeriesInstanceUID", ""))
        modality = str(tags.get("Modality", ""))
        manufacturer = str(tags.get("Manufacturer", ""))
        sop_class = str(metadata.get("SopClassUid", ""))
        reason = classifier.reason(
            sop_class_uid=sop_class,
            modality=modality,
            manufacturer=manufacturer,
            series_instance_uid=series_uid,
            sop_instance_uids=uids,
        )
        expected = positive_int(s.get("ExpectedNumberOfInstances")) or positive_int(
            tags.get("ImagesInAcquisition")
        )
        out.append(
            SeriesSnapshot(
                orthanc_series_id=series_id,
                series_instance_uid=series_uid,
                modality=modality,
                manufacturer=manufacturer,
                sop_class_uid=sop_class,
                sop_instance_uids=uids,
                expected_instances=expected,
                non_input_reason=reason,
            )
        )
        received = parse_orthanc_time(metadata.get("ReceptionDate"))
        if received is not None:
            reception_times.append(received)
        if reason is None and not calling:
            calling = str(metadata.get("RemoteAET", ""))
            called = str(metadata.get("CalledAET", ""))
    last = parse_orthanc_time(study.get("LastUpdate")) or now
    first = min([*reception_times, last])
    return StudySnapshot(
        orthanc_study_id=str(study["ID"]),
        study_instance_uid=str(study.get("MainDicomTags", {}).get("StudyInstanceUID", "")),
        series=tuple(sorted(out, key=lambda x: x.series_instance_uid)),
        calling_ae_title=calling,
        called_ae_title=called,
        first_received_at=first,
        last_received_at=max(last, first),
    )


def fetch_snapshot(
    api: OrthancApi, orthanc_study_id: str, *, classifier: NodeResultClassifier, now: datetime
) -> StudySnapshot | None:
    """Read a study's snapshot; None when it no longer exists."""
    try:
        study = api.get_json(f"/studies/{orthanc_study_id}")
        series = api.get_json(f"/studies/{orthanc_study_id}/series?expand")
        instances = api.get_json(f"/studies/{orthanc_study_id}/instances")
        metadata: dict[str, Mapping[str, Any]] = {}
        for s in series:
            if s.get("Instances"):
                metadata[str(s["ID"])] = api.get_json(f"/instances/{s['Instances'][0]}/metadata?expand")
    except OrthancNotFound:
        log.info("study gone before it could be read", extra={"orthanc_study_id": orthanc_study_id})
        return None
    return snapshot_from_rest(
        study=study,
        series=series,
        instances=instances,
        first_instance_metadata=metadata,
        classifier=classifier,
        now=now,
    )


def route_task_id(orthanc_study_id: str, digest: str) -> str:
    """Celery task id of a submission: the same study content always gets the same id."""
    return str(uuid.uuid5(NODE_NAMESPACE, f"orthanc-route|{orthanc_study_id}|{digest}"))


def study_stable_from(
    snapshot: StudySnapshot,
    *,
    reason: CompletionReason,
    reason_detail: str,
    orthanc_url: str,
    stable_at: datetime,
) -> StudyStable:
    """The hand-off to routing: where the study lives (Orthanc), why it counts as complete."""
    return StudyStable(
        study_instance_uid=snapshot.study_instance_uid,
        source=StudySource(
            kind="orthanc", orthanc_url=orthanc_url, orthanc_study_id=snapshot.orthanc_study_id
        ),
        reason=reason,
        reason_detail=reason_detail,
        calling_ae_title=snapshot.calling_ae_title,
        called_ae_title=snapshot.called_ae_title,
        instance_count=len(snapshot.routable_sop_instance_uids),
        first_received_at=snapshot.first_received_at,
        last_received_at=snapshot.last_received_at,
        stable_at=stable_at,
    )
