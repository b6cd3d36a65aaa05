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

from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from danemap._utils.logging import get_logger
from danemap.errors import InputError
from danemap.stats._design import as_2d_float, as_labels

__all__ = [
    "DEFAULT_SUBNETWORKS",
    "NBSResult",
    "PermutationResult",
    "default_subnetworks",
    "fdr_bh",
    "nbs",
    "permutation_test",
]

log = get_logger("stats.multiple")

_BATCH_BYTES = 64 * 2**20  # default memory budget of one permutation batch
_CHUNK_BYTES = 2**20  # one float64 array of the elementwise steps: within an L2 cache


def fdr_bh(p: Any, nan: str = "raise") -> np.ndarray:
    """Benjamini-Hochberg adjusted p-values (q-values).

    Parameters
    ----------
    p : array-like
        p-values in [0, 1], any shape.
    nan : {"raise", "keep"}
        What a missing (NaN) p-value does: raise, or stay NaN in the output while the
        other p-values are adjusted among themselves (features that could not be tested).

    Returns
    -------
    numpy.ndarray
        Adjusted p-values, same shape; equal to
        ``statsmodels.stats.multitest.multipletests(p, method="fdr_bh")[1]``.

    Raises
    ------
    InputError
        If a p-value is outside [0, 1], or missing with ``nan="raise"``.
    """
    if nan not in ("raise", "keep"):
        raise InputError(f"nan: expected 'raise' or 'keep', found {nan!r}")
    pa = np.asarray(p, dtype=np.float64)
    if nan == "keep":
        out = np.full(pa.shape, np.nan)
        ok = ~np.isnan(pa)
        if ok.any():
            out[ok] = fdr_bh(pa[ok])
        return out
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


@dataclass(frozen=True)
class PermutationResult:
    """Result of :func:`permutation_test`.

    Attributes
    ----------
    t : numpy.ndarray
        (n_features,) observed t statistic of the tested regressor.
    p_uncorrected : numpy.ndarray
        Per-feature permutation p-value ``(1 + #{stat* >= stat}) / (1 + n_permutations)``.
    p_fwe : numpy.ndarray
        Family-wise-error p-value from the max-statistic null (max-T).
    max_t_null : numpy.ndarray
        (n_permutations,) maximum statistic (|t| when two-sided) over features per
        permutation.
    n_permutations : int
        Number of random permutations (the unpermuted data are not among them).
    df : int
        Residual degrees of freedom of the full model.
    two_sided : bool
        Whether |t| was used.
    constant : numpy.ndarray
        (n_features,) bool: features constant, or constant after the confounds to
        round-off; their t and p are NaN and they are not in the max-T family.
    """

    t: np.ndarray
    p_uncorrected: np.ndarray
    p_fwe: np.ndarray
    max_t_null: np.ndarray
    n_permutations: int
    df: int
    two_sided: bool
    constant: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=bool))


@dataclass
class _Prepared:
    E: np.ndarray  # (n, m') residuals of the non-constant features, in the working dtype
    E64: np.ndarray  # the same in float64 (the same array when the working dtype is float64)
    W0: np.ndarray  # (n, 1 + q') [x_r / ||x_r||, Q without permutation-invariant columns]
    ss: np.ndarray  # (m',) sum of squares of E64 (float64)
    ss_work: np.ndarray  # (m',) that of E: ones when E is float32 (unit-norm columns)
    df: int
    codes: np.ndarray | None  # exchangeability block of each row
    keep: np.ndarray  # (m,) bool: features that are not (numerically) constant
    refine: bool  # float32 products, decisions made exact by float64 recomputation
    t_obs: np.ndarray = field(default_factory=lambda: np.empty(0))  # (m,), NaN if constant


#: A feature is numerically constant when the norm of its residual after the confounds is
#: below this fraction of its own norm: round-off is about 1e-16 of it (float64), real data
#: written with 7 significant digits vary by 1e-7 or more.
_CONSTANT_RTOL = 1e-10

