"""OHIF 3.13 in headless Debian Chromium, driven by Playwright, against a real Orthanc.

::

    with ohif_session(server, artifacts=ARTIFACTS / "case") as viewer:
        viewer.open_study(study_uid)
        viewer.load_series("AI SEG")                 # double-click its thumbnail: SEG hydrates
        viewer.wait_for_segmentation()
        x, y = viewer.show_point(sop_instance_uid, world_lps)
        rgb = viewer.screenshot("seg.png")          # H×W×3 uint8, also kept under artifacts/

The browser is Debian's ``/usr/bin/chromium`` (never ``playwright install``), headless, with a
fresh profile; WebGL2 comes from SwiftShader (``--enable-unsafe-swiftshader``). The viewer server
is :class:`worker.cli.viewer.ViewerServer` (the same one ``ctnode viewer`` runs), so the test
exercises what an admin opens by hand.

Positions: :meth:`OhifSession.show_point` makes the viewport show the image of a given SOP
Instance and asks cornerstone (``window.cornerstone``, exposed by OHIF) where a patient-space
point (LPS mm) lands on the page: the colour checks sample the screenshot there.
"""

from __future__ import annotations

import contextlib
import shutil
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from tests.support.orthanc import OrthancServer
from worker.cli.viewer import OHIF_VERSION, ViewerServer, default_ohif_dist

REPO = Path(__file__).resolve().parents[2]
ARTIFACTS = REPO / "test-artifacts" / "ohif"
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-quic",
    "--disable-sync",
    "--enable-unsafe-swiftshader",
]


def ohif_dist() -> Path:
    dist = default_ohif_dist()
    if not (dist / "index.html").is_file():
        pytest.fail(
            f"OHIF {OHIF_VERSION} not found at {dist}: scripts/setup --test fetches it (npm pack @ohif/app)"
        )
    return dist


def cielab_to_rgb(lab_dicom: Sequence[int]) -> tuple[int, int, int]:
    """DICOM CIELab (PS3.3 C.10.7.1.1: L 0..65535 ↔ 0..100, a/b 0..65535 ↔ -128..127) → sRGB."""
    lightness = lab_dicom[0] / 65535 * 100
    a = lab_dicom[1] / 65535 * 255 - 128
    b = lab_dicom[2] / 65535 * 255 - 128
    fy = (lightness + 16) / 116
    fx, fz = fy + a / 500, fy - b / 200

    def inverse(t: float) -> float:
        return t**3 if t**3 > 0.008856 else (t - 16 / 116) / 7.787

    x, y, z = 0.95047 * inverse(fx), 1.0 * inverse(fy), 1.08883 * inverse(fz)  # D65 white
    linear = (
        3.2406 * x - 1.5372 * y - 0.4986 * z,
        -0.9689 * x + 1.8758 * y + 0.0415 * z,
        0.0557 * x - 0.2040 * y + 1.0570 * z,
    )

    def gamma(c: float) -> int:
        c = min(1.0, max(0.0, c))
        value = 12.92 * c if c <= 0.0031308 else 1.055 * c ** (1 / 2.4) - 0.055
        return round(value * 255)

    return gamma(linear[0]), gamma(linear[1]), gamma(linear[2])


def chroma(rgb: Sequence[float]) -> np.ndarray:
    """The colour of a pixel without its grey part: what a semi-transparent overlay adds to CT."""
    vector = np.asarray(rgb, dtype=float)
    return vector - vector.mean()


def closest_colour(observed: Sequence[float], candidates: Sequence[Sequence[float]]) -> tuple[int, float]:
    """(index of the candidate whose hue the observed pixel has, cosine similarity of the chromas)."""
    seen = chroma(observed)
    best, best_score = -1, -2.0
    for index, candidate in enumerate(candidates):
        expected = chroma(candidate)
        denominator = float(np.linalg.norm(seen) * np.linalg.norm(expected))
        score = float(seen @ expected) / denominator if denominator else -1.0
        if score > best_score:
            best, best_score = index, score
    return best, best_score


def mean_rgb(image: np.ndarray, x: float, y: float, radius: int = 3) -> tuple[float, float, float]:
    """Mean colour of the (2·radius+1)² pixels around (x, y) of an H×W×3 screenshot."""
    cx, cy = round(x), round(y)
    patch = image[max(0, cy - radius) : cy + radius + 1, max(0, cx - radius) : cx + radius + 1, :3]
    r, g, b = patch.reshape(-1, 3).mean(axis=0)
    return float(r), float(g), float(b)


