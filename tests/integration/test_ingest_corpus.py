"""Real-world DICOM through the real SCP (issue 12, "a real-world DICOM corpus"): pydicom's
bundled files and variants made from them (tests/support/corpus.py) sent by pynetdicom (the file
bytes as they are) and by DCMTK storescu. Each is stored with Success, refused with its status
and reason, or not negotiated at association; none crashes the node; a character-set variant
arrives with its PatientName bytes unchanged. (Whether results made from the stored ones are
dciodvfy-clean is the results side's test.)
"""

from __future__ import annotations

import logging
import re
import subprocess
from typing import Any

import pytest
from pydicom import dcmread
from pynetdicom import AE, _config

from tests.integration import test_ingest_scp
from tests.integration.test_ingest_scp import NODE_AE, Node
from tests.support.corpus import CorpusCase, build_corpus
from tests.support.dcmtk import require

pytestmark = [pytest.mark.integration, pytest.mark.filterwarnings("ignore")]

start_node = test_ingest_scp.start_node  # the SCP fixture, shared


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> list[CorpusCase]:
    return build_corpus(tmp_path_factory.mktemp("corpus"))


def send_with_pynetdicom(port: int, case: CorpusCase) -> tuple[str, int | None, str]:
    """("no context" | "answered", status, ErrorComment) for one file, bytes as on disk."""
    ae = AE(ae_title="PYSCU")
    ae.add_requested_context(case.sop_class_uid, case.transfer_syntax_uid)
    previous = _config.STORE_SEND_CHUNKED_DATASET
    _config.STORE_SEND_CHUNKED_DATASET = True
    try:
        assoc = ae.associate("127.0.0.1", port, ae_title=NODE_AE)
        assert not assoc.is_rejected, case.name  # the allowlist lets PYSCU in
        if not assoc.is_established:
            # pynetdicom aborts an association in which the node accepted none of its contexts
            return "no context", None, ""
        try:
            if not assoc.accepted_contexts:
                return "no context", None, ""
            response = assoc.send_c_store(case.path)
            return "answered", int(response.Status), str(response.get("ErrorComment", ""))
        finally:
            assoc.release()
    finally:
        _config.STORE_SEND_CHUNKED_DATASET = previous


def check(case: CorpusCase, outcome: str, status: int | None, comment: str) -> str | None:
    """None when the outcome is the one the case expects, else what went wrong."""
    if case.expect == "not negotiated":
        return None if outcome == "no context" else f"negotiated and answered 0x{status or 0:04X}"
    if outcome != "answered" or status is None:
        return f"no answer ({outcome})"
    if case.expect == "stored":
        return None if status == 0x0000 else f"refused 0x{status:04X} {comment!r}"
    if status != case.status or case.reason not in comment:
        return f"0x{status:04X} {comment!r}, expected 0x{case.status or 0:04X} {case.reason!r}"
    return None


def assert_staged_as_expected(node: Node, cases: list[CorpusCase]) -> None:
    staged = {p.stem: p for p in node.staged_files()}
    for case in cases:
        if case.expect == "stored":
            assert case.sop_instance_uid in staged, case.name
        if case.patient_name_bytes is not None:
            element = dcmread(staged[case.sop_instance_uid], stop_before_pixels=True).get_item(0x00100010)
            sent = case.patient_name_bytes + (b" " if len(case.patient_name_bytes) % 2 else b"")
            assert element is not None and bytes(element.value) == sent, case.name


def test_corpus_through_pynetdicom(
    start_node: Any, corpus: list[CorpusCase], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING)
    node: Node = start_node()
    assert {c.expect for c in corpus} == {"stored", "refused", "not negotiated"} and len(corpus) >= 100
    wrong = {}
    for case in corpus:
        problem = check(case, *send_with_pynetdicom(node.port, case))
        if problem:
            wrong[case.name] = problem
    assert wrong == {}
    assert_staged_as_expected(node, corpus)
    assert [r.getMessage() for r in caplog.records if "unexpectedly" in r.getMessage()] == []


def _storescu_outcomes(log: str) -> dict[str, str]:
    """File path → the line that answered it, from storescu -v output."""
    outcomes: dict[str, str] = {}
    current = None
    for line in log.splitlines():
        sent = re.match(r"I: Sending file: (.*)$", line)
        if sent:
            current = sent.group(1).strip()
            outcomes[current] = "no answer"
        elif current and ("Received Store Response" in line or "Store Failed" in line):
            outcomes[current] = line
            current = None
    return outcomes


# storescu proposes one compressed transfer syntax per run, chosen by option (storescu --help);
# JPEG Lossless process 14 (1.2.840.10008.1.2.4.57) has none: those files go by pynetdicom only.
STORESCU_PROPOSE: dict[str, list[str]] = {
    "1.2.840.10008.1.2.1": [],
    "1.2.840.10008.1.2": ["-xi"],
    "1.2.840.10008.1.2.1.99": ["-xd"],
    "1.2.840.10008.1.2.5": ["-xr"],
    "1.2.840.10008.1.2.4.50": ["-xy"],
    "1.2.840.10008.1.2.4.51": ["-xx"],
    "1.2.840.10008.1.2.4.70": ["-xs"],
    "1.2.840.10008.1.2.4.80": ["-xt"],
    "1.2.840.10008.1.2.4.81": ["-xu"],
    "1.2.840.10008.1.2.4.90": ["-xv"],
    "1.2.840.10008.1.2.4.91": ["-xw"],
}


def test_corpus_through_storescu(start_node: Any, corpus: list[CorpusCase]) -> None:
    node: Node = start_node()
    sendable = [
        c for c in corpus if c.expect != "not negotiated" and c.transfer_syntax_uid in STORESCU_PROPOSE
    ]
    assert len(sendable) >= 80
    base = [require("storescu"), "-v", "-nh", "-R", "-aet", "STORESCU", "-aec", NODE_AE]
    outcomes: dict[str, str] = {}
    logs = []
    for ts, option in STORESCU_PROPOSE.items():
        group = [str(c.path) for c in sendable if c.transfer_syntax_uid == ts]
        if group:
            argv = [*base, *option, "127.0.0.1", str(node.port), *group]
            result = subprocess.run(argv, capture_output=True, text=True, timeout=600)
            logs.append(result.stdout + result.stderr)
            outcomes.update(_storescu_outcomes(logs[-1]))
    wrong = {}
    for case in sendable:
        line = outcomes.get(str(case.path), "not sent")
        if case.expect == "stored" and "(Success)" not in line:
            wrong[case.name] = line
        # storescu reads each file first and skips those it cannot parse itself (the truncated
        # and the mis-encoded ones): refused before they reach the node is fine too.
        if case.expect == "refused" and "(Success)" in line:
            wrong[case.name] = line
    assert wrong == {}, f"{wrong}\n" + "\n".join(logs)[-2000:]
    assert_staged_as_expected(node, sendable)
    # an unsupported class is refused at association by storescu's own negotiation
    [mr] = [c for c in corpus if c.name == "MR_small.dcm"]
    refused = subprocess.run(
        [*base, "127.0.0.1", str(node.port), str(mr.path)], capture_output=True, text=True, timeout=60
    )
    assert "(Success)" not in refused.stdout + refused.stderr
    assert mr.sop_instance_uid not in {p.stem for p in node.staged_files()}
