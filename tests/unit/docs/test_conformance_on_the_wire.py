"""What goes over the wire and into the result files, against docs/conformance-statement.md.

The real Storage SCP negotiates with a real pynetdicom requestor (SOP classes, transfer syntaxes
in order of preference, maximum PDU, implementation identity); the real SCU sends real result
objects to a recording pynetdicom peer, queries them back and echoes it (proposed contexts,
maximum PDU, implementation identity); result objects encoded from a small CT carry the SOP
class, Modality, series number, transfer syntax, File Meta and Specific Character Set the
statement says. A change in any of these fails with the table and row to update.
"""

from __future__ import annotations

import copy
import re
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pydicom
import pytest
from pydicom.dataset import Dataset
from pydicom.uid import UID, ExplicitVRBigEndian
from pynetdicom import AE, evt
from pynetdicom.presentation import DEFAULT_TRANSFER_SYNTAXES

from dicom_node.constants import (
    CT_IMAGE_STORAGE,
    STUDY_ROOT_QR_FIND,
    VERIFICATION,
)
from dicom_node.contracts import ResultFile
from dicom_node.delivery.cfind import confirm_cfind
from dicom_node.delivery.cstore import echo_destination, send_cstore
from dicom_node.errors import PermanentError
from dicom_node.ingest.scp import StoreSCP
from dicom_node.ingest.sop_classes import ACCEPTED_TRANSFER_SYNTAXES, STORAGE_SOP_CLASSES
from dicom_node.results.bundle import encode_results
from dicom_node.results.rejection import build_rejection_note
from dicom_node.settings import (
    DicomDestinationSettings,
    DicomSettings,
    Settings,
    StorageSettings,
)
from tests.support.processes import free_port
from tests.unit.dicom_node.results.cases import JOB_ID, UID_ROOT, WHEN, analysis, make_case
from tests.unit.docs.statement import (
    WHERE,
    Table,
    builtin_kinds,
    implementation_row,
    leading_int,
    markdown_row,
    plain,
    result_file_implementation_row,
    scp_sop_classes,
    scu_sop_classes,
    sop_class_name,
    uid_in,
    uids_in,
)

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
    row = implementation_row(tables, "DICOM associations")
    assert implementation == (
        uid_in(row["Implementation Class UID"]),
        plain(row["Implementation Version Name"]),
    ), f"{WHERE}, table 'implementation-identification': the SCP says {implementation}"


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
    row = implementation_row(tables, "DICOM associations")
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


def _encode(
    tmp: Path, *, character_set: str | list[str] | None = "keep", summary: str | None = None
) -> Encoded:
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


def test_written_objects_match_the_result_kinds_table(
    encoded: Encoded, tables: dict[str, Table], tmp_path: Path
) -> None:
    table = tables["result-kinds"]
    rows = {plain(row["Role"]): row for row in table.rows}
    # The rejection note is never part of a job's results: the withdraw step builds it from the
    # superseded job's files (worker/steps/withdraw.py); built here the same way.
    note = build_rejection_note(
        list(encoded.files),
        superseded_job_id=JOB_ID,
        destination="pacs",
        description="Withdrawn by ct-ai-node: superseded \u2212 a test",
        out_dir=tmp_path / "withdrawals",
        uid_root=UID_ROOT,
        manufacturer="ct-ai-node",
    )
    written: dict[str, int] = {}
    for f in (*encoded.files, note):
        written[f.role] = written.get(f.role, 0) + 1
        assert f.role in rows, f"{table.where()}: {f.role} wrote an object but has no row"
        row = rows[f.role]
        implementation = result_file_implementation_row(tables, f.role)
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
    not_written = {kind.role for kind in builtin_kinds()} - set(written)
    assert not not_written, f"the test case should produce every built-in kind; missing {sorted(not_written)}"


# ---------------------------------------------------------------------------------------------
# 6: character sets
# ---------------------------------------------------------------------------------------------

MINUS_TEXT = "\u2212874 HU"  # what the node's descriptions write: a typographic minus
HOLDING = 'Results\' (0008,0005) holding "\u2212874 HU"'
OTHERS = "Other results' (0008,0005) (ASCII text)"
READ_BACK = '"\u2212874 HU" in SR text reads back as'
_TEXT_VRS = frozenset({"SH", "LO", "ST", "LT", "UT", "UC", "PN"})  # PS3.5 6.1.2.3


