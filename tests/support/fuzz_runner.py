"""Send :mod:`tests.support.fuzz_cases` to a live C-STORE SCP and judge each answer.

Cases go out in batches, one association per batch proposing every presentation context the
batch needs (pynetdicom negotiates; :mod:`tests.support.dimse_raw` then sends the bytes as
generated). A case the sender drops on purpose ("cut", "abort") ends its association, and the
batch goes on in a new one. Each answer is judged against the case's expectation:

* ``ok``                 the answer the case expects;
* ``accepted-bad``       Success for a case that must be refused;
* ``refused-good``       a failure status for a case that must be stored;
* ``wrong-status``       refused, but not with one of the case's statuses;
* ``crash``              the node's catch-all answered (0xC000 "internal error while storing",
                         or pynetdicom's 0xC211 for an exception escaping the handler);
* ``aborted``            no answer: the node aborted or closed an association it should have
                         kept (any case not dropped on purpose).
"""

from __future__ import annotations

import contextlib
import time
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from tests.support.dimse_raw import RawAssociation, raw_association
from tests.support.fuzz_cases import FuzzCase

# 0xC211: pynetdicom's answer to an exception escaping the handler; 0x0110 (Processing failure):
# the STOW router's answer to one.
CRASH_STATUSES = frozenset({0xC211, 0x0110})
WARNING_STATUSES = frozenset({0xB000, 0xB006, 0xB007})
CRASH_COMMENT = "internal error while storing"


@dataclass(frozen=True)
class CaseResult:
    case: FuzzCase
    status: int | None
    verdict: str


@dataclass
class FuzzReport:
    results: list[CaseResult] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def verdicts(self) -> Counter[str]:
        return Counter(r.verdict for r in self.results)

    def by_family(self) -> dict[str, Counter[str]]:
        table: dict[str, Counter[str]] = {}
        for result in self.results:
            table.setdefault(result.case.family, Counter())[result.verdict] += 1
        return table

    def statuses(self) -> Counter[str]:
        return Counter("dropped" if r.status is None else f"0x{r.status:04X}" for r in self.results)

    def problems(self) -> list[CaseResult]:
        return [r for r in self.results if r.verdict != "ok"]

    def describe(self) -> str:
        lines = [f"{len(self.results)} cases in {self.seconds:.1f} s: {dict(self.verdicts)}"]
        for family, counts in sorted(self.by_family().items()):
            lines.append(f"  {family:20s} {dict(counts)}")
        lines.append(f"  statuses: {dict(sorted(self.statuses().items()))}")
        for problem in self.problems()[:20]:
            status = "none" if problem.status is None else f"0x{problem.status:04X}"
            lines.append(f"  PROBLEM {problem.case.name}: {problem.verdict} (status {status})")
        return "\n".join(lines)


def judge(case: FuzzCase, status: int | None, comment: str = "") -> str:
    if case.expect == "dropped":
        return "ok"
    if status is None:
        return "aborted"
    if status in CRASH_STATUSES or CRASH_COMMENT in comment:
        return "crash"
    failed = status != 0x0000 and status not in WARNING_STATUSES
    if case.expect == "stored":
        return "ok" if status == 0x0000 else "refused-good"
    if case.expect == "refused":
        if not failed:
            return "accepted-bad"
        return "ok" if not case.statuses or status in case.statuses else "wrong-status"
    return "ok"  # "either": any answer on a live association


def _send_whole(raw: RawAssociation, case: FuzzCase) -> tuple[int | None, str]:
    pdus = raw.p_data_pdus(
        case.data_set,
        sop_class_uid=case.sop_class_uid,
        sop_instance_uid=case.sop_instance_uid,
        context_id=raw.context_ids[case.context],
    )
    try:
        for pdu in pdus:
            raw.send(pdu)
    except OSError:
        return None, ""
    return raw.read_store_status_and_comment()


