"""README command 1 (``ctnode demo``) as a user runs it: exit 0, a timing table, results at the
PACS, ``preview.png`` written, Dice against the synthetic truth printed (default pipeline
``ct-anatomy-basic``; ``unified-ct`` through the worker is covered by the model's own tests)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image
from pydicom import dcmread

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[2]


def _demo(out: Path, *options: str) -> subprocess.CompletedProcess[str]:
    """``ctnode demo --out OUT [OPTIONS]`` as README command 1 runs it (no stdin); it must succeed."""
    run = subprocess.run(
        [sys.executable, "-m", "worker.cli.main", "demo", "--out", str(out), *options],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=900,
        stdin=subprocess.DEVNULL,
    )
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-4000:]
    return run


def test_ctnode_demo_runs_the_node_end_to_end(tmp_path: Path) -> None:
    out = tmp_path / "out"
    run = _demo(out)
    for stage in ("send study (C-STORE)", "inference", "encode SEG/SR/GSPS", "deliver to PACS", "total"):
        assert stage in run.stdout, run.stdout
    result = json.loads((out / "demo-result.json").read_text())
    assert result["state"] == "delivered"
    assert result["stages_s"]["inference"] > 0
    classes = {str(dcmread(p, stop_before_pixels=True).SOPClassUID) for p in (out / "pacs").rglob("*.dcm")}
    assert classes == {
        "1.2.840.10008.5.1.4.1.1.66.4",  # SEG
        "1.2.840.10008.5.1.4.1.1.88.34",  # Comprehensive 3D SR
        "1.2.840.10008.5.1.4.1.1.11.1",  # GSPS
    }
    with Image.open(out / "preview.png") as image:
        assert image.format == "PNG"
        assert image.width >= 512 and image.height >= 256
        colours = image.convert("RGB").getcolors(maxcolors=1 << 20)
        assert colours is not None and len(colours) > 50  # an image, not a blank canvas
    assert "Dice" in run.stdout  # compared with the synthetic truth


def test_ctnode_demo_with_the_unified_model(tmp_path: Path) -> None:
    """The research model through the whole node (worker process, model card found from a
    settings file outside the project, results at the PACS)."""
    out = tmp_path / "out"
    _demo(out, "--pipeline", "unified-ct")
    result = json.loads((out / "demo-result.json").read_text())
    assert result["pipeline"] == "unified-ct" and result["state"] == "delivered"
    analysis = json.loads(next((out / "var" / "results").glob("*/analysis.json")).read_text())
    assert analysis["algorithm_name"] == "unified-ct"
    assert analysis["algorithm_version"].startswith("unified-ct@")
    assert analysis["segments"], "the model segmented nothing"
