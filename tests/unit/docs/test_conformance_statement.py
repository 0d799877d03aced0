"""docs/conformance-statement.md against the code's own tables, so the statement cannot go stale.

Every table of the statement that is preceded by a ``<!-- table: NAME -->`` comment is parsed here
and compared with what the code does: its constants (SOP classes, transfer syntaxes, DIMSE
statuses, association rejections, settings and their defaults, result kinds), and, where the
truth is what goes over the wire or into a file, the real thing — the real Storage SCP
negotiating with a real pynetdicom requestor, the real SCU sending real result objects to a
recording pynetdicom peer, and result objects encoded from a small CT. When a later change adds a
result kind, a SOP class, a status, a parameter or changes what the results carry, a test here
fails and its message says which row of which table to add or change.

Built-in result kinds are the rows of dicom_node/result_kinds.py whose builder lives in
``dicom_node``: a plugin's or a test's own kind (tests/unit/test_extending.py registers one in
the same process) is not part of the product this statement describes.
"""

from __future__ import annotations

import copy
import inspect
import re
import threading
import tomllib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pydantic
import pydicom
import pytest
from pydantic_core import PydanticUndefined
from pydicom.dataset import Dataset
from pydicom.uid import PYDICOM_IMPLEMENTATION_UID, UID, ExplicitVRBigEndian
from pynetdicom import AE, evt
from pynetdicom.presentation import DEFAULT_TRANSFER_SYNTAXES

import dicom_node.ingest.connections as connections
import dicom_node.ingest.peers as peers
import dicom_node.ingest.stow as stow
import dicom_node.ingest.validation as validation
from dicom_node.constants import (
    CT_IMAGE_STORAGE,
    DERIVED_SOP_CLASSES,
    INPUT_SOP_CLASSES,
    STUDY_ROOT_QR_FIND,
    VERIFICATION,
)
from dicom_node.contracts import ResultFile
from dicom_node.delivery.cfind import confirm_cfind
from dicom_node.delivery.cstore import echo_destination, send_cstore
from dicom_node.delivery.outcome import OutcomeKind, classify_dimse_status, classify_http_status
from dicom_node.errors import IngestError, PermanentError
from dicom_node.ingest.receive import IMPLEMENTATION_VERSION_NAME
from dicom_node.ingest.scp import StoreSCP
from dicom_node.ingest.sop_classes import ACCEPTED_TRANSFER_SYNTAXES, STORAGE_SOP_CLASSES
from dicom_node.result_kinds import ResultKind, known_roles, result_kind
from dicom_node.results.bundle import encode_results
from dicom_node.settings import (
    DestinationBase,
    DicomDestinationSettings,
    DicomSettings,
    DicomwebDestinationSettings,
    FolderDestinationSettings,
    Settings,
    StorageSettings,
)
from tests.support.processes import free_port
from tests.unit.dicom_node.results.cases import JOB_ID, UID_ROOT, WHEN, analysis, make_case

REPO = Path(__file__).resolve().parents[3]
DOC = REPO / "docs" / "conformance-statement.md"
WHERE = "docs/conformance-statement.md"

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

_MARKER = re.compile(r"<!-- table: ([a-z0-9-]+) -->")
_UID = re.compile(r"\d+(?:\.\d+)+")
_STATUS = re.compile(r"0x[0-9A-Fa-f]{4}")


# ---------------------------------------------------------------------------------------------
# Reading the statement
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Table:
    name: str
    columns: tuple[str, ...]
    rows: tuple[dict[str, str], ...]

    def where(self) -> str:
        return f"{WHERE}, table {self.name!r}"

    def column(self, name: str) -> list[str]:
        return [row[name] for row in self.rows]


def _cells(line: str) -> list[str]:
    return [cell.strip() for cell in line.strip().strip("|").split("|")]


