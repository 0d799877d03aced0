"""STOW-RS delivery and QIDO-RS confirmation against a fake DICOMweb server (http.server thread)."""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

import pytest

from dicom_node.contracts import ResultBundle
from dicom_node.delivery import DeliveryIncomplete, DeliveryRejected, deliver
from dicom_node.errors import ConfigError
from dicom_node.settings import DicomwebDestinationSettings
from tests.support.processes import free_port
from tests.unit.dicom_node.delivery.objects import make_result_bundle

TOKEN = "s3cr3t-token-value"


def _ref(uid: str, warning: int | None = None) -> dict[str, Any]:
    item: dict[str, Any] = {"00081155": {"vr": "UI", "Value": [uid]}}
    if warning is not None:
        item["00081196"] = {"vr": "US", "Value": [warning]}
    return item


def _failed(uid: str, reason: int) -> dict[str, Any]:
    return {"00081155": {"vr": "UI", "Value": [uid]}, "00081197": {"vr": "US", "Value": [reason]}}


def store_response(referenced: list[dict[str, Any]], failed: list[dict[str, Any]]) -> dict[str, Any]:
    body: dict[str, Any] = {}
    if referenced:
        body["00081199"] = {"vr": "SQ", "Value": referenced}
    if failed:
        body["00081198"] = {"vr": "SQ", "Value": failed}
    return body


@dataclass
class FakeDicomWeb:
    port: int
    stow_code: int = 200
    stow_body: dict[str, Any] | None = None
    # SOP Instance UIDs QIDO reports as present
    present: set[str] = field(default_factory=set)
    requests: list[tuple[str, str, dict[str, str]]] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/dicom-web"


