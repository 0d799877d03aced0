"""STOW-RS ingest: the streaming multipart parser, the response module, and the router in-process
(FastAPI TestClient) over the real InstanceReceiver + Staging. Real clients (dicomweb-client over
uvicorn, Orthanc as sender) are in tests/integration/test_stow_ingest.py."""

from __future__ import annotations

import json
import random
from io import BytesIO
from pathlib import Path

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from pydicom import dcmread
from pydicom.dataset import Dataset

from dicom_node.constants import COMPREHENSIVE_3D_SR_STORAGE
from dicom_node.contracts import InstanceStored
from dicom_node.ingest.receive import InstanceReceiver
from dicom_node.ingest.staging import Staging
from dicom_node.ingest.stow import (
    FAILURE_NOT_MATCHING,
    MultipartError,
    MultipartRelatedParser,
    StowOutcome,
    StowRequestSummary,
    make_bearer_auth,
    make_stow_router,
    media_type_and_params,
    stow_http_status,
    stow_response_dataset,
)
from dicom_node.ingest.validation import (
    STATUS_INCONSISTENT_PIXELS,
    STATUS_NOT_THIS_SOP_CLASS,
    STATUS_TRUNCATED,
    ImageLimits,
)
from tests.support.ct_series import make_ct_series

BOUNDARY = "b0undary-1234"


def multipart(
    parts: list[tuple[dict[str, str], bytes]], *, boundary: str = BOUNDARY, preamble: bytes = b""
) -> bytes:
    out = bytearray(preamble)
    for headers, body in parts:
        out += f"\r\n--{boundary}\r\n".encode() if out or preamble else f"--{boundary}\r\n".encode()
        for name, value in headers.items():
            out += f"{name}: {value}\r\n".encode()
        out += b"\r\n" + body
    out += f"\r\n--{boundary}--\r\n".encode()
    return bytes(out)


def parse_all(body: bytes, chunk_sizes: list[int], **kw: int) -> list[tuple[dict[str, str], bytes]]:
    parser = MultipartRelatedParser(BOUNDARY, **kw)
    parts = []
    pos = 0
    i = 0
    while pos < len(body):
        size = chunk_sizes[i % len(chunk_sizes)]
        parts += [(p.headers, p.body) for p in parser.feed(body[pos : pos + size])]
        pos += size
        i += 1
    parser.close()
    return parts


# -- parser ------------------------------------------------------------------------------------


@pytest.mark.parametrize("chunks", [[1], [2, 3, 5], [7], [64], [10_000]])
def test_parser_any_chunking(chunks: list[int]) -> None:
    rng = random.Random(4)
    bodies = [
        bytes(rng.randrange(256) for _ in range(300)),
        b"",  # empty part
        b"\r\n--b0undary-12",  # looks like a delimiter but is not one
        b"--" + BOUNDARY.encode(),  # the boundary text without the leading CRLF is data
    ]
    message = multipart(
        [({"Content-Type": "application/dicom"}, b) for b in bodies], preamble=b"preamble text ignored"
    )
    message += b"epilogue ignored\r\n--" + BOUNDARY.encode() + b"\r\n"
    parts = parse_all(message, chunks)
    assert [b for _, b in parts] == bodies
    assert all(h == {"content-type": "application/dicom"} for h, _ in parts)


def test_parser_part_without_headers_and_transport_padding() -> None:
    message = f"--{BOUNDARY}  \t\r\n\r\nabc\r\n--{BOUNDARY}--".encode()
    assert parse_all(message, [3]) == [({}, b"abc")]


@pytest.mark.parametrize(
    "message",
    [
        f"--{BOUNDARY}\r\nContent-Type: application/dicom\r\n\r\nabc".encode(),  # no closing delimiter
        f"--{BOUNDARY}\r\nno colon here\r\n\r\nabc\r\n--{BOUNDARY}--".encode(),
        f"--{BOUNDARY}garbage\r\n\r\nabc\r\n--{BOUNDARY}--".encode(),
        b"no boundary at all",
    ],
)
def test_parser_rejects_malformed(message: bytes) -> None:
    with pytest.raises(MultipartError):
        parse_all(message, [5])