def read_tables(text: str) -> dict[str, Table]:
    """Each ``<!-- table: NAME -->`` marker and the markdown table right after it."""
    lines = text.splitlines()
    tables: dict[str, Table] = {}
    for number, line in enumerate(lines):
        marker = _MARKER.fullmatch(line.strip())
        if marker is None:
            continue
        name = marker.group(1)
        assert name not in tables, f"{WHERE}: two tables named {name!r}"
        at = number + 1
        while at < len(lines) and not lines[at].strip():
            at += 1
        block: list[str] = []
        while at < len(lines) and lines[at].lstrip().startswith("|"):
            block.append(lines[at])
            at += 1
        assert len(block) >= 2, f"{WHERE}:{number + 1}: no markdown table after the {name!r} marker"
        columns = tuple(_cells(block[0]))
        rows = []
        for row_line in block[2:]:
            cells = _cells(row_line)
            assert len(cells) == len(columns), f"{WHERE}: table {name!r}, row {row_line!r}: wrong cell count"
            rows.append(dict(zip(columns, cells, strict=True)))
        tables[name] = Table(name, columns, tuple(rows))
    return tables


def plain(cell: str) -> str:
    """A cell without markdown code ticks."""
    return cell.replace("`", "").strip()


def uid_in(cell: str) -> str:
    found = _UID.findall(plain(cell))
    assert len(found) == 1, f"expected one UID in {cell!r}"
    return found[0]


def uids_in(cell: str) -> list[str]:
    return _UID.findall(plain(cell))


def yes(cell: str) -> bool:
    value = plain(cell).lower()
    assert value in ("yes", "no"), f"expected Yes or No, got {cell!r}"
    return value == "yes"


def leading_int(cell: str) -> int:
    match = re.match(r"\s*(\d+)", plain(cell))
    assert match, f"expected a number first in {cell!r}"
    return int(match.group(1))


def statuses_in(cell: str) -> list[int]:
    """Every 0xNNNN in a cell; a range ``0xA700–0xA7FF`` gives both ends."""
    return [int(code, 16) for code in _STATUS.findall(cell)]


def markdown_row(*cells: object) -> str:
    return "| " + " | ".join(str(c) for c in cells) + " |"


@pytest.fixture(scope="module")
def doc_text() -> str:
    return DOC.read_text(encoding="utf-8")


@pytest.fixture(scope="module")
def tables(doc_text: str) -> dict[str, Table]:
    return read_tables(doc_text)


def sop_class_name(uid: str) -> str:
    """PS3.6's name as pydicom spells it (the UID itself where pydicom does not know it)."""
    name = UID(uid).name
    return "Label Map Segmentation Storage" if name == uid and uid.endswith(".66.7") else name


# ---------------------------------------------------------------------------------------------
# What the code says
# ---------------------------------------------------------------------------------------------


def builtin_kinds() -> list[ResultKind]:
    """The product's rows of the result-kind table, in build order (see the module docstring)."""
    kinds = [result_kind(role) for role in known_roles()]
    return [kind for kind in kinds if kind.builder.startswith("dicom_node.")]


def scu_sop_classes() -> set[str]:
    """Every SOP class the node requests as an SCU."""
    return {VERIFICATION, STUDY_ROOT_QR_FIND} | {kind.sop_class_uid for kind in builtin_kinds()}


def scp_sop_classes() -> set[str]:
    return set(STORAGE_SOP_CLASSES) | {VERIFICATION}


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


# ---------------------------------------------------------------------------------------------
# 4.2.1: the real SCP negotiates what the statement says
# ---------------------------------------------------------------------------------------------

_NOT_ACCEPTED = "1.2.840.10008.5.1.4.1.1.4"  # MR Image Storage: a control the SCP must reject


@pytest.fixture
def scp(tmp_path: Path) -> Iterator[StoreSCP]:
    settings = Settings(storage=StorageSettings(root=tmp_path / "var", min_free_bytes=0))
    node = StoreSCP(settings, on_instance=lambda stored: None, on_association_released=lambda s: None, port=0)
    node.start()
    try:
        yield node
    finally:
        node.stop()


def _preference_contexts(abstract_syntax: str, preference: Sequence[str]) -> list[tuple[str, list[str]]]:
    """Context k offers syntaxes k..n of ``preference`` in reverse order: an acceptor that prefers
    its own order takes syntax k for context k."""
    return [(abstract_syntax, list(reversed(preference[k:]))) for k in range(len(preference))]


