"""docs/conformance-statement.md against the code's own tables, so the statement cannot go stale.

The tables of the statement (tests/unit/docs/statement.py reads them) compared with the code's
constants and settings: the PS3.2 sections, the SOP classes as SCP and SCU, the transfer syntaxes
in order of preference, the association rejections and DIMSE statuses ingest answers, the STOW-RS
statuses, how the SCU and the user agent classify answers, the result-kind table, the IHE AIR
table and every configuration parameter with its default. When a later change adds a result
kind, a SOP class, a status or a parameter, a test here fails and says which row to add.
(test_conformance_on_the_wire.py checks what goes over the wire and into the result files.)
"""

from __future__ import annotations

import inspect
import re
import tomllib
import typing

import pydantic
import pytest
from pydantic import Tag
from pydantic_core import PydanticUndefined
from pydicom.uid import PYDICOM_IMPLEMENTATION_UID, UID

import dicom_node.ingest.connections as connections
import dicom_node.ingest.peers as peers
import dicom_node.ingest.stow as stow
import dicom_node.ingest.validation as validation
from dicom_node.constants import (
    DERIVED_SOP_CLASSES,
    INPUT_SOP_CLASSES,
    VERIFICATION,
)
from dicom_node.delivery.outcome import OutcomeKind, classify_dimse_status, classify_http_status
from dicom_node.errors import IngestError
from dicom_node.ingest.receive import IMPLEMENTATION_VERSION_NAME
from dicom_node.ingest.sop_classes import ACCEPTED_TRANSFER_SYNTAXES, STORAGE_SOP_CLASSES
from dicom_node.settings import (
    DestinationBase,
    DestinationSettings,
    Settings,
)
from tests.unit.docs.statement import (
    REPO,
    WHERE,
    Table,
    builtin_kinds,
    implementation_row,
    leading_int,
    markdown_row,
    plain,
    scp_sop_classes,
    scu_sop_classes,
    sop_class_name,
    statuses_in,
    uid_in,
    yes,
)

# The tables the statement must have (PS3.2 Annex A structure plus DICOMweb and IHE AIR).
TABLES = frozenset(
    {
        "network-services",
        "scp-sop-classes",
        "implementation-identification",
        "association-rejections",
        "scp-transfer-syntaxes",
        "scp-verification-transfer-syntaxes",
        "cstore-scp-statuses",
        "scu-presentation-contexts",
        "cstore-scu-status-handling",
        "stow-rs-origin-server-http",
        "stow-rs-failure-reasons",
        "stow-rs-user-agent-http",
        "configuration-parameters",
        "character-sets",
        "result-kinds",
        "ihe-air",
    }
)

# PS3.2 Annex A sections (the brief's numbering), in order.
SECTIONS = (
    "## 1 Conformance Statement Overview",
    "## 2 Table of Contents",
    "## 3 Introduction",
    "### 3.1 Revision History",
    "### 3.2 Audience",
    "### 3.3 Remarks",
    "### 3.4 Terms and Definitions",
    "### 3.6 Abbreviations",
    "### 3.7 References",
    "## 4 Networking",
    "### 4.1 Implementation Model",
    "#### 4.1.1 Application Data Flow",
    "#### 4.1.2 Functional Definition of AEs",
    "#### 4.1.3 Sequencing of Real-World Activities",
    "### 4.2 AE Specifications",
    "##### 4.2.1.1 SOP Classes",
    "##### 4.2.1.2 Association Policies",
    "##### 4.2.1.3 Association Initiation Policy",
    "##### 4.2.1.4 Association Acceptance Policy",
    "##### 4.2.2.3 Association Initiation Policy",
    "#### 4.2.3 STOW-RS origin server (ingest over the web)",
    "#### 4.2.4 DICOMweb user agent (delivery over the web)",
    "### 4.3 Network Interfaces",
    "### 4.4 Configuration",
    "#### 4.4.1 AE Title/Presentation Address Mapping",
    "#### 4.4.2 Parameters",
    "## 5 Media Interchange",
    "## 6 Support of Character Sets",
    "## 7 Security",
    "## 8 Annexes",
    "#### 8.1.1 Created SOP Instances",
    "#### 8.1.2 Usage of Attributes from Received IODs",
    "#### 8.1.3 Attribute Mapping",
    "#### 8.1.4 Coerced/Modified Fields",
    "### 8.2 Data Dictionary of Private Attributes",
    "### 8.3 Coded Terminology and Templates",
    "### 8.4 Grayscale Image Consistency",
    "### 8.5 Standard Extended / Specialized / Private SOP Classes",
    "### 8.6 Private Transfer Syntaxes",
    "## 9 IHE AI Results (AIR)",
)


