"""Voxel comparisons shared by the NIfTI reader tests, the fuzzer and the bad-input corpus."""

from __future__ import annotations

from typing import Any

import numpy as np


def same_voxels(ours: Any, theirs: Any, ulps: int = 4) -> bool:
    """Whether two decoded images agree: integers exactly, floats within ``ulps`` ulps.

    danemap's reader and nibabel's decode the same bytes, but they may apply the scale
    factors in a different order; floats are compared with a relative tolerance of a few
    units in the last place (NaN equal to NaN), never bit for bit.
    """
    a, b = np.asanyarray(ours), np.asanyarray(theirs)
    if a.shape != b.shape:
        return False
    if not (np.issubdtype(a.dtype, np.inexact) or np.issubdtype(b.dtype, np.inexact)):
        return bool(np.array_equal(a, b))
    dtype = np.result_type(a.dtype, b.dtype)
    return bool(np.allclose(a, b, rtol=ulps * np.finfo(dtype).eps, atol=0, equal_nan=True))


def assert_same_voxels(ours: Any, theirs: Any, ulps: int = 4) -> None:
    """Assert :func:`same_voxels`, showing the largest difference when it fails."""
    a, b = np.asanyarray(ours), np.asanyarray(theirs)
    assert same_voxels(a, b, ulps), (
        f"voxels differ: shapes {a.shape} / {b.shape}, dtypes {a.dtype} / {b.dtype}"
        + (f", max |diff| {np.nanmax(np.abs(a.astype(float) - b.astype(float)))}"
           if a.shape == b.shape and a.size else ""))