def test_the_scp_accepts_and_prefers_what_the_statement_says(
    scp: StoreSCP, tables: dict[str, Table], doc_text: str
) -> None:
    storage_order = [uid_in(row["UID"]) for row in tables["scp-transfer-syntaxes"].rows]
    echo_order = [uid_in(row["UID"]) for row in tables["scp-verification-transfer-syntaxes"].rows]
    documented_classes = [uid_in(row["SOP Class UID"]) for row in tables["scp-sop-classes"].rows]
    proposed: list[tuple[str, list[str]]] = []
    proposed += _preference_contexts(CT_IMAGE_STORAGE, storage_order)
    proposed += _preference_contexts(VERIFICATION, echo_order)
    every_class = sorted(set(documented_classes) | scp_sop_classes() | {_NOT_ACCEPTED})
    proposed += [(uid, storage_order if uid != VERIFICATION else echo_order) for uid in every_class]
    # Each syntax the statement leaves out, offered alone, must be refused.
    known = [*ACCEPTED_TRANSFER_SYNTAXES, *DEFAULT_TRANSFER_SYNTAXES, ExplicitVRBigEndian]
    left_out = [
        (abstract_syntax, str(syntax), what)
        for abstract_syntax, order, what in (
            (CT_IMAGE_STORAGE, storage_order, "scp-transfer-syntaxes"),
            (VERIFICATION, echo_order, "scp-verification-transfer-syntaxes"),
        )
        for syntax in dict.fromkeys(str(s) for s in known)
        if syntax not in order
    ]
    proposed += [(abstract_syntax, [syntax]) for abstract_syntax, syntax, _ in left_out]
    assert len(proposed) <= 128

    ae = AE(ae_title="STORESCU")  # allowed from loopback by the default settings
    for abstract_syntax, syntaxes in proposed:
        ae.add_requested_context(abstract_syntax, syntaxes)
    assert scp.port is not None
    assoc = ae.associate("127.0.0.1", scp.port, ae_title=scp.settings.dicom.ae_title)
    try:
        assert assoc.is_established, "the SCP refused the association"
        accepted = {cx.context_id: cx for cx in assoc.accepted_contexts}
        rejected = {cx.context_id for cx in assoc.rejected_contexts}
        acceptor = assoc.acceptor
        implementation = (str(acceptor.implementation_class_uid), str(acceptor.implementation_version_name))
        max_pdu = acceptor.maximum_length
    finally:
        if assoc.is_established:
            assoc.release()
        ae.shutdown()

    def outcome(index: int) -> str | None:  # pynetdicom numbers contexts 1, 3, 5, ...
        context = accepted.get(2 * index + 1)
        if context is None:
            assert 2 * index + 1 in rejected
            return None
        return str(context.transfer_syntax[0])

    index = 0
    for order, what in (
        (storage_order, "scp-transfer-syntaxes"),
        (echo_order, "scp-verification-transfer-syntaxes"),
    ):
        for k, expected in enumerate(order):
            got = outcome(index)
            assert got == expected, (
                f"{WHERE}, table {what!r}: offered syntaxes {k + 1}..{len(order)}, the SCP chose {got} "
                f"where the statement says preference {k + 1} is {expected}"
            )
            index += 1
    for uid in every_class:
        got = outcome(index)
        index += 1
        if uid in documented_classes:
            assert got is not None, f"{WHERE}, table 'scp-sop-classes': the SCP rejected {uid}"
        else:
            assert got is None, f"{WHERE}, table 'scp-sop-classes': the SCP accepts {uid}: add its row"

    for abstract_syntax, syntax, what in left_out:
        got = outcome(index)
        index += 1
        assert got is None, (
            f"{WHERE}, table {what!r}: the SCP accepts {UID(syntax).name} ({syntax}) for "
            f"{sop_class_name(abstract_syntax)}: add its row"
        )

    pdu = re.search(r"<!-- max-pdu-received -->(\d+)", doc_text)
    assert pdu, f"{WHERE}: no '<!-- max-pdu-received -->' marker (4.2.1.2)"
    assert int(pdu.group(1)) == max_pdu == DicomSettings().max_pdu_bytes, (
        f"{WHERE}, 4.2.1.2: the SCP advertises a maximum PDU of {max_pdu}"
    )
    row = _implementation_row(tables, "DICOM associations")
    assert implementation == (
        uid_in(row["Implementation Class UID"]),
        plain(row["Implementation Version Name"]),
    ), f"{WHERE}, table 'implementation-identification': the SCP says {implementation}"


