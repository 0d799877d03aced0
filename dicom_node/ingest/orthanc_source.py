"""Read a study the Orthanc plugin submitted (``StudySource(kind="orthanc")``) into a local folder.

The worker does not read pixels over the network while it computes: it first copies the study's
instances into ``<dest_root>/<StudyInstanceUID>/<SeriesInstanceUID>/<SOPInstanceUID>.dcm`` — the
staging layout (``dicom_node.ingest.staging``), so everything downstream reads an Orthanc study
and a C-STORE study the same way — then works on the files.

Two ways to fetch, same result on disk:

* ``method="rest"`` (default): Orthanc's REST API, ``GET /instances/{id}/file`` per instance:
  the stored Part 10 file byte for byte (any transfer syntax, no transcoding);
* ``method="wado-rs"``: DICOMweb, ``GET /dicom-web/studies/{study}/series/{series}`` per series,
  ``multipart/related; type="application/dicom"; transfer-syntax=*`` (as stored, no transcoding):
  one request per series, works against any DICOMweb server that has the study.

Headers only (for the routing manifest): :meth:`OrthancSource.fetch_headers` reads the DICOMweb
metadata of the whole study in one request (PS3.18 10.4, ``.../metadata``) into pydicom datasets
without pixel data.

Files appear atomically (temporary name, then rename); an instance already in place is not fetched
again, so a retried task continues where the previous attempt stopped. UIDs are checked before
they become path parts. Failures map to the node's errors: Orthanc unreachable, timing out or
answering 5xx/429 → :class:`~dicom_node.errors.TransientError` (retried); 404, 401/403 or another
4xx → :class:`~dicom_node.errors.PermanentError`.

Credentials never travel in Celery messages: the worker builds the client with
:func:`credentials_from_env` (``CTNODE_ORTHANC_USERNAME`` / ``CTNODE_ORTHANC_PASSWORD`` by default).
"""

from __future__ import annotations

import contextlib
import logging
import os
import uuid
from collections.abc import Collection, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import httpx
from pydicom.dataset import Dataset

from dicom_node.contracts import StudySource
from dicom_node.errors import PermanentError, TransientError
from dicom_node.ingest.receive import split_part10
from dicom_node.ingest.stow import MultipartError, MultipartRelatedParser, media_type_and_params
from dicom_node.ingest.validation import is_valid_uid

logger = logging.getLogger(__name__)

# Orthanc gzips an answer on the fly when asked (httpx asks by default): ~70 ms per 512×512 CT
# image here, 25× the transfer itself on loopback (bench/RESULTS.md). Pixel data is fetched as is.
NO_COMPRESSION = {"Accept-Encoding": "identity"}
USERNAME_ENV = "CTNODE_ORTHANC_USERNAME"
PASSWORD_ENV = "CTNODE_ORTHANC_PASSWORD"  # noqa: S105 (the name of a variable, not a secret)
WADO_ACCEPT = 'multipart/related; type="application/dicom"; transfer-syntax=*'
FetchMethod = Literal["rest", "wado-rs"]


def credentials_from_env(
    environ: Mapping[str, str] | None = None,
    *,
    username_env: str = USERNAME_ENV,
    password_env: str = PASSWORD_ENV,
) -> tuple[str, str] | None:
    """HTTP basic credentials for Orthanc from the environment; None when not set."""
    env = os.environ if environ is None else environ
    username = env.get(username_env, "")
    return (username, env.get(password_env, "")) if username else None


@dataclass(frozen=True)
class RemoteInstance:
    orthanc_id: str
    sop_instance_uid: str
    series_instance_uid: str


@dataclass(frozen=True)
class FetchedStudy:
    study_instance_uid: str
    study_dir: Path
    paths: tuple[Path, ...]
    fetched: int  # written by this call
    already_present: int  # found in place from an earlier attempt
    bytes_fetched: int


def _uid(value: object, what: str) -> str:
    text = str(value or "").strip()
    if not is_valid_uid(text):
        raise PermanentError(f"Orthanc returned an invalid {what}")
    return text


