"""Encode a job's results: SEG, TID 1500 SR, GSPS, SC overlay, written to ``out_dir/<role>.dcm``.

Identity (architecture guide, "Identity and idempotency"): every UID the objects carry — series,
SOP instances, segment tracking UIDs, the SEG's dimension organization, the SR observer and group
tracking UIDs — is ``derived_uid(uid_root, job_id, role)``, so re-encoding a job re-creates the
same UIDs and a PACS never shows a duplicate series. Content/series/instance-creation date and time
come from ``content_datetime``: pass the job's creation time (the worker does) and a re-encode is
byte-identical; left out, it is the time of encoding, and only those attributes differ.

Variants that are different objects get different roles, hence different UIDs: the BINARY SEG is
"seg", the LABELMAP SEG "seg-labelmap" (``seg_type="both"`` writes the two, for destinations that
differ); the SR with volumetric groups is "sr", the viewer-safe planar-only SR "sr-planar".

Series numbers and descriptions are fixed so a radiologist recognises them:
901 "AI SEG - <algorithm> <version>", 902 the LABELMAP SEG, 903 "AI SR - ...", 904 "AI GSPS - ...",
905 "AI OVERLAY - NOT FOR DIAGNOSIS".
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Collection, Sequence
from datetime import datetime
from pathlib import Path
from typing import BinaryIO, Literal

import numpy as np
from pydicom.dataset import Dataset

from dicom_node.contracts import AnalysisResult, ResultBundle, ResultFile, ResultRole
from dicom_node.errors import PermanentError
from dicom_node.identity import derived_uid
from dicom_node.results.explicit_vr import write_file
from dicom_node.results.gsps import build_gsps
from dicom_node.results.labels import as_label_map, label_stats
from dicom_node.results.sc import build_sc_images
from dicom_node.results.seg import AlgorithmIdentity, SegInfo, SegType, write_seg
from dicom_node.results.sources import source_volume
from dicom_node.results.sr import SegReference, build_sr

logger = logging.getLogger(__name__)

SERIES_NUMBERS = {"seg": 901, "seg-labelmap": 902, "sr": 903, "gsps": 904, "sc": 905}
_ENCODING_ERRORS = (ValueError, TypeError, KeyError, AttributeError, IndexError)


def _atomic_write(path: Path, write: Callable[[BinaryIO], None]) -> None:
    """Write to a hidden temporary file, fsync, rename: a reader never sees half an object."""
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        with open(tmp, "wb") as out:
            write(out)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def _save(ds: Dataset, path: Path) -> None:
    _atomic_write(path, lambda out: write_file(out, ds))


def _result_file(role: ResultRole, path: Path, ds: Dataset) -> ResultFile:
    return ResultFile(
        role=role,
        path=str(path),
        sop_class_uid=str(ds.SOPClassUID),
        sop_instance_uid=str(ds.SOPInstanceUID),
        series_instance_uid=str(ds.SeriesInstanceUID),
        transfer_syntax_uid=str(ds.file_meta.TransferSyntaxUID),
    )


def encode_results(
    *,
    job_id: str,
    study_instance_uid: str,
    sources: Sequence[Dataset],
    labelmap: np.ndarray,
    analysis: AnalysisResult,
    out_dir: Path,
    uid_root: str,
    manufacturer: str,
    roles: Collection[ResultRole],
    seg_type: Literal["binary", "labelmap", "both"] = "binary",
    include_volumetric_groups: bool = True,
    hu: np.ndarray | None = None,
    content_datetime: datetime | None = None,
) -> ResultBundle:
    """Write the requested result objects for one job; see the module docstring.

    ``sources`` are the CT headers in the label map's slice order (``[slice, row, column]``, sorted
    along the slice normal); ``hu`` (the same volume in HU) is needed only for ``ResultRole.SC``.
    Raises :class:`PermanentError` when the inputs do not fit together or an object cannot be
    encoded.
    """
    roles = set(roles)
    if not roles:
        raise PermanentError("no result roles requested")
    if sources and str(sources[0].StudyInstanceUID) != study_instance_uid:
        raise PermanentError("the source images belong to another study than the job")
    if ResultRole.SC in roles and (hu is None or hu.shape != np.shape(labelmap)):
        raise PermanentError("the secondary-capture overlay needs the HU volume of the label map's shape")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    when = content_datetime or datetime.now()

    def uid(role: str) -> str:
        return derived_uid(uid_root, job_id, role)

    n_labels = max((s.segment_number for s in analysis.segments), default=0)
    try:
        labelmap = as_label_map(labelmap)
        stats = label_stats(labelmap, n_labels)
    except ValueError as exc:
        raise PermanentError(f"label map does not match the described segments: {exc}") from exc
    volume = source_volume(sources, labelmap.shape)
    tracking_uids = {s.segment_number: uid(f"segment-{s.segment_number}-tracking") for s in analysis.segments}
    title = f"{analysis.algorithm_name} {analysis.algorithm_version}"
    algorithm = AlgorithmIdentity(
        name=analysis.algorithm_name, version=analysis.algorithm_version, family=analysis.algorithm_family
    )
    files: list[ResultFile] = []
    timings: dict[str, float] = {}

    seg_reference: SegReference | None = None
    if ResultRole.SEG in roles and analysis.segments:
        variants: list[tuple[str, SegType]] = []
        if seg_type in ("binary", "both"):
            variants.append(("seg", "binary"))
        if seg_type in ("labelmap", "both"):
            variants.append(("seg-labelmap", "labelmap"))
        for role_name, variant in variants:
            started = time.perf_counter()
            path = out_dir / f"{role_name}.dcm"
            info = _write_seg_file(
                path,
                sources,
                labelmap,
                analysis,
                seg_type=variant,
                series_instance_uid=uid(f"{role_name}-series"),
                sop_instance_uid=uid(f"{role_name}-instance"),
                series_number=SERIES_NUMBERS[role_name],
                algorithm=algorithm,
                manufacturer=manufacturer,
                series_description=f"AI SEG{' LABELMAP' if variant == 'labelmap' else ''} - {title}",
                tracking_uids=tracking_uids,
                dimension_organization_uid=uid(f"{role_name}-dimension-organization"),
                content_datetime=when,
                stats=stats,
            )
            files.append(
                ResultFile(
                    role=ResultRole.SEG,
                    path=str(path),
                    sop_class_uid=info.sop_class_uid,
                    sop_instance_uid=info.sop_instance_uid,
                    series_instance_uid=info.series_instance_uid,
                    transfer_syntax_uid=info.transfer_syntax_uid,
                )
            )
            if seg_reference is None:  # the SR points at the first (BINARY when written)
                seg_reference = SegReference(
                    info.sop_class_uid, info.sop_instance_uid, info.series_instance_uid
                )
            timings[role_name] = time.perf_counter() - started

    has_annotations = bool(analysis.findings or analysis.snippets) or any(
        stats.voxel_count(s.segment_number) for s in analysis.segments
    )
    skipped: list[str] = []
    if ResultRole.SR in roles and not has_annotations and not include_volumetric_groups:
        # Nothing to draw, and a TID 1500 needs a measurement group: the only one left would have
        # no image coordinates, which OHIF 3.13 cannot show (the reason for this profile).
        skipped.append("sr (viewer-safe profile, nothing found)")
    elif ResultRole.SR in roles:
        started = time.perf_counter()
        sr_role = "sr" if include_volumetric_groups and seg_reference is not None else "sr-planar"
        try:
            sr = build_sr(
                sources,
                stats,
                analysis,
                volume=volume,
                seg=seg_reference,
                series_instance_uid=uid(f"{sr_role}-series"),
                sop_instance_uid=uid(f"{sr_role}-instance"),
                series_number=SERIES_NUMBERS["sr"],
                manufacturer=manufacturer,
                tracking_uids=tracking_uids,
                uid_for=lambda role: uid(f"{sr_role}-{role}"),
                include_volumetric_groups=include_volumetric_groups,
                series_description=f"AI SR - {title}",
                content_datetime=when,
            )
        except _ENCODING_ERRORS as exc:
            raise PermanentError(f"SR encoding failed: {exc}") from exc
        path = out_dir / "sr.dcm"
        _save(sr, path)
        files.append(_result_file(ResultRole.SR, path, sr))
        timings["sr"] = time.perf_counter() - started

    if ResultRole.GSPS in roles and not has_annotations:
        skipped.append("gsps (nothing to annotate)")
    elif ResultRole.GSPS in roles:
        started = time.perf_counter()
        try:
            gsps = build_gsps(
                sources,
                stats,
                analysis,
                volume=volume,
                series_instance_uid=uid("gsps-series"),
                sop_instance_uid=uid("gsps-instance"),
                series_number=SERIES_NUMBERS["gsps"],
                manufacturer=manufacturer,
                series_description=f"AI GSPS - {title}",
                content_datetime=when,
            )
        except _ENCODING_ERRORS as exc:
            raise PermanentError(f"GSPS encoding failed: {exc}") from exc
        path = out_dir / "gsps.dcm"
        _save(gsps, path)
        files.append(_result_file(ResultRole.GSPS, path, gsps))
        timings["gsps"] = time.perf_counter() - started

    if ResultRole.SC in roles:
        assert hu is not None
        started = time.perf_counter()
        try:
            images = build_sc_images(
                hu,
                stats,
                analysis,
                volume=volume,
                series_instance_uid=uid("sc-series"),
                sop_instance_uid_for=lambda k: uid(f"sc-instance-{k}"),
                series_number=SERIES_NUMBERS["sc"],
                manufacturer=manufacturer,
                content_datetime=when,
            )
        except _ENCODING_ERRORS as exc:
            raise PermanentError(f"secondary capture encoding failed: {exc}") from exc
        for number, image in enumerate(images, start=1):
            path = out_dir / f"sc-{number:03d}.dcm"
            _save(image, path)
            files.append(_result_file(ResultRole.SC, path, image))
        timings["sc"] = time.perf_counter() - started

    logger.info(
        "results encoded",
        extra={
            "job_id": job_id,
            "files": len(files),
            "timings_s": {k: round(v, 3) for k, v in timings.items()},
        },
    )
    return ResultBundle(
        job_id=job_id, study_instance_uid=study_instance_uid, files=tuple(files), summary=analysis.summary
    )


def _write_seg_file(
    path: Path, sources: Sequence[Dataset], labelmap: np.ndarray, analysis: AnalysisResult, **kwargs: object
) -> SegInfo:
    result: list[SegInfo] = []

    def write(out: BinaryIO) -> None:
        result.append(write_seg(out, sources, labelmap, analysis.segments, **kwargs))  # type: ignore[arg-type]

    try:
        _atomic_write(path, write)
    except _ENCODING_ERRORS as exc:
        raise PermanentError(f"SEG encoding failed: {exc}") from exc
    return result[0]
