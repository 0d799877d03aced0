"""Where a job's input files are on this machine, whichever way the study arrived."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pydicom

from dicom_node.contracts import StudySource
from dicom_node.errors import PermanentError
from dicom_node.ingest.orthanc_source import fetch_study
from dicom_node.settings import Settings


def local_study_dir(
    settings: Settings,
    source: StudySource,
    study_instance_uid: str,
    *,
    orthanc_auth: tuple[str, str] | None = None,
) -> Path:
    """The study folder in the staging layout (``<study>/<series>/<sop>.dcm``).

    A C-STORE or STOW-RS study is already staged. An Orthanc study is copied once into
    ``<storage root>/fetched/`` (files already there are not fetched again, so a retried task
    resumes) and read from there like a staged one.
    """
    if source.kind == "staging":
        if not source.staging_path:
            raise PermanentError("staging source without a path")
        return Path(source.staging_path)
    fetched = fetch_study(source, settings.storage.root / "fetched", auth=orthanc_auth, timeout_s=120.0)
    if fetched.study_instance_uid != study_instance_uid:
        raise PermanentError(
            f"Orthanc study {source.orthanc_study_id} holds {fetched.study_instance_uid}, "
            f"not the routed study {study_instance_uid}"
        )
    return fetched.study_dir


def _sop_instance_uid(path: Path) -> str:
    try:
        header = pydicom.dcmread(path, stop_before_pixels=True, specific_tags=["SOPInstanceUID"])
    except (OSError, pydicom.errors.InvalidDicomError):
        return ""
    return str(header.get("SOPInstanceUID", ""))


def series_files(
    study_dir: Path, series_instance_uid: str, sop_instance_uids: Sequence[str] = ()
) -> list[Path]:
    """The files of the job's instances (``<study>/<series>/<sop>.dcm``).

    With ``sop_instance_uids`` (what routing counted as the series' input, e.g. without a stray
    Secondary Capture filed in it) exactly those, all of which must be there; without (a job
    stored before jobs listed them) every instance in the series folder.
    """
    folder = study_dir / series_instance_uid
    if sop_instance_uids:
        # Staging and Orthanc fetches name files <SOPInstanceUID>.dcm; other folders (a study
        # copied in by hand) are matched by their headers.
        found = {uid: folder / f"{uid}.dcm" for uid in sop_instance_uids if (folder / f"{uid}.dcm").is_file()}
        if len(found) < len(set(sop_instance_uids)):
            for path in sorted(folder.glob("*.dcm")):
                if path.name.startswith(".") or path in found.values():
                    continue
                uid = _sop_instance_uid(path)
                if uid in sop_instance_uids and uid not in found:
                    found[uid] = path
        missing = [uid for uid in sop_instance_uids if uid not in found]
        if missing:
            raise PermanentError(
                f"series {series_instance_uid}: {len(missing)} of the job's {len(sop_instance_uids)} "
                f"instances are not under {study_dir} (first: {missing[0]}); removed by retention, or a "
                "changed study"
            )
        return [found[uid] for uid in sop_instance_uids]
    files = sorted(p for p in folder.glob("*.dcm") if not p.name.startswith("."))
    if not files:
        raise PermanentError(f"series {series_instance_uid} has no instances under {study_dir}")
    return files
