"""The statement, read once per session."""

from __future__ import annotations

import pytest

from tests.unit.docs.statement import DOC, Table, read_tables


@pytest.fixture(scope="session")
def doc_text() -> str:
    return DOC.read_text(encoding="utf-8")


@pytest.fixture(scope="session")
def tables(doc_text: str) -> dict[str, Table]:
    return read_tables(doc_text)
