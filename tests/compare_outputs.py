"""Compare every TSV of two danemap output folders (the 'no result changes' check).

Run the demo before and after a refactor, then::

    python tests/compare_outputs.py BEFORE/results/danemap AFTER/results/danemap

Prints the TSVs only one side has, the ones whose bytes differ (with the largest relative
difference of their numeric cells) and a summary line; exits 1 when any TSV differs. JSON
sidecars and ``summary.json`` hold provenance (dates, versions, paths), so they are not
compared; TSVs hold none.
"""

from __future__ import annotations

import sys
from pathlib import Path


def _max_rel_diff(a: Path, b: Path) -> float | None:
    import numpy as np
    import pandas as pd

    x = pd.read_csv(a, sep="\t", na_values="n/a")
    y = pd.read_csv(b, sep="\t", na_values="n/a")
    if x.shape != y.shape or list(x.columns) != list(y.columns):
        return None
    num = x.select_dtypes("number").columns
    xa, ya = x[num].to_numpy(float), y[num].to_numpy(float)
    with np.errstate(invalid="ignore", divide="ignore"):
        rel = np.abs(xa - ya) / np.maximum(np.abs(xa), np.abs(ya))
    return float(np.nanmax(rel, initial=0.0))


def compare(before: Path, after: Path) -> int:
    """Print the differences between the TSVs of two output trees; return 0 if none."""
    left = {p.relative_to(before) for p in before.rglob("*.tsv")}
    right = {p.relative_to(after) for p in after.rglob("*.tsv")}
    differ = 0
    for rel in sorted(left ^ right):
        print(f"only in {'before' if rel in left else 'after'}: {rel}")
    for rel in sorted(left & right):
        if (before / rel).read_bytes() != (after / rel).read_bytes():
            differ += 1
            print(f"differs: {rel} (max relative difference "
                  f"{_max_rel_diff(before / rel, after / rel)})")
    print(f"{len(left & right)} TSVs in both, {differ} differ, {len(left ^ right)} on one side")
    return 1 if differ or left ^ right else 0


if __name__ == "__main__":
    sys.exit(compare(Path(sys.argv[1]), Path(sys.argv[2])))
