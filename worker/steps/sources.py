"""Where a job's input files are on this machine, whichever way the study arrived."""

from __future__ import annotations

from pathlib import Path

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


def series_files(study_dir: Path, series_instance_uid: str) -> list[Path]:
    folder = study_dir / series_instance_uid
    files = sorted(p for p in folder.glob("*.dcm") if not p.name.startswith("."))
    if not files:
        raise PermanentError(f"series {series_instance_uid} has no instances under {study_dir}")
    return files
