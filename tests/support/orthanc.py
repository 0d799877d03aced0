"""A real Orthanc (Debian ``orthanc`` + ``orthanc-dicomweb`` [+ ``orthanc-python``]) for tests.

General on purpose (shared by the delivery tests and the Orthanc plugin tests): free HTTP and DICOM
ports, temporary storage, any configuration key overridable through ``overrides`` (merged deeply
over the defaults below), an optional Python plugin script, extra environment variables, and the
process stopped by PID (its own process group) when the context exits.

Orthanc 1.10.1 has no bind-address option: it listens on all interfaces (dicom-notes.md). Tests
talk to it on 127.0.0.1 only; ``RemoteAccessAllowed`` stays false so only loopback HTTP is served.

Usage::

    with orthanc(tmp_path / "orthanc", overrides={"StableAge": 2}) as server:
        client = DICOMwebClient(server.dicomweb_url)
        ...
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import shutil
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.support.processes import ManagedProcess, free_port, managed, port_open, wait_until

PLUGIN_DIR = Path("/usr/share/orthanc/plugins")
DICOMWEB_PLUGIN = PLUGIN_DIR / "libOrthancDicomWeb.so"
PYTHON_PLUGIN = PLUGIN_DIR / "libOrthancPython.so"


def orthanc_binary() -> str:
    path = shutil.which("Orthanc") or ("/usr/sbin/Orthanc" if Path("/usr/sbin/Orthanc").exists() else None)
    if path is None:
        pytest.fail("Orthanc not found: scripts/setup --test installs the Debian orthanc package")
    return path


def deep_merge(base: Mapping[str, Any], extra: Mapping[str, Any]) -> dict[str, Any]:
    """``extra`` over ``base``; nested dicts are merged, everything else replaced."""
    out = dict(base)
    for key, value in extra.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = value
    return out


@dataclass
class OrthancServer:
    process: ManagedProcess
    http_port: int
    dicom_port: int
    aet: str
    config_path: Path
    storage_dir: Path
    config: dict[str, Any]
    username: str | None = None
    password: str | None = None

    @property
    def url(self) -> str:
        """REST root, e.g. ``http://127.0.0.1:8042``."""
        return f"http://127.0.0.1:{self.http_port}"

    @property
    def dicomweb_url(self) -> str:
        """DICOMweb root served by the plugin (``DicomWeb.Root``)."""
        root = str(self.config.get("DicomWeb", {}).get("Root", "/dicom-web/")).rstrip("/")
        return f"{self.url}{root}"

    def _request(self, method: str, path: str, body: bytes | None = None) -> Any:
        req = urllib.request.Request(self.url + path, data=body, method=method)  # noqa: S310 (loopback)
        if self.username is not None and self.password is not None:
            token = base64.b64encode(f"{self.username}:{self.password}".encode()).decode()
            req.add_header("Authorization", f"Basic {token}")
        with urllib.request.urlopen(req, timeout=30) as resp:  # noqa: S310 (loopback)
            data = resp.read()
        return json.loads(data) if data else None

    def get(self, path: str) -> Any:
        """GET a REST path (``/instances``, ``/system``...) and decode its JSON."""
        return self._request("GET", path)

    def post(self, path: str, body: bytes) -> Any:
        return self._request("POST", path, body)

    def delete(self, path: str) -> Any:
        return self._request("DELETE", path)

    def upload(self, dicom_file: Path) -> Any:
        """Store one DICOM file through the REST API (``POST /instances``)."""
        return self.post("/instances", dicom_file.read_bytes())

    def sop_instance_uids(self) -> set[str]:
        """SOP Instance UIDs of every instance Orthanc holds."""
        uids = set()
        for orthanc_id in self.get("/instances"):
            tags = self.get(f"/instances/{orthanc_id}/simplified-tags")
            uids.add(tags["SOPInstanceUID"])
        return uids

    def log_text(self) -> str:
        return self.process.log_text()


def _http_up(port: int) -> bool:
    if not port_open(port):
        return False
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/system", timeout=2):
            return True
    except urllib.error.HTTPError:
        return True  # 401 with authentication enabled: the server is up
    except (urllib.error.URLError, OSError):
        return False