#: Width, in units of sqrt(n) u, of the error bound on a float32 dot product x'y relative to
#: ||x|| ||y||: Higham & Mary (2019, SIAM J Sci Comput 41:A2815) show |error| <= lambda
#: sqrt(n) u |x|'|y| with probability at least 1 - 2n exp(-lambda^2 / 2) (1e-18 for
#: lambda = 10, n = 1000). The largest error seen is about 2 u sqrt(df) in t.
_LAMBDA = 10.0


def _working_dtype(dtype: Any) -> tuple[np.dtype, bool]:
    """Working dtype of the permutation products and whether decisions are refined."""
    if dtype is None:
        return np.dtype(np.float32), True
    dt = np.dtype(dtype)
    if dt not in (np.dtype(np.float32), np.dtype(np.float64)):
        raise InputError(f"dtype: expected None (float32 products, exact float64 decisions), "
                         f"numpy.float64 or numpy.float32, got {dtype!r}")
    return dt, False


def _prepare(Y: Any, tested: Any, confounds: Any, blocks: Any, dtype: Any) -> _Prepared:
    work, refine = _working_dtype(dtype)
    Ya = as_2d_float(Y, "Y")
    n, m = Ya.shape
    x = np.asarray(tested, dtype=np.float64).reshape(-1)
    if x.shape[0] != n:
        raise InputError(f"tested: expected {n} values (one per row of Y), got {x.shape[0]}")
    if not np.all(np.isfinite(x)):
        raise InputError("tested: expected finite values, found NaN/inf")
    if confounds is None:
        Z = np.ones((n, 1))
    else:
        Z = as_2d_float(np.asarray(confounds, dtype=np.float64).reshape(n, -1)
                        if np.ndim(confounds) == 1 else confounds, "confounds")
        if Z.shape[0] != n:
            raise InputError(f"confounds: expected {n} rows (as Y), got {Z.shape[0]}")
        if not np.any(np.ptp(Z, axis=0) == 0):
            Z = np.column_stack([np.ones(n), Z])
    codes = None
    if blocks is not None:
        labels = as_labels(blocks, n, "blocks")
        codes = np.unique(labels.astype(str), return_inverse=True)[1]
    # Confounds that every permutation leaves unchanged (the intercept; with blocks, any
    # column constant within each block, such as site dummies) come first, so that the
    # leading columns of Q span them: for those, Q' P E = Q' E = 0 exactly, and the
    # permutation loop skips them (one row of the batch product fewer per column).
    invariant = np.array([_constant_within(z, codes) for z in Z.T])
    Z = np.column_stack([Z[:, invariant], Z[:, ~invariant]])
    n_invariant = int(invariant.sum())
    Q, R = np.linalg.qr(Z)
    diag = np.abs(np.diag(R))
    if diag.min() <= diag.max() * n * np.finfo(float).eps:
        raise InputError(f"confounds: expected full column rank {Z.shape[1]} (with intercept), "
                         "found collinear columns")
    xr = x - Q @ (Q.T @ x)
    xtx = float(xr @ xr)
    if xtx <= (x @ x) * 1e-12 or xtx == 0:
        raise InputError("tested: the tested regressor is constant or explained by the "
                         "confounds; nothing is left to test")
    df = n - Q.shape[1] - 1
    if df < 1:
        raise InputError(f"Y: {n} samples leave no residual degrees of freedom for "
                         f"{Q.shape[1] + 1} regressors")
    peak = np.abs(Ya).max(axis=0)
    extreme = (peak > 0) & ((peak < 1e-100) | (peak > 1e100))
    if extreme.any():  # t does not depend on units: keep sums of squares in range
        Ya = Ya * np.where(extreme, 1 / np.where(extreme, peak, 1.0), 1.0)
    norm2 = np.einsum("ij,ij->j", Ya, Ya)
    E = Q @ (Q.T @ Ya)
    np.subtract(Ya, E, out=E)  # residuals, in place: no second array of the size of Y
    ss = np.einsum("ij,ij->j", E, E)
    # constant, or constant after the confounds to round-off: no t, no p, not in max-T
    keep = ss > norm2 * _CONSTANT_RTOL**2
    if not keep.all():
        const = np.flatnonzero(~keep)
        log.warning("%d feature(s) constant or explained by the confounds to round-off "
                    "(columns %s%s): t and p are n/a, and they are left out of the max-T "
                    "family", const.size, const[:10].tolist(), " ..." if const.size > 10 else "")
        E = np.ascontiguousarray(E[:, keep])
        ss = ss[keep]
    W0 = np.column_stack([xr / np.sqrt(xtx), Q[:, n_invariant:]])
    if work == np.float64:
        E_work, ss_work = E, ss
    else:  # unit-norm columns: no float32 overflow or underflow, whatever the units
        E_work = (E * (1 / np.sqrt(ss))).astype(work)
        ss_work = np.ones_like(ss)
    prep = _Prepared(E=E_work, E64=E, W0=W0, ss=ss, ss_work=ss_work, df=df, codes=codes,
                     keep=keep, refine=refine)
    a = W0[:, 0] @ E
    prep.t_obs = np.full(m, np.nan)
    prep.t_obs[keep] = _t_from(a, np.zeros_like(a), ss, df)
    return prep


