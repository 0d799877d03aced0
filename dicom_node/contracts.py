"""The hand-offs between stages: small frozen pydantic models, JSON-serialisable.

Stages (ingest, assembly, routing, imaging, results, delivery) import this module, never each
other. Celery messages carry these as JSON (``model_dump(mode="json")``): references, never pixels.

Geometry convention used across the node (and by ``inference``): a volume is a numpy array indexed
``[slice, row, column]``; its 4×4 affine maps ``(slice, row, column, 1)`` to patient coordinates in
LPS millimetres (DICOM's patient coordinate system, PS3.3 C.7.6.2.1.1), exactly as highdicom's
``Volume`` does. Slices are ordered by increasing position along the slice normal.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator

from dicom_node.constants import LABEL_MAP_SEGMENTATION_STORAGE

# ResultRole is re-exported: the built-in role names live with the table of kinds.
from dicom_node.result_kinds import ResultRole as ResultRole
from dicom_node.result_kinds import check_role


class Contract(BaseModel):
    """Base for hand-offs: immutable, no unknown fields, JSON round-trip safe."""

    model_config = ConfigDict(frozen=True, extra="forbid")


# ---------------------------------------------------------------------------------------------
# Receive
# ---------------------------------------------------------------------------------------------


class StudySource(Contract):
    """Where a study's instances can be read from."""

    kind: Literal["staging", "orthanc"]
    # kind == "staging": the study folder staging/<StudyInstanceUID>/
    staging_path: str | None = None
    # kind == "orthanc": Orthanc's REST root and its study ID (not the DICOM UID)
    orthanc_url: str | None = None
    orthanc_study_id: str | None = None


class InstanceStored(Contract):
    """One SOP Instance durably staged (after fsync + rename)."""

    study_instance_uid: str
    series_instance_uid: str
    sop_instance_uid: str
    sop_class_uid: str
    path: str
    calling_ae_title: str
    called_ae_title: str
    peer_address: str
    association_id: str
    received_at: datetime
    # True when this SOP Instance UID was already staged: no new work may follow from it.
    duplicate: bool = False
    # Derived objects (SEG/SR/PR/SC, or anything carrying this node's UID root) are stored but
    # never routed as input (the Orthanc feedback loop, dicom-notes.md).
    routable: bool = True
    # Expected number of instances in this series where the sender says so (e.g. ImagesInAcquisition).
    expected_series_instances: int | None = None


class CompletionReason(StrEnum):
    QUIET_PERIOD = "quiet-period"
    ASSOCIATION_RELEASED = "association-released"
    EXPECTED_COUNT = "expected-instance-count"
    MAX_AGE = "forced-max-age"
    ORTHANC_STABLE = "orthanc-stable-study"
    STOW_REQUEST = "stow-request-complete"
    MANUAL = "manual"


class StudyStable(Contract):
    """A study judged complete, with the signal that decided it."""

    study_instance_uid: str
    source: StudySource
    reason: CompletionReason
    reason_detail: str = ""
    calling_ae_title: str = ""
    called_ae_title: str = ""
    instance_count: int
    first_received_at: datetime
    last_received_at: datetime
    stable_at: datetime


# ---------------------------------------------------------------------------------------------
# Decide
# ---------------------------------------------------------------------------------------------


class SetAsideInstance(Contract):
    """An instance filed in a series it does not belong to (a Secondary Capture or another
    node's result inside a CT series, an object of another SOP class): left out of the series'
    instances and volume, and why (dicom_node.routing.manifest)."""

    sop_instance_uid: str
    sop_class_uid: str
    reason: str


class SeriesManifest(Contract):
    """Header facts about one series (no pixels), what routing rules look at."""

    series_instance_uid: str
    modality: str
    sop_class_uid: str
    series_number: int | None = None
    series_description: str = ""
    body_part_examined: str = ""
    slice_thickness_mm: float | None = None
    image_count: int
    # SOP Instance UIDs in slice order (by position along the slice normal where known).
    sop_instance_uids: tuple[str, ...]
    # True for objects this node made (its UID root or algorithm identification): never input.
    is_node_result: bool = False
    # Instances left out of ``sop_instance_uids`` / ``image_count`` (and the volume), with why.
    set_aside: tuple[SetAsideInstance, ...] = ()
    # Other top-level attributes of the first instance, by DICOM keyword, as strings. Patient
    # identifiers are left out (see dicom_node.phi).
    attributes: dict[str, str] = Field(default_factory=dict)


