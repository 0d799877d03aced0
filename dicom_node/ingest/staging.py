"""Atomic, durable staging of received instances.

Layout (other stages read it; keep it stable)::

    <root>/<StudyInstanceUID>/<SeriesInstanceUID>/<SOPInstanceUID>.dcm   staged Part 10 files
    <root>/.incoming/                                                     temporary files

A file appears under its final name only complete and on disk: it is written in ``.incoming``,
fsynced, hard-linked to its final name (``link`` fails if the name exists, so two associations
storing the same SOP Instance at once can never overwrite each other), and the directories that
changed are fsynced. The first copy of a SOP Instance wins; a later copy is reported as a
duplicate and never rewritten. ``.incoming`` leftovers (a crash mid-write) are removed when a
``Staging`` is created.

UIDs are checked (digits and dots, ≤ 64 characters) before they become path parts, so no tag
value can point a write outside ``root``.

Before each write the free space of the staging file system is compared with
``min_free_bytes``: below the watermark the instance is refused with
:class:`~dicom_node.errors.OutOfResources` (0xA700) instead of filling the disk.

Also :func:`read_staged_instance`: the ``InstanceStored`` facts of a staged file, read back from
its header (restart recovery uses it).
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import shutil
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import BinaryIO

from pydicom import dcmread

from dicom_node.contracts import InstanceStored
from dicom_node.errors import CannotUnderstand, OutOfResources
from dicom_node.ingest.classify import expected_series_instances
from dicom_node.ingest.validation import STATUS_BAD_UID, is_valid_uid
from dicom_node.node_results import NodeIdentity, is_input

logger = logging.getLogger(__name__)

INCOMING_DIR = ".incoming"
SUFFIX = ".dcm"


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


_COPY_CHUNK = 64 * 1024**2


def _copy_range(source_fd: int, target_fd: int, *, offset: int, length: int) -> None:
    """Copy ``length`` bytes from ``source_fd`` at ``offset`` to the end of ``target_fd`` in the
    kernel (copy_file_range, Linux ≥ 4.5; sendfile where it is refused, e.g. across file systems
    on older kernels)."""
    position = offset
    remaining = length
    use_sendfile = not hasattr(os, "copy_file_range")
    while remaining > 0:
        count = min(remaining, _COPY_CHUNK)
        if not use_sendfile:
            try:
                copied = os.copy_file_range(source_fd, target_fd, count, position)
            except OSError as exc:
                if exc.errno not in (errno.EXDEV, errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP):
                    raise
                use_sendfile = True
                continue
        else:
            copied = os.sendfile(target_fd, source_fd, position, count)
        if copied == 0:
            raise OSError(errno.EIO, "source shorter than announced")
        position += copied
        remaining -= copied


class Staging:
    """The staging folder: atomic durable writes, duplicate detection, disk watermark."""

    def __init__(self, root: Path, *, min_free_bytes: int, fsync: bool = True) -> None:
        # ``fsync=False`` is for benchmarks that want to see what durability costs; never in service.
        self.root = Path(root)
        self.min_free_bytes = min_free_bytes
        self.fsync = fsync
        self.incoming = self.root / INCOMING_DIR
        self.incoming.mkdir(parents=True, exist_ok=True)
        removed = 0
        for leftover in self.incoming.iterdir():
            with contextlib.suppress(OSError):
                leftover.unlink()
                removed += 1
        if removed:
            logger.info("staging: removed %d unfinished temporary files", removed, extra={"stage": "ingest"})

    # -- paths ----------------------------------------------------------------------------------

    @staticmethod
    def _uid_part(value: str, what: str) -> str:
        if not is_valid_uid(value):
            raise CannotUnderstand(f"{what} is not a valid UID", status=STATUS_BAD_UID)
        return value

    def study_dir(self, study_instance_uid: str) -> Path:
        return self.root / self._uid_part(study_instance_uid, "StudyInstanceUID")

    def instance_path(
        self, *, study_instance_uid: str, series_instance_uid: str, sop_instance_uid: str
    ) -> Path:
        return (
            self.study_dir(study_instance_uid)
            / self._uid_part(series_instance_uid, "SeriesInstanceUID")
            / (self._uid_part(sop_instance_uid, "SOPInstanceUID") + SUFFIX)
        )

    def new_temp_path(self) -> Path:
        """A fresh name in ``.incoming`` (same file system as the final names)."""
        return self.incoming / f"{uuid.uuid4().hex}.part"

    # -- space ----------------------------------------------------------------------------------

    def free_bytes(self) -> int:
        return shutil.disk_usage(self.root).free

    def check_free_space(self, incoming_bytes: int) -> None:
        """Raise OutOfResources (0xA700) when writing ``incoming_bytes`` would cross the watermark."""
        free = self.free_bytes()
        if free - incoming_bytes < self.min_free_bytes:
            raise OutOfResources(
                f"staging disk below its watermark ({free // 2**20} MiB free, "
                f"{self.min_free_bytes // 2**20} MiB required)"
            )

    # -- writes ---------------------------------------------------------------------------------

    def store_bytes(
        self,
        chunks: Sequence[bytes | memoryview],
        *,
        study_instance_uid: str,
        series_instance_uid: str,
        sop_instance_uid: str,
    ) -> tuple[Path, bool]:
        """Write ``chunks`` (a Part 10 file in pieces) durably; return (final path, duplicate)."""
        final = self.instance_path(
            study_instance_uid=study_instance_uid,
            series_instance_uid=series_instance_uid,
            sop_instance_uid=sop_instance_uid,
        )
        if final.exists():
            return final, True  # first copy wins; nothing written
        self.check_free_space(sum(len(c) for c in chunks))
        tmp = self.new_temp_path()
        try:
            with open(tmp, "wb") as f:
                for chunk in chunks:
                    f.write(chunk)
                f.flush()
                if self.fsync:
                    os.fsync(f.fileno())
        except OSError as exc:
            with contextlib.suppress(OSError):
                tmp.unlink()
            raise OutOfResources(f"cannot write to staging: {exc.strerror}") from exc
        return self._publish(tmp, final)

    def store_copy(
        self,
        head: bytes,
        source: BinaryIO,
        *,
        offset: int,
        length: int,
        study_instance_uid: str,
        series_instance_uid: str,
        sop_instance_uid: str,
    ) -> tuple[Path, bool]:
        """Write ``head`` then ``length`` bytes of the open file ``source`` from ``offset`` (a
        data set streamed to disk by the receive path) durably; return (final path, duplicate).

        The bytes are copied by the kernel (``os.copy_file_range``, else ``os.sendfile``), never
        through this process's memory: memory use does not grow with the instance size.
        """
        final = self.instance_path(
            study_instance_uid=study_instance_uid,
            series_instance_uid=series_instance_uid,
            sop_instance_uid=sop_instance_uid,
        )
        if final.exists():
            return final, True
        self.check_free_space(len(head) + length)
        tmp = self.new_temp_path()
        try:
            with open(tmp, "wb") as f:
                f.write(head)
                f.flush()
                _copy_range(source.fileno(), f.fileno(), offset=offset, length=length)
                if self.fsync:
                    os.fsync(f.fileno())
        except OSError as exc:
            with contextlib.suppress(OSError):
                tmp.unlink()
            raise OutOfResources(f"cannot write to staging: {exc.strerror}") from exc
        return self._publish(tmp, final)

    def store_file(
        self,
        tmp_path: Path,
        *,
        study_instance_uid: str,
        series_instance_uid: str,
        sop_instance_uid: str,
    ) -> tuple[Path, bool]:
        """Move a complete Part 10 file into place durably; return (final path, duplicate).

        ``tmp_path`` is consumed either way. When it lies on another file system it is copied into
        ``.incoming`` first, so the final name still appears atomically.
        """
        final = self.instance_path(
            study_instance_uid=study_instance_uid,
            series_instance_uid=series_instance_uid,
            sop_instance_uid=sop_instance_uid,
        )
        tmp_path = Path(tmp_path)
        if final.exists():
            with contextlib.suppress(OSError):
                tmp_path.unlink()
            return final, True
        try:
            self.check_free_space(tmp_path.stat().st_size)
            if tmp_path.parent.resolve() != self.incoming.resolve():
                local = self.new_temp_path()
                try:
                    os.rename(tmp_path, local)
                except OSError as exc:
                    if exc.errno != errno.EXDEV:
                        raise
                    shutil.copyfile(tmp_path, local)
                    tmp_path.unlink()
                tmp_path = local
            if self.fsync:
                fd = os.open(tmp_path, os.O_RDONLY)
                try:
                    os.fsync(fd)
                finally:
                    os.close(fd)
        except OSError as exc:
            with contextlib.suppress(OSError):
                tmp_path.unlink()
            raise OutOfResources(f"cannot write to staging: {exc.strerror}") from exc
        except OutOfResources:
            with contextlib.suppress(OSError):
                tmp_path.unlink()
            raise
        return self._publish(tmp_path, final)

    def _publish(self, tmp: Path, final: Path) -> tuple[Path, bool]:
        """Give ``tmp`` its final name without ever replacing an existing file; fsync the dirs."""
        try:
            created = self._make_parents(final)
            try:
                os.link(tmp, final)
                duplicate = False
            except FileExistsError:
                duplicate = True  # lost a race with another association storing the same SOP
            except OSError as exc:
                if exc.errno not in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP):
                    raise
                # File systems without hard links: rename (a concurrent duplicate may then win by
                # overwriting with the same SOP Instance, an acceptable loss of the "first wins" rule).
                duplicate = final.exists()
                if not duplicate:
                    os.rename(tmp, final)
            if self.fsync and not duplicate:
                for directory in [final.parent, *created]:
                    _fsync_dir(directory)
        except OSError as exc:
            raise OutOfResources(f"cannot write to staging: {exc.strerror}") from exc
        finally:
            with contextlib.suppress(OSError):
                tmp.unlink()
        return final, duplicate

    def _make_parents(self, final: Path) -> list[Path]:
        """Create the study/series folders; return the parents whose entries changed (to fsync)."""
        changed: list[Path] = []
        study = final.parent.parent
        for directory in (study, final.parent):
            try:
                directory.mkdir()
                changed.append(directory.parent)
            except FileExistsError:
                pass
        return changed

    # -- reading back ---------------------------------------------------------------------------

    def studies(self) -> list[Path]:
        """Study folders currently staged."""
        return sorted(p for p in self.root.iterdir() if p.is_dir() and is_valid_uid(p.name))


def read_staged_instance(path: Path, *, uid_root: str, manufacturer: str = "") -> InstanceStored | None:
    """The ``InstanceStored`` facts of a staged file, from its header; None if it is unreadable.

    Sending/receiving AE titles and the sender's address come from the File Meta, where the SCP
    records them (PS3.10 7.1: (0002,0017), (0002,0018), (0002,0027)); ``received_at`` is the file's
    mtime; ``association_id`` is empty (no live association).
    """
    try:
        ds = dcmread(path, stop_before_pixels=True)
        meta = ds.file_meta
        mtime = path.stat().st_mtime
        sop_class_uid = str(ds.SOPClassUID)
        series_instance_uid = str(ds.SeriesInstanceUID)
        address = str(meta.get("SendingPresentationAddress", "") or "")
        return InstanceStored(
            study_instance_uid=str(ds.StudyInstanceUID),
            series_instance_uid=series_instance_uid,
            sop_instance_uid=str(ds.SOPInstanceUID),
            sop_class_uid=sop_class_uid,
            path=str(path),
            calling_ae_title=str(meta.get("SendingApplicationEntityTitle", "") or "").strip(),
            called_ae_title=str(meta.get("ReceivingApplicationEntityTitle", "") or "").strip(),
            peer_address=address.removeprefix("dicom://").rsplit(":", 1)[0] if address else "",
            association_id="",
            received_at=datetime.fromtimestamp(mtime, tz=UTC),
            routable=is_input(
                sop_class_uid=sop_class_uid,
                series_instance_uid=series_instance_uid,
                sop_instance_uid=str(ds.SOPInstanceUID),
                manufacturer=str(ds.get("Manufacturer", "") or ""),
                identity=NodeIdentity(uid_root=uid_root, manufacturer=manufacturer),
            ),
            expected_series_instances=expected_series_instances(ds),
        )
    except Exception:  # a damaged file must not stop recovery of the others
        logger.warning(
            "staging: cannot read back a staged file", extra={"stage": "ingest", "path": str(path)}
        )
        return None
