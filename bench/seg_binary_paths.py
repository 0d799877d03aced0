"""Bench: BINARY SEG by highdicom alone vs the node's fast writer (issue 10, item 6).

    .venv/bin/python bench/seg_binary_paths.py [--slices 300] [--segments 20] [--repeat 2]

Same 512×512 CT headers and label map (bench/encode_results.py's phantom: organ-sized lobulated
blobs) through

* ``highdicom``: ``hd.seg.Segmentation`` builds every frame, ``pydicom.dcmwrite`` writes it (what
  the node would do with highdicom alone);
* ``fast``: ``dicom_node.results.seg.write_seg`` (highdicom builds the module-level content from one
  slice, numpy packs the frames, per-frame groups are encoded directly).

Each path runs in a fresh child process (cold: first call, highdicom loads its tables; warm: the
median of the repeats). Prints wall and CPU seconds, peak RSS, frames and bytes, and whether the
two files decode to the same frames. CPU seconds are the fairer number on a shared machine.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.encode_results import (  # noqa: E402
    JOB_ID,
    UID_ROOT,
    analysis_for,
    current_rss_mb,
    phantom_labelmap,
    reset_peak_rss,
    rss_mb,
    write_ct,
)


def child(
    path_kind: str, ct_dir: Path, n_slices: int, n_segments: int, repeat: int, out: Path
) -> dict[str, object]:
    import numpy as np
    import pydicom

    from dicom_node.identity import derived_uid
    from dicom_node.results import seg as seg_module

    sources = [pydicom.dcmread(p, stop_before_pixels=True) for p in sorted(ct_dir.glob("*.dcm"))]
    labelmap = phantom_labelmap(n_slices, n_segments)
    analysis = analysis_for(labelmap, n_segments)
    algorithm = seg_module.AlgorithmIdentity(
        name=analysis.algorithm_name, version=analysis.algorithm_version, family=analysis.algorithm_family
    )
    series = seg_module.SegSeries(
        series_instance_uid=derived_uid(UID_ROOT, JOB_ID, "seg-series"),
        sop_instance_uid=derived_uid(UID_ROOT, JOB_ID, "seg-instance"),
        series_number=901,
        algorithm=algorithm,
        manufacturer="ct-ai-node",
        series_description="AI SEG - bench",
        dimension_organization_uid=derived_uid(UID_ROOT, JOB_ID, "seg-dimension-organization"),
        content_datetime=datetime(2026, 12, 3, 12, 0),
    )

    def highdicom_path() -> bytes:
        seg = seg_module.build_seg(sources, labelmap, analysis.segments, seg_type="binary", series=series)
        buffer = io.BytesIO()
        pydicom.dcmwrite(buffer, seg, enforce_file_format=True)
        return buffer.getvalue()

    def fast_path() -> bytes:
        buffer = io.BytesIO()
        seg_module.write_seg(buffer, sources, labelmap, analysis.segments, seg_type="binary", series=series)
        return buffer.getvalue()

    run = highdicom_path if path_kind == "highdicom" else fast_path
    reset_peak_rss()
    baseline = current_rss_mb()
    walls, cpus = [], []
    data = b""
    for _ in range(repeat + 1):
        wall, cpu = time.perf_counter(), time.process_time()
        data = run()
        walls.append(time.perf_counter() - wall)
        cpus.append(time.process_time() - cpu)
    out.write_bytes(data)
    ds = pydicom.dcmread(io.BytesIO(data))
    frames = ds.pixel_array.astype(np.uint8)
    return {
        "cold_wall_s": walls[0],
        "cold_cpu_s": cpus[0],
        "warm_wall_s": statistics.median(walls[1:]) if repeat else walls[0],
        "warm_cpu_s": statistics.median(cpus[1:]) if repeat else cpus[0],
        "peak_rss_mb": rss_mb(),
        "growth_mb": rss_mb() - baseline,
        "frames": int(ds.NumberOfFrames),
        "bytes": len(data),
        "frame_sum": int(frames.sum()),
    }


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        a = sys.argv[2:]
        print(json.dumps(child(a[0], Path(a[1]), int(a[2]), int(a[3]), int(a[4]), Path(a[5]))))
        return
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--slices", type=int, default=300)
    parser.add_argument("--segments", type=int, default=20)
    parser.add_argument("--repeat", type=int, default=2)
    args = parser.parse_args()
    with open("/proc/loadavg") as loadavg:
        load = loadavg.read().split()[:3]
    print(f"{len(os.sched_getaffinity(0))} CPUs, load average {load}, {datetime.now():%Y-%m-%d}")
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        ct_dir = Path(tmp) / "ct"
        write_ct(ct_dir, args.slices)
        for kind in ("fast", "highdicom"):
            out = subprocess.run(
                [
                    sys.executable,
                    __file__,
                    "--child",
                    kind,
                    str(ct_dir),
                    str(args.slices),
                    str(args.segments),
                    str(args.repeat),
                    str(Path(tmp) / f"{kind}.dcm"),
                ],
                capture_output=True,
                text=True,
            )
            if out.returncode != 0:
                raise SystemExit(f"{kind} failed:\n{out.stderr}")
            results[kind] = json.loads(out.stdout.strip().splitlines()[-1])
            r = results[kind]
            print(
                f"{kind:9s}: {r['frames']} frames, {r['bytes'] / 2**20:.1f} MB"
                f" | cold wall {r['cold_wall_s']:.2f} s cpu {r['cold_cpu_s']:.2f} s"
                f" | warm wall {r['warm_wall_s']:.2f} s cpu {r['warm_cpu_s']:.2f} s"
                f" | peak RSS {r['peak_rss_mb']:.0f} MB (+{r['growth_mb']:.0f} MB)"
            )
    same = results["fast"]["frame_sum"] == results["highdicom"]["frame_sum"] and (
        results["fast"]["frames"] == results["highdicom"]["frames"]
    )
    ratio = results["highdicom"]["warm_cpu_s"] / max(results["fast"]["warm_cpu_s"], 1e-9)
    print(f"same frames: {same}; highdicom / fast (warm CPU): {ratio:.1f}x")


if __name__ == "__main__":
    main()
