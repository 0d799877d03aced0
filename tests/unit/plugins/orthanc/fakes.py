"""Stand-ins for the plugin's two network-ish peers in unit tests: Orthanc's REST API and the broker.

``FakeOrthanc`` answers exactly the REST paths the plugin reads, with the JSON shapes Orthanc
1.10.1 returns (checked against a real server in tests/integration/test_orthanc_plugin.py).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from dicom_node.contracts import StudyStable
from dicom_node.errors import TransientError
from plugins.orthanc.snapshot import OrthancNotFound

CT = "1.2.840.10008.5.1.4.1.1.2"
SEG = "1.2.840.10008.5.1.4.1.1.66.4"
SR = "1.2.840.10008.5.1.4.1.1.88.34"


@dataclass
class FakeSeries:
    orthanc_id: str
    study_id: str
    series_instance_uid: str
    modality: str
    sop_class_uid: str
    manufacturer: str = "ACME"
    images_in_acquisition: int | None = None
    instances: list[tuple[str, str]] = field(default_factory=list)  # (orthanc id, SOP Instance UID)


@dataclass
class FakeOrthanc:
    studies: dict[str, str] = field(default_factory=dict)  # orthanc study id -> StudyInstanceUID
    series: dict[str, FakeSeries] = field(default_factory=dict)
    changes: list[dict[str, Any]] = field(default_factory=list)
    calls: list[str] = field(default_factory=list)
    last_update: str = "20261123T101500"

    def _log(self, change_type: str, level: str, resource_id: str) -> None:
        self.changes.append(
            {
                "ChangeType": change_type,
                "ResourceType": level,
                "ID": resource_id,
                "Seq": len(self.changes) + 1,
            }
        )

    def add_series(self, series: FakeSeries, study_instance_uid: str = "1.2.3.4") -> FakeSeries:
        if series.study_id not in self.studies:
            self.studies[series.study_id] = study_instance_uid
            self._log("NewStudy", "Study", series.study_id)
        self.series[series.orthanc_id] = series
        self._log("NewSeries", "Series", series.orthanc_id)
        return series

    def add_instances(self, series_id: str, count: int, *, uid_prefix: str = "1.2.3.4.5") -> list[str]:
        series = self.series[series_id]
        new = []
        for _ in range(count):
            n = len(series.instances) + 1
            orthanc_id = f"{series_id}-i{n}"
            series.instances.append((orthanc_id, f"{uid_prefix}.{series_id[-1]}.{n}"))
            self._log("NewInstance", "Instance", orthanc_id)
            new.append(orthanc_id)
        return new

    def delete_study(self, study_id: str) -> None:
        del self.studies[study_id]
        for key in [k for k, s in self.series.items() if s.study_id == study_id]:
            del self.series[key]

    # -- the OrthancApi protocol ---------------------------------------------------------------

    def get_json(self, uri: str) -> Any:
        self.calls.append(uri)
        parts = uri.split("?")[0].strip("/").split("/")
        query = uri.split("?")[1] if "?" in uri else ""
        if parts == ["changes"]:
            return self._changes(query)
        if parts[0] == "studies" and parts[1] in self.studies:
            sid = parts[1]
            own = [s for s in self.series.values() if s.study_id == sid]
            if len(parts) == 2:
                return {
                    "ID": sid,
                    "LastUpdate": self.last_update,
                    "MainDicomTags": {"StudyInstanceUID": self.studies[sid], "AccessionNumber": "ACC-SECRET"},
                    "PatientMainDicomTags": {"PatientName": "DOE^JANE", "PatientID": "PID-SECRET"},
                }
            if parts[2] == "series":
                return [self._series_json(s) for s in own]
            if parts[2] == "instances":
                return [
                    {"ID": oid, "ParentSeries": s.orthanc_id, "MainDicomTags": {"SOPInstanceUID": uid}}
                    for s in own
                    for oid, uid in s.instances
                ]
        if parts[0] == "series" and parts[1] in self.series:
            s = self.series[parts[1]]
            if len(parts) == 3 and parts[2] == "study":
                return {"ID": s.study_id}
            return self._series_json(s)
        if parts[0] == "instances":
            for s in self.series.values():
                for oid, _uid in s.instances:
                    if oid == parts[1]:
                        if parts[2] == "study":
                            return {"ID": s.study_id}
                        return {
                            "SopClassUid": s.sop_class_uid,
                            "RemoteAET": "MODALITY1",
                            "CalledAET": "ORTHANC",
                            "ReceptionDate": "20261123T101000",
                        }
        raise OrthancNotFound(uri)

    def _series_json(self, s: FakeSeries) -> dict[str, Any]:
        tags = {
            "SeriesInstanceUID": s.series_instance_uid,
            "Modality": s.modality,
            "Manufacturer": s.manufacturer,
        }
        if s.images_in_acquisition is not None:
            tags["ImagesInAcquisition"] = str(s.images_in_acquisition)
        return {
            "ID": s.orthanc_id,
            "ParentStudy": s.study_id,
            "ExpectedNumberOfInstances": None,
            "Instances": [oid for oid, _ in s.instances],
            "MainDicomTags": tags,
        }

    def _changes(self, query: str) -> dict[str, Any]:
        params = dict(p.split("=") if "=" in p else (p, "") for p in query.split("&") if p)
        last = len(self.changes)
        if "last" in params:
            return {"Changes": self.changes[-1:], "Done": True, "Last": last}
        since = int(params.get("since", 0))
        limit = int(params.get("limit", 100))
        page = [c for c in self.changes if c["Seq"] > since][:limit]
        return {
            "Changes": page,
            "Done": not page or page[-1]["Seq"] >= last,
            "Last": page[-1]["Seq"] if page else last,
        }


@dataclass
class FakeBroker:
    """A RoutingPublisher that can be switched off like a Redis outage."""

    up: bool = True
    sent: list[tuple[str, StudyStable]] = field(default_factory=list)
    refused: int = 0

    def publish(self, study: StudyStable, *, task_id: str) -> None:
        if not self.up:
            self.refused += 1
            raise TransientError("broker did not accept the message: ConnectionError: refused")
        self.sent.append((task_id, study))


class ManualClock:
    def __init__(self, start: float = 1_800_000_000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds
