"""DICOM CT series + DICOM SEG pairs as a labelled dataset (pydicom, highdicom).

:func:`find_ct_seg_pairs` scans a folder (any layout) for SEG instances and the CT series each
references (Referenced Series Sequence, else the source images' series); :func:`read_pair` gives
the CT volume (``dicom_node.imaging.reader``) and one mask per segment on it.
:func:`write_pairs_as_nnunet` stores every pair as an nnU-Net raw case (``ctnode model
import-seg``), the layout training reads (``inference.datasets``).

A segment's name is its Segment Label when the vocabulary knows it, else its property type's
meaning (with the laterality modifier, "Left" + "Kidney"); a segment neither names is listed in
the dataset card's unknown names and not written. Case ids are hashes (``case_ids.py``); no
patient attribute is logged or written.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from dicom_node.constants import INPUT_SOP_CLASSES, LABEL_MAP_SEGMENTATION_STORAGE, SEGMENTATION_STORAGE
from dicom_node.routing.manifest import read_headers
from inference.datasets.names import NameMapping, map_names
from inference.vocabulary import lookup
from worker.datasets.case_ids import case_id_for

log = logging.getLogger(__name__)

SEG_CLASSES = frozenset({str(SEGMENTATION_STORAGE), str(LABEL_MAP_SEGMENTATION_STORAGE)})


@dataclass(frozen=True)
class CtSegPair:
    case_id: str
    ct_paths: tuple[Path, ...]
    seg_path: Path
    segment_names: tuple[str, ...]  # from the SEG's header: naming needs no pixel data


def _referenced_series(seg: Any, series_of_instance: dict[str, str]) -> set[str]:
    """The CT series a SEG was made from: its Referenced Series Sequence (Common Instance
    Reference module), else the series of its frames' source images (Derivation Image Sequence),
    which some writers fill without the former."""
    out = {str(item.SeriesInstanceUID) for item in seg.get("ReferencedSeriesSequence", [])}
    if out:
        return out
    groups = ("PerFrameFunctionalGroupsSequence", "SharedFunctionalGroupsSequence")
    for frame in (item for keyword in groups for item in seg.get(keyword, [])):
        for derivation in frame.get("DerivationImageSequence", []):
            for source in derivation.get("SourceImageSequence", []):
                series = series_of_instance.get(str(source.get("ReferencedSOPInstanceUID", "")))
                if series:
                    out.add(series)
    return out


def _segment_names(seg: Any) -> tuple[str, ...]:
    import highdicom as hd

    return tuple(
        segment_name(hd.seg.SegmentDescription.from_dataset(item)) for item in seg.get("SegmentSequence", [])
    )


def find_ct_seg_pairs(root: Path) -> list[CtSegPair]:
    """Every SEG under ``root`` whose referenced CT series is there too, one pair per SEG."""
    scan = read_headers(Path(root))
    series: dict[str, list[Path]] = defaultdict(list)
    study_of: dict[str, str] = {}
    series_of_instance: dict[str, str] = {}
    segs = []
    for ds in scan.datasets:
        sop_class = str(ds.get("SOPClassUID", ""))
        if sop_class in INPUT_SOP_CLASSES:
            series[str(ds.SeriesInstanceUID)].append(Path(ds.filename))
            study_of[str(ds.SeriesInstanceUID)] = str(ds.StudyInstanceUID)
            series_of_instance[str(ds.SOPInstanceUID)] = str(ds.SeriesInstanceUID)
        elif sop_class in SEG_CLASSES:
            segs.append(ds)
    pairs: list[CtSegPair] = []
    for seg in segs:
        refs = sorted(uid for uid in _referenced_series(seg, series_of_instance) if uid in series)
        if not refs:
            log.warning(
                "SEG whose CT series is not in the folder: skipped", extra={"file": Path(seg.filename).name}
            )
            continue
        uid = refs[0]
        case_id = case_id_for(study_of[uid], uid)
        if any(p.case_id == case_id for p in pairs):
            case_id = case_id_for(study_of[uid], f"{uid}|{seg.SOPInstanceUID}")  # two SEGs, one series
        pairs.append(CtSegPair(case_id, tuple(sorted(series[uid])), Path(seg.filename), _segment_names(seg)))
    return pairs


def segment_name(description: Any) -> str:
    """The name a segment goes by: its label if the vocabulary knows it, else its coded type."""
    label = str(getattr(description, "segment_label", "") or "")
    if label and lookup(label) is not None:
        return label
    meaning = str(description.segmented_property_type.meaning)
    modifiers = getattr(description, "segmented_property_type_modifier_codes", None) or []
    side = " ".join(str(m.meaning) for m in modifiers)
    coded = f"{side} {meaning}".strip()
    return coded if lookup(coded) is not None else (label or coded)


def read_pair(pair: CtSegPair) -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]]:
    """``(hu, affine_lps, {segment name: mask})`` with masks on the CT volume's grid."""
    import highdicom as hd

    from dicom_node.imaging.reader import load_series

    series = load_series(list(pair.ct_paths))
    seg = hd.seg.segread(pair.seg_path)
    numbers = list(seg.get_segment_numbers())
    pixels = seg.get_pixels_by_source_instance(
        source_sop_instance_uids=list(series.sop_instance_uids),
        segment_numbers=numbers,
        combine_segments=False,
        assert_missing_frames_are_empty=True,  # a slice the SEG does not cover holds nothing
    )
    masks: dict[str, np.ndarray] = {}
    for i, number in enumerate(numbers):
        name = segment_name(seg.get_segment_description(number))
        mask = np.asarray(pixels[..., i] > 0)
        masks[name] = masks[name] | mask if name in masks else mask
    return series.hu, series.affine_lps, masks


def pair_names(pairs: list[CtSegPair]) -> NameMapping:
    """How the pairs' segment names map into the vocabulary."""
    return map_names(name for pair in pairs for name in pair.segment_names)


def write_pairs_as_nnunet(root: Path, out: Path, *, progress: bool = True) -> dict[str, Any]:
    """Write every CT + SEG pair under ``root`` as an nnU-Net raw dataset with its card.

    Label values follow the vocabulary names in the order first seen (kept across runs: the
    writer reads the old dataset.json); cases already written are skipped.
    """
    import click

    from inference.datasets.card import write_dataset_card
    from inference.datasets.nnunet import NnUNetWriter, read_nnunet

    pairs = find_ct_seg_pairs(root)
    mapping = pair_names(pairs)
    info = {
        "name": Path(out).name,
        "description": "DICOM CT + SEG pairs",
        "unknown_names": list(mapping.unknown),
    }
    writer = NnUNetWriter(out, {}, info)
    written = skipped = 0
    with click.progressbar(pairs, label="CT + SEG pairs", hidden=not progress) as bar:
        for pair in bar:
            if writer.has(pair.case_id):
                skipped += 1
                continue
            hu, affine, masks = read_pair(pair)
            labelmap = np.zeros(hu.shape, dtype=np.uint8)
            for raw, mask in masks.items():
                canonical = mapping.mapped.get(raw)
                if canonical is None:
                    continue  # unknown names are listed in the card, never written as a guess
                labelmap[mask & (labelmap == 0)] = writer.label_value(canonical)
            writer.write(pair.case_id, hu, affine, labelmap, {"source": "dicom-seg"})
            written += 1
    writer.flush()
    card = write_dataset_card(read_nnunet(out), out)
    return {"written": written, "skipped": skipped, "unknown": list(mapping.unknown), "card": str(card)}