class OhifSession:
    def __init__(self, page: Any, server: ViewerServer, artifacts: Path) -> None:
        self.page = page
        self.server = server
        self.artifacts = artifacts
        self.console: list[str] = []
        page.on("console", lambda message: self.console.append(f"{message.type}: {message.text}"[:400]))

    def open_study(self, study_instance_uid: str, *, timeout_s: float = 90) -> None:
        """Load the viewer on a study and wait until its first image is on screen."""
        self.page.goto(self.server.viewer_url(study_instance_uid))
        self.wait_for(
            "() => window.cornerstone && window.cornerstone.getEnabledElements().length > 0 &&"
            " window.cornerstone.getEnabledElements()[0].viewport.getCurrentImageId() != null",
            timeout_s=timeout_s,
            what="first image",
        )
        # OHIF 3.13 opens an onboarding tour on a fresh profile: close it.
        with contextlib.suppress(Exception):
            self.page.get_by_text("Skip all").click(timeout=3000)

    def wait_for(self, predicate_js: str, *, timeout_s: float, what: str) -> Any:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            with contextlib.suppress(Exception):  # the page may be navigating
                value = self.page.evaluate(predicate_js)
                if value:
                    return value
            time.sleep(0.25)
        self.screenshot(f"timeout-{what.replace(' ', '-')}.png")
        raise TimeoutError(f"OHIF: {what} not reached in {timeout_s} s; console tail: {self.console[-10:]}")

    def load_series(self, text: str) -> None:
        """Double-click the study-browser thumbnail showing ``text`` (e.g. its SeriesDescription)."""
        self.page.get_by_text(text).first.dblclick()

    def wait_for_segmentation(self, *, timeout_s: float = 90) -> int:
        """Wait until a SEG is hydrated and shown; return the number of its segments."""
        count = self.wait_for(
            "() => { const s = window.services && window.services.segmentationService;"
            " if (!s) return 0; const all = s.getSegmentations();"
            " if (!all.length) return 0; return Object.keys(all[0].segments || {}).length; }",
            timeout_s=timeout_s,
            what="segmentation",
        )
        time.sleep(1.0)  # the labelmap render follows the state change
        return int(count)

    def show_point(
        self, sop_instance_uid: str, world_lps: Sequence[float], *, timeout_s: float = 30
    ) -> tuple[float, float]:
        """Show the image of ``sop_instance_uid`` and return where ``world_lps`` is on the page.

        Right after a series is loaded OHIF swaps the viewport (an SR becomes a new viewport
        whose stack fills a moment later; measured once in CI), so the image is looked for
        until ``timeout_s`` before this fails.
        """
        deadline = time.monotonic() + timeout_s
        index = -1
        while index < 0:
            with contextlib.suppress(Exception):  # the viewport may be mid-swap
                index = int(
                    self.page.evaluate(
                        "async ([sop]) => { const vp = window.cornerstone.getEnabledElements()[0].viewport;"
                        " const ids = vp.getImageIds(); const i = ids.findIndex(id => id.includes(sop));"
                        " if (i < 0) return -1; await vp.setImageIdIndex(i); vp.render(); return i; }",
                        [sop_instance_uid],
                    )
                )
            if index < 0:
                if time.monotonic() > deadline:
                    raise AssertionError(
                        f"image {sop_instance_uid} not in the viewport's stack in {timeout_s} s"
                    )
                time.sleep(0.5)
        time.sleep(1.0)  # let the segmentation overlay of the new slice render
        x, y = self.page.evaluate(
            "([p]) => { const e = window.cornerstone.getEnabledElements()[0];"
            " const c = e.viewport.worldToCanvas(p); const r = e.viewport.canvas.getBoundingClientRect();"
            " return [r.left + c[0], r.top + c[1]]; }",
            [list(map(float, world_lps))],
        )
        return float(x), float(y)

    def screenshot(self, name: str) -> np.ndarray:
        self.artifacts.mkdir(parents=True, exist_ok=True)
        path = self.artifacts / name
        self.page.screenshot(path=str(path))
        with Image.open(path) as image:
            return np.asarray(image.convert("RGB"))

    def body_text(self) -> str:
        return str(self.page.inner_text("body"))


@contextlib.contextmanager
def ohif_session(
    orthanc: OrthancServer, *, artifacts: Path, viewport: tuple[int, int] = (1400, 900)
) -> Iterator[OhifSession]:
    """Viewer server + a fresh headless Chromium page; console log kept under ``artifacts``."""
    from playwright.sync_api import sync_playwright

    if not CHROMIUM.exists():
        pytest.fail("/usr/bin/chromium missing: scripts/setup --test installs Debian chromium")
    credentials = (orthanc.username, orthanc.password) if orthanc.username and orthanc.password else None
    server = ViewerServer(dist=ohif_dist(), orthanc_url=orthanc.url, orthanc_credentials=credentials)
    if artifacts.exists():
        shutil.rmtree(artifacts)
    artifacts.mkdir(parents=True)
    with server.running(), sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = browser.new_context(viewport={"width": viewport[0], "height": viewport[1]}).new_page()
            session = OhifSession(page, server, artifacts)
            try:
                yield session
            finally:
                (artifacts / "console.txt").write_text("\n".join(session.console))
        finally:
            browser.close()
