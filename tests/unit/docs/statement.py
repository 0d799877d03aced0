"""Reading docs/conformance-statement.md: its marked tables, and the code's side of them.

Every table of the statement preceded by a ``<!-- table: NAME -->`` comment is machine-checked by
the tests beside this module (test_conformance_statement.py against the code's constants and
settings, test_conformance_on_the_wire.py against real associations and real result objects).

Built-in result kinds are the rows of dicom_node/result_kinds.py whose builder lives in
``dicom_node``: a plugin's or a test's own kind (tests/unit/test_extending.py registers one in
the same process) is not part of the product the statement describes.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from pydicom.uid import UID

from dicom_node.constants import (
    STUDY_ROOT_QR_FIND,
    VERIFICATION,
)
from dicom_node.ingest.sop_classes import STORAGE_SOP_CLASSES
from dicom_node.result_kinds import ResultKind, known_roles, result_kind

REPO = Path(__file__).resolve().parents[3]
DOC = REPO / "docs" / "conformance-statement.md"
WHERE = "docs/conformance-statement.md"

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


def implementation_row(tables: dict[str, Table], where: str) -> dict[str, str]:
    table = tables["implementation-identification"]
    rows = [row for row in table.rows if plain(row["Where"]).startswith(where)]
    assert len(rows) == 1, f"{table.where()}: one row starting {where!r} expected"
    return rows[0]


RESULT_FILES = "File Meta of result files"


def result_file_implementation_row(tables: dict[str, Table], role: str) -> dict[str, str]:
    """The implementation-identification row for the result files of ``role``: the row starting
    "File Meta of result files" that names the role in backticks, else the one naming no role."""
    table = tables["implementation-identification"]
    rows = [row for row in table.rows if plain(row["Where"]).startswith(RESULT_FILES)]
    named = [row for row in rows if role in re.findall(r"`([^`]+)`", row["Where"])]
    generic = [row for row in rows if not re.findall(r"`([^`]+)`", row["Where"])]
    assert len(generic) == 1, f"{table.where()}: one row {RESULT_FILES!r} naming no result kind expected"
    assert len(named) <= 1, f"{table.where()}: result kind {role!r} is named in {len(named)} rows"
    return named[0] if named else generic[0]