def test_parser_part_size_limit_drops_the_part_and_goes_on() -> None:
    message = multipart([({}, b"x" * 100), ({}, b"y" * 10)])
    assert parse_all(message, [7], max_part_bytes=100)[0][1] == b"x" * 100
    parser = MultipartRelatedParser(BOUNDARY, max_part_bytes=99)
    big, small = list(parser.feed(message))
    parser.close()
    assert (big.oversized, big.size, big.body, big.head) == (True, 100, b"", b"x" * 100)
    assert (small.oversized, small.body) == (False, b"y" * 10)


@pytest.mark.parametrize("chunks", [[3], [1000], [10_000_000]])
def test_parser_spills_large_parts_to_a_file(tmp_path: Path, chunks: list[int]) -> None:
    spool = iter(tmp_path / f"spill-{i}" for i in range(10))
    large = bytes(random.Random(1).randrange(256) for _ in range(5000))
    parser = MultipartRelatedParser(BOUNDARY, spool=lambda: next(spool), spill_bytes=1000)
    message = multipart([({}, large), ({}, b"small")])
    parts = []
    for position in range(0, len(message), chunks[0]):
        parts += list(parser.feed(message[position : position + chunks[0]]))
    parser.close()
    spilled, small = parts
    assert spilled.body == b"" and spilled.path == tmp_path / "spill-0" and spilled.size == 5000
    assert spilled.path.read_bytes() == large and spilled.head == large
    assert small.path is None and small.body == b"small"
    spilled.discard()
    assert list(tmp_path.iterdir()) == []


def test_parser_removes_a_half_spilled_part_when_the_body_breaks_off(tmp_path: Path) -> None:
    parser = MultipartRelatedParser(BOUNDARY, spool=lambda: tmp_path / "spill", spill_bytes=10)
    message = multipart([({}, b"z" * 500)])
    assert list(parser.feed(message[:300])) == []
    assert (tmp_path / "spill").exists()
    with pytest.raises(MultipartError):
        parser.close()
    assert list(tmp_path.iterdir()) == []


def test_content_type_parameters() -> None:
    media, params = media_type_and_params('Multipart/Related; type="application/dicom"; boundary="a b"')
    assert media == "multipart/related" and params == {"type": "application/dicom", "boundary": "a b"}
    assert media_type_and_params("")[0] == "text/plain"  # RFC 2045 default: not DICOM


# -- response module ---------------------------------------------------------------------------


def test_response_module_and_status() -> None:
    ok = StowOutcome("1.2.840.10008.5.1.4.1.1.2", "1.2.3.1")
    bad = StowOutcome("1.2.840.10008.5.1.4.1.1.2", "1.2.3.2", STATUS_TRUNCATED)
    as_json = stow_response_dataset([ok, bad]).to_json_dict()
    assert as_json["00081199"]["vr"] == "SQ"
    assert as_json["00081199"]["Value"][0]["00081155"]["Value"] == ["1.2.3.1"]
    failed = as_json["00081198"]["Value"][0]
    assert failed["00081155"]["Value"] == ["1.2.3.2"]
    assert failed["00081197"] == {"vr": "US", "Value": [STATUS_TRUNCATED]}
    assert stow_http_status([ok]) == 200
    assert stow_http_status([ok, bad]) == 202
    assert stow_http_status([bad]) == 409
    assert "00081198" not in stow_response_dataset([ok]).to_json_dict()


# -- the router in-process ---------------------------------------------------------------------


