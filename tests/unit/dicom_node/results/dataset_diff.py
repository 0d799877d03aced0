"""Recursive comparison of two pydicom datasets, reporting every difference by path."""

from __future__ import annotations

from pydicom.dataset import Dataset


def dataset_differences(a: Dataset, b: Dataset, path: str = "") -> list[str]:
    out: list[str] = []
    tags_a = {elem.tag for elem in a}
    tags_b = {elem.tag for elem in b}
    for tag in sorted(tags_a ^ tags_b):
        side = "first" if tag in tags_a else "second"
        keyword = (a if tag in tags_a else b)[tag].keyword
        out.append(f"{path}/{keyword or tag}: only in {side}")
    for tag in sorted(tags_a & tags_b):
        ea, eb = a[tag], b[tag]
        name = f"{path}/{ea.keyword or tag}"
        if ea.VR == "SQ":
            if len(ea.value) != len(eb.value):
                out.append(f"{name}: {len(ea.value)} vs {len(eb.value)} items")
                continue
            for i, (item_a, item_b) in enumerate(zip(ea.value, eb.value, strict=True)):
                out.extend(dataset_differences(item_a, item_b, f"{name}[{i}]"))
        elif ea.value != eb.value:
            out.append(f"{name}: {str(ea.value)[:60]!r} vs {str(eb.value)[:60]!r}")
    return out
