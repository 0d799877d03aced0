"""The node's one typed settings model.

Precedence: environment variables (``CTNODE_`` prefix, ``__`` between nested names, e.g.
``CTNODE_DICOM__PORT=11113``) override the YAML file (``--config`` or ``CTNODE_CONFIG``), which
overrides the defaults below. Loaded once per entry point with :func:`load_settings` and passed
down; never a mutable global. The defaults are the embedded single-machine setup: SQLite job
store, SQLite Celery broker (kombu's SQLAlchemy transport), everything under ``./var``.
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from dicom_node.errors import ConfigError
from dicom_node.result_kinds import DEFAULT_OBJECTS, check_role


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class AllowedPeer(Section):
    """One sender allowed to associate: its calling AE title and the networks it may come from."""

    ae_title: str = Field(max_length=16)
    networks: list[str] = Field(default_factory=lambda: ["127.0.0.0/8", "::1/128"])
    # Optional per-sender quiet period (seconds), overriding completion.quiet_period_s.
    quiet_period_s: float | None = Field(default=None, gt=0)
    # True only for a sender that sends each study whole in ONE association (a modality, `ctnode
    # demo`): the end of that association then completes the study. A PACS or router that sends
    # series by series in separate associations must keep false (the quiet period decides).
    one_association_per_study: bool = False

    @field_validator("networks")
    @classmethod
    def _networks_parse(cls, value: list[str]) -> list[str]:
        for net in value:
            try:
                ipaddress.ip_network(net, strict=False)
            except ValueError as exc:
                raise ValueError(f"not an IP network: {net!r}") from exc
        return value


class TLSSettings(Section):
    enabled: bool = False
    certificate: Path | None = None
    private_key: Path | None = None
    # CA bundle to verify peers; when set, peers must present a certificate (mutual TLS).
    ca_certificates: Path | None = None

    @model_validator(mode="after")
    def _files_when_enabled(self) -> TLSSettings:
        if self.enabled and (self.certificate is None or self.private_key is None):
            raise ValueError("tls.enabled needs certificate and private_key")
        return self


class DicomSettings(Section):
    ae_title: str = Field(default="CTAINODE", max_length=16)
    host: str = "127.0.0.1"
    port: int = Field(default=11112, ge=1, le=65535)
    # Allowlist ON by default: an unknown calling AE or address is rejected at association.
    require_known_peers: bool = True
    allowed_peers: list[AllowedPeer] = Field(
        default_factory=lambda: [
            AllowedPeer(ae_title="STORESCU"),
            AllowedPeer(ae_title="CTNODE_DEMO", one_association_per_study=True),
        ]
    )
    tls: TLSSettings = Field(default_factory=TLSSettings)
    # Largest P-DATA-TF PDU we accept (PS3.8 9.3.5; advertised in the A-ASSOCIATE-AC). Bounded:
    # with "unlimited" a sender may put a whole 500 MB data set in one PDU, read into memory.
    max_pdu_bytes: int = Field(default=262_144, ge=4096, le=16 * 1024**2)
    network_timeout_s: float = Field(default=60.0, gt=0)
    # How long a new connection may stay silent before its A-ASSOCIATE-RQ (TLS handshake included)
    # is complete; then it is closed (PS3.8 9.1.5 ARTIM). Idle sockets must not hold slots.
    acse_timeout_s: float = Field(default=5.0, gt=0, le=120)
    dimse_timeout_s: float = Field(default=60.0, gt=0)
    # Open connections at once (associations, and connections not yet past their A-ASSOCIATE-RQ),
    # in all and per source address; beyond: A-ASSOCIATE-RJ transient, local-limit-exceeded.
    max_associations: int = Field(default=16, ge=1)
    max_associations_per_peer: int = Field(default=8, ge=1)
    # Largest data set accepted (C-STORE and STOW-RS); larger is refused with 0xA701, and a
    # C-STORE data set past twice this is aborted mid-transfer (disk protection).
    max_instance_bytes: int = Field(default=4 * 1024**3, ge=1024**2)
    # Largest image accepted; anything beyond is refused as "cannot understand".
    max_rows: int = 4096
    max_columns: int = 4096
    max_frames: int = 10000

    @model_validator(mode="after")
    def _association_limits_consistent(self) -> DicomSettings:
        if self.max_associations_per_peer > self.max_associations:
            raise ValueError("max_associations_per_peer must not exceed max_associations")
        return self


class StorageSettings(Section):
    root: Path = Path("var")
    # Refuse new associations/instances (0xA700) when free space on the staging disk drops below.
    min_free_bytes: int = 1 * 1024**3
    retention_days: float = 14.0

    @property
    def staging_dir(self) -> Path:
        return self.root / "staging"

    @property
    def results_dir(self) -> Path:
        return self.root / "results"


class CompletionSettings(Section):
    """When a study is complete (see dicom_node.assembly.completion for what each signal means)."""

    # A study is complete after this long with no new instance (default at most 10 s). Per sender:
    # dicom.allowed_peers[].quiet_period_s; per rule: quiet_period_s in the rules (longest wins).
    quiet_period_s: float = Field(default=8.0, gt=0, le=3600)
    # The end of an association completes a study only for senders marked
    # one_association_per_study in dicom.allowed_peers. true here treats EVERY sender so: a PACS
    # sending series by series would then have its study processed after the first series.
    association_release: bool = False
    association_release_grace_s: float = Field(default=1.0, ge=0)
    # A series with fewer instances than it announced (NumberOfSeriesRelatedInstances,
    # ImagesInAcquisition) holds its study for at least incomplete_series_quiet_s of quiet.
    expected_counts: bool = True
    incomplete_series_quiet_s: float = Field(default=60.0, gt=0, le=3600)
    # Force completion this long after the first instance, whatever else happens.
    max_age_s: float = Field(default=1800.0, gt=0)
    sweep_interval_s: float = Field(default=0.5, gt=0)


class QueueSettings(Section):
    # Embedded default: kombu's SQLAlchemy transport on SQLite; production: redis://host:6379/0
    broker_url: str = ""
    task_time_limit_s: int = 900
    task_soft_time_limit_s: int = 840
    # Quick retries of a transient failure (capped exponential backoff with jitter); a job or
    # study whose quick retries are used up is DEAD (a delivery waits, see below).
    max_retries: int = 6
    retry_backoff_base_s: float = 2.0
    retry_backoff_max_s: float = 300.0
    # A delivery whose quick retries are used up WAITS for its destination (a PACS restart,
    # maintenance) instead of dying: the serve process probes the destination (C-ECHO, QIDO-RS)
    # every destination_probe_interval_s and resumes the delivery the moment it answers, and tries
    # anyway every waiting_retry_interval_s. It is DEAD only when delivery_retry_window_s has passed
    # since its first failure (0: no window, DEAD after the quick retries).
    delivery_retry_window_s: float = Field(default=12 * 3600.0, ge=0)
    waiting_retry_interval_s: float = Field(default=600.0, gt=0)
    destination_probe_interval_s: float = Field(default=10.0, gt=0)
    # Redis only: must exceed the longest time limit, or a long task is delivered twice.
    visibility_timeout_s: int = 3600
    in_process_worker: bool = False

    @model_validator(mode="after")
    def _limits_consistent(self) -> QueueSettings:
        if self.task_soft_time_limit_s >= self.task_time_limit_s:
            raise ValueError("task_soft_time_limit_s must be below task_time_limit_s")
        if self.visibility_timeout_s <= self.task_time_limit_s:
            raise ValueError(
                "visibility_timeout_s must exceed task_time_limit_s (else Redis redelivers running tasks)"
            )
        return self


class JobStoreSettings(Section):
    # Embedded default: SQLite under storage.root; production: postgresql+psycopg2://...
    database_url: str = ""


# A result object's kind by its role in dicom_node.result_kinds ("seg", "seg-labelmap", "sr", ...).
ResultObject = Annotated[str, AfterValidator(check_role)]


class DestinationBase(Section):
    """What every destination kind has: which objects it takes and how long to wait for it.

    A kind is one settings class here (with its ``kind`` literal and the ``implementation`` that
    sends to it, "module:class" of a :class:`dicom_node.delivery.destination.Destination`) plus
    that module: see docs/extending.md.
    """

    implementation: ClassVar[str]

    # Which objects to send, by result kind (dicom_node.result_kinds): profiles for PACS that cannot
    # show SEG add "sc"; viewers that crash on volumetric SR groups take "sr-planar" instead of "sr".
    objects: list[ResultObject] = Field(default_factory=lambda: list(DEFAULT_OBJECTS))
    # Shorthand: "labelmap" sends the LABELMAP SEG where ``objects`` says "seg".
    seg_type: Literal["binary", "labelmap"] = "binary"
    timeout_s: float = Field(default=30.0, gt=0)
    # When a re-run (a late series, a re-route) supersedes results this destination already holds,
    # withdraw them: a KOS rejection note (IHE IOCM) for DICOM and DICOMweb peers, a REST delete for
    # Orthanc. false: leave them (the superseding results still say so, and the audit trail).
    withdraw_superseded: bool = True

    @property
    def roles(self) -> tuple[str, ...]:
        """``objects`` with ``seg_type`` applied: the result kinds this destination takes."""
        swap = {"seg": "seg-labelmap"} if self.seg_type == "labelmap" else {}
        return tuple(dict.fromkeys(swap.get(role, role) for role in self.objects))


class DicomDestinationSettings(DestinationBase):
    """A DICOM peer (PACS, archive, workstation): C-STORE, C-FIND query-back, C-ECHO."""

    implementation: ClassVar[str] = "dicom_node.delivery.dicom_peer:DicomPeer"

    kind: Literal["dicom"] = "dicom"
    ae_title: str = Field(default="PACS", max_length=16)
    host: str = "127.0.0.1"
    port: int = Field(default=104, ge=1, le=65535)
    tls: TLSSettings = Field(default_factory=TLSSettings)


class DicomwebDestinationSettings(DestinationBase):
    """A DICOMweb server: STOW-RS, QIDO-RS query-back and health check."""

    implementation: ClassVar[str] = "dicom_node.delivery.dicomweb:DicomwebServer"

    kind: Literal["dicomweb"]
    url: str = Field(min_length=1)  # the server's DICOMweb base URL, e.g. http://pacs/dicom-web
    # Name of an environment variable holding a bearer token; never the token itself.
    token_env: str = ""
    tls: TLSSettings = Field(default_factory=TLSSettings)


class FolderDestinationSettings(DestinationBase):
    """A folder (a local disk or a mounted share): each result object as a DICOM file under
    ``<path>/<StudyInstanceUID>/<SeriesInstanceUID>/<SOPInstanceUID>.dcm`` (research exports, file
    drops). Confirmed by reading the files back; healthy when the folder is writable."""

    implementation: ClassVar[str] = "dicom_node.delivery.folder:FolderDestination"

    kind: Literal["folder"]
    path: Path

    @field_validator("path")
    @classmethod
    def _absolute(cls, value: Path) -> Path:
        if not value.is_absolute():
            raise ValueError(f"a folder destination needs an absolute path, got {str(value)!r}")
        return value


class OrthancDestinationSettings(DestinationBase):
    """An Orthanc server through its own REST API: upload (POST /instances), confirm
    (/tools/lookup), health (/system) and withdraw superseded results (DELETE /instances/{id})."""

    implementation: ClassVar[str] = "dicom_node.delivery.orthanc:OrthancServer"

    kind: Literal["orthanc"]
    url: str = Field(min_length=1)  # Orthanc's REST root, e.g. http://127.0.0.1:8042
    # Names of environment variables holding the HTTP user and password (never the values).
    username_env: str = "CTNODE_ORTHANC_USERNAME"
    password_env: str = "CTNODE_ORTHANC_PASSWORD"  # noqa: S105 (a variable name)
    tls: TLSSettings = Field(default_factory=TLSSettings)


def _destination_kind(value: Any) -> str:
    # A destination without "kind" is a DICOM peer (the first kind, and the common case).
    if isinstance(value, Mapping):
        return str(value.get("kind", "dicom"))
    return str(getattr(value, "kind", "dicom"))


# The settings of one destination: a union discriminated on ``kind``.
DestinationSettings = Annotated[
    Annotated[DicomDestinationSettings, Tag("dicom")]
    | Annotated[DicomwebDestinationSettings, Tag("dicomweb")]
    | Annotated[FolderDestinationSettings, Tag("folder")]
    | Annotated[OrthancDestinationSettings, Tag("orthanc")],
    Discriminator(_destination_kind),
]


class ModelSettings(Section):
    # The model directory: unified-ct's checkpoint and card, and installed/<name>/ for every model
    # `ctnode model import` installed (nnU-Net, TotalSegmentator, MONAI bundles), each with its card.
    # None = the project's configs/models (or $CTNODE_MODEL_DIR). Each entry point sets it once per
    # process, so job ids (routing) and the weights a worker loads read the same cards.
    directory: Path | None = None
    # Where every torch pipeline runs: "auto" takes the GPU when there is one.
    device: Literal["auto", "cpu", "cuda"] = "auto"


class ApiSettings(Section):
    enabled: bool = True
    host: str = "127.0.0.1"
    port: int = Field(default=8990, ge=1, le=65535)
    # Environment variables holding bearer tokens; tokens never appear in files or logs.
    admin_token_env: str = "CTNODE_ADMIN_TOKEN"  # noqa: S105 (a variable name)
    viewer_token_env: str = "CTNODE_VIEWER_TOKEN"  # noqa: S105 (a variable name)
    # STOW-RS senders (a PACS or modality pushing by DICOMweb): their own token, never the admin's.
    stow_token_env: str = "CTNODE_STOW_TOKEN"  # noqa: S105 (a variable name)


class Settings(BaseSettings):
    """Everything a node process needs, validated at load."""

    model_config = SettingsConfigDict(env_prefix="CTNODE_", env_nested_delimiter="__", extra="forbid")

    node_name: str = "ct-ai-node"
    # UID root for every UID this node makes. Sites should set their own registered root; the default
    # is pydicom's, under which uniqueness comes from hashing (job id, role).
    uid_root: str = "1.2.826.0.1.3680043.8.498."
    manufacturer: str = "ct-ai-node"
    dicom: DicomSettings = Field(default_factory=DicomSettings)
    storage: StorageSettings = Field(default_factory=StorageSettings)
    completion: CompletionSettings = Field(default_factory=CompletionSettings)
    queue: QueueSettings = Field(default_factory=QueueSettings)
    jobs: JobStoreSettings = Field(default_factory=JobStoreSettings)
    destinations: dict[str, DestinationSettings] = Field(default_factory=dict)
    rules_file: Path = Path("configs/routing.yaml")
    model: ModelSettings = Field(default_factory=ModelSettings)
    api: ApiSettings = Field(default_factory=ApiSettings)
    log_level: str = "INFO"

    @field_validator("uid_root")
    @classmethod
    def _uid_root_form(cls, value: str) -> str:
        if not value.endswith("."):
            value += "."
        parts = value[:-1].split(".")
        if not all(p.isdigit() and (p == "0" or not p.startswith("0")) for p in parts):
            raise ValueError(f"not a DICOM UID root: {value!r}")
        if len(value) > 40:
            raise ValueError("uid_root longer than 40 characters leaves too little room for the suffix")
        return value

    @property
    def broker_url(self) -> str:
        return self.queue.broker_url or f"sqla+sqlite:///{(self.storage.root / 'broker.sqlite').resolve()}"

    @property
    def database_url(self) -> str:
        return self.jobs.database_url or f"sqlite:///{(self.storage.root / 'jobs.sqlite').resolve()}"

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # Env over the YAML file (passed as init kwargs) over defaults.
        return (env_settings, init_settings)


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read settings file: {exc.strerror}", location=str(path)) from exc
    try:
        data = yaml.safe_load(text) or {}
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark is not None else str(path)
        raise ConfigError(f"YAML syntax error: {getattr(exc, 'problem', exc)}", location=where) from exc
    if not isinstance(data, dict):
        raise ConfigError("top level must be a mapping", location=str(path))
    return data


def load_settings(path: str | Path | None = None, *, overrides: Mapping[str, Any] | None = None) -> Settings:
    """Load settings from ``path`` (or ``$CTNODE_CONFIG``), env vars on top; raise ConfigError.

    Relative paths inside the file (storage root, rules file, model files) are resolved against
    the file's folder's parent when the file lives in a ``configs/`` folder, else the folder
    itself, so a config works from any working directory.
    """
    chosen = path or os.environ.get("CTNODE_CONFIG")
    data: dict[str, Any] = {}
    base: Path | None = None
    if chosen:
        file = Path(chosen)
        data = _read_yaml(file)
        base = file.resolve().parent
        if base.name == "configs":
            base = base.parent
    if overrides:
        data = _deep_merge(data, dict(overrides))
    try:
        settings = Settings(**data)
    except ValidationError as exc:
        raise ConfigError(_format_validation(exc), location=str(chosen) if chosen else None) from exc
    if base is not None:
        settings = _resolve_paths(settings, base)
    return settings


def _deep_merge(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    out = dict(a)
    for key, value in b.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _deep_merge(out[key], value)
        else:
            out[key] = value
    return out


def _resolve_paths(settings: Settings, base: Path) -> Settings:
    def fix(p: Path) -> Path:
        return p if p.is_absolute() else base / p

    return settings.model_copy(
        update={
            "storage": settings.storage.model_copy(update={"root": fix(settings.storage.root)}),
            "rules_file": fix(settings.rules_file),
            "model": settings.model.model_copy(
                update={"directory": fix(settings.model.directory) if settings.model.directory else None}
            ),
        }
    )


def _format_validation(exc: ValidationError) -> str:
    lines = []
    for err in exc.errors():
        where = ".".join(str(p) for p in err["loc"])
        lines.append(f"{where}: {err['msg']}")
    return "invalid settings: " + "; ".join(lines)