def ingest_statuses() -> dict[int, str]:
    """Every DIMSE status ingest can answer: validation's STATUS_* constants and the default
    status of every IngestError class (dicom_node/errors.py), with where it comes from."""
    found: dict[int, str] = {}
    for name, value in vars(validation).items():
        if name.startswith("STATUS_") and isinstance(value, int):
            found.setdefault(value, f"dicom_node.ingest.validation.{name}")
    pending: list[type[IngestError]] = [IngestError]
    while pending:
        cls = pending.pop()
        found.setdefault(cls.status, f"dicom_node.errors.{cls.__name__}")
        pending.extend(cls.__subclasses__())
    return found


# ---------------------------------------------------------------------------------------------
# Structure
# ---------------------------------------------------------------------------------------------


def test_the_statement_has_the_ps3_2_sections_in_order(doc_text: str) -> None:
    headings = [line.rstrip() for line in doc_text.splitlines() if line.startswith("#")]
    positions = []
    for section in SECTIONS:
        assert section in headings, f"{WHERE}: section heading {section!r} is missing"
        positions.append(headings.index(section))
    assert positions == sorted(positions), f"{WHERE}: the PS3.2 sections are out of order"


def test_every_checked_table_is_there(tables: dict[str, Table]) -> None:
    missing = TABLES - set(tables)
    assert not missing, f"{WHERE}: tables {sorted(missing)} missing (or their '<!-- table: ... -->' marker)"
    unknown = set(tables) - TABLES
    assert not unknown, f"{WHERE}: tables {sorted(unknown)} are not checked: add them to TABLES here"


def test_product_version_is_the_package_version(doc_text: str) -> None:
    version = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["version"]
    match = re.search(r"<!-- product-version -->([^\s|]+)", doc_text)
    assert match, f"{WHERE}: no '<!-- product-version -->' marker on the cover"
    assert match.group(1) == version, (
        f"{WHERE}: product version {match.group(1)}, pyproject.toml says {version}"
    )


# ---------------------------------------------------------------------------------------------
# 1 Overview and 4.2.1.1: SOP classes
# ---------------------------------------------------------------------------------------------


def test_overview_lists_every_sop_class_with_its_roles(tables: dict[str, Table]) -> None:
    table = tables["network-services"]
    scp, scu = scp_sop_classes(), scu_sop_classes()
    rows = {uid_in(row["SOP Class UID"]): row for row in table.rows}
    for uid in sorted(scp | scu):
        if uid not in rows:
            category = "Verification" if uid == VERIFICATION else "Transfer"
            hint = markdown_row(
                category,
                sop_class_name(uid),
                f"`{uid}`",
                "Yes" if uid in scu else "No",
                "Yes" if uid in scp else "No",
            )
            pytest.fail(f"{table.where()}: no row for {sop_class_name(uid)} ({uid}); add:\n{hint}")
    for uid, row in rows.items():
        assert uid in scp | scu, f"{table.where()}: {uid} is neither accepted nor requested: remove its row"
        assert yes(row["Provider of Service (SCP)"]) == (uid in scp), (
            f"{table.where()}: {uid} SCP should be {'Yes' if uid in scp else 'No'}"
        )
        assert yes(row["User of Service (SCU)"]) == (uid in scu), (
            f"{table.where()}: {uid} SCU should be {'Yes' if uid in scu else 'No'}"
        )
        assert plain(row["SOP Class"]) == sop_class_name(uid), (
            f"{table.where()}: {uid} is named {sop_class_name(uid)!r} in PS3.6, "
            f"not {plain(row['SOP Class'])!r}"
        )