class OrthancSource:
    """A small client for one Orthanc; use as a context manager or call :meth:`close`."""

    def __init__(
        self,
        base_url: str,
        *,
        auth: tuple[str, str] | None = None,
        timeout_s: float = 60.0,
        dicomweb_root: str = "/dicom-web",
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.dicomweb_root = "/" + dicomweb_root.strip("/")
        self._client = httpx.Client(
            base_url=self.base_url,
            auth=httpx.BasicAuth(*auth) if auth else None,
            timeout=httpx.Timeout(timeout_s, connect=min(10.0, timeout_s)),
            transport=transport,
        )

    @classmethod
    def for_source(cls, source: StudySource, **kwargs: Any) -> OrthancSource:
        if source.kind != "orthanc" or not source.orthanc_url or not source.orthanc_study_id:
            raise PermanentError("not an Orthanc study source (needs orthanc_url and orthanc_study_id)")
        return cls(source.orthanc_url, **kwargs)

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> OrthancSource:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- HTTP ------------------------------------------------------------------------------------

    @staticmethod
    def _check(response: httpx.Response, what: str) -> None:
        code = response.status_code
        if code < 400:
            return
        if code >= 500 or code == 429:
            raise TransientError(f"Orthanc answered {code} for {what}")
        if code == 404:
            raise PermanentError(f"{what} not found in Orthanc (deleted?)")
        if code in (401, 403):
            raise PermanentError(
                f"Orthanc refused access ({code}) for {what}: check the worker's credentials"
            )
        raise PermanentError(f"Orthanc answered {code} for {what}")

    def _get_json(self, path: str, what: str) -> Any:
        try:
            response = self._client.get(path)
        except httpx.TransportError as exc:
            raise TransientError(f"Orthanc unreachable for {what}: {type(exc).__name__}") from exc
        self._check(response, what)
        return response.json()

    @contextlib.contextmanager
    def _stream(
        self, path: str, what: str, headers: Mapping[str, str] | None = None
    ) -> Iterator[httpx.Response]:
        try:
            with self._client.stream("GET", path, headers=headers) as response:
                self._check(response, what)
                yield response
        except httpx.TransportError as exc:
            raise TransientError(f"Orthanc unreachable for {what}: {type(exc).__name__}") from exc

    # -- reads -----------------------------------------------------------------------------------

    def study_instance_uid(self, orthanc_study_id: str) -> str:
        study = self._get_json(f"/studies/{orthanc_study_id}", "study")
        return _uid(study.get("MainDicomTags", {}).get("StudyInstanceUID"), "StudyInstanceUID")

    def instances(
        self, orthanc_study_id: str, *, series_instance_uids: Collection[str] | None = None
    ) -> list[RemoteInstance]:
        """The study's instances (optionally only those series), from two REST calls."""
        series = self._get_json(f"/studies/{orthanc_study_id}/series?expand", "study series")
        series_uid = {
            s["ID"]: _uid(s.get("MainDicomTags", {}).get("SeriesInstanceUID"), "SeriesInstanceUID")
            for s in series
        }
        wanted = set(series_instance_uids) if series_instance_uids is not None else None
        out = []
        for item in self._get_json(f"/studies/{orthanc_study_id}/instances", "study instances"):
            uid = series_uid.get(item.get("ParentSeries"))
            if uid is None or (wanted is not None and uid not in wanted):
                continue
            sop = _uid(item.get("MainDicomTags", {}).get("SOPInstanceUID"), "SOPInstanceUID")
            out.append(
                RemoteInstance(orthanc_id=str(item["ID"]), sop_instance_uid=sop, series_instance_uid=uid)
            )
        return sorted(out, key=lambda i: (i.series_instance_uid, i.sop_instance_uid))

    def fetch_study(
        self,
        orthanc_study_id: str,
        dest_root: Path,
        *,
        series_instance_uids: Collection[str] | None = None,
        method: FetchMethod = "rest",
    ) -> FetchedStudy:
        """Copy the study (or the given series) into ``dest_root/<study>/<series>/<sop>.dcm``."""
        study_uid = self.study_instance_uid(orthanc_study_id)
        study_dir = Path(dest_root) / study_uid
        if method == "rest":
            result = self._fetch_rest(orthanc_study_id, study_dir, series_instance_uids)
        elif method == "wado-rs":
            result = self._fetch_wado(orthanc_study_id, study_uid, study_dir, series_instance_uids)
        else:
            raise PermanentError(f"unknown fetch method {method!r}")
        paths, fetched, present, size = result
        logger.info(
            "fetched study from Orthanc: %d instances (%d already present, %.1f MB) by %s",
            len(paths),
            present,
            size / 1e6,
            method,
            extra={"stage": "ingest", "study": study_uid},
        )
        return FetchedStudy(
            study_instance_uid=study_uid,
            study_dir=study_dir,
            paths=tuple(paths),
            fetched=fetched,
            already_present=present,
            bytes_fetched=size,
        )

    def _fetch_rest(
        self, orthanc_study_id: str, study_dir: Path, series_instance_uids: Collection[str] | None
    ) -> tuple[list[Path], int, int, int]:
        paths: list[Path] = []
        fetched = present = size = 0
        for instance in self.instances(orthanc_study_id, series_instance_uids=series_instance_uids):
            final = study_dir / instance.series_instance_uid / f"{instance.sop_instance_uid}.dcm"
            paths.append(final)
            if final.exists():
                present += 1
                continue
            with self._stream(
                f"/instances/{instance.orthanc_id}/file", "instance file", headers=NO_COMPRESSION
            ) as response:
                size += _write_atomically(final, response.iter_bytes())
            fetched += 1
        return paths, fetched, present, size

    def _fetch_wado(
        self,
        orthanc_study_id: str,
        study_uid: str,
        study_dir: Path,
        series_instance_uids: Collection[str] | None,
    ) -> tuple[list[Path], int, int, int]:
        wanted = sorted(
            {
                i.series_instance_uid
                for i in self.instances(orthanc_study_id, series_instance_uids=series_instance_uids)
            }
        )
        paths: list[Path] = []
        fetched = present = size = 0
        for series_uid in wanted:
            path = f"{self.dicomweb_root}/studies/{study_uid}/series/{series_uid}"
            with self._stream(
                path, "series (WADO-RS)", headers={"Accept": WADO_ACCEPT, **NO_COMPRESSION}
            ) as response:
                _, params = media_type_and_params(response.headers.get("content-type", ""))
                try:
                    parser = MultipartRelatedParser(params.get("boundary", ""))
                    for chunk in response.iter_bytes():
                        for part in parser.feed(chunk):
                            meta, _ = split_part10(part.body)
                            sop = _uid(str(meta.MediaStorageSOPInstanceUID).rstrip("\x00 "), "SOPInstanceUID")
                            final = study_dir / series_uid / f"{sop}.dcm"
                            paths.append(final)
                            if final.exists():
                                present += 1
                            else:
                                size += _write_atomically(final, [part.body])
                                fetched += 1
                    parser.close()
                except MultipartError as exc:
                    raise TransientError(f"WADO-RS answer cut short or malformed: {exc}") from exc
        return paths, fetched, present, size

    def fetch_headers(
        self, orthanc_study_id: str, *, series_instance_uids: Collection[str] | None = None
    ) -> list[Dataset]:
        """Header datasets (no pixel data) of every instance, from one DICOMweb metadata request."""
        study_uid = self.study_instance_uid(orthanc_study_id)
        items = self._get_json(f"{self.dicomweb_root}/studies/{study_uid}/metadata", "study metadata")
        wanted = set(series_instance_uids) if series_instance_uids is not None else None
        out = []
        for item in items:
            # Bulk data (Pixel Data and other large values) stays on the server: not needed here.
            ds = Dataset.from_json(item, bulk_data_uri_handler=lambda *_args: b"")
            if "PixelData" in ds:
                del ds.PixelData
            if wanted is None or str(ds.get("SeriesInstanceUID", "")) in wanted:
                out.append(ds)
        return out


def _write_atomically(final: Path, chunks: Iterator[bytes] | list[bytes]) -> int:
    """Write to a temporary sibling, then rename: a half-written file never has the final name."""
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = final.parent / f".{uuid.uuid4().hex}.part"
    size = 0
    try:
        with open(tmp, "wb") as f:
            for chunk in chunks:
                f.write(chunk)
                size += len(chunk)
        os.replace(tmp, final)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    return size


def fetch_study(
    source: StudySource,
    dest_root: Path,
    *,
    series_instance_uids: Collection[str] | None = None,
    method: FetchMethod = "rest",
    auth: tuple[str, str] | None = None,
    timeout_s: float = 60.0,
) -> FetchedStudy:
    """One call for the worker: ``StudySource(kind="orthanc")`` → files under ``dest_root``."""
    with OrthancSource.for_source(source, auth=auth, timeout_s=timeout_s) as orthanc:
        assert source.orthanc_study_id is not None  # checked by for_source
        return orthanc.fetch_study(
            source.orthanc_study_id, dest_root, series_instance_uids=series_instance_uids, method=method
        )
