"""Dispatch markers: atomic JSON round trip; a damaged marker reads as none."""

from __future__ import annotations

from pathlib import Path

import pytest

from dicom_node.assembly.markers import DispatchMarker, MarkerStore
from dicom_node.identity import sop_set_digest


def marker() -> DispatchMarker:
    return DispatchMarker(
        study_instance_uid="1.2.3",
        dispatch_count=2,
        dispatched_at=1_800_000_100.5,
        reason="association-released",
        calling_ae_title="CT1",
        called_ae_title="CTAINODE",
        first_received_at=1_800_000_000.0,
        last_received_at=1_800_000_090.0,
        series={"1.2.3.1": ("1.2.3.1.2", "1.2.3.1.1"), "1.2.3.2": ("1.2.3.2.1",)},
        expected={"1.2.3.1": 2},
    )


def test_round_trip(tmp_path: Path) -> None:
    store = MarkerStore(tmp_path)
    store.write(marker())
    back = store.read("1.2.3")
    assert back is not None
    assert back.sop_instance_uids == {"1.2.3.1.1", "1.2.3.1.2", "1.2.3.2.1"}
    assert back.sop_set_digest == sop_set_digest(["1.2.3.1.1", "1.2.3.1.2", "1.2.3.2.1"])
    assert (back.dispatch_count, back.reason, back.expected) == (2, "association-released", {"1.2.3.1": 2})
    assert [p.name for p in tmp_path.iterdir()] == ["1.2.3.json"]  # no temp file left


def test_missing_and_damaged_markers_read_as_none(tmp_path: Path) -> None:
    store = MarkerStore(tmp_path)
    assert store.read("1.2.3") is None
    (tmp_path / "1.2.3.json").write_text("{not json")
    assert store.read("1.2.3") is None
    assert store.read("../etc/passwd") is None


def test_non_uid_names_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        MarkerStore(tmp_path).path("../../x")