def test_scp_sop_classes_and_their_use(tables: dict[str, Table]) -> None:
    table = tables["scp-sop-classes"]
    rows = {uid_in(row["SOP Class UID"]): row for row in table.rows}
    use = {uid: "input" if uid in INPUT_SOP_CLASSES else "derived" for uid in STORAGE_SOP_CLASSES}
    use[VERIFICATION] = "connectivity check"
    for uid in sorted(set(use) - set(rows)):
        hint = markdown_row(sop_class_name(uid), f"`{uid}`", "SCP", use[uid])
        pytest.fail(f"{table.where()}: the SCP accepts {uid}; add:\n{hint}")
    for uid, row in rows.items():
        assert uid in use, f"{table.where()}: the SCP does not accept {uid} (STORAGE_SOP_CLASSES): remove it"
        assert plain(row["Use"]) == use[uid], f"{table.where()}: {uid} is {use[uid]!r}"
        assert plain(row["SOP Class"]) == sop_class_name(uid), f"{table.where()}: name of {uid}"
    assert {uid for uid, u in use.items() if u == "derived"} == set(DERIVED_SOP_CLASSES)


def test_scp_transfer_syntaxes_in_order_of_preference(tables: dict[str, Table]) -> None:
    table = tables["scp-transfer-syntaxes"]
    documented = [uid_in(row["UID"]) for row in table.rows]
    expected = [str(ts) for ts in ACCEPTED_TRANSFER_SYNTAXES]
    hint = "\n".join(markdown_row(n, UID(ts).name, f"`{ts}`", "?") for n, ts in enumerate(expected, start=1))
    assert documented == expected, f"{table.where()}: ACCEPTED_TRANSFER_SYNTAXES is, in order:\n{hint}"
    assert [leading_int(p) for p in table.column("Preference")] == list(range(1, len(expected) + 1))
    for row in table.rows:
        assert plain(row["Transfer Syntax"]) == UID(uid_in(row["UID"])).name, f"{table.where()}: {row}"


def test_staged_files_identify_the_implementation(tables: dict[str, Table]) -> None:
    row = implementation_row(tables, "File Meta of staged received files")
    assert uid_in(row["Implementation Class UID"]) == PYDICOM_IMPLEMENTATION_UID
    assert plain(row["Implementation Version Name"]) == IMPLEMENTATION_VERSION_NAME


# ---------------------------------------------------------------------------------------------
# 4.2.1.4: rejections and statuses
# ---------------------------------------------------------------------------------------------


def test_association_rejections_are_the_codes(tables: dict[str, Table]) -> None:
    table = tables["association-rejections"]
    documented = {
        (leading_int(row["Result"]), leading_int(row["Source"]), leading_int(row["Reason/Diag."]))
        for row in table.rows
    }
    sent = {
        (refusal.result, refusal.source, refusal.reason)
        for refusal in vars(connections).values()
        if isinstance(refusal, connections.Refusal)
    }
    sent |= {
        (peers.REJECTED_PERMANENT, peers.SOURCE_SERVICE_USER, reason)
        for name, reason in vars(peers).items()
        if name.startswith("REASON_")
    }
    assert documented == sent, f"{table.where()}: the SCP sends (result, source, reason) {sorted(sent)}"


def test_cstore_scp_statuses_are_every_status_ingest_answers(tables: dict[str, Table]) -> None:
    table = tables["cstore-scp-statuses"]
    documented = [code for cell in table.column("Status") for code in statuses_in(cell)]
    assert len(documented) == len(set(documented)), f"{table.where()}: a status is listed twice"
    answered = ingest_statuses()
    for code in sorted(set(answered) - set(documented)):
        hint = markdown_row(f"`0x{code:04X}`", "<meaning, PS3.4 Table B.2-1>", "<when>")
        pytest.fail(f"{table.where()}: ingest answers 0x{code:04X} ({answered[code]}); add:\n{hint}")
    stale = sorted(set(documented) - set(answered))
    assert not stale, f"{table.where()}: ingest never answers {[f'0x{c:04X}' for c in stale]}: remove"


def test_stow_failure_reasons_beyond_cstore(tables: dict[str, Table]) -> None:
    table = tables["stow-rs-failure-reasons"]
    documented = {code for cell in table.column("FailureReason") for code in statuses_in(cell)}
    used = {
        value for name, value in vars(stow).items() if name.startswith("FAILURE_") and isinstance(value, int)
    }
    assert documented == used, (
        f"{table.where()}: dicom_node/ingest/stow.py's FAILURE_* are {[f'0x{c:04X}' for c in sorted(used)]}"
    )


def test_stow_origin_server_http_statuses(tables: dict[str, Table]) -> None:
    table = tables["stow-rs-origin-server-http"]
    documented = {leading_int(cell) for cell in table.column("HTTP status")}
    source = inspect.getsource(stow)
    answered = {int(code) for code in re.findall(r"HTTP_(\d{3})_", source)}
    assert documented == answered, f"{table.where()}: dicom_node/ingest/stow.py answers {sorted(answered)}"
    stored = stow.StowOutcome("1.2", "1.2.3")
    failed = stow.StowOutcome("1.2", "1.2.4", failure_reason=0xC000)
    assert stow.stow_http_status([stored, stored]) == 200
    assert stow.stow_http_status([stored, failed]) == 202
    assert stow.stow_http_status([failed]) == 409