def _implementation_row(tables: dict[str, Table], where: str) -> dict[str, str]:
    table = tables["implementation-identification"]
    rows = [row for row in table.rows if plain(row["Where"]).startswith(where)]
    assert len(rows) == 1, f"{table.where()}: one row starting {where!r} expected"
    return rows[0]


def test_staged_files_identify_the_implementation(tables: dict[str, Table]) -> None:
    row = _implementation_row(tables, "File Meta of staged received files")
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


@dataclass
class RecordingPeer:
    """A pynetdicom peer that accepts everything and records what each association proposed."""

    port: int
    proposals: list[dict[str, list[str]]] = field(default_factory=list)
    implementations: list[tuple[str, str, int]] = field(default_factory=list)
    stored: dict[str, set[str]] = field(default_factory=dict)  # series UID -> SOP Instance UIDs
    lock: threading.Lock = field(default_factory=threading.Lock)

    def on_requested(self, event: Any) -> None:
        requestor = event.assoc.requestor
        contexts = {
            str(cx.abstract_syntax): [str(ts) for ts in cx.transfer_syntax]
            for cx in requestor.requested_contexts
        }
        with self.lock:
            self.proposals.append(contexts)
            self.implementations.append(
                (
                    str(requestor.implementation_class_uid),
                    str(requestor.implementation_version_name),
                    int(requestor.maximum_length),
                )
            )

    def on_store(self, event: Any) -> int:
        ds = event.dataset
        with self.lock:
            self.stored.setdefault(str(ds.SeriesInstanceUID), set()).add(str(ds.SOPInstanceUID))
        return 0x0000

    def on_find(self, event: Any) -> Iterator[tuple[int, Dataset | None]]:
        series = str(event.identifier.SeriesInstanceUID)
        with self.lock:
            found = sorted(self.stored.get(series, set()))
        for uid in found:
            match = Dataset()
            match.QueryRetrieveLevel = "IMAGE"
            match.SOPInstanceUID = uid
            yield 0xFF00, match


@pytest.fixture
def recording_peer() -> Iterator[RecordingPeer]:
    peer = RecordingPeer(port=free_port())
    ae = AE(ae_title="PACS")
    every = sorted(set(STORAGE_SOP_CLASSES) | scu_sop_classes())
    for uid in every:
        ae.add_supported_context(
            uid,
            [
                "1.2.840.10008.1.2.1",
                "1.2.840.10008.1.2",
                "1.2.840.10008.1.2.1.99",
                "1.2.840.10008.1.2.2",
            ],
        )
    server = ae.start_server(
        ("127.0.0.1", peer.port),
        block=False,
        evt_handlers=[
            (evt.EVT_REQUESTED, peer.on_requested),
            (evt.EVT_C_STORE, peer.on_store),
            (evt.EVT_C_FIND, peer.on_find),
        ],
    )
    try:
        yield peer
    finally:
        server.shutdown()


