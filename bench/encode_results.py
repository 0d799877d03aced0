"""Bench: result encoding (SEG + SR + GSPS) for a 512×512×300 CT with 20 segments, plus the CT
reader/writer of dicom_node.imaging.

    .venv/bin/python bench/encode_results.py [--slices 300] [--segments 20] [--repeat 3]

Prints wall and CPU seconds per object and in total, cold (first call in the process: highdicom
loads its IOD tables) and warm (median of the repeats, what a long-running worker sees), and peak
RSS. Memory is measured in fresh child processes so that one measurement does not inherit
another's peak. Results go to bench/RESULTS.md, section "Result encoding".
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from dicom_node.contracts import (  # noqa: E402
    AnalysisResult,
    BoxFinding,
    CodedConcept,
    SegmentDescription,
    SegmentMeasurement,
    SnippetLocation,
)

UID_ROOT = "1.2.826.0.1.3680043.10.1111."
JOB_ID = "6b3f5a2e-8a54-5b0e-9d1f-2f0c8e7a1b42"
SPACING_MM = (1.0, 0.7, 0.7)


def _status_mb(field: str) -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024.0
    raise RuntimeError(f"{field} not in /proc/self/status")


def rss_mb() -> float:
    """Peak resident set size of this process, MB (VmHWM: unlike ru_maxrss it is not inherited
    from the parent across fork/exec)."""
    return _status_mb("VmHWM")


def current_rss_mb() -> float:
    return _status_mb("VmRSS")


def reset_peak_rss() -> None:
    """Start VmHWM again from the current RSS (Linux ≥ 4.0: write 5 to clear_refs), so a peak
    measures the step that follows, not the test-data generation before it."""
    with open("/proc/self/clear_refs", "w") as clear_refs:
        clear_refs.write("5")


def timed(fn: Callable[[], object]) -> tuple[float, float, object]:
    wall, cpu = time.perf_counter(), time.process_time()
    value = fn()
    return time.perf_counter() - wall, time.process_time() - cpu, value


def phantom_labelmap(n_slices: int, n_segments: int, seed: int = 0) -> np.ndarray:
    """Lobulated ellipsoids (organ-sized blobs), each spanning tens to ~200 slices."""
    rng = np.random.default_rng(seed)
    labelmap = np.zeros((n_slices, 512, 512), dtype=np.uint8)
    z, y, x = np.ogrid[:n_slices, :512, :512]
    for label in range(1, n_segments + 1):
        centre = rng.uniform([0.2 * n_slices, 120, 120], [0.8 * n_slices, 392, 392])
        radii = rng.uniform([0.05 * n_slices, 15, 15], [0.3 * n_slices, 70, 70])
        s0, s1 = max(0, int(centre[0] - radii[0])), min(n_slices, int(centre[0] + radii[0]) + 1)
        dz, dy, dx = (z[s0:s1] - centre[0]) / radii[0], (y - centre[1]) / radii[1], (x - centre[2]) / radii[2]
        angle = np.arctan2(dy, dx)
        lobes = 1.0 + 0.15 * np.sin(3 * angle + label) + 0.05 * np.sin(7 * angle)
        blob = dz**2 + dy**2 + dx**2 <= lobes**2
        labelmap[s0:s1][blob] = label
    return labelmap


def analysis_for(labelmap: np.ndarray, n_segments: int) -> AnalysisResult:
    organ = CodedConcept(value="91772007", scheme_designator="SCT", meaning="Organ")
    segments = tuple(
        SegmentDescription(
            segment_number=n,
            label=f"Structure {n}",
            category=organ,
            type=CodedConcept(value="10200004", scheme_designator="SCT", meaning="Liver"),
            tracking_id=f"structure-{n}",
            description=f"Structure {n}: measured",
        )
        for n in range(1, n_segments + 1)
    )
    voxel_ml = SPACING_MM[0] * SPACING_MM[1] * SPACING_MM[2] / 1000
    measurements = tuple(
        SegmentMeasurement(
            segment_number=n,
            volume_ml=100.0 * voxel_ml,
            mean_hu=50.0,
            std_hu=10.0,
            voxel_count=100,
            bbox_voxels=(0, 0, 0, 1, 1, 1),
            bbox_lps_mm=(0, 0, 0, 1, 1, 1),
        )
        for n in range(1, n_segments + 1)
    )
    lesion = CodedConcept(value="52988006", scheme_designator="SCT", meaning="Lesion")
    findings = tuple(
        BoxFinding(
            label="Liver lesion",
            text=f"Lesion {i}",
            score=0.9,
            category=organ,
            type=lesion,
            box_voxels=(100 + 10 * i, 200, 200 + 20 * i, 108 + 10 * i, 215, 214 + 20 * i),
            key_slice_index=104 + 10 * i,
            size_mm=(10.5, 9.8, 8.0),
        )
        for i in range(5)
    )
    snippets = tuple(
        SnippetLocation(
            text=f"series 3, image {80 + i}: nodule",
            slice_index=79 + i,
            z_mm=79.0 + i,
            point_lps_mm=(0, 0, 79.0 + i),
            score=0.5,
        )
        for i in range(3)
    )
    family = CodedConcept(value="123110", scheme_designator="DCM", meaning="Artificial Intelligence")
    return AnalysisResult(
        job_id=JOB_ID,
        algorithm_name="bench-model",
        algorithm_version="1.0.0",
        algorithm_family=family,
        segments=segments,
        measurements=measurements,
        findings=findings,
        snippets=snippets,
        descriptions=tuple(s.description for s in segments),
        summary="bench",
    )


def write_ct(out_dir: Path, n_slices: int) -> list[Path]:
    from dicom_node.imaging.writer import PatientInfo, write_ct_series

    affine = np.eye(4)
    affine[:3, 0] = (0, 0, SPACING_MM[0])
    affine[:3, 1] = (0, SPACING_MM[1], 0)
    affine[:3, 2] = (SPACING_MM[2], 0, 0)
    affine[:3, 3] = (-180, -180, -300)
    hu = np.random.default_rng(1).integers(-1024, 1500, size=(n_slices, 512, 512)).astype(np.float32)
    wall, cpu, paths = timed(
        lambda: write_ct_series(
            hu,
            affine,
            out_dir,
            study_instance_uid=UID_ROOT + "1",
            series_instance_uid=UID_ROOT + "2",
            uid_root=UID_ROOT,
            patient=PatientInfo(name="SYNTHETIC^BENCH", id="SYN-BENCH"),
            body_part_examined="ABDOMEN",
        )
    )
    print(f"write_ct_series {n_slices}×512×512: wall {wall:.2f} s, cpu {cpu:.2f} s")
    return paths  # type: ignore[return-value]


def child_reader(ct_dir: Path) -> dict[str, float]:
    from dicom_node.imaging.reader import load_series

    paths = sorted(ct_dir.glob("*.dcm"))
    load_series(paths[:2])  # loads the decoder plugins, so the baseline holds the code, not the data
    reset_peak_rss()
    baseline = current_rss_mb()
    wall, cpu, loaded = timed(lambda: load_series(paths))
    volume_mb = loaded.hu.nbytes / 2**20  # type: ignore[attr-defined]
    return {
        "wall_s": wall,
        "cpu_s": cpu,
        "peak_rss_mb": rss_mb(),
        "growth_mb": rss_mb() - baseline,
        "volume_mb": volume_mb,
    }


def child_encode(ct_dir: Path, n_slices: int, n_segments: int, repeat: int, roles: str) -> dict[str, object]:
    import pydicom

    from dicom_node.result_kinds import result_kind
    from dicom_node.results.bundle import encode_results

    sources = [pydicom.dcmread(p, stop_before_pixels=True) for p in sorted(ct_dir.glob("*.dcm"))]
    labelmap = phantom_labelmap(n_slices, n_segments)
    analysis = analysis_for(labelmap, n_segments)
    # the summary kinds draw key images from the CT: give them a volume of the right shape
    hu = (
        np.where(labelmap > 0, 60.0, -1000.0).astype(np.float32)
        if any(result_kind(r).needs_hu for r in roles.split(","))
        else None
    )
    reset_peak_rss()
    baseline = current_rss_mb()
    wanted = roles.split(",")
    runs = []
    seg_frames = 0
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(repeat + 1):
            per_role: dict[str, tuple[float, float]] = {}
            for role in wanted:
                wall, cpu, _ = timed(
                    lambda role=role, i=i: encode_results(
                        job_id=JOB_ID,
                        study_instance_uid=UID_ROOT + "1",
                        sources=sources,
                        labelmap=labelmap,
                        analysis=analysis,
                        out_dir=Path(tmp) / f"run{i}",
                        uid_root=UID_ROOT,
                        manufacturer="ct-ai-node",
                        roles=[role],
                        hu=hu,
                        content_datetime=datetime(2026, 11, 23, 12, 0),
                    )
                )
                per_role[role] = (wall, cpu)
            # All roles in one call (the label statistics are then computed once).
            wall, cpu, bundle = timed(
                lambda i=i: encode_results(
                    job_id=JOB_ID,
                    study_instance_uid=UID_ROOT + "1",
                    sources=sources,
                    labelmap=labelmap,
                    analysis=analysis,
                    out_dir=Path(tmp) / f"all{i}",
                    uid_root=UID_ROOT,
                    manufacturer="ct-ai-node",
                    roles=wanted,
                    hu=hu,
                    content_datetime=datetime(2026, 11, 23, 12, 0),
                )
            )
            sizes = {Path(f.path).name: Path(f.path).stat().st_size for f in bundle.files}  # type: ignore[attr-defined]
            runs.append({"per_role": per_role, "together": (wall, cpu), "sizes": sizes})
            seg_paths = [f.path for f in bundle.files if f.role.startswith("seg")]  # type: ignore[attr-defined]
            if seg_paths:
                seg_frames = int(pydicom.dcmread(seg_paths[0], stop_before_pixels=True).NumberOfFrames)
    return {
        "cold": runs[0],
        "warm": runs[1:],
        "peak_rss_mb": rss_mb(),
        "growth_mb": rss_mb() - baseline,
        "labelmap_mb": labelmap.nbytes / 2**20,
        "seg_frames": seg_frames,
    }


def child(argv: list[str]) -> None:
    kind = argv[0]
    if kind == "reader":
        print(json.dumps(child_reader(Path(argv[1]))))
    else:
        print(json.dumps(child_encode(Path(argv[1]), int(argv[2]), int(argv[3]), int(argv[4]), argv[5])))


def run_child(*args: str) -> dict[str, object]:
    out = subprocess.run([sys.executable, __file__, "--child", *args], capture_output=True, text=True)
    if out.returncode != 0:
        raise SystemExit(f"child {args[0]} failed:\n{out.stderr}")
    return json.loads(out.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def report_encode(title: str, result: dict[str, object]) -> None:
    warm = result["warm"]
    assert isinstance(warm, list)

    def median(values: list[float]) -> float:
        return statistics.median(values) if values else float("nan")

    print(
        f"\n{title}: SEG frames {result['seg_frames']}, peak RSS {result['peak_rss_mb']:.0f} MB "
        f"(+{result['growth_mb']:.0f} MB while encoding; label map {result['labelmap_mb']:.0f} MB)"
    )
    cold = result["cold"]
    assert isinstance(cold, dict)
    for role, (wall, cpu) in cold["per_role"].items():
        warm_wall = median([run["per_role"][role][0] for run in warm])
        warm_cpu = median([run["per_role"][role][1] for run in warm])
        print(
            f"  {role:14s} alone: cold wall {wall:.2f} s cpu {cpu:.2f} s"
            f" | warm wall {warm_wall:.2f} s cpu {warm_cpu:.2f} s"
        )
    wall, cpu = cold["together"]
    warm_wall = median([run["together"][0] for run in warm])
    warm_cpu = median([run["together"][1] for run in warm])
    print(
        f"  all in one encode_results: cold wall {wall:.2f} s cpu {cpu:.2f} s"
        f" | warm wall {warm_wall:.2f} s cpu {warm_cpu:.2f} s"
    )
    print(f"  file sizes: {cold['sizes']}")


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        child(sys.argv[2:])
        return
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--slices", type=int, default=300)
    parser.add_argument("--segments", type=int, default=20)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    with open("/proc/loadavg") as loadavg:
        load = loadavg.read().split()[:3]
    machine = subprocess.run(["uname", "-m"], capture_output=True, text=True).stdout.strip()
    print(f"machine: {machine}, {len(os.sched_getaffinity(0))} CPUs, load average {load}")
    with tempfile.TemporaryDirectory() as tmp:
        ct_dir = Path(tmp) / "ct"
        write_ct(ct_dir, args.slices)
        reader = run_child("reader", str(ct_dir))
        print(
            f"load_series: wall {reader['wall_s']:.2f} s, cpu {reader['cpu_s']:.2f} s, "
            f"peak RSS {reader['peak_rss_mb']:.0f} MB "
            f"(+{reader['growth_mb']:.0f} MB for a {reader['volume_mb']:.0f} MB float32 volume)"
        )
        common = (str(ct_dir), str(args.slices), str(args.segments), str(args.repeat))
        report_encode("SEG (binary) + SR + GSPS", run_child("encode", *common, "seg,sr,gsps"))
        report_encode("LABELMAP SEG", run_child("encode", *common, "seg-labelmap"))
        report_encode("summary kinds", run_child("encode", *common, "pdf,sc-summary,kos-key-images"))


if __name__ == "__main__":
    main()