def _source_character_set(cell: str) -> str | list[str] | None:
    """A cell of the Source column: ``(absent)``, ``(empty)``, one term or ``a\\b`` values."""
    value = plain(cell)
    if value == "(absent)":
        return None
    if value == "(empty)":
        return ""
    return value.split("\\") if "\\" in value else value


def _written_character_set(ds: Dataset) -> str:
    carried = ds.get("SpecificCharacterSet")
    if carried is None:
        return "(absent)"
    if isinstance(carried, str):
        return carried
    return "\\".join(str(v) for v in carried)


def _texts(items: Sequence[Dataset]) -> Iterator[str]:
    for item in items:
        if item.get("ValueType") == "TEXT":
            yield str(item.TextValue)
        yield from _texts(item.get("ContentSequence", []))


def _text_values(ds: Dataset) -> Iterator[str]:
    """Every value of ``ds`` whose characters depend on (0008,0005), decoded, at any depth."""
    for elem in ds:
        if elem.VR == "SQ":
            for item in elem.value or ():
                yield from _text_values(item)
        elif elem.VR in _TEXT_VRS and elem.value not in (None, ""):
            values = elem.value if elem.VM > 1 else [elem.value]
            yield from (str(v) for v in values)


def test_character_set_rows_cover_the_cases(tables: dict[str, Table]) -> None:
    table = tables["character-sets"]
    sources = {plain(cell) for cell in table.column("Source (0008,0005)")}
    required = {"(absent)", "ISO_IR 100", "ISO_IR 192", "(empty)", "GB18030", "\\ISO 2022 IR 87"}
    assert required <= sources, f"{table.where()}: rows missing for {sorted(required - sources)}"


# pydicom warns when it replaces a character: that replacement is what the table would record.
@pytest.mark.filterwarnings("ignore:Failed to encode value:UserWarning")
def test_results_carry_the_character_sets_the_statement_says(
    tmp_path: Path, tables: dict[str, Table]
) -> None:
    """Each result object declares its own (0008,0005) from the text it holds (docs section 6): the
    SRs hold "−874 HU" (the report's summary here), the other objects ASCII text only."""
    table = tables["character-sets"]
    for number, row in enumerate(table.rows):
        source = _source_character_set(row["Source (0008,0005)"])
        expected = {True: plain(row[HOLDING]), False: plain(row[OTHERS])}
        shown = plain(row[READ_BACK])
        try:
            encoded = _encode(tmp_path / f"row{number}", character_set=source, summary=MINUS_TEXT)
        except PermanentError as exc:
            assert expected[True].startswith("(encoding fails"), (
                f"{table.where()}: a source (0008,0005) of {source!r} now fails encoding ({exc}); "
                f"the row says {expected[True]!r}"
            )
            continue
        assert not expected[True].startswith("(encoding fails"), (
            f"{table.where()}: a source (0008,0005) of {source!r} now encodes: update the row and section 6"
        )
        seen = set()
        for f in encoded.files:
            ds = pydicom.dcmread(f.path, stop_before_pixels=True)
            texts = list(_text_values(ds))
            holding = any("874 HU" in t for t in texts)
            if not holding:
                other = [t for t in texts if not t.isascii()]
                assert not other, (
                    f"{table.where()}: {f.role} holds non-ASCII text {other}: "
                    f"the column {OTHERS!r} no longer describes it"
                )
            seen.add(holding)
            written = _written_character_set(ds)
            column = HOLDING if holding else OTHERS
            assert written == expected[holding], (
                f"{table.where()}: with a source (0008,0005) of {source!r}, {f.role} carries {written!r}, "
                f"not {expected[holding]!r} (column {column!r}): update the row and section 6"
            )
            if f.role == "sr":
                sr_texts = [t for t in _texts(ds.ContentSequence) if "874 HU" in t]
                assert sr_texts == [shown], (
                    f"{table.where()}: with a source (0008,0005) of {source!r} the SR's text reads "
                    f"{sr_texts}, not {shown!r}: update the row and section 6"
                )
        assert seen == {True, False}, "the test case should write objects with and without the text"