def test_the_scu_proposes_what_the_statement_says(
    recording_peer: RecordingPeer, encoded: Encoded, tables: dict[str, Table], doc_text: str
) -> None:
    table = tables["scu-presentation-contexts"]
    documented = {
        uid_in(row["UID"]): uids_in(row["Transfer Syntaxes proposed (in order)"]) for row in table.rows
    }
    for uid in sorted(scu_sop_classes() - set(documented)):
        hint = markdown_row(sop_class_name(uid), f"`{uid}`", "<syntaxes>", "SCU", "None", "<what for>")
        pytest.fail(f"{table.where()}: the SCU requests {uid}; add:\n{hint}")
    stale = set(documented) - scu_sop_classes()
    assert not stale, f"{table.where()}: the SCU never requests {sorted(stale)}: remove"

    dest = DicomDestinationSettings(ae_title="PACS", host="127.0.0.1", port=recording_peer.port, timeout_s=10)
    files = list(encoded.files)
    result = send_cstore(files, dest, calling_ae_title="CTAINODE")
    assert not result.failed, result.failed
    confirmed, detail = confirm_cfind(
        files, dest, calling_ae_title="CTAINODE", study_instance_uid=encoded.study_instance_uid
    )
    assert confirmed, detail
    health = echo_destination(dest, calling_ae_title="CTAINODE")
    assert health.ok, health.detail

    store_proposal, find_proposal, echo_proposal = recording_peer.proposals
    assert set(store_proposal) == {f.sop_class_uid for f in files}
    assert set(find_proposal) == {STUDY_ROOT_QR_FIND}
    assert set(echo_proposal) == {VERIFICATION}
    for proposal in (store_proposal, find_proposal, echo_proposal):
        for uid, syntaxes in proposal.items():
            assert documented[uid] == syntaxes, (
                f"{table.where()}: for {sop_class_name(uid)} the SCU proposes, in order, "
                f"{' '.join(f'`{s}`' for s in syntaxes)}"
            )
    row = _implementation_row(tables, "DICOM associations")
    pdu = re.search(r"<!-- scu-max-pdu-received -->(\d+)", doc_text)
    assert pdu, f"{WHERE}: no '<!-- scu-max-pdu-received -->' marker (4.2.2.2)"
    for uid, version, max_pdu in recording_peer.implementations:
        assert (uid, version) == (
            uid_in(row["Implementation Class UID"]),
            plain(row["Implementation Version Name"]),
        )
        assert max_pdu == int(pdu.group(1)), (
            f"{WHERE}, 4.2.2.2: the SCU advertises a maximum PDU of {max_pdu}"
        )


# ---------------------------------------------------------------------------------------------
# 8.1.1: result kinds and the objects they write
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Encoded:
    study_instance_uid: str
    files: tuple[ResultFile, ...]


def _encode(tmp: Path, *, character_set: str | None = "keep", summary: str | None = None) -> Encoded:
    case = make_case(tmp, geometry="axial", shape=(7, 24, 32))
    sources = [copy.deepcopy(ds) for ds in case.sources]
    for ds in sources:
        if character_set is None:
            if "SpecificCharacterSet" in ds:
                del ds.SpecificCharacterSet
        elif character_set != "keep":
            ds.SpecificCharacterSet = character_set
    result = analysis(case)
    if summary is not None:
        result = result.model_copy(update={"summary": summary})
    study = str(sources[0].StudyInstanceUID)
    bundle = encode_results(
        job_id=JOB_ID,
        study_instance_uid=study,
        sources=sources,
        labelmap=case.labelmap,
        analysis=result,
        out_dir=tmp / "out",
        uid_root=UID_ROOT,
        manufacturer="ct-ai-node",
        roles=[kind.role for kind in builtin_kinds()],
        hu=case.hu,
        content_datetime=WHEN,
    )
    return Encoded(study, bundle.files)


@pytest.fixture(scope="module")
def encoded(tmp_path_factory: pytest.TempPathFactory) -> Encoded:
    return _encode(tmp_path_factory.mktemp("conformance"))


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


