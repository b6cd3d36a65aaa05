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
    "fdr_bh",
    "nbs",
    "permutation_test",
]

log = get_logger("stats.multiple")

_BATCH_BYTES = 64 * 2**20  # default memory budget of one permutation batch


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
    """

    t: np.ndarray
    p_uncorrected: np.ndarray
    p_fwe: np.ndarray
    max_t_null: np.ndarray
    n_permutations: int
    df: int
    two_sided: bool


@dataclass
class _Prepared:
    E: np.ndarray  # (n, m) residuals of Y on the confounds, in the working dtype
    W0: np.ndarray  # (n, 1 + q') [x_r / ||x_r||, Q without permutation-invariant columns]
    ss: np.ndarray  # (m,) sum of squares of E (float64)
    df: int
    codes: np.ndarray | None  # exchangeability block of each row
    t_obs: np.ndarray = field(default_factory=lambda: np.empty(0))


def _prepare(Y: Any, tested: Any, confounds: Any, blocks: Any, dtype: Any) -> _Prepared:
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
    E = Q @ (Q.T @ Ya)
    np.subtract(Ya, E, out=E)  # residuals, in place: no second array of the size of Y
    ss = np.einsum("ij,ij->j", E, E)
    W0 = np.column_stack([xr / np.sqrt(xtx), Q[:, n_invariant:]])
    prep = _Prepared(E=E.astype(dtype, copy=False), W0=W0, ss=ss, df=df, codes=codes)
    a = W0[:, 0] @ E
    prep.t_obs = _t_from(a[None, :], np.zeros((1, m)), ss, df)[0]
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
    rss = ss[None, :] - bq2 - a * a
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
    per_perm = itemsize * q1 * (n + m) + 8 * (3 * m + 2 * n)
    return int(max(1, min(4096, _BATCH_BYTES // per_perm)))


def _t_batches(prep: _Prepared, n_permutations: int, seed: Any,
               batch_size: int | None) -> Iterator[np.ndarray]:
    """Yield (B, m) t statistics of successive batches of Freedman-Lane permutations.

    The random stream does not depend on the batch size, so results are reproducible for a
    seed whatever the memory budget.
    """
    n, m = prep.E.shape
    q1 = prep.W0.shape[1]
    dtype = prep.E.dtype
    bsz = _batch_size(n, m, q1, dtype.itemsize, batch_size)
    rng = np.random.default_rng(seed)
    W0 = prep.W0.astype(dtype)
    done = 0
    while done < n_permutations:
        b = min(bsz, n_permutations - done)
        sigma = _permutations(rng, b, n, prep.codes)
        W = W0[sigma]  # (b, n, q1): rows of [x_n, Q] permuted
        G = np.matmul(W.transpose(0, 2, 1).reshape(b * q1, n), prep.E)  # ONE GEMM per batch
        G = G.reshape(b, q1, m).astype(np.float64, copy=False)
        a = G[:, 0, :]
        bq2 = np.einsum("bqm,bqm->bm", G[:, 1:, :], G[:, 1:, :])
        yield _t_from(a, bq2, prep.ss, prep.df)
        done += b


def _check_n_permutations(n_permutations: Any) -> int:
    if int(n_permutations) != n_permutations or int(n_permutations) < 1:
        raise InputError(f"n_permutations: expected a positive integer, got {n_permutations!r}")
    return int(n_permutations)


def permutation_test(Y: Any, tested: Any, confounds: Any = None, n_permutations: int = 5000,
                     blocks: Any = None, seed: Any = 0, two_sided: bool = True,
                     batch_size: int | None = None,
                     dtype: Any = np.float64) -> PermutationResult:
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
    dtype : numpy dtype
        Working precision of the matrix products (``np.float32`` halves memory and time;
        t statistics then agree to about 1e-5 relative).

    Returns
    -------
    PermutationResult
        Observed t, uncorrected and max-T FWE p-values, the max-T null distribution.

    Raises
    ------
    InputError
        On missing values, mismatched lengths, collinear confounds, or a tested regressor
        explained by the confounds.

    Notes
    -----
    Freedman & Lane (1983); Winkler et al. (2014, NeuroImage 92:381). p-values are
    ``(1 + #{null >= observed}) / (1 + n_permutations)``, as in nilearn ``permuted_ols``.
    """
    n_perm = _check_n_permutations(n_permutations)
    prep = _prepare(Y, tested, confounds, blocks, np.dtype(dtype))
    m = prep.E.shape[1]
    stat_obs = np.abs(prep.t_obs) if two_sided else prep.t_obs
    count = np.zeros(m, dtype=np.int64)
    max_null = np.empty(n_perm)
    done = 0
    for tb in _t_batches(prep, n_perm, seed, batch_size):
        stat = np.abs(tb) if two_sided else tb
        count += (stat >= stat_obs[None, :] - 1e-12 * np.abs(stat_obs)).sum(axis=0)
        max_null[done:done + len(tb)] = stat.max(axis=1)
        done += len(tb)
    p_unc = (1.0 + count) / (1.0 + n_perm)
    sorted_null = np.sort(max_null)
    n_ge = n_perm - np.searchsorted(sorted_null, stat_obs * (1 - 1e-12), side="left")
    p_fwe = (1.0 + n_ge) / (1.0 + n_perm)
    return PermutationResult(t=prep.t_obs, p_uncorrected=p_unc, p_fwe=p_fwe,
                             max_t_null=max_null, n_permutations=n_perm, df=prep.df,
                             two_sided=bool(two_sided))


