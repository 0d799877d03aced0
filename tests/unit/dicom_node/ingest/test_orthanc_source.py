"""Error mapping and path safety of the Orthanc fetch, against a fake HTTP peer (httpx
MockTransport); the real Orthanc is in tests/integration/test_orthanc_source.py."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from dicom_node.contracts import StudySource
from dicom_node.errors import PermanentError, TransientError
from dicom_node.ingest.orthanc_source import OrthancSource, credentials_from_env
from tests.support.ct_series import make_ct_series


def source_with(handler: Callable[[httpx.Request], httpx.Response]) -> OrthancSource:
    return OrthancSource("http://orthanc.test", transport=httpx.MockTransport(handler))


def study_json(
    study_uid: str = "1.2.3", series_uid: str = "1.2.3.4", sop_uid: str = "1.2.3.4.5"
) -> dict[str, object]:
    return {
        "/studies/st": {"ID": "st", "MainDicomTags": {"StudyInstanceUID": study_uid}},
        "/studies/st/series": [{"ID": "se", "MainDicomTags": {"SeriesInstanceUID": series_uid}}],
        "/studies/st/instances": [
            {"ID": "in", "ParentSeries": "se", "MainDicomTags": {"SOPInstanceUID": sop_uid}}
        ],
    }


def serve(
    routes: dict[str, object], files: dict[str, bytes] | None = None
) -> Callable[[httpx.Request], httpx.Response]:
    def handler(request: httpx.Request) -> httpx.Response:
        path = request.url.path
        if path in routes:
            return httpx.Response(200, content=json.dumps(routes[path]).encode())
        if files and path in files:
            return httpx.Response(200, content=files[path])
        return httpx.Response(404)

    return handler


@pytest.mark.parametrize(
    ("code", "error", "text"),
    [
        (500, TransientError, "500"),
        (503, TransientError, "503"),
        (429, TransientError, "429"),
        (404, PermanentError, "not found"),
        (401, PermanentError, "refused access"),
        (403, PermanentError, "refused access"),
        (400, PermanentError, "400"),
    ],
)
def test_http_status_mapping(code: int, error: type[Exception], text: str) -> None:
    client = source_with(lambda _r: httpx.Response(code))
    with pytest.raises(error, match=text):
        client.study_instance_uid("st")


def test_connection_failure_is_transient() -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused", request=request)

    with pytest.raises(TransientError, match="unreachable"):
        source_with(refuse).study_instance_uid("st")


def test_fetch_writes_staging_layout_and_leaves_no_temp_files(tmp_path: Path) -> None:
    [ct] = make_ct_series(tmp_path / "ct", n_slices=1, rows=16, cols=16)
    inner = serve(study_json(), {"/instances/in/file": ct.read_bytes()})
    seen: dict[str, str] = {}

    def handler(request: httpx.Request) -> httpx.Response:
        seen[request.url.path] = request.headers.get("accept-encoding", "")
        return inner(request)

    client = source_with(handler)
    result = client.fetch_study("st", tmp_path / "out")
    assert seen["/instances/in/file"] == "identity"  # never let Orthanc gzip pixel data on the fly
    assert result.paths == (tmp_path / "out" / "1.2.3" / "1.2.3.4" / "1.2.3.4.5.dcm",)
    assert result.paths[0].read_bytes() == ct.read_bytes()
    assert [p.name for p in (tmp_path / "out" / "1.2.3" / "1.2.3.4").iterdir()] == ["1.2.3.4.5.dcm"]


@pytest.mark.parametrize("bad", [{"study_uid": "../../etc"}, {"series_uid": "1.2/3"}, {"sop_uid": "x"}])
def test_uids_from_the_server_are_checked_before_becoming_paths(tmp_path: Path, bad: dict[str, str]) -> None:
    client = source_with(serve(study_json(**bad), {"/instances/in/file": b"data"}))
    with pytest.raises(PermanentError, match="invalid"):
        client.fetch_study("st", tmp_path / "out")
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").rglob("*"))


def test_truncated_wado_answer_is_transient_and_leaves_nothing(tmp_path: Path) -> None:
    [ct] = make_ct_series(tmp_path / "ct", n_slices=1, rows=16, cols=16)
    body = b"--bnd\r\nContent-Type: application/dicom\r\n\r\n" + ct.read_bytes()  # no closing delimiter

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path.startswith("/dicom-web/"):
            return httpx.Response(
                200,
                content=body,
                headers={"content-type": 'multipart/related; type="application/dicom"; boundary=bnd'},
            )
        return serve(study_json())(request)

    with pytest.raises(TransientError, match="cut short"):
        source_with(handler).fetch_study("st", tmp_path / "out", method="wado-rs")
    assert not list((tmp_path / "out").rglob("*.dcm"))


def test_source_and_credentials() -> None:
    with pytest.raises(PermanentError):
        OrthancSource.for_source(StudySource(kind="staging", staging_path="/x"))
    assert credentials_from_env({}) is None
    env = {"CTNODE_ORTHANC_USERNAME": "w", "CTNODE_ORTHANC_PASSWORD": "p"}
    assert credentials_from_env(env) == ("w", "p")