# ---------------------------------------------------------------------------------------------
# 4.2.2, 4.2.4: SCU and user agent
# ---------------------------------------------------------------------------------------------


def test_scu_statuses_are_classified_as_stated(tables: dict[str, Table]) -> None:
    table = tables["cstore-scu-status-handling"]
    for row in table.rows:
        outcome = plain(row["Outcome"]).split(":")[0]
        expected = OutcomeKind(outcome)
        codes: list[int | None] = list(statuses_in(row["Status"]))
        if "no response" in row["Status"]:
            codes.append(None)
        assert codes, f"{table.where()}: no status in {row['Status']!r}"
        for code in codes:
            shown = "no response" if code is None else f"0x{code:04X}"
            assert classify_dimse_status(code) == expected, (
                f"{table.where()}: {shown} is {classify_dimse_status(code).value}, not {expected.value}"
            )


def test_user_agent_http_statuses_are_classified_as_stated(tables: dict[str, Table]) -> None:
    table = tables["stow-rs-user-agent-http"]
    for row in table.rows:
        expected = OutcomeKind(plain(row["Outcome"]).split()[0])
        codes = [int(code) for code in re.findall(r"\b(\d{3})\b", plain(row["HTTP status"]))]
        assert codes, f"{table.where()}: no HTTP status in {row['HTTP status']!r}"
        for code in codes:
            assert classify_http_status(code) == expected, f"{table.where()}: HTTP {code}"


# ---------------------------------------------------------------------------------------------
# 8.1.1 and 9: result kinds
# ---------------------------------------------------------------------------------------------


def test_result_kinds_table_is_the_code_table(tables: dict[str, Table]) -> None:
    table = tables["result-kinds"]
    rows = {plain(row["Role"]): row for row in table.rows}
    kinds = builtin_kinds()
    for kind in kinds:
        if kind.role not in rows:
            hint = markdown_row(
                f"`{kind.role}`",
                kind.title,
                f"`{kind.sop_class_uid}`",
                "<Modality>",
                kind.series_number,
                "<instances per job>",
                "<Transfer Syntax>",
                f"`{kind.fallback}`" if kind.fallback else "—",
            )
            pytest.fail(
                f"{table.where()}: result kind {kind.role!r} (dicom_node/result_kinds.py) has no row; add:\n"
                f"{hint}\nand describe its IOD in 8.1.1, its SOP class in tables 'network-services' and "
                "'scu-presentation-contexts', and check section 9 (IHE AIR)"
            )
    stale = set(rows) - {kind.role for kind in kinds}
    assert not stale, f"{table.where()}: rows {sorted(stale)} are not result kinds any more: remove"
    assert list(rows) == [kind.role for kind in kinds], f"{table.where()}: rows should follow the build order"
    for kind in kinds:
        row = rows[kind.role]
        assert uid_in(row["SOP Class UID"]) == kind.sop_class_uid, f"{table.where()}: {kind.role} SOP class"
        assert leading_int(row["Series Number"]) == kind.series_number, (
            f"{table.where()}: {kind.role} is series {kind.series_number}"
        )
        fallback = plain(row["Fallback"])
        assert (None if fallback in ("—", "-", "") else fallback) == kind.fallback, (
            f"{table.where()}: {kind.role} falls back to {kind.fallback}"
        )


def test_ihe_air_says_what_is_produced(tables: dict[str, Table]) -> None:
    table = tables["ihe-air"]
    produced = {kind.sop_class_uid for kind in builtin_kinds()}
    for row in table.rows:
        if not plain(row["SOP Class UID"]):
            continue
        uid = uid_in(row["SOP Class UID"])
        assert yes(row["Produced"]) == (uid in produced), (
            f"{table.where()}: the node {'now writes' if uid in produced else 'does not write'} "
            f"{sop_class_name(uid)}: update the row {row['AIR content or behaviour']!r}"
        )


# ---------------------------------------------------------------------------------------------
# 4.4.2: configuration parameters
# ---------------------------------------------------------------------------------------------


