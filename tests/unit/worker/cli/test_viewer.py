"""``ctnode viewer``'s server: static OHIF files, generated app-config, read-only proxy.

The upstream "Orthanc" here is a tiny stdlib HTTP server (a fake network peer); the real Orthanc
and a real browser are in tests/e2e/test_ohif_viewer.py.
"""

from __future__ import annotations

import contextlib
import gzip
import json
import shutil
import subprocess
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar

import click
import httpx
import pytest
from click.testing import CliRunner

from worker.cli.main import main
from worker.cli.viewer import ViewerServer, app_config_js, is_proxied, static_path


@pytest.fixture
def dist(tmp_path: Path) -> Path:
    root = tmp_path / "dist"
    (root / "assets").mkdir(parents=True)
    (root / "index.html").write_text("<html>ohif</html>")
    (root / "app.bundle.js").write_text("console.log(1)")
    (root / "x.wasm").write_bytes(b"\0asm")
    (tmp_path / "secret.txt").write_text("outside dist")
    return root


class Upstream(BaseHTTPRequestHandler):
    seen: ClassVar[list[dict[str, str]]] = []

    def log_message(self, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        Upstream.seen.append({k.lower(): v for k, v in self.headers.items()} | {"path": self.path})
        body = gzip.compress(b'[{"00100010": {"vr": "PN"}}]')
        self.send_response(200)
        self.send_header("Content-Type", "application/dicom+json")
        self.send_header("Content-Encoding", "gzip")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@contextlib.contextmanager
def upstream() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), Upstream)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_static_files_spa_fallback_and_no_traversal(dist: Path) -> None:
    assert static_path(dist, "/app.bundle.js?v=1") == (dist / "app.bundle.js").resolve()
    assert static_path(dist, "/viewer?StudyInstanceUIDs=1.2.3") == dist.resolve() / "index.html"
    assert static_path(dist, "/../secret.txt") == dist.resolve() / "index.html"
    assert static_path(dist, "/%2e%2e/secret.txt") == dist.resolve() / "index.html"
    assert is_proxied("/dicom-web/studies?x=1") and is_proxied("/wado?requestType=WADO")
    assert not is_proxied("/dicom-webfoo") and not is_proxied("/viewer")


def test_app_config_evaluates_in_javascript() -> None:
    node = shutil.which("node")
    if node is None:
        pytest.fail("node not found (Debian nodejs, installed with npm by scripts/setup --test)")
    script = "const window = {location: {origin: 'http://127.0.0.1:9'}};\n" + app_config_js()
    script += "\nconsole.log(JSON.stringify(window.config));"
    config = json.loads(
        subprocess.run([node, "-e", script], capture_output=True, text=True, check=True).stdout
    )
    [source] = config["dataSources"]
    assert source["namespace"] == "@ohif/extension-default.dataSourcesModule.dicomweb"
    assert config["defaultDataSourceName"] == source["sourceName"]
    settings = source["configuration"]
    assert settings["qidoRoot"] == settings["wadoRoot"] == "http://127.0.0.1:9/dicom-web"
    assert settings["imageRendering"] == "wadors"
    assert config["disableConfirmationPrompts"] is True


def test_proxy_injects_credentials_passes_encoded_answers_and_is_read_only(dist: Path) -> None:
    Upstream.seen.clear()
    with upstream() as url:
        server = ViewerServer(dist=dist, orthanc_url=url, orthanc_credentials=("viewer", "pw"))
        with server.running(), httpx.Client(base_url=server.url) as client:
            page = client.get("/viewer?StudyInstanceUIDs=1.2.3")
            assert page.text == "<html>ohif</html>"
            assert page.headers["cross-origin-opener-policy"] == "same-origin"
            assert client.get("/x.wasm").headers["content-type"] == "application/wasm"
            assert "window.config" in client.get("/app-config.js").text
            answer = client.get(
                "/dicom-web/studies?PatientID=x",
                headers={"Authorization": "Bearer browser", "Accept-Encoding": "gzip"},
            )
            assert answer.status_code == 200
            assert answer.headers["content-encoding"] == "gzip"
            assert answer.json() == [{"00100010": {"vr": "PN"}}]  # httpx decodes what was passed through
            [seen] = Upstream.seen
            assert seen["path"] == "/dicom-web/studies?PatientID=x"
            assert seen["authorization"] == "Basic dmlld2VyOnB3"  # viewer:pw, never the browser's header
            assert seen["accept-encoding"] == "identity"  # no on-the-fly gzip of pixel data by Orthanc
            assert client.post("/dicom-web/studies", content=b"x").status_code == 405
            assert client.delete("/dicom-web/studies/1.2.3").status_code == 405
            assert len(Upstream.seen) == 1


def test_proxy_answers_502_when_orthanc_is_down(dist: Path) -> None:
    server = ViewerServer(dist=dist, orthanc_url="http://127.0.0.1:9")
    with server.running(), httpx.Client(base_url=server.url) as client:
        assert client.get("/dicom-web/studies").status_code == 502


def test_missing_ohif_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(click.ClickException, match="scripts/setup"):
        ViewerServer(dist=tmp_path / "nope", orthanc_url="http://127.0.0.1:9")


def test_registered_as_ctnode_viewer(tmp_path: Path) -> None:
    runner = CliRunner()
    result = runner.invoke(main, ["viewer", "--help"])
    assert result.exit_code == 0 and "--orthanc-url" in result.output
    missing = runner.invoke(main, ["viewer", "--ohif-dir", str(tmp_path), "--port", "0"])
    assert missing.exit_code != 0 and "scripts/setup" in missing.output