class Node:
    def __init__(self, root: Path) -> None:
        self.staging = Staging(root / "staging", min_free_bytes=0)
        self.receiver = InstanceReceiver(self.staging, limits=ImageLimits(), uid_root="1.2.826.0.1.999999.")
        self.instances: list[InstanceStored] = []
        self.requests: list[StowRequestSummary] = []
        auth = make_bearer_auth(lambda: ["good-token"])
        app = FastAPI()
        app.include_router(
            make_stow_router(
                receiver=self.receiver,
                on_instance=self.instances.append,
                on_request_complete=self.requests.append,
                auth=auth,
                called_ae_title="CTAINODE",
            )
        )
        self.client = TestClient(app)

    def post(
        self,
        body: bytes,
        *,
        path: str = "/dicom-web/studies",
        token: str = "good-token",  # noqa: S107 (a test token)
        **headers: str,
    ) -> object:
        h = {
            "Content-Type": f'multipart/related; type="application/dicom"; boundary={BOUNDARY}',
            "Authorization": f"Bearer {token}",
            "Accept": "application/dicom+json",
        }
        h.update(headers)
        return self.client.post(path, content=body, headers=h)


def dicom_parts(files: list[Path]) -> list[tuple[dict[str, str], bytes]]:
    return [({"Content-Type": "application/dicom"}, f.read_bytes()) for f in files]


def test_store_series_then_duplicate(tmp_path: Path) -> None:
    node = Node(tmp_path)
    files = make_ct_series(tmp_path / "ct", n_slices=3, rows=32, cols=32)
    response = node.post(multipart(dicom_parts(files)))
    assert response.status_code == 200, response.text  # type: ignore[attr-defined]
    assert response.headers["content-type"] == "application/dicom+json"  # type: ignore[attr-defined]
    stored = [i["00081155"]["Value"][0] for i in response.json()["00081199"]["Value"]]  # type: ignore[attr-defined]
    sops = [str(dcmread(f).SOPInstanceUID) for f in files]
    assert stored == sops
    assert [i.sop_instance_uid for i in node.instances] == sops
    assert all(Path(i.path).is_file() and not i.duplicate and i.routable for i in node.instances)
    first = dcmread(node.instances[0].path)
    assert first.SOPInstanceUID == sops[0] and first.PixelData == dcmread(files[0]).PixelData
    [summary] = node.requests
    assert summary.stored == 3 and summary.study_instance_uids == {str(dcmread(files[0]).StudyInstanceUID)}
    assert all(i.association_id == summary.request_id for i in node.instances)
    assert all(i.called_ae_title == "CTAINODE" and i.calling_ae_title == "bearer" for i in node.instances)
    # resend: success again, flagged as duplicates, nothing rewritten
    again = node.post(multipart(dicom_parts(files[:1])))
    assert again.status_code == 200  # type: ignore[attr-defined]
    assert node.instances[-1].duplicate and node.requests[-1].duplicates == 1


def test_partial_failure_reports_each_instance(tmp_path: Path) -> None:
    node = Node(tmp_path)
    good, other = make_ct_series(tmp_path / "ct", n_slices=2, rows=32, cols=32)
    truncated = other.read_bytes()[:-500]
    response = node.post(
        multipart([*dicom_parts([good]), ({"Content-Type": "application/dicom"}, truncated)])
    )
    assert response.status_code == 202  # type: ignore[attr-defined]
    body = response.json()  # type: ignore[attr-defined]
    [failed] = body["00081198"]["Value"]
    assert failed["00081155"]["Value"] == [str(dcmread(other).SOPInstanceUID)]
    assert failed["00081197"]["Value"] == [STATUS_TRUNCATED]
    assert len(body["00081199"]["Value"]) == 1
    assert len(list((tmp_path / "staging").rglob("*.dcm"))) == 1