def destination_kinds() -> dict[str, type[DestinationBase]]:
    """Every destination kind of the settings union (``kind`` tag -> settings class), so a new kind
    asks for its rows here without a test edit."""
    union = typing.get_args(DestinationSettings)[0]
    kinds: dict[str, type[DestinationBase]] = {}
    for member in typing.get_args(union):
        cls, *metadata = typing.get_args(member)
        tag = next(m.tag for m in metadata if isinstance(m, Tag))
        assert cls.model_fields["kind"].annotation == typing.Literal[tag], (
            f"{cls.__name__}: kind is not {tag!r}"
        )
        kinds[tag] = cls
    return kinds


_KINDS = destination_kinds()


def test_destination_kinds_are_read_from_the_settings() -> None:
    # the four kinds of this revision are among them (the derivation itself can fail)
    assert {"dicom", "dicomweb", "folder", "orthanc"} <= set(_KINDS)
    assert all(issubclass(cls, DestinationBase) for cls in _KINDS.values())


def _fields(model: type[pydantic.BaseModel], prefix: str) -> dict[str, pydantic.fields.FieldInfo]:
    """Every field of ``model`` by dotted name, nested sections and list items (``name[].x``) too."""
    out: dict[str, pydantic.fields.FieldInfo] = {}
    for name, info in model.model_fields.items():
        path = f"{prefix}{name}"
        annotation = info.annotation
        if isinstance(annotation, type) and issubclass(annotation, pydantic.BaseModel):
            out.update(_fields(annotation, f"{path}."))  # a section: its fields, not itself
            continue
        out[path] = info
        inner = (
            getattr(annotation, "__args__", (None,))[0]
            if getattr(annotation, "__origin__", None) is list
            else None
        )
        if isinstance(inner, type) and issubclass(inner, pydantic.BaseModel):
            out.update(_fields(inner, f"{path}[]."))
    return out


def _render_default(info: pydantic.fields.FieldInfo) -> str | None:
    """The default as the statement writes it; None when it is not a simple value."""
    if info.default_factory is not None:
        value = info.default_factory()  # type: ignore[call-arg]
    elif info.default is PydanticUndefined:
        return "(required)"
    else:
        value = info.default
    if value is None:
        return "(none)"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, int | str):
        return '""' if value == "" else str(value)
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return ", ".join(value)
    return None


def test_configuration_parameters_are_the_settings(tables: dict[str, Table]) -> None:
    table = tables["configuration-parameters"]
    node = _fields(Settings, "")
    per_kind = {kind: _fields(cls, "destinations.<name>.") for kind, cls in _KINDS.items()}
    common = set(_fields(DestinationBase, "destinations.<name>."))
    documented: set[tuple[str, str]] = set()
    for row in table.rows:
        name = plain(row["Parameter"])
        applies = plain(row["Applies to"])
        default = plain(row["Default"])
        if name.startswith("destinations.<name>."):
            kinds = list(_KINDS) if applies == "all kinds" else [k.strip() for k in applies.split(",")]
            for kind in kinds:
                assert kind in per_kind, f"{table.where()}: {name}: unknown destination kind {kind!r}"
                assert name in per_kind[kind], f"{table.where()}: {kind} destinations have no {name}"
                documented.add((name, kind))
                rendered = _render_default(per_kind[kind][name])
                if rendered is not None:
                    assert default == rendered, f"{table.where()}: {name} ({kind}) defaults to `{rendered}`"
            if applies == "all kinds":
                assert name in common, f"{table.where()}: {name} is not common to all kinds"
            continue
        assert name in node, f"{table.where()}: there is no setting {name}"
        documented.add((name, ""))
        rendered = _render_default(node[name])
        if rendered is not None:
            assert default == rendered, f"{table.where()}: {name} defaults to `{rendered}`, not `{default}`"
    for name, info in node.items():
        if name.startswith("dicom.") and (name, "") not in documented:
            hint = markdown_row(f"`{name}`", "SCP", f"`{_render_default(info)}`", "<meaning>")
            pytest.fail(f"{table.where()}: setting {name} has no row; add:\n{hint}")
    for kind, fields in per_kind.items():
        for name, info in fields.items():
            if (name, kind) not in documented:
                applies = "all kinds" if name in common else kind
                hint = markdown_row(f"`{name}`", applies, f"`{_render_default(info)}`", "<meaning>")
                pytest.fail(f"{table.where()}: {kind} destinations have {name}; add:\n{hint}")
