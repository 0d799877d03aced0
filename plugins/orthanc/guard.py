"""Feedback-loop guard: recognise the node's own objects and never route them as input.

Results stored back into the study they came from change it, and Orthanc fires STABLE_STUDY for
it again (dicom-notes.md: a plugin without a guard reprocessed its own output six times in 25 s).
Two layers stop that here; a third sits downstream:

1. :class:`NodeResultClassifier` marks a series as a node result when its SOP class is one the
   node writes or that is never CT input (SEG, SR, PR, SC, KO), its Modality says so, its
   Manufacturer is the node's, or its UIDs sit under the node's own UID root.
2. :func:`decide` submits a study only when its set of *routable* SOP Instance UIDs differs from
   the set last submitted for it: a re-stable study whose only new instances are node results is
   skipped, and so is an event repeated for an unchanged study.
3. The routing side derives the job id from the SOP set (dicom_node.identity), so a duplicate
   that slips through still makes no second job.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass

from dicom_node.identity import sop_set_digest

# SOP classes that are never input to a CT model (PS3.4 B.5): what the node writes (SEG, SR, PR,
# SC) and their relatives a PACS also stores into studies (KO, other SR and PR flavours).
SEGMENTATION_STORAGE = "1.2.840.10008.5.1.4.1.1.66.4"
LABEL_MAP_SEGMENTATION_STORAGE = "1.2.840.10008.5.1.4.1.1.66.7"  # Sup 243
# Families matched by UID prefix: the family UID itself or anything below it.
NON_INPUT_SOP_CLASS_FAMILIES: tuple[str, ...] = (
    "1.2.840.10008.5.1.4.1.1.11",  # presentation states (GSPS 11.1, colour 11.2, ...)
    "1.2.840.10008.5.1.4.1.1.88",  # structured reports and key object selection (88.59)
    "1.2.840.10008.5.1.4.1.1.7",  # secondary capture (7) and multi-frame SC (7.1 ... 7.4)
)
NON_INPUT_SOP_CLASSES: frozenset[str] = frozenset(
    {
        SEGMENTATION_STORAGE,
        LABEL_MAP_SEGMENTATION_STORAGE,
        "1.2.840.10008.5.1.4.1.1.66",  # raw data
        "1.2.840.10008.5.1.4.1.1.66.5",  # surface segmentation
        "1.2.840.10008.5.1.4.1.1.104.1",  # encapsulated PDF
    }
)
NON_INPUT_MODALITIES: frozenset[str] = frozenset({"SEG", "SR", "PR", "KO", "DOC", "REG", "RTSTRUCT"})

# pydicom's generate_uid() root: every pydicom user (test generators, research tools, anonymisers)
# makes UIDs under it, so for this root a UID prefix proves nothing about who made the object.
PYDICOM_UID_ROOT = "1.2.826.0.1.3680043.8.498."


def is_non_input_sop_class(sop_class_uid: str) -> bool:
    if sop_class_uid in NON_INPUT_SOP_CLASSES:
        return True
    return any(sop_class_uid == f or sop_class_uid.startswith(f + ".") for f in NON_INPUT_SOP_CLASS_FAMILIES)


@dataclass(frozen=True)
class NodeResultClassifier:
    """Decides whether a series is the node's own output (or otherwise never CT input)."""

    uid_root: str
    manufacturer: str

    def _under_own_root(self, uid: str) -> bool:
        # The shared pydicom root cannot tell our objects from anyone's (see PYDICOM_UID_ROOT).
        return bool(uid) and self.uid_root != PYDICOM_UID_ROOT and uid.startswith(self.uid_root)

    def reason(
        self,
        *,
        sop_class_uid: str,
        modality: str,
        manufacturer: str,
        series_instance_uid: str,
        sop_instance_uids: Collection[str] = (),
    ) -> str | None:
        """Why the series is not input (a short phrase for logs), or None when it is input."""
        if sop_class_uid and is_non_input_sop_class(sop_class_uid):
            return f"SOP class {sop_class_uid}"
        if modality.strip().upper() in NON_INPUT_MODALITIES:
            return f"modality {modality.strip().upper()}"
        if self.manufacturer and manufacturer.strip().casefold() == self.manufacturer.strip().casefold():
            return "manufacturer is this node"
        if self._under_own_root(series_instance_uid) or any(
            self._under_own_root(u) for u in sop_instance_uids
        ):
            return "UID under the node's UID root"
        return None


@dataclass(frozen=True)
class GuardDecision:
    submit: bool
    reason: str
    sop_set_digest: str


def decide(
    routable_sop_instance_uids: Collection[str], *, node_result_count: int, previous_digest: str | None
) -> GuardDecision:
    """Submit when there is routable input and it differs from what was last submitted."""
    digest = sop_set_digest(routable_sop_instance_uids)
    if not routable_sop_instance_uids:
        return GuardDecision(
            False, f"no routable instances ({node_result_count} node results or non-input)", digest
        )
    if previous_digest == digest:
        detail = (
            f"{node_result_count} node results/non-input beside them" if node_result_count else "no change"
        )
        return GuardDecision(False, f"routable instances unchanged since last submission ({detail})", digest)
    if previous_digest is None:
        return GuardDecision(True, f"{len(routable_sop_instance_uids)} routable instances", digest)
    return GuardDecision(
        True, f"routable instance set changed ({len(routable_sop_instance_uids)} now): late images", digest
    )
