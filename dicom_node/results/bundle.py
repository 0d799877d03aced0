"""Encode a job's results: the requested kinds of :mod:`dicom_node.result_kinds`, in table order.

Each row of the table names a builder (``seg.encode_binary_seg``, ``sr.encode_sr``, ...); this
module checks the inputs once, gives every builder the same frozen :class:`EncodeInputs`, times it,
and turns an encoding failure into a :class:`PermanentError` naming the kind. A builder with nothing
to show raises :class:`SkipKind` and the skip is logged with its reason.

Identity (architecture guide, "Identity and idempotency"): every UID the objects carry — series,
SOP instances, segment tracking UIDs, the SEG's dimension organization, the SR observer and group
tracking UIDs — is ``derived_uid(uid_root, job_id, key)``, so re-encoding a job re-creates the
same UIDs and a PACS never shows a duplicate series. Content/series/instance-creation date and time
come from ``content_datetime``: pass the job's creation time (the worker does) and a re-encode is
byte-identical; left out, it is the time of encoding, and only those attributes differ. Each kind
is its own role, hence its own UIDs: the BINARY SEG is "seg", the LABELMAP SEG "seg-labelmap", the
SR with volumetric groups "sr", the viewer-safe planar-only SR "sr-planar".
"""

from __future__ import annotations

import importlib
import logging
import time
from collections.abc import Collection, Sequence
from datetime import datetime
from pathlib import Path
from typing import cast

import numpy as np
from pydicom.dataset import Dataset

from dicom_node.contracts import AnalysisResult, ResultBundle, ResultFile
from dicom_node.errors import PermanentError
from dicom_node.identity import derived_uid
from dicom_node.result_kinds import ResultKind, in_build_order
from dicom_node.results.carried import clean_sources
from dicom_node.results.charset import declared, initial_character_set
from dicom_node.results.inputs import AlgorithmIdentity, EncodeInputs, KindBuilder, SkipKind
from dicom_node.results.labels import as_label_map, label_stats
from dicom_node.results.sources import source_volume

logger = logging.getLogger(__name__)

# What a builder raises when the inputs cannot make a valid object (pydicom/highdicom validation).
_ENCODING_ERRORS = (ValueError, TypeError, KeyError, AttributeError, IndexError)


def builder_for(kind: ResultKind) -> KindBuilder:
    """The builder a table row names ("module:function"), imported on first use."""
    module_name, _, attribute = kind.builder.partition(":")
    return cast(KindBuilder, getattr(importlib.import_module(module_name), attribute))


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
    roles: Collection[str],
    hu: np.ndarray | None = None,
    content_datetime: datetime | None = None,
) -> ResultBundle:
    """Write the requested result kinds (``roles``) for one job; see the module docstring.

    ``sources`` are the CT headers in the label map's slice order (``[slice, row, column]``, sorted
    along the slice normal); ``hu`` (the same volume in HU) is needed only by the overlay images.
    Raises :class:`PermanentError` when the inputs do not fit together or an object cannot be
    encoded.
    """
    if not roles:
        raise PermanentError("no result objects requested")
    try:
        kinds = in_build_order(roles)
    except KeyError as exc:
        raise PermanentError(str(exc.args[0])) from exc
    if sources and str(sources[0].StudyInstanceUID) != study_instance_uid:
        raise PermanentError("the source images belong to another study than the job")
    needing_hu = [k.title for k in kinds if k.needs_hu]
    if needing_hu and (hu is None or hu.shape != np.shape(labelmap)):
        shape = "none" if hu is None else str(hu.shape)
        raise PermanentError(
            f"{', '.join(needing_hu)} needs the HU volume of the label map's shape "
            f"{np.shape(labelmap)} (got {shape})"
        )
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    character_set = initial_character_set(sources[0]) if sources else None
    source_character_set = declared(sources[0].get("SpecificCharacterSet")) if sources else ()
    # Builders see cleaned copies of the headers: what a result carries over from its source is
    # valid even when the source is not (results.carried).
    sources = clean_sources(sources)

    n_labels = max((s.segment_number for s in analysis.segments), default=0)
    try:
        labelmap = as_label_map(labelmap)
        stats = label_stats(
            labelmap, n_labels, {s.segment_number: s.contains for s in analysis.segments if s.contains}
        )
    except ValueError as exc:
        raise PermanentError(f"label map does not match the described segments: {exc}") from exc
    inputs = EncodeInputs(
        job_id=job_id,
        study_instance_uid=study_instance_uid,
        sources=sources,
        labelmap=labelmap,
        stats=stats,
        volume=source_volume(sources, labelmap.shape),
        analysis=analysis,
        algorithm=AlgorithmIdentity(
            name=analysis.algorithm_name, version=analysis.algorithm_version, family=analysis.algorithm_family
        ),
        uid_root=uid_root,
        manufacturer=manufacturer,
        out_dir=out_dir,
        content_datetime=content_datetime or datetime.now(),
        tracking_uids={
            s.segment_number: derived_uid(uid_root, job_id, f"segment-{s.segment_number}-tracking")
            for s in analysis.segments
        },
        hu=hu,
        character_set=character_set,
        source_character_set=source_character_set,
    )

    files: list[ResultFile] = []
    timings: dict[str, float] = {}
    skipped: dict[str, str] = {}
    for kind in kinds:
        started = time.perf_counter()
        try:
            written = builder_for(kind)(inputs, kind, tuple(files))
        except SkipKind as skip:
            skipped[kind.role] = str(skip)
            continue
        except _ENCODING_ERRORS as exc:
            raise PermanentError(f"{kind.title} encoding failed: {exc}") from exc
        files.extend(written)
        timings[kind.role] = round(time.perf_counter() - started, 3)

    logger.info(
        "results encoded",
        extra={"job_id": job_id, "files": len(files), "timings_s": timings, "skipped": skipped},
    )
    return ResultBundle(
        job_id=job_id, study_instance_uid=study_instance_uid, files=tuple(files), summary=analysis.summary
    )