class StudyManifest(Contract):
    study_instance_uid: str
    calling_ae_title: str = ""
    called_ae_title: str = ""
    source: StudySource
    completion_reason: CompletionReason | None = None
    series: tuple[SeriesManifest, ...]


class Priority(StrEnum):
    STAT = "stat"
    ROUTINE = "routine"


class LateSeriesPolicy(StrEnum):
    RERUN = "rerun"  # a new job; its results supersede the earlier series
    IGNORE = "ignore"  # keep the first job's results; late images make no work


class RouteMatch(Contract):
    """One rule that fired on a study, with the series it selected and why."""

    rule_name: str
    rule_line: int | None = None
    pipeline: str
    prompts: tuple[str, ...] = ()
    priority: Priority = Priority.ROUTINE
    destinations: tuple[str, ...] = ()
    series_instance_uids: tuple[str, ...]
    late_series: LateSeriesPolicy = LateSeriesPolicy.RERUN
    shadow: bool = False
    reasons: tuple[str, ...] = ()


class RuleMiss(Contract):
    """A rule that did not fire, with the first condition that failed (for `rules test`)."""

    rule_name: str
    rule_line: int | None = None
    reasons: tuple[str, ...]


# ---------------------------------------------------------------------------------------------
# Compute
# ---------------------------------------------------------------------------------------------


