"""The one answer to "is this object one of our results (or a result like ours)?".

Asked in three places that must agree: the SCP (may this instance start work?), routing's
manifest (which series are input?) and the Orthanc plugin's feedback-loop guard (does this study
change only because our results landed in it?). An object is a result, never input, when

1. its SOP class is a derived class (SEG, SR, KOS, presentation state, Secondary Capture,
   encapsulated PDF, parametric map: :func:`dicom_node.constants.is_derived_sop_class`) — ours or
   another AI node's; or
2. it carries this node's Manufacturer, compared without case or padding (every object the node
   writes does; an input CT never does, the synthetic studies included); or
3. its Series or SOP Instance UID lies under this node's UID root — except when that root is
   pydicom's shared default (1.2.826.0.1.3680043.8.498.), under which every pydicom-made UID in
   the world lies; sites should set their own registered root.

Input is then a CT class (:data:`dicom_node.constants.INPUT_SOP_CLASSES`) that is not a result.
"""

from __future__ import annotations

from dataclasses import dataclass

from pydicom.uid import PYDICOM_ROOT_UID

from dicom_node.constants import INPUT_SOP_CLASSES, is_derived_sop_class


@dataclass(frozen=True)
class NodeIdentity:
    """What marks the node's own objects: its UID root and its Manufacturer."""

    uid_root: str
    manufacturer: str

    @property
    def root_identifies_node(self) -> bool:
        """False for pydicom's shared root (and an empty one): no UID-root test is possible."""
        return bool(self.uid_root.strip(".")) and self.uid_root.rstrip(".") != PYDICOM_ROOT_UID.rstrip(".")


def _with_dot(uid_root: str) -> str:
    return uid_root if uid_root.endswith(".") else uid_root + "."


def node_result_reason(
    *,
    sop_class_uid: str,
    series_instance_uid: str = "",
    sop_instance_uid: str = "",
    manufacturer: str = "",
    identity: NodeIdentity,
) -> str | None:
    """Why this object is a result and never input (see the module docstring), or None."""
    if is_derived_sop_class(sop_class_uid):
        return f"derived object (SOP class {sop_class_uid})"
    if identity.manufacturer and manufacturer.strip().casefold() == identity.manufacturer.strip().casefold():
        return f"Manufacturer is this node's ({identity.manufacturer})"
    if identity.root_identifies_node:
        root = _with_dot(identity.uid_root)
        if series_instance_uid.startswith(root) or sop_instance_uid.startswith(root):
            return f"UID under this node's root {root}"
    return None


def is_node_result(
    *,
    sop_class_uid: str,
    series_instance_uid: str = "",
    sop_instance_uid: str = "",
    manufacturer: str = "",
    identity: NodeIdentity,
) -> bool:
    return (
        node_result_reason(
            sop_class_uid=sop_class_uid,
            series_instance_uid=series_instance_uid,
            sop_instance_uid=sop_instance_uid,
            manufacturer=manufacturer,
            identity=identity,
        )
        is not None
    )


def is_input(
    *,
    sop_class_uid: str,
    series_instance_uid: str = "",
    sop_instance_uid: str = "",
    manufacturer: str = "",
    identity: NodeIdentity,
) -> bool:
    """True when this instance may start work: a CT input class and not a result."""
    return sop_class_uid in INPUT_SOP_CLASSES and not is_node_result(
        sop_class_uid=sop_class_uid,
        series_instance_uid=series_instance_uid,
        sop_instance_uid=sop_instance_uid,
        manufacturer=manufacturer,
        identity=identity,
    )