DEFAULT_SUBNETWORKS = ("frontostriatal", "lc_pfc")


@dataclass(frozen=True)
class NBSResult:
    """Result of :func:`nbs`.

    Attributes
    ----------
    edges : list of str
        Edges analysed (the subnetwork edges present in the table), in table order.
    t : numpy.ndarray
        Observed t per analysed edge.
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


def _resolve_subnetworks(subnetworks: Any) -> list[tuple[set[frozenset[str]], set[str]]]:
    """Return (pairs, node set) per subnetwork specification."""
    if subnetworks is None:
        subnetworks = DEFAULT_SUBNETWORKS
    if isinstance(subnetworks, str):
        subnetworks = [subnetworks]
    specs: Iterable[Any] = (subnetworks.values() if isinstance(subnetworks, Mapping)
                            else subnetworks)
    out: list[tuple[set[frozenset[str]], set[str]]] = []
    pairs_loose: set[frozenset[str]] = set()
    for spec in specs:
        if isinstance(spec, str):
            from danemap.atlas import NETWORKS

            if spec not in NETWORKS:
                raise InputError(f"subnetworks: unknown network {spec!r}; the atlas has "
                                 f"{sorted(NETWORKS)}")
            out.append(({frozenset(p) for p in NETWORKS[spec]}, set()))
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
        batch_size: int | None = None, dtype: Any = np.float64) -> NBSResult:
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
        Edges to analyse: atlas network names (default ``("frontostriatal", "lc_pfc")``,
        from :data:`danemap.atlas.NETWORKS`), sequences of ``(region_a, region_b)``
        pairs, or sets of node names (every edge with both ends in the set). The union of
        the edges is analysed as one graph.
    threshold_t : float
        Primary threshold: an edge is supra-threshold when ``t > threshold_t`` (positive
        components) or, if ``two_sided``, ``t < -threshold_t`` (negative components, formed
        separately).
    two_sided : bool
        Also look for negative components.

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
    specs = _resolve_subnetworks(subnetworks)
    keep = [i for i, (a, b) in enumerate(ends)
            if any(frozenset((a, b)) in pairs or (a in nodes and b in nodes)
                   for pairs, nodes in specs)]
    if not keep:
        raise InputError(f"edge_names: no edge belongs to the subnetworks requested "
                         f"({subnetworks if subnetworks is not None else DEFAULT_SUBNETWORKS});"
                         f" e.g. columns {names[:3]}")
    sel = [names[i] for i in keep]
    node_names = sorted({n for i in keep for n in ends[i]})
    node_idx = {n: k for k, n in enumerate(node_names)}
    ea = np.array([node_idx[ends[i][0]] for i in keep])
    eb = np.array([node_idx[ends[i][1]] for i in keep])
    n_perm = _check_n_permutations(n_permutations)
    prep = _prepare(Ya[:, keep], tested, confounds, blocks, np.dtype(dtype))
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
    max_null = np.empty(n_perm)
    done = 0
    for tb in _t_batches(prep, n_perm, seed, batch_size):
        best = np.zeros(len(tb), dtype=np.int64)
        for sgn in signs:
            _, size = _component_sizes(sgn * tb > threshold_t, ea, eb, len(node_names))
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
