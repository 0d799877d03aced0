"""Feedback-loop guard: recognise the node's own objects and never route them as input.

Results stored back into the study they came from change it, and Orthanc fires STABLE_STUDY for
it again (dicom-notes.md: a plugin without a guard reprocessed its own output six times in 25 s).
Two layers stop that here; a third sits downstream:

1. :class:`NodeResultClassifier` applies the check the SCP and routing apply too
   (:func:`dicom_node.node_results.node_result_reason`: derived SOP classes, the node's
   Manufacturer, UIDs under the node's own root; input is a CT class that is none of these), so
   SEG, SR, PR, SC and KO objects are never input, whichever path they arrived by. When Orthanc has
   no SOP class for an instance the Modality decides.
2. :func:`decide` submits a study only when its set of *routable* SOP Instance UIDs differs from
   the set last submitted for it: a re-stable study whose only new instances are node results is
   skipped, and so is an event repeated for an unchanged study.
3. The routing side derives the job id from the SOP set (dicom_node.identity), so a duplicate
   that slips through still makes no second job.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass

from dicom_node.constants import INPUT_SOP_CLASSES
from dicom_node.identity import sop_set_digest
from dicom_node.node_results import NodeIdentity, node_result_reason

# Only used when Orthanc knows no SOP class for a series' instances.
INPUT_MODALITIES: frozenset[str] = frozenset({"CT"})


@dataclass(frozen=True)
class NodeResultClassifier:
    """Decides whether a series is the node's own output (or otherwise never CT input)."""

    uid_root: str
    manufacturer: str

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
        identity = NodeIdentity(uid_root=self.uid_root, manufacturer=self.manufacturer)
        if not sop_class_uid:
            # Orthanc knows no SOP class: the node's Manufacturer, then the Modality decide.
            ours = node_result_reason(sop_class_uid="", manufacturer=manufacturer, identity=identity)
            if ours is not None:
                return ours
            normalised = modality.strip().upper()
            return None if normalised in INPUT_MODALITIES else f"modality {normalised or '(none)'}"
        for sop_instance_uid in sop_instance_uids or ("",):
            reason = node_result_reason(
                sop_class_uid=sop_class_uid,
                series_instance_uid=series_instance_uid,
                sop_instance_uid=sop_instance_uid,
                manufacturer=manufacturer,
                identity=identity,
            )
            if reason is not None:
                return reason
        if sop_class_uid not in INPUT_SOP_CLASSES:
            return f"SOP class {sop_class_uid} is not CT input"
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
