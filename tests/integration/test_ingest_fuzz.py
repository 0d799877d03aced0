"""A bounded fuzz run against the real SCP (issue 12, "the fuzz generator lives in the project"):
240 generated cases (tests/support/fuzz_cases.py: truncated, garbage, bit flips, wrong VRs,
absurd sizes, wrong transfer syntaxes, inconsistent pixel attributes, character sets, UIDs,
sequences, private elements, transfers cut off) over raw associations.

Asserted: every case gets the answer it must (no crash, no association aborted that should not
be, nothing accepted that must be refused), exactly the instances answered Success are staged,
no file is left in staging's ``.incoming`` or pynetdicom's temporary folder, and the node still
answers C-ECHO and stores a valid instance afterwards. bench/fuzz_ingest.py runs ≥ 2,000 cases
against ``ctnode serve``.
"""

from __future__ import annotations

import logging
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.integration import test_ingest_scp
from tests.integration.test_ingest_scp import NODE_AE, Node, pyscu_responses
from tests.support.ct_series import make_ct_series
from tests.support.dcmtk import require
from tests.support.fuzz_cases import FAMILIES, generate_cases
from tests.support.fuzz_runner import run_cases
from tests.support.processes import wait_until

pytestmark = pytest.mark.integration

start_node = test_ingest_scp.start_node  # the SCP fixture, shared

CASES = 240
SEED = 20261203


@pytest.fixture
def pynetdicom_tmp(tmp_path: Path) -> Iterator[Path]:
    folder = tmp_path / "pynetdicom-tmp"
    folder.mkdir()
    previous = tempfile.tempdir
    tempfile.tempdir = str(folder)
    try:
        yield folder
    finally:
        tempfile.tempdir = previous


def test_fuzzed_c_stores_get_their_answers_and_leave_nothing_behind(
    start_node: Any, pynetdicom_tmp: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING)
    node: Node = start_node()
    cases = generate_cases(CASES, seed=SEED)
    assert len(cases) >= 200 and {c.family for c in cases} == set(FAMILIES)

    report = run_cases(node.port, cases)

    assert report.problems() == [], report.describe()
    assert len(report.results) == CASES
    # exactly what was answered Success is staged, nothing refused
    accepted = {r.case.sop_instance_uid for r in report.results if r.status == 0x0000}
    assert {p.stem for p in node.staged_files()} == accepted
    # every association ended, and nothing is left in a temporary area
    wait_until(lambda: node.scp.open_connections() == {}, timeout_s=60, what="associations to end")
    assert list((node.staging / ".incoming").iterdir()) == []
    assert list(pynetdicom_tmp.iterdir()) == []
    # no exception escaped the handler (the node's catch-all logs one as "failed unexpectedly")
    unexpected = [r.getMessage() for r in caplog.records if "unexpectedly" in r.getMessage()]
    unexpected += [r.getMessage() for r in caplog.records if r.name.startswith("pynetdicom") and r.exc_info]
    assert unexpected == []
    # the node still answers
    echo = subprocess.run(
        [require("echoscu"), "-aet", "ECHOSCU", "-aec", NODE_AE, "127.0.0.1", str(node.port)],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert echo.returncode == 0, echo.stderr
    [fresh] = make_ct_series(tmp_path / "after", n_slices=1, rows=32, cols=32)
    assert pyscu_responses(node.port, [fresh]) == [(0x0000, "")]