def test_all_failed_is_409_and_garbage_part_has_a_reason(tmp_path: Path) -> None:
    node = Node(tmp_path)
    response = node.post(multipart([({"Content-Type": "application/dicom"}, b"not dicom at all")]))
    assert response.status_code == 409  # type: ignore[attr-defined]
    [failed] = response.json()["00081198"]["Value"]  # type: ignore[attr-defined]
    assert failed["00081197"]["Value"][0] >= 0xC000
    assert node.requests == []  # nothing stored: no completion signal


def test_study_in_url_must_match(tmp_path: Path) -> None:
    node = Node(tmp_path)
    [ct] = make_ct_series(tmp_path / "ct", n_slices=1, rows=32, cols=32)
    study = str(dcmread(ct).StudyInstanceUID)
    wrong = node.post(multipart(dicom_parts([ct])), path="/dicom-web/studies/1.2.3.999")
    assert wrong.status_code == 409  # type: ignore[attr-defined]
    [failed] = wrong.json()["00081198"]["Value"]  # type: ignore[attr-defined]
    assert failed["00081197"]["Value"] == [FAILURE_NOT_MATCHING]
    assert not list((tmp_path / "staging").rglob("*.dcm"))
    right = node.post(multipart(dicom_parts([ct])), path=f"/dicom-web/studies/{study}")
    assert right.status_code == 200  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("content_type", "code"),
    [
        ("application/dicom", 415),
        (f"multipart/related; type=application/dicom+json; boundary={BOUNDARY}", 415),
        ('multipart/related; type="application/dicom"', 400),  # no boundary
    ],
)
def test_request_media_type_checks(tmp_path: Path, content_type: str, code: int) -> None:
    node = Node(tmp_path)
    response = node.post(b"--x--", **{"Content-Type": content_type})
    assert response.status_code == code  # type: ignore[attr-defined]


def test_empty_and_malformed_bodies_are_400(tmp_path: Path) -> None:
    node = Node(tmp_path)
    assert node.post(f"--{BOUNDARY}--\r\n".encode()).status_code == 400  # type: ignore[attr-defined]
    assert node.post(b"garbage without delimiter").status_code == 400  # type: ignore[attr-defined]


def test_authentication_required(tmp_path: Path) -> None:
    node = Node(tmp_path)
    files = make_ct_series(tmp_path / "ct", n_slices=1, rows=32, cols=32)
    response = node.post(multipart(dicom_parts(files)), token="wrong")
    assert response.status_code == 401  # type: ignore[attr-defined]
    assert response.headers["www-authenticate"].startswith("Bearer")  # type: ignore[attr-defined]
    no_header = node.client.post("/dicom-web/studies", content=b"")
    assert no_header.status_code == 401
    assert not list((tmp_path / "staging").rglob("*.dcm")) and node.instances == []


def test_response_is_valid_dicom_json(tmp_path: Path) -> None:
    node = Node(tmp_path)
    files = make_ct_series(tmp_path / "ct", n_slices=1, rows=32, cols=32)
    response = node.post(multipart(dicom_parts(files)))
    from pydicom.dataset import Dataset

    ds = Dataset.from_json(json.loads(response.content))  # type: ignore[attr-defined]
    assert ds.ReferencedSOPSequence[0].ReferencedSOPInstanceUID == dcmread(files[0]).SOPInstanceUID


def _part10(ds: Dataset) -> bytes:
    buffer = BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


