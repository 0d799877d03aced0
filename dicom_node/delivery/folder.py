"""Destination kind ``folder``: result objects as DICOM files in a folder (a disk or a share).

Each file goes to ``<path>/<StudyInstanceUID>/<SeriesInstanceUID>/<SOPInstanceUID>.dcm``, written
to a hidden temporary name, fsynced and renamed, so a reader of the share never sees half a file,
and a re-delivery rewrites the same name (output UIDs are deterministic). UIDs become path
components only when they are UIDs (digits and dots, PS3.5 9.1): a malformed source Study
Instance UID can never climb out of the folder.

Outcomes: a full disk or quota, an unmounted share or an I/O error are transient (retried); any
other refusal (permissions, a file where a folder should be) is permanent. ``confirm`` reads every
file back and compares its bytes; ``health`` checks that the folder exists and is writable.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import re
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

from dicom_node.contracts import ResultFile
from dicom_node.delivery.destination import HealthResult
from dicom_node.delivery.outcome import InstanceOutcome, OutcomeKind, SendResult
from dicom_node.errors import ConfigError
from dicom_node.settings import DestinationBase, FolderDestinationSettings

_UID = re.compile(r"^[0-9]+(\.[0-9]+)*$")
_TRANSIENT_ERRNOS = frozenset(
    {errno.ENOSPC, errno.EDQUOT, errno.EIO, errno.ENOENT, errno.ESTALE, errno.EAGAIN}
)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


class FolderDestination:
    def __init__(
        self,
        name: str,
        settings: DestinationBase,
        *,
        calling_ae_title: str,
        environ: Mapping[str, str] | None = None,
    ) -> None:
        if not isinstance(settings, FolderDestinationSettings):
            raise ConfigError(f"destination {name!r}: {type(settings).__name__} is not a folder")
        self.name = name
        self.root = settings.path

    def target(self, f: ResultFile, study_instance_uid: str) -> Path | None:
        """Where ``f`` goes, or None when one of its UIDs is not a UID (never a path component)."""
        parts = (study_instance_uid, f.series_instance_uid, f.sop_instance_uid)
        if not all(_UID.match(part) and len(part) <= 64 for part in parts):
            return None
        return self.root / parts[0] / parts[1] / f"{parts[2]}.dcm"

    def send(self, files: Sequence[ResultFile], *, study_instance_uid: str) -> SendResult:
        return SendResult(tuple(self._copy(f, study_instance_uid) for f in files))

    def _copy(self, f: ResultFile, study_instance_uid: str) -> InstanceOutcome:
        uid = f.sop_instance_uid
        target = self.target(f, study_instance_uid)
        if target is None:
            return InstanceOutcome(uid, OutcomeKind.PERMANENT, "a UID is not a valid UID: refused as a path")
        if not self.root.is_dir():
            return InstanceOutcome(
                uid, OutcomeKind.TRANSIENT, f"folder {self.root} is not there (unmounted?)"
            )
        tmp = target.with_name(f".{target.name}.tmp")
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            with open(f.path, "rb") as source, open(tmp, "wb") as out:
                for block in iter(lambda: source.read(1 << 20), b""):
                    out.write(block)
                out.flush()
                os.fsync(out.fileno())
            os.replace(tmp, target)
        except OSError as exc:
            kind = OutcomeKind.TRANSIENT if exc.errno in _TRANSIENT_ERRNOS else OutcomeKind.PERMANENT
            return InstanceOutcome(uid, kind, f"writing {target.name}: {exc.strerror or exc}")
        finally:
            with contextlib.suppress(OSError):  # e.g. its folder could not be made
                tmp.unlink(missing_ok=True)
        return InstanceOutcome(uid, OutcomeKind.DELIVERED, f"written to {target}")

    def confirm(self, files: Sequence[ResultFile], *, study_instance_uid: str) -> tuple[bool, str]:
        missing = []
        for f in files:
            target = self.target(f, study_instance_uid)
            try:
                same = target is not None and _sha256(target) == _sha256(Path(f.path))
            except OSError:
                same = False
            if not same:
                missing.append(f.sop_instance_uid)
        if missing:
            return False, f"{len(missing)} of {len(files)} files absent or different: {missing[:5]}"
        return True, f"all {len(files)} files read back identical"

    def health(self) -> HealthResult:
        started = time.monotonic()
        if not self.root.is_dir():
            return HealthResult(False, f"{self.root} is not a folder", time.monotonic() - started)
        if not os.access(self.root, os.W_OK | os.X_OK):
            return HealthResult(
                False, f"{self.root} is not writable by this node", time.monotonic() - started
            )
        return HealthResult(True, f"{self.root} is writable", time.monotonic() - started)