class JobState(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    ENCODED = "encoded"
    DELIVERING = "delivering"
    DELIVERED = "delivered"
    FAILED = "failed"
    DEAD = "dead"
    SKIPPED = "skipped"
    SUPERSEDED = "superseded"


class Job(Contract):
    """One pipeline run on a selection of series; ``job_id`` is deterministic (see identity)."""

    job_id: str
    study_instance_uid: str
    series_instance_uids: tuple[str, ...]
    sop_set_digest: str
    # The instances the job computes on (sop_set_digest is theirs): the series' input instances as
    # routing saw them, without objects set aside (e.g. a Secondary Capture filed in the series).
    # Empty in jobs stored before it existed: then every instance in the series folder is read.
    sop_instance_uids: tuple[str, ...] = ()
    pipeline: str
    model_version: str
    ruleset_digest: str
    rule_name: str
    prompts: tuple[str, ...] = ()
    priority: Priority = Priority.ROUTINE
    destinations: tuple[str, ...] = ()
    shadow: bool = False
    source: StudySource
    calling_ae_title: str = ""
    created_at: datetime


class CodedConcept(Contract):
    """A code triplet, e.g. SNOMED CT ("10200004", "SCT", "Liver")."""

    value: str
    scheme_designator: str
    meaning: str


class SegmentDescription(Contract):
    """One segment of a SEG, with its coded category and type (PS3.3 C.8.20.2)."""

    segment_number: int  # 1-based, equals the label value in the label map
    label: str
    category: CodedConcept
    type: CodedConcept
    tracking_id: str
    color_rgb: tuple[int, int, int] | None = None
    description: str = ""
    # Segmented Property Type Modifier (laterality, CID 244), nested in the type item (C.8.20.2)
    type_modifier: CodedConcept | None = None
    # The algorithm that produced this segment when it is not the analysis' own (a composed
    # answer of several models): Segment Algorithm Name/Version (PS3.3 C.8.20.2, Table 10-19).
    algorithm_name: str = ""
    algorithm_version: str = ""
    # Segment numbers of the structures lying inside this one (the lungs, bone and airway inside
    # the body): their voxels belong to this segment too. The label map holds one label per voxel,
    # so this is how a BINARY SEG gets the whole body without holes where the bone is, and how the
    # volume in the SR, its text and the GSPS caption count the same voxels (issue 12 item 11).
    contains: tuple[int, ...] = ()
    # A whole-body or scattered structure (body, bone, both lungs, the vertebral column): reported
    # by its figures (volume, HU), never drawn as a region or box in the SR or GSPS (issue 14).
    diffuse: bool = False


class SegmentMeasurement(Contract):
    segment_number: int
    volume_ml: float
    mean_hu: float
    std_hu: float
    voxel_count: int
    # inclusive voxel bounds [slice, row, column] and LPS-mm bounds of the segment
    bbox_voxels: tuple[int, int, int, int, int, int]
    bbox_lps_mm: tuple[float, float, float, float, float, float]


class BoxFinding(Contract):
    """A detection (e.g. a lesion) as a 3D box, drawn on its key slice."""

    label: str
    text: str
    score: float
    category: CodedConcept
    type: CodedConcept
    # inclusive voxel bounds [slice0, row0, col0, slice1, row1, col1] in the sorted volume
    box_voxels: tuple[int, int, int, int, int, int]
    key_slice_index: int
    size_mm: tuple[float, float, float]
    volume_ml: float | None = None
    mean_hu: float | None = None
    finding_site: CodedConcept | None = None
    segment_number: int | None = None
    algorithm_name: str = ""  # as SegmentDescription: empty = the analysis' own algorithm
    algorithm_version: str = ""


class SnippetLocation(Contract):
    """A report snippet localised to a slice."""

    text: str
    slice_index: int
    z_mm: float
    point_lps_mm: tuple[float, float, float]
    score: float


class AnalysisResult(Contract):
    """What a pipeline found, in voxel/mm terms plus codes; the label map travels beside it."""

    job_id: str
    algorithm_name: str
    algorithm_version: str
    algorithm_family: CodedConcept
    segments: tuple[SegmentDescription, ...] = ()
    measurements: tuple[SegmentMeasurement, ...] = ()
    findings: tuple[BoxFinding, ...] = ()
    snippets: tuple[SnippetLocation, ...] = ()
    # One line per structure/finding, grounded in the measurements (goes into the SR as TEXT).
    descriptions: tuple[str, ...] = ()
    summary: str = ""
    # A research-grade model (not a classical, rule-based method): summaries say "not for diagnosis".
    research_grade: bool = True
    # file with the label map (npz, key "labelmap", [slice,row,column] uint8/uint16)
    labelmap_path: str | None = None
    timings_s: dict[str, float] = Field(default_factory=dict)


# ---------------------------------------------------------------------------------------------
# Return
# ---------------------------------------------------------------------------------------------


# A result object's kind, by its role name in the table of kinds (dicom_node.result_kinds).
RoleName = Annotated[str, AfterValidator(check_role)]


class ResultFile(Contract):
    role: RoleName
    path: str
    sop_class_uid: str
    sop_instance_uid: str
    series_instance_uid: str
    transfer_syntax_uid: str

    @model_validator(mode="before")
    @classmethod
    def _labelmap_seg_has_its_own_role(cls, data: Any) -> Any:
        # Bundles stored before label-map SEG had its own role called it "seg": read them as now.
        if (
            isinstance(data, dict)
            and data.get("role") == ResultRole.SEG
            and data.get("sop_class_uid") == LABEL_MAP_SEGMENTATION_STORAGE
        ):
            return {**data, "role": ResultRole.SEG_LABELMAP}
        return data


class ResultBundle(Contract):
    job_id: str
    study_instance_uid: str
    files: tuple[ResultFile, ...]
    summary: str = ""


class DeliveryReport(Contract):
    job_id: str
    destination: str
    delivered_sop_instance_uids: tuple[str, ...] = ()
    failed: dict[str, str] = Field(default_factory=dict)  # SOP Instance UID -> reason
    # SOP Instance UID -> warning (e.g. C-STORE 0xB000 coercion): delivered, with a remark
    warnings: dict[str, str] = Field(default_factory=dict)
    confirmed: bool = False  # storage commitment or query-back found every object
    confirmation_detail: str = ""
    attempts: int = 1
    finished_at: datetime
