"""What every result builder gets, and how a builder hands back what it wrote.

A builder (the ``builder`` of a row in :mod:`dicom_node.result_kinds`) is a function::

    def encode_something(
        inputs: EncodeInputs, kind: ResultKind, earlier: Sequence[ResultFile]
    ) -> list[ResultFile]: ...

It writes its object(s) under ``inputs.out_dir`` (with :func:`save_dataset` or
:func:`atomic_write`, so a reader never sees half a file), names every UID with
``inputs.uid(...)`` (deterministic: a re-run writes the same objects), and returns the files, or
raises :class:`SkipKind` with the reason when there is nothing for it to show. ``earlier`` are the
files the rows above it wrote for this job (the SR finds the SEG it references there).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import BinaryIO, Protocol

import numpy as np
from pydicom.dataset import Dataset

from dicom_node.contracts import AnalysisResult, CodedConcept, ResultFile
from dicom_node.identity import derived_uid
from dicom_node.result_kinds import ResultKind
from dicom_node.results.charset import declare_character_set
from dicom_node.results.explicit_vr import write_file
from dicom_node.results.labels import LabelStats
from dicom_node.results.sources import SourceVolume


class SkipKind(Exception):
    """A builder has nothing to write for this job (e.g. no finding to annotate); ``str`` says why."""


@dataclass(frozen=True)
class AlgorithmIdentity:
    """Segmentation/observer algorithm identification (PS3.3 C.8.20.2, Table 10-19)."""

    name: str
    version: str
    family: CodedConcept


@dataclass(frozen=True)
class EncodeInputs:
    """Everything a builder may need for one job, checked once by the encoder."""

    job_id: str
    study_instance_uid: str
    sources: Sequence[Dataset]  # CT headers in label-map slice order (sorted along the normal)
    labelmap: np.ndarray  # [slice, row, column], values = SEG segment numbers (0 = background)
    stats: LabelStats  # per-segment boxes and voxel counts of ``labelmap``
    volume: SourceVolume  # geometry of ``sources``
    analysis: AnalysisResult
    algorithm: AlgorithmIdentity
    uid_root: str
    manufacturer: str
    out_dir: Path
    content_datetime: datetime  # the job's creation time: a re-encode is byte-identical
    tracking_uids: Mapping[int, str]  # segment number -> Tracking UID (SEG and SR agree)
    hu: np.ndarray | None = None  # the CT in HU, same shape as labelmap (overlay images)
    # What highdicom is told to declare (results.charset.initial_character_set of the source);
    # save_dataset settles the final (0008,0005) from the text the object holds.
    character_set: str | None = None
    # the source's (0008,0005) values as declared (results.charset.declared): preferred when it
    # encodes everything an object holds (save_dataset)
    source_character_set: tuple[str, ...] = ()

    def uid(self, key: str) -> str:
        """The UID for ``key`` (e.g. "seg-instance") in this job: same job, same UID."""
        return derived_uid(self.uid_root, self.job_id, key)

    @property
    def title(self) -> str:
        """ "<algorithm> <version>", as series descriptions show it."""
        return f"{self.analysis.algorithm_name} {self.analysis.algorithm_version}"

    def series_description(self, kind: ResultKind) -> str:
        return f"{kind.series_label} - {self.title}"

    @property
    def has_annotations(self) -> bool:
        """True when something can be drawn: a finding, a snippet or a non-empty segment."""
        return bool(self.analysis.findings or self.analysis.snippets) or any(
            self.stats.voxel_count(s.segment_number) for s in self.analysis.segments
        )


class KindBuilder(Protocol):
    def __call__(
        self, inputs: EncodeInputs, kind: ResultKind, earlier: Sequence[ResultFile]
    ) -> list[ResultFile]: ...


def atomic_write(path: Path, write: Callable[[BinaryIO], None]) -> None:
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


def result_file(role: str, path: Path, ds: Dataset) -> ResultFile:
    return ResultFile(
        role=role,
        path=str(path),
        sop_class_uid=str(ds.SOPClassUID),
        sop_instance_uid=str(ds.SOPInstanceUID),
        series_instance_uid=str(ds.SeriesInstanceUID),
        transfer_syntax_uid=str(ds.file_meta.TransferSyntaxUID),
    )


def save_dataset(
    kind: ResultKind, ds: Dataset, path: Path, *, source_character_set: tuple[str, ...] = ()
) -> ResultFile:
    """Write ``ds`` atomically (Part 10) and describe it for the bundle; its Specific Character Set
    is settled first so that every character it holds is encoded (results.charset), the source's
    own set first when it can."""
    declare_character_set(ds, source_character_set)
    atomic_write(path, lambda out: write_file(out, ds))
    return result_file(kind.role, path, ds)