def test_written_objects_match_the_result_kinds_table(encoded: Encoded, tables: dict[str, Table]) -> None:
    table = tables["result-kinds"]
    rows = {plain(row["Role"]): row for row in table.rows}
    implementation = _implementation_row(tables, "File Meta of result files")
    written: dict[str, int] = {}
    for f in encoded.files:
        written[f.role] = written.get(f.role, 0) + 1
        row = rows[f.role]
        ds = pydicom.dcmread(f.path, stop_before_pixels=True)
        assert ds.SOPClassUID == uid_in(row["SOP Class UID"])
        assert ds.Modality == plain(row["Modality"]), (
            f"{table.where()}: {f.role} writes Modality {ds.Modality}"
        )
        assert int(ds.SeriesNumber) == leading_int(row["Series Number"])
        syntax = UID(ds.file_meta.TransferSyntaxUID).name
        assert syntax == plain(row["Transfer Syntax"]), f"{table.where()}: {f.role} is written in {syntax}"
        meta = (str(ds.file_meta.ImplementationClassUID), str(ds.file_meta.ImplementationVersionName))
        assert meta == (
            uid_in(implementation["Implementation Class UID"]),
            plain(implementation["Implementation Version Name"]),
        ), f"{WHERE}, table 'implementation-identification': result files carry {meta}"
    for role, count in written.items():
        if plain(rows[role]["Instances per job"]) == "1":
            assert count == 1, f"{table.where()}: {role} wrote {count} instances"
    assert {"seg", "sr", "gsps"} <= set(written), "the test case should produce the default objects"


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
# 6: character sets
# ---------------------------------------------------------------------------------------------

MINUS_TEXT = "\u2212874 HU"  # what the node's descriptions write: a typographic minus


def _source_character_set(cell: str) -> str | None:
    value = plain(cell)
    if value == "(absent)":
        return None
    if value == "(empty)":
        return ""
    return value


def _texts(items: Sequence[Dataset]) -> Iterator[str]:
    for item in items:
        if item.get("ValueType") == "TEXT":
            yield str(item.TextValue)
        yield from _texts(item.get("ContentSequence", []))


def test_character_set_rows_cover_the_cases(tables: dict[str, Table]) -> None:
    table = tables["character-sets"]
    sources = {plain(cell) for cell in table.column("Source (0008,0005)")}
    assert {"(absent)", "ISO_IR 100", "ISO_IR 192", "(empty)"} <= sources, f"{table.where()}: rows missing"


# pydicom warns when it replaces a character: that replacement is what the table records.
@pytest.mark.filterwarnings("ignore:Failed to encode value:UserWarning")
def test_results_carry_the_character_sets_the_statement_says(
    tmp_path: Path, tables: dict[str, Table]
) -> None:
    table = tables["character-sets"]
    for number, row in enumerate(table.rows):
        source = _source_character_set(row["Source (0008,0005)"])
        expected = plain(row["Results' (0008,0005)"])
        shown = plain(row['"\u2212874 HU" in SR text reads back as'])
        try:
            encoded = _encode(tmp_path / f"row{number}", character_set=source, summary=MINUS_TEXT)
        except PermanentError as exc:
            assert expected.startswith("(encoding fails"), (
                f"{table.where()}: a source (0008,0005) of {source!r} now fails encoding ({exc}); "
                f"the row says {expected!r}"
            )
            continue
        assert not expected.startswith("(encoding fails"), (
            f"{table.where()}: a source (0008,0005) of {source!r} now encodes: update the row and section 6"
        )
        for f in encoded.files:
            ds = pydicom.dcmread(f.path, stop_before_pixels=True)
            carried = ds.get("SpecificCharacterSet")
            written = (
                "(absent)"
                if carried is None
                else "\\".join(carried)
                if isinstance(carried, list)
                else carried
            )
            assert written == expected, (
                f"{table.where()}: with a source (0008,0005) of {source!r}, {f.role} carries {written!r}, "
                f"not {expected!r}: update the row and section 6"
            )
            if f.role == "sr":
                texts = [t for t in _texts(ds.ContentSequence) if "874 HU" in t]
                assert texts == [shown], (
                    f"{table.where()}: with a source (0008,0005) of {source!r} the SR's text reads "
                    f"{texts}, not {shown!r}: update the row and section 6"
                )


# ---------------------------------------------------------------------------------------------
# 4.4.2: configuration parameters
# ---------------------------------------------------------------------------------------------

_KINDS: dict[str, type[DestinationBase]] = {
    "dicom": DicomDestinationSettings,
    "dicomweb": DicomwebDestinationSettings,
    "folder": FolderDestinationSettings,
}


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
