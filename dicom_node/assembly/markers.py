"""Per-study dispatch markers: what was already handed on, so a restart or a late image knows.

One small JSON file per study, ``<state_dir>/<StudyInstanceUID>.json``, written atomically
(tmp → fsync → rename → fsync dir) after each successful ``StudyStable`` dispatch::

    {"study_instance_uid": "...", "sop_set_digest": "<sha256>", "dispatch_count": 2,
     "dispatched_at": 1795000000.0, "reason": "quiet-period",
     "calling_ae_title": "...", "called_ae_title": "...",
     "first_received_at": ..., "last_received_at": ...,
     "series": {"<SeriesInstanceUID>": ["<SOPInstanceUID>", ...]},
     "expected": {"<SeriesInstanceUID>": 120}}

No patient data: UIDs, AE titles and times only. A study whose staged routable SOP set is not
the dispatched one is re-tracked on restart (see ``StudyTracker.recover``).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import threading
from dataclasses import dataclass, field
from pathlib import Path

from dicom_node.identity import sop_set_digest

logger = logging.getLogger(__name__)

_UID_RE = re.compile(r"[0-9]+(\.[0-9]+)*")


def is_uid(value: str) -> bool:
    """Digits and dots, at most 64 characters (PS3.5 9.1): safe as a file name."""
    return 0 < len(value) <= 64 and _UID_RE.fullmatch(value) is not None


@dataclass(frozen=True)
class DispatchMarker:
    study_instance_uid: str
    dispatch_count: int
    dispatched_at: float
    reason: str
    calling_ae_title: str
    called_ae_title: str
    first_received_at: float
    last_received_at: float
    series: dict[str, tuple[str, ...]] = field(default_factory=dict)
    expected: dict[str, int] = field(default_factory=dict)

    @property
    def sop_instance_uids(self) -> frozenset[str]:
        return frozenset(uid for uids in self.series.values() for uid in uids)

    @property
    def sop_set_digest(self) -> str:
        return sop_set_digest(self.sop_instance_uids)


class MarkerStore:
    """Reads and writes :class:`DispatchMarker` files under ``state_dir``."""

    def __init__(self, state_dir: Path, *, fsync: bool = True) -> None:
        self.state_dir = Path(state_dir)
        self.fsync = fsync
        self.state_dir.mkdir(parents=True, exist_ok=True)

    def path(self, study_instance_uid: str) -> Path:
        if not is_uid(study_instance_uid):
            raise ValueError("not a UID")
        return self.state_dir / f"{study_instance_uid}.json"

    def read(self, study_instance_uid: str) -> DispatchMarker | None:
        try:
            path = self.path(study_instance_uid)
            data = json.loads(path.read_text(encoding="utf-8"))
            return DispatchMarker(
                study_instance_uid=str(data["study_instance_uid"]),
                dispatch_count=int(data["dispatch_count"]),
                dispatched_at=float(data["dispatched_at"]),
                reason=str(data["reason"]),
                calling_ae_title=str(data.get("calling_ae_title", "")),
                called_ae_title=str(data.get("called_ae_title", "")),
                first_received_at=float(data["first_received_at"]),
                last_received_at=float(data["last_received_at"]),
                series={str(k): tuple(str(u) for u in v) for k, v in data["series"].items()},
                expected={str(k): int(v) for k, v in data.get("expected", {}).items()},
            )
        except FileNotFoundError:
            return None
        except (OSError, ValueError, KeyError, TypeError):
            # A damaged marker only means the study is treated as never dispatched: routing
            # deduplicates by job id, so the worst case is a repeated StudyStable.
            logger.warning("assembly: unreadable dispatch marker ignored", extra={"stage": "assembly"})
            return None

    def write(self, marker: DispatchMarker) -> None:
        path = self.path(marker.study_instance_uid)
        data = {
            "study_instance_uid": marker.study_instance_uid,
            "sop_set_digest": marker.sop_set_digest,
            "dispatch_count": marker.dispatch_count,
            "dispatched_at": marker.dispatched_at,
            "reason": marker.reason,
            "calling_ae_title": marker.calling_ae_title,
            "called_ae_title": marker.called_ae_title,
            "first_received_at": marker.first_received_at,
            "last_received_at": marker.last_received_at,
            "series": {k: sorted(v) for k, v in sorted(marker.series.items())},
            "expected": dict(sorted(marker.expected.items())),
        }
        tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
        try:
            with open(tmp, "w", encoding="utf-8") as f:
                json.dump(data, f, separators=(",", ":"))
                f.flush()
                if self.fsync:
                    os.fsync(f.fileno())
            os.replace(tmp, path)
            if self.fsync:
                fd = os.open(self.state_dir, os.O_RDONLY | os.O_DIRECTORY)
                try:
                    os.fsync(fd)
                finally:
                    os.close(fd)
        finally:
            with contextlib.suppress(OSError):
                tmp.unlink()

    def remove(self, study_instance_uid: str) -> None:
        with contextlib.suppress(OSError, ValueError):
            self.path(study_instance_uid).unlink()
