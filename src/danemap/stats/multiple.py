"""Multiple comparisons: Benjamini-Hochberg FDR, Freedman-Lane max-T permutation, NBS.

The permutation engine (:func:`permutation_test`) follows Freedman & Lane (1983) as
recommended by Winkler et al. (2014, NeuroImage 92:381): the residuals of the
confound-only model are permuted (within exchangeability blocks, e.g. sites), and the
family-wise error is controlled with the distribution of the maximum statistic over features.

It is vectorised: by the Frisch-Waugh-Lovell theorem the t statistic of the tested
regressor ``x`` after the confounds ``Z`` (orthonormal basis ``Q``) on the permuted
residuals ``P E`` needs only ``x_r' P E`` and ``Q' P E`` (``x_r`` is ``x`` residualised on
``Z``), and the sum of squares of ``P E`` equals that of ``E``. Permuting the rows of ``E``
is therefore permuting the rows of ``[x_r, Q]``; a batch of ``B`` permutations is one
``((q + 1) B x n) @ (n x m)`` matrix product.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from danemap._utils.logging import get_logger
from danemap.errors import InputError

__all__ = ["fdr_bh"]

log = get_logger("stats.multiple")

_BATCH_BYTES = 64 * 2**20  # default memory budget of one permutation batch


def fdr_bh(p: Any) -> np.ndarray:
    """Benjamini-Hochberg adjusted p-values (q-values).

    Parameters
    ----------
    p : array-like
        p-values in [0, 1], any shape.

    Returns
    -------
    numpy.ndarray
        Adjusted p-values, same shape; equal to
        ``statsmodels.stats.multitest.multipletests(p, method="fdr_bh")[1]``.

    Raises
    ------
    InputError
        If a p-value is missing or outside [0, 1].
    """
    pa = np.asarray(p, dtype=np.float64)
    shape = pa.shape
    flat = pa.ravel()
    if flat.size == 0:
        return pa.copy()
    if not np.all(np.isfinite(flat)) or flat.min() < 0 or flat.max() > 1:
        raise InputError(f"p: expected p-values in [0, 1] without NaN, found range "
                         f"[{np.nanmin(flat)}, {np.nanmax(flat)}] and "
                         f"{int(np.isnan(flat).sum())} NaN")
    m = flat.size
    order = np.argsort(flat, kind="mergesort")
    ranked = flat[order] * m / np.arange(1, m + 1)
    q_sorted = np.minimum.accumulate(ranked[::-1])[::-1]
    q = np.empty(m)
    q[order] = np.minimum(q_sorted, 1.0)
    return q.reshape(shape)