def _constant_within(z: np.ndarray, codes: np.ndarray | None) -> bool:
    """Return True when ``z`` is constant overall, or within each block of ``codes``."""
    if codes is None:
        return bool(np.ptp(z) == 0)
    order = np.argsort(codes, kind="stable")
    edges = np.flatnonzero(np.diff(codes[order])) + 1
    return all(np.ptp(part) == 0 for part in np.split(z[order], edges))


def _t_from(a: np.ndarray, bq2: np.ndarray, ss: np.ndarray, df: int) -> np.ndarray:
    """T of the tested regressor from ``x_n' P E`` (``x_n`` unit norm) and ``||Q' P E||^2``."""
    rss = ss - bq2 - a * a
    with np.errstate(divide="ignore", invalid="ignore"):
        return a / np.sqrt(np.maximum(rss, 0.0) / df)


def _permutations(rng: np.random.Generator, b: int, n: int,
                  codes: np.ndarray | None) -> np.ndarray:
    """``b`` random permutations of ``range(n)``, within blocks when ``codes`` is given."""
    if codes is None:
        return np.argsort(rng.random((b, n)), axis=1)
    order = np.argsort(codes, kind="stable")  # rows grouped by block
    keys = rng.random((b, n)) + codes[order][None, :]  # block k draws in [k, k + 1)
    within = np.argsort(keys, axis=1)  # stays inside each block's range
    sigma = np.empty((b, n), dtype=np.intp)
    sigma[:, order] = order[within]
    return sigma


