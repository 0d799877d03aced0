from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from dicom_node.jobs import JobStore


@pytest.fixture
def store_url(tmp_path: Path) -> str:
    """A fresh SQLite job store file (the embedded default backend)."""
    return f"sqlite:///{tmp_path / 'jobs.sqlite'}"


@pytest.fixture
def store(store_url: str) -> Iterator[JobStore]:
    with JobStore.open(store_url) as opened:
        yield opened