@contextlib.contextmanager
def orthanc(
    work_dir: Path,
    *,
    overrides: Mapping[str, Any] | None = None,
    python_script: Path | None = None,
    env: Mapping[str, str] | None = None,
    aet: str = "ORTHANC",
    credentials: tuple[str, str] | None = None,
    dicomweb: bool = True,
    ready_timeout_s: float = 30.0,
    args: Sequence[str] = (),
) -> Iterator[OrthancServer]:
    """Start Orthanc with storage under ``work_dir``; yield an :class:`OrthancServer`.

    ``overrides`` is merged over the generated configuration (any Orthanc key, e.g.
    ``{"StableAge": 2, "DicomModalities": {...}}``). ``python_script`` loads the orthanc-python
    plugin with that ``PythonScript``. ``credentials`` turns HTTP authentication on with one user.
    ``env`` adds environment variables for the Orthanc process (e.g. ``CTNODE_VENV``).
    ``args`` are extra command-line options (e.g. ``["--verbose"]`` so plugin LogInfo lines show).
    Calling it again with the same ``work_dir`` restarts on the same storage (new ports).
    """
    work_dir.mkdir(parents=True, exist_ok=True)
    storage = work_dir / "storage"
    storage.mkdir(exist_ok=True)
    http_port = free_port()
    dicom_port = free_port()
    while dicom_port == http_port:
        dicom_port = free_port()

    plugins: list[str] = []
    if dicomweb:
        if not DICOMWEB_PLUGIN.exists():
            pytest.fail(f"{DICOMWEB_PLUGIN} missing: scripts/setup --test installs Debian orthanc-dicomweb")
        plugins.append(str(DICOMWEB_PLUGIN))
    config: dict[str, Any] = {
        "Name": f"ctnode-test-{http_port}",
        "StorageDirectory": str(storage),
        "IndexDirectory": str(storage),
        "HttpPort": http_port,
        "DicomPort": dicom_port,
        "DicomAet": aet,
        "RemoteAccessAllowed": False,
        "AuthenticationEnabled": False,
        "HttpServerEnabled": True,
        "DicomServerEnabled": True,
        # LABELMAP SEG (…66.7) is unknown to Orthanc 1.10.1's DCMTK: accept it over C-STORE
        # (dicom-notes.md); STOW-RS accepts it anyway.
        "UnknownSopClassAccepted": True,
        "StableAge": 2,
        "ConcurrentJobs": 1,
        "HttpThreadsCount": 8,
        "DicomWeb": {"Enable": True, "Root": "/dicom-web/"},
        "Plugins": plugins,
    }
    if python_script is not None:
        if not PYTHON_PLUGIN.exists():
            pytest.fail(f"{PYTHON_PLUGIN} missing: scripts/setup --test installs Debian orthanc-python")
        config["Plugins"] = [*plugins, str(PYTHON_PLUGIN)]
        config["PythonScript"] = str(python_script)
    if credentials is not None:
        config["AuthenticationEnabled"] = True
        config["RegisteredUsers"] = {credentials[0]: credentials[1]}
    if overrides:
        config = deep_merge(config, overrides)

    config_path = work_dir / "orthanc.json"
    config_path.write_text(json.dumps(config, indent=2))
    proc_env = dict(os.environ)
    if env:
        proc_env.update(env)
    http_port = int(config["HttpPort"])
    dicom_port = int(config["DicomPort"])
    with managed(
        [orthanc_binary(), *args, str(config_path)],
        log_path=work_dir / "orthanc.log",
        ready=lambda: _http_up(http_port),
        ready_timeout_s=ready_timeout_s,
        env=proc_env,
    ) as proc:
        yield OrthancServer(
            process=proc,
            http_port=http_port,
            dicom_port=dicom_port,
            aet=str(config["DicomAet"]),
            config_path=config_path,
            storage_dir=storage,
            config=config,
            username=credentials[0] if credentials else None,
            password=credentials[1] if credentials else None,
        )


# ---------------------------------------------------------------------------------------------
# Orthanc with the ct-ai-node plugin (plugins/orthanc), and the routing messages it sends
# ---------------------------------------------------------------------------------------------

REPO = Path(__file__).resolve().parents[2]
PLUGIN_SCRIPT = REPO / "plugins" / "orthanc" / "ctnode_orthanc.py"


@contextlib.contextmanager
def orthanc_with_plugin(
    work_dir: Path,
    broker_url: str,
    *,
    stable_age_s: int = 1,
    ctnode: Mapping[str, Any] | None = None,
    credentials: tuple[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
    env: Mapping[str, str] | None = None,
) -> Iterator[OrthancServer]:
    """Orthanc running the ct-ai-node PythonScript (venv via ``CTNODE_VENV``) against ``broker_url``.

    ``ctnode`` is merged into the ``"CtNode"`` section (fast retries by default); ``env`` adds
    ``CTNODE_*`` settings for the plugin (e.g. ``CTNODE_UID_ROOT``). Waits until the plugin has
    logged that it is ready (Orthanc runs ``--verbose`` so its INFO lines are visible). Calling it
    again on the same ``work_dir`` restarts on the same storage and plugin spool.
    """
    section = {"RetryBaseSeconds": 0.3, "RetryMaxSeconds": 1.5, **(ctnode or {})}
    plugin_env = {
        "CTNODE_VENV": str(REPO / ".venv"),
        "CTNODE_CONFIG": "",
        "CTNODE_QUEUE__BROKER_URL": broker_url,
        "CTNODE_STORAGE__ROOT": str(work_dir / "node-var"),
        **(env or {}),
    }
    with orthanc(
        work_dir,
        python_script=PLUGIN_SCRIPT,
        overrides=deep_merge({"StableAge": stable_age_s, "CtNode": section}, overrides or {}),
        env=plugin_env,
        args=["--verbose"],
        credentials=credentials,
    ) as server:
        wait_until(lambda: "ct-ai-node plugin ready" in server.log_text(), timeout_s=30, what="plugin ready")
        yield server


def routing_messages(broker_url: str, *, expect: int, timeout_s: float) -> list[tuple[dict[str, Any], Any]]:
    """Consume up to ``expect`` ``route_study`` messages from the Celery ``routing`` queue.

    Returns (message headers, ``StudyStable``) pairs, acknowledged; fewer when ``timeout_s`` ends
    first. Reads the queue the way a Celery worker would (kombu, JSON body ``[args, kwargs, embed]``).
    """
    from kombu import Connection, Exchange, Queue

    from dicom_node.contracts import StudyStable

    out: list[tuple[dict[str, Any], Any]] = []
    deadline = time.monotonic() + timeout_s
    with Connection(broker_url) as conn:
        queue = conn.SimpleQueue(Queue("routing", Exchange("routing"), routing_key="routing"))
        try:
            while len(out) < expect and time.monotonic() < deadline:
                try:
                    message = queue.get(timeout=max(0.1, deadline - time.monotonic()))
                except queue.Empty:
                    break
                args, _kwargs, _embed = message.decode()
                out.append((dict(message.headers), StudyStable.model_validate(args[0])))
                message.ack()
        finally:
            queue.close()
    return out
