"""Benchmark: danemap.io.load_nifti vs nibabel.load(...).get_fdata() on a ~100 MB 4D .nii.gz.

Run: ``.venv/bin/python benchmarks/bench_io.py [--mb 100] [--repeats 3]``.
Prints the median of each and the ratio (nibabel / danemap; > 1 means danemap is faster).
Also times ``np.asanyarray(nibabel.load(...).dataobj)`` (the on-disk dtype, as danemap returns).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import nibabel as nib
import numpy as np

from danemap.io import load_nifti


def _make(path: Path, mb: float, endian: str) -> tuple[int, ...]:
    n_vols = max(1, int(mb * 2**20 / (61 * 73 * 61 * 4)))
    shape = (61, 73, 61, n_vols)
    rng = np.random.default_rng(0)
    # smooth-ish signal: compresses like real BOLD (not like white noise)
    base = rng.normal(1000, 50, size=shape[:3]).astype(np.float32)
    data = base[..., None] + rng.normal(0, 5, size=shape).astype(np.float32).round(1)
    hdr = nib.Nifti1Header(endianness=endian)
    hdr.set_data_dtype(np.dtype(np.float32).newbyteorder(endian))
    nib.save(nib.Nifti1Image(data.astype(hdr.get_data_dtype()), np.diag([3, 3, 3, 1.0]), hdr),
             path)
    return shape


def _time(fn, repeats: int) -> tuple[float, object]:
    times = []
    out = None
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--mb", type=float, default=100.0, help="uncompressed size in MB")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        for endian in ("<", ">"):
            path = Path(tmp) / f"bold_{'le' if endian == '<' else 'be'}.nii.gz"
            shape = _make(path, args.mb, endian)
            size = path.stat().st_size / 2**20
            t_dm, img = _time(lambda p=path: load_nifti(p, expect_ndim=4), args.repeats)
            t_nf, ref = _time(lambda p=path: nib.load(p).get_fdata(), args.repeats)
            t_nd, _ = _time(lambda p=path: np.asanyarray(nib.load(p).dataobj), args.repeats)
            assert np.array_equal(np.asanyarray(img.dataobj), ref)  # type: ignore[attr-defined]
            print(f"{path.name}: shape {shape}, {np.prod(shape) * 4 / 2**20:.0f} MB float32, "
                  f"{size:.0f} MB on disk, median of {args.repeats}")
            print(f"  danemap load_nifti          {t_dm:7.3f} s")
            print(f"  nibabel get_fdata()         {t_nf:7.3f} s   ratio {t_nf / t_dm:5.2f}x")
            print(f"  nibabel dataobj (float32)   {t_nd:7.3f} s   ratio {t_nd / t_dm:5.2f}x")


if __name__ == "__main__":
    main()