def _send_dropped(raw: RawAssociation, case: FuzzCase) -> None:
    pdus = raw.p_data_pdus(
        case.data_set,
        sop_class_uid=case.sop_class_uid,
        sop_instance_uid=case.sop_instance_uid,
        context_id=raw.context_ids[case.context],
    )
    with contextlib.suppress(OSError):
        for pdu in pdus[: max(1, len(pdus) // 2)]:
            raw.send(pdu)
    if case.wire == "abort":
        raw.abort()
    raw.close()


def _batches(cases: Sequence[FuzzCase], size: int) -> Iterable[list[FuzzCase]]:
    for start in range(0, len(cases), size):
        yield list(cases[start : start + size])


def run_cases(
    port: int, cases: Sequence[FuzzCase], *, calling: str = "PYSCU", called: str = "CTAINODE", batch: int = 40
) -> FuzzReport:
    report = FuzzReport()
    started = time.perf_counter()
    for chunk in _batches(cases, batch):
        contexts = list(dict.fromkeys(case.context for case in chunk))
        remaining = list(chunk)
        while remaining:
            with raw_association(port, contexts=contexts, calling=calling, called=called) as raw:
                while remaining:
                    case = remaining.pop(0)
                    if case.wire != "whole":
                        _send_dropped(raw, case)
                        report.results.append(CaseResult(case, None, judge(case, None)))
                        break  # this association is gone; the rest go in a new one
                    status, comment = _send_whole(raw, case)
                    report.results.append(CaseResult(case, status, judge(case, status, comment)))
                    if status is None:
                        break  # the node ended the association: go on in a new one
                else:
                    raw.release()
    report.seconds = time.perf_counter() - started
    return report


def part10(case: FuzzCase) -> bytes:
    """The case as a Part 10 file: the File Meta names its context class, transfer syntax and
    Affected SOP Instance UID (what a STOW-RS part carries instead of a C-STORE command)."""
    from dicom_node.ingest.receive import Origin, file_meta_bytes

    head = file_meta_bytes(
        sop_class_uid=case.sop_class_uid,
        sop_instance_uid=case.sop_instance_uid,
        transfer_syntax_uid=case.transfer_syntax_uid,
        origin=Origin(calling_ae_title="", called_ae_title="", peer_address="", association_id=""),
    )
    return head + case.data_set


def stow_one(url: str, token: str, body: bytes, *, timeout_s: float = 60.0) -> tuple[int, int | None]:
    """POST one part; return (HTTP status, the instance's FailureReason or None when stored)."""
    import json
    import urllib.error
    import urllib.request

    boundary = "fuzz-boundary-7f3a"
    payload = (
        f"--{boundary}\r\nContent-Type: application/dicom\r\n\r\n".encode()
        + body
        + f"\r\n--{boundary}--\r\n".encode()
    )
    if not url.startswith("http://127.0.0.1:"):
        raise ValueError("the fuzz runner posts to this machine's node only")
    request = urllib.request.Request(  # noqa: S310 (checked just above)
        url,
        data=payload,
        method="POST",
        headers={
            "Content-Type": f'multipart/related; type="application/dicom"; boundary={boundary}',
            "Authorization": f"Bearer {token}",
            "Accept": "application/dicom+json",
        },
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as response:  # noqa: S310 (loopback)
            code, text = response.status, response.read()
    except urllib.error.HTTPError as error:
        code, text = error.code, error.read()
    if code not in (200, 202, 409):
        return code, None
    answer = json.loads(text)
    failed = answer.get("00081198", {}).get("Value", [])
    if failed:
        return code, int(failed[0]["00081197"]["Value"][0])
    return code, 0x0000


def run_stow_cases(url: str, token: str, cases: Sequence[FuzzCase]) -> FuzzReport:
    """Each case (not the wire ones) as the single part of one STOW-RS request; judged as for
    C-STORE with the FailureReason as the status. An HTTP status other than 200/202/409 is
    judged "crash" (the server could not answer the request with a Store Instances Response)."""
    report = FuzzReport()
    started = time.perf_counter()
    for case in cases:
        if case.wire != "whole":
            continue
        code, status = stow_one(url, token, part10(case))
        verdict = "crash" if status is None else judge(case, status)
        report.results.append(CaseResult(case, status if status is not None else code, verdict))
    report.seconds = time.perf_counter() - started
    return report