def test_stow_refuses_what_c_store_refuses_with_the_reason_per_instance(tmp_path: Path) -> None:
    node = Node(tmp_path)
    good, bits, sr = make_ct_series(tmp_path / "ct", n_slices=3, rows=32, cols=32)
    too_many_bits = dcmread(bits)
    too_many_bits.BitsStored = 20
    ct_as_sr = dcmread(sr)
    ct_as_sr.SOPClassUID = ct_as_sr.file_meta.MediaStorageSOPClassUID = COMPREHENSIVE_3D_SR_STORAGE
    parts = [*dicom_parts([good])]
    parts += [({"Content-Type": "application/dicom"}, _part10(ds)) for ds in (too_many_bits, ct_as_sr)]
    response = node.post(multipart(parts))
    assert response.status_code == 202  # type: ignore[attr-defined]
    failed = {
        item["00081155"]["Value"][0]: item["00081197"]["Value"][0]
        for item in response.json()["00081198"]["Value"]  # type: ignore[attr-defined]
    }
    assert failed == {
        str(too_many_bits.SOPInstanceUID): STATUS_INCONSISTENT_PIXELS,
        str(ct_as_sr.SOPInstanceUID): STATUS_NOT_THIS_SOP_CLASS,
    }
    warnings = response.headers.get_list("warning")  # type: ignore[attr-defined]
    assert warnings == [
        f'299 ctnode "{too_many_bits.SOPInstanceUID}: 0xC005 BitsStored 20 with BitsAllocated 16"',
        f'299 ctnode "{ct_as_sr.SOPInstanceUID}: 0xA900 Pixel Data in a SOP class without pixels"',
    ]
    assert [i.sop_instance_uid for i in node.instances] == [str(dcmread(good).SOPInstanceUID)]


def test_a_large_instance_is_spooled_to_staging_not_memory_and_stored(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tests.support.multiframe import write_multiframe_ct

    node = Node(tmp_path)
    source = write_multiframe_ct(tmp_path / "mf.dcm", frames=40, rows=256, columns=256)  # 5 MiB
    from_files: list[Path] = []
    by_file = node.receiver.receive_part10_file

    def spy(path: Path, **kwargs: object) -> InstanceStored:
        from_files.append(path)
        assert path.parent == node.staging.incoming and path.stat().st_size == source.stat().st_size
        return by_file(path, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(node.receiver, "receive_part10_file", spy)
    app = FastAPI()
    app.include_router(
        make_stow_router(
            receiver=node.receiver,
            on_instance=node.instances.append,
            on_request_complete=node.requests.append,
            auth=make_bearer_auth(lambda: ["good-token"]),
            spill_bytes=2**20,
        )
    )
    node.client = TestClient(app)
    response = node.post(multipart(dicom_parts([source])))
    assert response.status_code == 200, response.text  # type: ignore[attr-defined]
    [stored] = node.instances
    assert dcmread(stored.path).PixelData == dcmread(source).PixelData
    assert len(from_files) == 1 and not from_files[0].exists()  # spooled, staged, then removed
    assert list(node.staging.incoming.iterdir()) == []


def test_an_instance_over_max_instance_bytes_fails_with_a701_and_the_others_are_stored(
    tmp_path: Path,
) -> None:
    from tests.support.multiframe import write_multiframe_ct

    node = Node(tmp_path)
    node.receiver.limits = ImageLimits(max_instance_bytes=2**20)
    app = FastAPI()
    app.include_router(
        make_stow_router(
            receiver=node.receiver,
            on_instance=node.instances.append,
            on_request_complete=node.requests.append,
            auth=make_bearer_auth(lambda: ["good-token"]),
        )
    )
    node.client = TestClient(app)
    big = write_multiframe_ct(tmp_path / "big.dcm", frames=24, rows=256, columns=256)  # 3 MiB
    [small] = make_ct_series(tmp_path / "ct", n_slices=1, rows=32, cols=32)
    response = node.post(multipart(dicom_parts([big, small])))
    assert response.status_code == 202  # type: ignore[attr-defined]
    [failed] = response.json()["00081198"]["Value"]  # type: ignore[attr-defined]
    assert failed["00081155"]["Value"] == [str(dcmread(big, stop_before_pixels=True).SOPInstanceUID)]
    assert failed["00081197"]["Value"] == [0xA701]
    assert "exceeds max_instance_bytes" in response.headers["warning"]  # type: ignore[attr-defined]
    assert [i.sop_instance_uid for i in node.instances] == [str(dcmread(small).SOPInstanceUID)]
    assert list(node.staging.incoming.iterdir()) == []