def _batch_size(n: int, m: int, q1: int, itemsize: int, batch_size: int | None) -> int:
    if batch_size is not None:
        if int(batch_size) < 1:
            raise InputError(f"batch_size: expected a positive integer, got {batch_size}")
        return int(batch_size)
    per_perm = itemsize * q1 * (n + m) + 8 * 2 * n
    return int(max(1, min(4096, _BATCH_BYTES // per_perm)))


@dataclass
class _Batch:
    """T statistics of one batch of permutations.

    ``t`` is (B, m'); with ``w`` (refined precision) the float64 t lies in ``t +- w``, and
    :meth:`exact` recomputes chosen entries in float64.
    """

    t: np.ndarray
    w: np.ndarray | None
    sigma: np.ndarray
    prep: _Prepared

    def exact(self, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
        """Float64 t of the entries ``(rows[i], cols[i])``: one small product per entry."""
        prep = self.prep
        n = prep.E64.shape[0]
        out = np.empty(rows.size)
        chunk = max(1, 2**22 // n)  # 32 MiB of gathered residuals at a time
        ET = prep.E64.T
        for s in range(0, rows.size, chunk):
            r, c = rows[s:s + chunk], cols[s:s + chunk]
            inv = np.empty((r.size, n), dtype=np.intp)  # inverse permutations
            np.put_along_axis(inv, self.sigma[r], np.arange(n)[None, :], axis=1)
            Ep = np.take_along_axis(ET[c], inv, axis=1)  # Ep[i, sigma(l)] = E[l]
            G = Ep @ prep.W0  # (P, q1) = rows of (W0[sigma]' E[:, c])'
            out[s:s + chunk] = _t_from(G[:, 0], np.einsum("pq,pq->p", G[:, 1:], G[:, 1:]),
                                       prep.ss[c], prep.df)
        return out


def _batches(prep: _Prepared, n_permutations: int, seed: Any,
             batch_size: int | None) -> Iterator[_Batch]:
    """Yield successive batches of Freedman-Lane permutations.

    The random stream does not depend on the batch size, so results are reproducible for a
    seed whatever the memory budget.
    """
    n, m = prep.E.shape
    q1 = prep.W0.shape[1]
    dtype = prep.E.dtype
    bsz = _batch_size(n, m, q1, dtype.itemsize, batch_size)
    rng = np.random.default_rng(seed)
    W0T = np.ascontiguousarray(prep.W0.T, dtype=dtype)  # (q1, n)
    if prep.refine:
        u = float(np.finfo(np.float32).eps) / 2
        c = (_LAMBDA * np.sqrt(n) + 4) * u  # |error of x' P E_j| <= c ||E_j|| (see _LAMBDA)
        e2 = 2 * c * (1 + np.sqrt(q1 - 1)) + q1 * c * c + 1e-14  # |error of rss| / ss
        da = c * np.sqrt(prep.ss_work)
        drss = e2 * prep.ss_work
    chunk = max(1, _CHUNK_BYTES // (8 * m))
    done = 0
    while done < n_permutations:
        b = min(bsz, n_permutations - done)
        sigma = _permutations(rng, b, n, prep.codes)
        # W0T[:, sigma] rows are (q, permutation): ONE GEMM per batch, no transpose copy
        G = np.matmul(W0T[:, sigma].reshape(q1 * b, n), prep.E).reshape(q1, b, m)
        # the elementwise steps run on row chunks that stay in the L2 cache
        for s in range(0, b, chunk):
            e = min(b, s + chunk)
            a = G[0, s:e].astype(np.float64)
            bq2 = np.zeros_like(a)
            for k in range(1, q1):
                gk = G[k, s:e].astype(np.float64)
                bq2 += np.square(gk, out=gk)
            rss = np.subtract(prep.ss_work, bq2, out=bq2)
            rss -= a * a
            with np.errstate(divide="ignore", invalid="ignore"):
                if not prep.refine:
                    np.maximum(rss, 0.0, out=rss)
                    rss *= 1 / prep.df
                    yield _Batch(np.divide(a, np.sqrt(rss, out=rss), out=a), None,
                                 sigma[s:e], prep)
                    continue
                k_mid = np.sqrt(prep.df / np.maximum(rss, 1e-300))
                rss -= drss
                np.maximum(rss, 1e-300, out=rss)
                k_hi = np.sqrt(np.divide(prep.df, rss, out=rss), out=rss)
            t = a * k_mid
            # |t64 - t| <= da k_hi + |a| (k_hi - k_mid), plus float64 rounding
            w = np.subtract(k_hi, k_mid, out=k_mid)
            w *= np.abs(a, out=a)
            k_hi *= da
            w += k_hi
            w += 1e-12 * np.abs(t)
            yield _Batch(t, w, sigma[s:e], prep)
        done += b


def _check_n_permutations(n_permutations: Any) -> int:
    if int(n_permutations) != n_permutations or int(n_permutations) < 1:
        raise InputError(f"n_permutations: expected a positive integer, got {n_permutations!r}")
    return int(n_permutations)


def permutation_test(Y: Any, tested: Any, confounds: Any = None, n_permutations: int = 5000,
                     blocks: Any = None, seed: Any = 0, two_sided: bool = True,
                     batch_size: int | None = None, dtype: Any = None) -> PermutationResult:
    """Freedman-Lane permutation test with max-T family-wise error control.

    Parameters
    ----------
    Y : array-like, shape (n_samples, n_features)
        Responses (no missing values).
    tested : array-like, shape (n_samples,)
        The regressor of interest (e.g. group coded 0/1).
    confounds : array-like, shape (n_samples, n_confounds), or None
        Nuisance regressors; an intercept is added unless a constant column is present.
        When ``blocks`` are sites, include the site dummies here too.
    n_permutations : int
        Number of random permutations.
    blocks : array-like, shape (n_samples,), or None
        Exchangeability blocks (e.g. site): rows are permuted only within their block.
    seed : int, numpy.random.Generator or None
        Seed of ``numpy.random.default_rng``; the same seed gives the same result whatever
        ``batch_size``.
    two_sided : bool
        Use |t| (default) or t (tests ``tested`` > 0).
    batch_size : int or None
        Permutations per matrix product; by default chosen to use about 64 MiB.
    dtype : None, numpy.float64 or numpy.float32
        Precision of the permutation products. None (default): float32 products with a
        bound on their error; every comparison the bound cannot decide (a permuted
        statistic near an observed one, the largest statistics of a permutation) is
        recomputed in float64, so the p-values and the max-T null are those of
        ``numpy.float64`` (to a few ulps), at about the cost of float32.
        ``numpy.float64``: float64 throughout. ``numpy.float32``: float32 without
        recomputation (t agree to about 1e-5 relative; a p-value may differ by one count).

    Returns
    -------
    PermutationResult
        Observed t, uncorrected and max-T FWE p-values, the max-T null distribution.
        Features that are constant, or constant after the confounds to round-off, have
        t and p NaN and do not enter the max-T null (``constant`` marks them).

    Raises
    ------
    InputError
        On missing values, mismatched lengths, collinear confounds, a tested regressor
        explained by the confounds, or an unknown ``dtype``.

    Notes
    -----
    Freedman & Lane (1983); Winkler et al. (2014, NeuroImage 92:381). p-values are
    ``(1 + #{null >= observed}) / (1 + n_permutations)``, as in nilearn ``permuted_ols``.
    """
    n_perm = _check_n_permutations(n_permutations)
    prep = _prepare(Y, tested, confounds, blocks, dtype)
    m_all = prep.t_obs.shape[0]
    t_obs = prep.t_obs[prep.keep]
    m = t_obs.shape[0]
    stat_obs = np.abs(t_obs) if two_sided else t_obs
    thr = stat_obs - 1e-12 * np.abs(stat_obs)  # a tie to round-off counts as >=
    count = np.zeros(m, dtype=np.int64)
    max_null = np.full(n_perm, np.nan)
    done = 0
    for batch in (_batches(prep, n_perm, seed, batch_size) if m else ()):
        stat = np.abs(batch.t) if two_sided else batch.t
        b = stat.shape[0]
        if batch.w is None:
            count += (stat >= thr).sum(axis=0)
            max_null[done:done + b] = stat.max(axis=1)
        else:
            lo = stat - batch.w
            hi = np.add(stat, batch.w, out=stat)
            count += (lo >= thr).sum(axis=0)
            # to recompute: entries the bound cannot place against their threshold, and
            # the candidates for each permutation's maximum
            near = (hi >= thr) & (lo < thr)
            near |= hi >= lo.max(axis=1, keepdims=True)
            rows, cols = np.nonzero(near)
            t64 = batch.exact(rows, cols)
            s64 = np.abs(t64) if two_sided else t64
            ambiguous = lo[rows, cols] < thr[cols]
            count += np.bincount(cols[ambiguous & (s64 >= thr[cols])], minlength=m)
            best = np.full(b, -np.inf)
            np.maximum.at(best, rows, s64)
            max_null[done:done + b] = best
        done += b
    full = np.full(m_all, np.nan)
    p_unc = full.copy()
    p_unc[prep.keep] = (1.0 + count) / (1.0 + n_perm)
    sorted_null = np.sort(max_null)
    n_ge = n_perm - np.searchsorted(sorted_null, thr, side="left")
    p_fwe = full.copy()
    p_fwe[prep.keep] = (1.0 + n_ge) / (1.0 + n_perm)
    return PermutationResult(t=prep.t_obs, p_uncorrected=p_unc, p_fwe=p_fwe,
                             max_t_null=max_null, n_permutations=n_perm, df=prep.df,
                             two_sided=bool(two_sided), constant=~prep.keep)


DEFAULT_SUBNETWORKS = ("frontostriatal", "lc_pfc")


def default_subnetworks(networks: Mapping[str, Any] | None = None) -> list[str]:
    """Return the networks the network-based statistic analyses by default.

    Parameters
    ----------
    networks : mapping or None
        The atlas's networks (name -> region pairs); None: the built-in atlas's
        (:data:`danemap.atlas.NETWORKS`).

    Returns
    -------
    list of str
        :data:`DEFAULT_SUBNETWORKS` when the atlas has all of them (the built-in atlas),
        else every network of the atlas, in its order (a user atlas with its own networks).
    """
    if networks is None:
        return list(DEFAULT_SUBNETWORKS)
    if all(n in networks for n in DEFAULT_SUBNETWORKS):
        return list(DEFAULT_SUBNETWORKS)
    return [str(n) for n in networks]


@dataclass(frozen=True)
class NBSResult:
    """Result of :func:`nbs`.

    Attributes
    ----------
    edges : list of str
        Edges analysed (the subnetwork edges present in the table), in table order.
    t : numpy.ndarray
        Observed t per analysed edge (NaN for an edge constant to round-off, which is
        never supra-threshold).
    components : list of dict
        One dict per observed supra-threshold component, largest first: ``edges`` (list of
        edge names), ``nodes`` (sorted node names), ``size`` (number of supra-threshold
        edges), ``sign`` (+1 / -1: direction of the t statistics) and ``p_fwe``.
    max_size_null : numpy.ndarray
        (n_permutations,) largest component size per permutation.
    threshold_t : float
        Primary threshold on t.
    n_permutations : int
        Number of permutations.
    """

    edges: list[str]
    t: np.ndarray
    components: list[dict[str, Any]]
    max_size_null: np.ndarray
    threshold_t: float
    n_permutations: int


def _split_edge(name: str) -> tuple[str, str]:
    parts = str(name).split("__")
    if len(parts) != 2 or not parts[0] or not parts[1]:
        raise InputError(f"edge_names: expected 'RegionA__RegionB' (two names joined by a "
                         f"double underscore), got {name!r}")
    return parts[0], parts[1]


def _resolve_subnetworks(subnetworks: Any, networks: Mapping[str, Any] | None = None,
                         ) -> list[tuple[set[frozenset[str]], set[str]]]:
    """Return (pairs, node set) per subnetwork specification (names looked up in networks)."""
    if networks is None:
        from danemap.atlas import NETWORKS

        networks = NETWORKS
    if subnetworks is None:
        subnetworks = default_subnetworks(networks)
    if isinstance(subnetworks, str):
        subnetworks = [subnetworks]
    specs: Iterable[Any] = (subnetworks.values() if isinstance(subnetworks, Mapping)
                            else subnetworks)
    out: list[tuple[set[frozenset[str]], set[str]]] = []
    pairs_loose: set[frozenset[str]] = set()
    for spec in specs:
        if isinstance(spec, str):
            if spec not in networks:
                raise InputError(f"subnetworks: unknown network {spec!r}; the atlas has "
                                 f"{sorted(networks)}")
            out.append(({frozenset(p) for p in networks[spec]}, set()))
        elif isinstance(spec, (set, frozenset)):
            out.append((set(), {str(s) for s in spec}))
        elif isinstance(spec, tuple) and len(spec) == 2 and all(isinstance(s, str) for s in spec):
            pairs_loose.add(frozenset(spec))
        else:
            pairs = {frozenset(p) for p in spec}
            if any(len(p) != 2 for p in pairs):
                raise InputError("subnetworks: expected network names, node sets, or "
                                 "sequences of (region_a, region_b) pairs")
            out.append((pairs, set()))
    if pairs_loose:
        out.append((pairs_loose, set()))
    return out


def _component_sizes(supra: np.ndarray, ea: np.ndarray, eb: np.ndarray,
                     n_nodes: int) -> tuple[np.ndarray, np.ndarray]:
    """Find connected components of many graphs at once by label propagation.

    ``supra`` is (B, n_edges) boolean; returns the node labels (B, n_nodes) and the
    number of supra-threshold edges in the largest component of each graph (B,).
    """
    b = supra.shape[0]
    labels = np.broadcast_to(np.arange(n_nodes), (b, n_nodes)).copy()
    big = n_nodes
    for _ in range(n_nodes):
        la = np.where(supra, labels[:, ea], big)
        lb = np.where(supra, labels[:, eb], big)
        low = np.minimum(la, lb)
        new = labels.copy()
        rows = np.broadcast_to(np.arange(b)[:, None], low.shape)
        np.minimum.at(new, (rows, np.broadcast_to(ea, low.shape)), low)
        np.minimum.at(new, (rows, np.broadcast_to(eb, low.shape)), low)
        if np.array_equal(new, labels):
            break
        labels = new
    edge_label = np.where(supra, labels[:, ea], n_nodes)  # n_nodes = "no component"
    counts = np.zeros((b, n_nodes + 1), dtype=np.int64)
    np.add.at(counts, (np.broadcast_to(np.arange(b)[:, None], edge_label.shape), edge_label), 1)
    return labels, counts[:, :n_nodes].max(axis=1)


def nbs(Y_edges: Any, edge_names: Sequence[str], tested: Any, confounds: Any = None,
        subnetworks: Any = None, threshold_t: float = 3.0, n_permutations: int = 5000,
        blocks: Any = None, seed: Any = 0, two_sided: bool = True,
        batch_size: int | None = None, dtype: Any = None,
        networks: Mapping[str, Sequence[tuple[str, str]]] | None = None) -> NBSResult:
    """Network-based statistic (Zalesky et al. 2010) on connectivity-edge features.

    Parameters
    ----------
    Y_edges : array-like, shape (n_samples, n_edges)
        One column per edge (e.g. Fisher-z correlations).
    edge_names : sequence of str
        Column names ``'RegionA__RegionB'`` (double underscore; either order).
    tested, confounds, n_permutations, blocks, seed, batch_size, dtype
        As in :func:`permutation_test` (same Freedman-Lane engine).
    subnetworks : None, str, sequence or mapping
        Edges to analyse: names of ``networks`` (default :func:`default_subnetworks`:
        ``("frontostriatal", "lc_pfc")`` for the built-in atlas), sequences of
        ``(region_a, region_b)`` pairs, or sets of node names (every edge with both ends in
        the set). The union of the edges is analysed as one graph.
    threshold_t : float
        Primary threshold: an edge is supra-threshold when ``t > threshold_t`` (positive
        components) or, if ``two_sided``, ``t < -threshold_t`` (negative components, formed
        separately).
    two_sided : bool
        Also look for negative components.
    networks : mapping or None
        The atlas's networks (name -> region pairs, :attr:`danemap.atlas.Atlas.networks`)
        that network names refer to; None: the built-in atlas's
        (:data:`danemap.atlas.NETWORKS`).

    Returns
    -------
    NBSResult
        Observed components with FWE p-values from the null of the largest component size
        (number of supra-threshold edges) over permutations (positive and negative
        components pooled in one maximum when two-sided).

    Raises
    ------
    InputError
        On malformed edge names, no edge of the subnetworks in the table, or bad inputs.
    """
    names = [str(e) for e in edge_names]
    Ya = as_2d_float(Y_edges, "Y_edges")
    if len(names) != Ya.shape[1]:
        raise InputError(f"edge_names: expected {Ya.shape[1]} names (one per column of "
                         f"Y_edges), got {len(names)}")
    if not threshold_t > 0:
        raise InputError(f"threshold_t: expected a positive number, got {threshold_t}")
    ends = [_split_edge(e) for e in names]
    specs = _resolve_subnetworks(subnetworks, networks)
    keep = [i for i, (a, b) in enumerate(ends)
            if any(frozenset((a, b)) in pairs or (a in nodes and b in nodes)
                   for pairs, nodes in specs)]
    if not keep:
        asked = subnetworks if subnetworks is not None else default_subnetworks(networks)
        raise InputError(f"edge_names: no edge belongs to the subnetworks requested "
                         f"({asked}); e.g. columns {names[:3]}")
    sel = [names[i] for i in keep]
    node_names = sorted({n for i in keep for n in ends[i]})
    node_idx = {n: k for k, n in enumerate(node_names)}
    ea = np.array([node_idx[ends[i][0]] for i in keep])
    eb = np.array([node_idx[ends[i][1]] for i in keep])
    n_perm = _check_n_permutations(n_permutations)
    prep = _prepare(Ya[:, keep], tested, confounds, blocks, dtype)
    signs = (1, -1) if two_sided else (1,)

    components: list[dict[str, Any]] = []
    t_obs = prep.t_obs
    for sgn in signs:
        supra = (sgn * t_obs > threshold_t)[None, :]
        labels, _ = _component_sizes(supra, ea, eb, len(node_names))
        for lab in np.unique(labels[0, ea[supra[0]]]):
            members = np.flatnonzero(supra[0] & (labels[0, ea] == lab))
            nodes = sorted({node_names[ea[j]] for j in members} |
                           {node_names[eb[j]] for j in members})
            components.append({"edges": [sel[j] for j in members], "nodes": nodes,
                               "size": int(members.size), "sign": sgn})
    max_null = np.zeros(n_perm)
    done = 0
    ea_k, eb_k = ea[prep.keep], eb[prep.keep]  # constant edges are never supra-threshold
    for batch in (_batches(prep, n_perm, seed, batch_size) if prep.keep.any() else ()):
        tb = batch.t
        if batch.w is not None:  # recompute in float64 the t the bound cannot place
            rows, cols = np.nonzero(np.abs(np.abs(tb) - threshold_t) <= batch.w)
            tb[rows, cols] = batch.exact(rows, cols)
        best = np.zeros(len(tb), dtype=np.int64)
        for sgn in signs:
            _, size = _component_sizes(sgn * tb > threshold_t, ea_k, eb_k, len(node_names))
            best = np.maximum(best, size)
        max_null[done:done + len(tb)] = best
        done += len(tb)
    for comp in components:
        comp["p_fwe"] = float((1 + np.sum(max_null >= comp["size"])) / (1 + n_perm))
    components.sort(key=lambda c: -c["size"])
    log.info("nbs: %d edges, %d observed component(s), threshold t=%g", len(sel),
             len(components), threshold_t)
    return NBSResult(edges=sel, t=t_obs, components=components, max_size_null=max_null,
                     threshold_t=float(threshold_t), n_permutations=n_perm)