@pytest.fixture
def server() -> Iterator[FakeDicomWeb]:
    fake = FakeDicomWeb(port=free_port())

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            pass

        def _reply(self, code: int, body: Any) -> None:
            data = json.dumps(body).encode() if body is not None else b""
            self.send_response(code)
            if data:
                self.send_header("Content-Type", "application/dicom+json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length", 0) or 0)
            if self.headers.get("Transfer-Encoding") == "chunked":
                while True:
                    size = int(self.rfile.readline().strip(), 16)
                    self.rfile.read(size + 2)
                    if size == 0:
                        break
            else:
                self.rfile.read(length)
            fake.requests.append(("POST", self.path, dict(self.headers)))
            self._reply(fake.stow_code, fake.stow_body)

        def do_GET(self) -> None:
            fake.requests.append(("GET", self.path, dict(self.headers)))
            query = parse_qs(urlparse(self.path).query)
            wanted = set(query.get("SOPInstanceUID", [])) or fake.present
            rows = [{"00080018": {"vr": "UI", "Value": [uid]}} for uid in sorted(fake.present & wanted)]
            self._reply(200, rows)

    httpd = ThreadingHTTPServer(("127.0.0.1", fake.port), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield fake
    finally:
        httpd.shutdown()
        httpd.server_close()


@pytest.fixture
def bundle(tmp_path: Path) -> ResultBundle:
    return make_result_bundle(tmp_path / "results", kinds=("seg-binary", "sr", "gsps"))


def _dest(server: FakeDicomWeb, **kw: Any) -> DicomwebDestinationSettings:
    return DicomwebDestinationSettings(kind="dicomweb", url=server.url, timeout_s=5, **kw)


def _uids(bundle: ResultBundle) -> list[str]:
    return [f.sop_instance_uid for f in bundle.files]


def test_stow_with_token_and_qido_confirmation(
    server: FakeDicomWeb,
    bundle: ResultBundle,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    monkeypatch.setenv("PACS_TOKEN", TOKEN)
    uids = _uids(bundle)
    server.stow_body = store_response([_ref(u) for u in uids], [])
    server.present = set(uids)
    report = deliver(bundle, "WEB", _dest(server, token_env="PACS_TOKEN"), calling_ae_title="N")
    assert set(report.delivered_sop_instance_uids) == set(uids)
    assert report.confirmed is True and "all 3 instances found" in report.confirmation_detail
    post = [r for r in server.requests if r[0] == "POST"]
    assert len(post) == 1 and post[0][1] == f"/dicom-web/studies/{bundle.study_instance_uid}"
    assert all(r[2].get("Authorization") == f"Bearer {TOKEN}" for r in server.requests)
    gets = [r[1] for r in server.requests if r[0] == "GET"]
    assert gets and all("/instances" in g for g in gets)
    assert not any(TOKEN in rec.getMessage() for rec in caplog.records)


def test_qido_missing_instance_is_not_confirmed(server: FakeDicomWeb, bundle: ResultBundle) -> None:
    uids = _uids(bundle)
    server.stow_body = store_response([_ref(u) for u in uids], [])
    server.present = set(uids[:2])
    report = deliver(bundle, "WEB", _dest(server), calling_ae_title="N")
    assert report.confirmed is False
    assert (
        "1 of 3 instances not found" in report.confirmation_detail and uids[2] in report.confirmation_detail
    )


def test_409_per_instance_failures(server: FakeDicomWeb, bundle: ResultBundle) -> None:
    uids = _uids(bundle)
    server.stow_code = 409
    server.stow_body = store_response(
        [], [_failed(uids[0], 0xA900), _failed(uids[1], 0xA700), _failed(uids[2], 0xC000)]
    )
    with pytest.raises(DeliveryRejected) as info:
        deliver(bundle, "WEB", _dest(server), calling_ae_title="N")
    failed = info.value.report.failed
    assert failed[uids[0]].startswith("permanent") and "0xA900" in failed[uids[0]]
    assert failed[uids[1]].startswith("transient") and "0xA700" in failed[uids[1]]
    assert failed[uids[2]].startswith("permanent")


def test_202_partial_with_warning_is_incomplete(server: FakeDicomWeb, bundle: ResultBundle) -> None:
    uids = _uids(bundle)
    server.stow_code = 202
    server.stow_body = store_response(
        [_ref(uids[0]), _ref(uids[1], warning=0xB000)], [_failed(uids[2], 0xA700)]
    )
    with pytest.raises(DeliveryIncomplete) as info:
        deliver(bundle, "WEB", _dest(server), calling_ae_title="N")
    report = info.value.report
    assert set(report.delivered_sop_instance_uids) == {uids[0], uids[1]}
    assert "0xB000" in report.warnings[uids[1]]
    assert list(report.failed) == [uids[2]]


@pytest.mark.parametrize(
    ("code", "error"),
    [(503, DeliveryIncomplete), (500, DeliveryIncomplete), (401, DeliveryRejected), (400, DeliveryRejected)],
)
def test_http_errors_without_detail(
    server: FakeDicomWeb, bundle: ResultBundle, code: int, error: type[Exception]
) -> None:
    server.stow_code = code
    server.stow_body = None
    with pytest.raises(error) as info:
        deliver(bundle, "WEB", _dest(server), calling_ae_title="N")
    report = info.value.report  # type: ignore[attr-defined]
    assert report.delivered_sop_instance_uids == ()
    assert all(f"HTTP {code}" in r for r in report.failed.values())


def test_connection_refused_is_transient(bundle: ResultBundle) -> None:
    dest = DicomwebDestinationSettings(
        kind="dicomweb", url=f"http://127.0.0.1:{free_port()}/dicom-web", timeout_s=2
    )
    with pytest.raises(DeliveryIncomplete) as info:
        deliver(bundle, "WEB", dest, calling_ae_title="N")
    assert all("cannot reach" in r for r in info.value.report.failed.values())


def test_missing_token_variable_is_a_config_error(
    server: FakeDicomWeb, bundle: ResultBundle, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("NO_SUCH_TOKEN", raising=False)
    with pytest.raises(ConfigError, match="NO_SUCH_TOKEN"):
        deliver(bundle, "WEB", _dest(server, token_env="NO_SUCH_TOKEN"), calling_ae_title="N")
    assert server.requests == []
