"""ComBat harmonisation of site (scanner) effects, as an sklearn estimator.

The algorithm is that of Johnson, Li & Rabinovic (2007, Biostatistics 8:118) as adapted to
neuroimaging by Fortin et al. (2017, NeuroImage 161:149; 2018, NeuroImage 167:104) and
implemented in neuroCombat / neuroHarmonize. For every feature ``v``::

    x_iv = alpha_v + C_i beta_v + gamma_{site(i) v} + delta_{site(i) v} * eps_iv

The biological covariates ``C`` (e.g. age, sex and the diagnostic group) are preserved: their
effects are estimated jointly with the site means, and only the site location
(``gamma``) and scale (``delta``) are removed, after empirical-Bayes (EB) shrinkage across
features (parametric or non-parametric), or without EB.

Numerically this reproduces ``neuroHarmonize.harmonizationLearn`` (linear covariates) and
``neuroCombat.neuroCombat`` to rounding error (tested on the real ADHD-200 table), with three
documented differences where those tools return NaN:

* a **constant feature** (or one that the covariates explain exactly) passes through
  unchanged and is left out of the EB priors;
* a **site with fewer than three participants** is refused with an :class:`InputError`
  (its scale cannot be estimated; merge it with a similar site or drop it);
* the non-parametric EB weights are computed in log space, so large sites do not underflow.

A single site (for example one training fold of leave-one-site-out) has no site effect to
remove: the fit warns and the transform is the identity.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
from sklearn.base import BaseEstimator

from danemap._utils.logging import get_logger
from danemap.errors import DanemapWarning, InputError, NotFittedError
from danemap.stats._design import CovariateEncoder, as_2d_float, as_labels

__all__ = ["COMBAT_METHODS", "MIN_SITE_SIZE", "ComBat", "combat_params"]

log = get_logger("stats.combat")

#: Fewest participants a site needs for its scale to be estimated.
MIN_SITE_SIZE = 3
_CONV = 1e-4  # convergence criterion of the parametric EB iteration (as neuroCombat/sva)
_MAX_ITER = 10_000
_NP_CHUNK = 512  # features per block in the non-parametric EB (bounds an m x m matrix)

#: Named ComBat estimation methods (``stats.combat_method``, ``--combat-method``) and the
#: :class:`ComBat` parameters each one sets.
COMBAT_METHODS: dict[str, dict[str, Any]] = {
    "parametric": {"parametric": True, "empirical_bayes": True},
    "nonparametric": {"parametric": False, "empirical_bayes": True},
    "no-eb": {"parametric": True, "empirical_bayes": False},
}


def combat_params(method: str, where: str = "combat_method") -> dict[str, Any]:
    """Return the :class:`ComBat` parameters of a named estimation method.

    Parameters
    ----------
    method : {"parametric", "nonparametric", "no-eb"}
        Parametric empirical Bayes (the neuroCombat / neuroHarmonize default),
        non-parametric empirical Bayes, or per-feature least-squares site estimates
        without empirical Bayes (see :data:`COMBAT_METHODS`).
    where : str
        Name of the setting, used in the error message.

    Returns
    -------
    dict
        ``parametric`` and ``empirical_bayes`` keyword arguments of :class:`ComBat`.

    Raises
    ------
    InputError
        If ``method`` is not one of :data:`COMBAT_METHODS`.

    Examples
    --------
    >>> combat_params("nonparametric")
    {'parametric': False, 'empirical_bayes': True}
    """
    if method not in COMBAT_METHODS:
        raise InputError(f"{where}: expected one of {list(COMBAT_METHODS)}, found {method!r}")
    return dict(COMBAT_METHODS[method])


def _aprior(delta_hat: np.ndarray) -> float:
    m = float(np.mean(delta_hat))
    s2 = float(np.var(delta_hat, ddof=1))
    return (2 * s2 + m**2) / s2


def _bprior(delta_hat: np.ndarray) -> float:
    m = float(np.mean(delta_hat))
    s2 = float(np.var(delta_hat, ddof=1))
    return (m * s2 + m**3) / s2


def _parametric_eb(g_hat: np.ndarray, d_hat: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Parametric EB of one site (neuroCombat ``it_sol``, iterated jointly over features).

    ``sum((s - g)^2)`` is computed from the site mean and variance by the exact identity
    ``(n-1) d_hat + n (g_hat - g)^2``, so the raw data are not needed in the loop.
    """
    g_bar = float(np.mean(g_hat))
    t2 = float(np.var(g_hat, ddof=1))
    a = _aprior(d_hat)
    b = _bprior(d_hat)
    g_old = g_hat.copy()
    d_old = d_hat.copy()
    ss_within = (n - 1) * d_hat
    change = 1.0
    count = 0
    g_new, d_new = g_old, d_old
    with np.errstate(divide="ignore", invalid="ignore"):
        while change > _CONV and count < _MAX_ITER:
            g_new = (t2 * n * g_hat + d_old * g_bar) / (t2 * n + d_old)
            sum2 = ss_within + n * (g_hat - g_new) ** 2
            d_new = (0.5 * sum2 + b) / (n / 2.0 + a - 1.0)
            # same (signed-denominator) criterion as neuroCombat and sva, for equality
            change = max(np.max(np.abs(g_new - g_old) / g_old),
                         np.max(np.abs(d_new - d_old) / d_old))
            g_old, d_old = g_new, d_new
            count += 1
    if count >= _MAX_ITER:
        warnings.warn(f"ComBat: parametric EB did not converge in {_MAX_ITER} iterations",
                      DanemapWarning, stacklevel=3)
    return g_new, d_new


def _nonparametric_eb(g_hat: np.ndarray, d_hat: np.ndarray, v_data: np.ndarray,
                      n: int) -> tuple[np.ndarray, np.ndarray]:
    """Non-parametric EB of one site (neuroCombat ``int_eprior``), in log space.

    Feature ``f`` gets the average of the other features' ``(g_j, d_j)`` weighted by the
    Gaussian likelihood of its data under them; ``sum_k (s_kf - g_j)^2`` is
    ``(n-1) v_f + n (g_hat_f - g_j)^2`` with ``v_f`` the data variance of feature ``f``
    (the site's standardised variance, i.e. the least-squares ``delta_hat`` before zero
    variances are replaced by 1).
    """
    m = g_hat.shape[0]
    g_star = np.empty(m)
    d_star = np.empty(m)
    log_norm = -0.5 * n * np.log(2.0 * np.pi * d_hat)  # (m,)
    for start in range(0, m, _NP_CHUNK):
        stop = min(start + _NP_CHUNK, m)
        rows = np.arange(start, stop)
        sum2 = (n - 1) * v_data[rows, None] + n * (g_hat[rows, None] - g_hat[None, :]) ** 2
        loglh = log_norm[None, :] - sum2 / (2.0 * d_hat[None, :])
        loglh[np.arange(stop - start), rows] = -np.inf  # leave feature f out
        loglh -= loglh.max(axis=1, keepdims=True)
        w = np.exp(loglh)
        w /= w.sum(axis=1, keepdims=True)
        g_star[rows] = w @ g_hat
        d_star[rows] = w @ d_hat
    return g_star, d_star


class ComBat(BaseEstimator):
    """ComBat harmonisation (Johnson 2007; Fortin 2017, 2018) with the sklearn contract.

    Parameters
    ----------
    parametric : bool, default=True
        Parametric (normal / inverse-gamma priors) or non-parametric empirical Bayes.
    empirical_bayes : bool, default=True
        Shrink the site parameters across features; if False use the per-feature
        least-squares estimates (neuroHarmonize ``eb=False``).
    mean_only : bool, default=False
        Remove only the site location, not the scale.
    unseen_site : {"error", "refit"}, default="error"
        What ``transform`` does with a site not seen by ``fit``. ``"error"`` raises an
        :class:`~danemap.errors.InputError` listing the fitted sites. ``"refit"`` warns and
        estimates the new site's location and scale from the new data against the frozen
        model (grand mean, pooled variance and covariate effects of the fit), with EB priors
        from the new site's own features (the neuroHarmonize approach for new sites); the
        harmonisation of fitted sites is unchanged and the estimator is not modified. The
        new site also needs at least three participants.
    confounded : {"error", "drop"}, default="error"
        What ``fit`` does with a covariate that has no variation within any site (it is
        then collinear with the site indicators and cannot be preserved). ``"error"``
        raises an :class:`InputError`; ``"drop"`` leaves it out of this fit, logged (the
        classifier's training folds use it: sex can be constant per site in a small fold).

    Attributes
    ----------
    sites_ : numpy.ndarray
        Fitted site labels (sorted).
    n_per_site_ : numpy.ndarray
        Participants per fitted site.
    covariate_names_ : list of str
        Encoded covariate columns (categorical columns dummy-coded, first level dropped).
    coef_ : numpy.ndarray
        (n_sites + n_covariates, n_features) least-squares coefficients.
    grand_mean_ : numpy.ndarray
        Sample-size-weighted mean of the site intercepts, per feature.
    var_pooled_ : numpy.ndarray
        Pooled residual variance (divided by n, as in neuroCombat), per feature.
    gamma_hat_, delta_hat_ : numpy.ndarray
        (n_sites, n_features) least-squares site location and scale.
    gamma_star_, delta_star_ : numpy.ndarray
        (n_sites, n_features) site location and scale that are removed.
    constant_features_ : numpy.ndarray
        Boolean mask of features passed through unchanged (zero residual variance).
    n_features_in_ : int
        Number of features.
    feature_names_in_ : numpy.ndarray
        Feature names, when ``X`` was a DataFrame.

    Notes
    -----
    Sites with fewer than three participants raise an ``InputError``. Missing values in
    ``X``, ``site`` or ``covars`` raise an ``InputError`` naming the rows and columns.
    ``covars`` is aligned with ``X`` by position.

    Examples
    --------
    >>> cb = ComBat().fit(X_train, site_train, covars_train)  # doctest: +SKIP
    >>> X_new_h = cb.transform(X_new, site_new, covars_new)  # doctest: +SKIP
    """

    def __init__(self, parametric: bool = True, empirical_bayes: bool = True,
                 mean_only: bool = False, unseen_site: str = "error",
                 confounded: str = "error") -> None:
        self.parametric = parametric
        self.empirical_bayes = empirical_bayes
        self.mean_only = mean_only
        self.unseen_site = unseen_site
        self.confounded = confounded

    # ------------------------------------------------------------------ helpers
    def _check_params(self) -> None:
        if self.unseen_site not in ("error", "refit"):
            raise InputError(f"ComBat: unseen_site must be 'error' or 'refit', got "
                             f"{self.unseen_site!r}")
        if self.confounded not in ("error", "drop"):
            raise InputError(f"ComBat: confounded must be 'error' or 'drop', got "
                             f"{self.confounded!r}")

    def _covariate_matrix(self, covars: Any, n: int, fitting: bool) -> np.ndarray:
        import pandas as pd

        if covars is None:
            if fitting:
                self.encoder_ = None
                return np.empty((n, 0))
            if self.encoder_ is not None:
                raise InputError("covars: the model was fitted with covariates "
                                 f"{self.encoder_.columns_}; pass them to transform too")
            return np.empty((n, 0))
        if not isinstance(covars, pd.DataFrame):
            raise InputError(f"covars: expected a pandas DataFrame, got {type(covars).__name__}")
        if len(covars) != n:
            raise InputError(f"covars: expected {n} rows (one per row of X), got {len(covars)}")
        covars = covars.reset_index(drop=True)
        if fitting:
            # a categorical covariate with one level here (sex in a small training fold)
            # has no effect to preserve: it is left out, not an error
            self.encoder_ = CovariateEncoder(single_level="drop")
            return self.encoder_.fit_transform(covars, name="covars")
        if self.encoder_ is None:
            raise InputError("covars: the model was fitted without covariates; pass "
                             "covars=None")
        C = self.encoder_.transform(covars, name="covars")
        keep = getattr(self, "covariate_keep_", None)  # absent in models saved before it
        return C if keep is None else C[:, np.asarray(keep, bool)]

    @staticmethod
    def _site_labels(site: Any, n: int) -> np.ndarray:
        labels = as_labels(site, n, "site")
        try:
            np.unique(labels)
        except TypeError:
            labels = labels.astype(str)
        return labels

    def _site_parameters(self, g_hat: np.ndarray, d_hat: np.ndarray, n: int,
                         use_eb: bool) -> tuple[np.ndarray, np.ndarray]:
        """Location/scale to remove for one site from its least-squares estimates.

        ``d_hat`` is also the site's standardised data variance used by the
        non-parametric EB likelihood.
        """
        if self.mean_only:
            d_used = np.ones_like(d_hat)
        else:
            d_used = np.where(d_hat == 0, 1.0, d_hat)  # as neuroCombat convert_zeroes
        if not use_eb:
            return g_hat.copy(), d_used
        if self.parametric:
            if self.mean_only:
                t2 = float(np.var(g_hat, ddof=1))
                g_bar = float(np.mean(g_hat))
                return (t2 * g_hat + g_bar) / (t2 + 1.0), d_used
            return _parametric_eb(g_hat, d_used, n)
        g_star, d_star = _nonparametric_eb(g_hat, d_used, d_hat, n)
        return g_star, (d_used if self.mean_only else d_star)

    def _eb_possible(self, d_hat_ok: np.ndarray) -> bool:
        if not self.empirical_bayes:
            return False
        m_ok = d_hat_ok.shape[1]
        if m_ok < 2:
            log.warning("ComBat: fewer than 2 non-constant features; empirical Bayes skipped")
            return False
        if not self.mean_only and self.parametric and np.any(np.var(d_hat_ok, axis=1) == 0):
            log.warning("ComBat: site variances identical across features; empirical Bayes "
                        "skipped")
            return False
        return True

    # ------------------------------------------------------------------ API
    def describe(self) -> str:
        """Describe the estimation, for sidecars and summaries.

        Returns
        -------
        str
            After :meth:`fit`, what the fit actually did (empirical Bayes may have been
            requested but impossible); before, what the parameters ask for. For example
            ``"parametric empirical Bayes, location and scale"``.
        """
        scale = "location only" if self.mean_only else "location and scale"
        kind = "parametric" if self.parametric else "non-parametric"
        no_eb = "per-feature least-squares site estimates without empirical Bayes"
        if not hasattr(self, "use_eb_"):
            return f"{kind} empirical Bayes, {scale}" if self.empirical_bayes \
                else f"{no_eb}, {scale}"
        if self.use_eb_:
            return f"{kind} empirical Bayes, {scale}"
        why = ("" if not self.empirical_bayes else
               " (empirical Bayes requested but not possible: too few non-constant features "
               "or identical site variances)")
        return f"{no_eb}{why}, {scale}"

    def fit(self, X: Any, site: Any, covars: Any = None) -> ComBat:
        """Estimate site effects, preserving the covariates.

        Parameters
        ----------
        X : array-like or pandas.DataFrame, shape (n_samples, n_features)
            Features to harmonise; no missing values.
        site : array-like, shape (n_samples,)
            Site (scanner, batch) label of each row.
        covars : pandas.DataFrame or None
            Biological covariates to preserve (e.g. age, sex, group), one row per row of
            ``X`` (aligned by position). Categorical columns are dummy-coded (first sorted
            level dropped), numeric ones used as they are.

        Returns
        -------
        ComBat
            The fitted estimator.

        Raises
        ------
        InputError
            On missing values, mismatched lengths, a site with fewer than three
            participants, or covariates confounded with site.
        """
        import pandas as pd

        self._check_params()
        Xa = as_2d_float(X, "X")
        n, m = Xa.shape
        labels = self._site_labels(site, n)
        C = self._covariate_matrix(covars, n, fitting=True)
        sites, inverse, counts = np.unique(labels, return_inverse=True, return_counts=True)
        small = {str(s): int(c) for s, c in zip(sites, counts, strict=True)
                 if c < MIN_SITE_SIZE}
        if small:
            raise InputError(
                f"site: ComBat needs at least {MIN_SITE_SIZE} participants per site to "
                f"estimate its scale; found {small}. Merge these participants into a similar "
                "site or drop them (neuroHarmonize returns NaN here)")
        k = len(sites)
        self.feature_names_in_ = (np.asarray(X.columns, dtype=object)
                                  if isinstance(X, pd.DataFrame) else None)
        self.n_features_in_ = m
        self.sites_ = sites
        self.n_per_site_ = counts
        self.covariate_names_ = [] if self.encoder_ is None else list(self.encoder_.names_)

        keep = np.ones(C.shape[1], bool)
        if self.confounded == "drop" and C.shape[1]:
            within = np.zeros(C.shape[1], bool)
            for i in range(k):
                rows = C[inverse == i]
                within |= rows.max(axis=0) > rows.min(axis=0)
            keep = within
            if not keep.all():
                log.info("ComBat: covariate(s) %s have no variation within any site and are "
                         "left out of this fit", [c for c, w in zip(
                             self.covariate_names_, keep, strict=True) if not w])
        self.covariate_keep_ = keep
        C = C[:, keep]
        self.covariate_names_ = [c for c, w in zip(self.covariate_names_, keep, strict=True)
                                 if w]
        onehot = np.zeros((n, k))
        onehot[np.arange(n), inverse] = 1.0
        D = np.hstack([onehot, C])
        if np.linalg.matrix_rank(D) < D.shape[1]:
            raise InputError(
                "covars: the design [site dummies + covariates "
                f"{self.covariate_names_}] is rank deficient; a covariate is constant within "
                "sites or confounded with site. Remove it from covars")
        B = np.linalg.solve(D.T @ D, D.T @ Xa)  # (k + p, m)
        self.coef_ = B
        self.grand_mean_ = (counts / n) @ B[:k]

        mean_r = np.empty((k, m))
        var_r = np.empty((k, m))
        ss = np.zeros(m)
        for i in range(k):
            idx = np.flatnonzero(inverse == i)
            r: np.ndarray = Xa[idx] - D[idx] @ B
            mean_r[i] = r.mean(axis=0)
            var_r[i] = r.var(axis=0, ddof=1)
            ss += np.einsum("ij,ij->j", r, r)
        vp = ss / n
        self.var_pooled_ = vp
        hi, lo = Xa.max(axis=0), Xa.min(axis=0)  # max |x| and range, without a copy of X
        scale = np.maximum(hi, -lo)
        const = (hi - lo == 0) | (vp <= (64 * np.finfo(float).eps * scale) ** 2)
        self.constant_features_ = const
        if const.any():
            log.info("ComBat: %d constant feature(s) pass through unchanged", int(const.sum()))
        ok = ~const
        sd = np.sqrt(np.where(ok, vp, 1.0))
        g_hat = np.zeros((k, m))
        d_hat = np.ones((k, m))
        g_hat[:, ok] = (mean_r[:, ok] + B[:k, ok] - self.grand_mean_[ok]) / sd[ok]
        d_hat[:, ok] = var_r[:, ok] / vp[ok]
        self.gamma_hat_ = g_hat
        self.delta_hat_ = d_hat
        g_star = np.zeros((k, m))
        d_star = np.ones((k, m))
        if k == 1:
            warnings.warn(f"ComBat: only one site ({sites[0]!r}) in the fit; there is no site "
                          "effect to remove and transform is the identity", DanemapWarning,
                          stacklevel=2)
        use_eb = False
        if k > 1 and ok.any():
            use_eb = self._eb_possible(d_hat[:, ok])
            for i in range(k):
                g_star[i, ok], d_star[i, ok] = self._site_parameters(
                    g_hat[i, ok], d_hat[i, ok], int(counts[i]), use_eb)
        self.gamma_star_ = g_star
        self.delta_star_ = d_star
        self.use_eb_ = use_eb
        log.debug("ComBat fitted: %d samples, %d features, sites %s", n, m, list(sites))
        return self

    def _unseen_parameters(self, Xa: np.ndarray, C: np.ndarray, labels: np.ndarray,
                           new_sites: list[Any]) -> dict[Any, tuple[np.ndarray, np.ndarray]]:
        """Estimate location/scale of sites unseen at fit against the frozen model."""
        k = len(self.sites_)
        ok = ~self.constant_features_
        sd = np.sqrt(np.where(ok, self.var_pooled_, 1.0))
        out: dict[Any, tuple[np.ndarray, np.ndarray]] = {}
        for s in new_sites:
            idx = np.flatnonzero(labels == s)
            if idx.size < MIN_SITE_SIZE:
                raise InputError(f"site: unseen site {s!r} has {idx.size} participant(s); "
                                 f"refitting needs at least {MIN_SITE_SIZE}")
            z = (Xa[idx] - self.grand_mean_ - C[idx] @ self.coef_[k:]) / sd
            g_hat = np.zeros(Xa.shape[1])
            d_hat = np.ones(Xa.shape[1])
            g_hat[ok] = z[:, ok].mean(axis=0)
            d_hat[ok] = z[:, ok].var(axis=0, ddof=1)
            g_star = np.zeros_like(g_hat)
            d_star = np.ones_like(d_hat)
            if ok.any():
                use_eb = self._eb_possible(d_hat[None, ok])
                g_star[ok], d_star[ok] = self._site_parameters(
                    g_hat[ok], d_hat[ok], int(idx.size), use_eb)
            out[s] = (g_star, d_star)
        return out

    def transform(self, X: Any, site: Any, covars: Any = None) -> Any:
        """Remove the fitted site effects from ``X``.

        Parameters
        ----------
        X : array-like or pandas.DataFrame, shape (n_samples, n_features)
            Features, same columns as at fit.
        site : array-like, shape (n_samples,)
            Site of each row; every site must have been fitted unless
            ``unseen_site="refit"``.
        covars : pandas.DataFrame or None
            The covariates used at fit, for these rows.

        Returns
        -------
        numpy.ndarray or pandas.DataFrame
            Harmonised features, of the same type, index and columns as ``X``.

        Raises
        ------
        NotFittedError
            If ``fit`` has not been called.
        InputError
            On missing values, wrong shapes or columns, or an unseen site with
            ``unseen_site="error"``.
        """
        import pandas as pd

        if not hasattr(self, "gamma_star_"):
            raise NotFittedError("ComBat: call fit(X, site, covars) before transform")
        self._check_params()
        Xa = as_2d_float(X, "X")
        n, m = Xa.shape
        if m != self.n_features_in_:
            raise InputError(f"X: expected {self.n_features_in_} features (as at fit), got {m}")
        if isinstance(X, pd.DataFrame) and self.feature_names_in_ is not None:
            cols = np.asarray(X.columns, dtype=object)
            if not np.array_equal(cols, self.feature_names_in_):
                diff = [c for c in cols if c not in set(self.feature_names_in_)][:5]
                raise InputError("X: expected the feature columns seen at fit, in the same "
                                 f"order; found different columns (e.g. {diff})")
        labels = self._site_labels(site, n)
        C = self._covariate_matrix(covars, n, fitting=False)
        known = {s: i for i, s in enumerate(self.sites_)}
        new_sites = [s for s in np.unique(labels) if s not in known]
        extra: dict[Any, tuple[np.ndarray, np.ndarray]] = {}
        if new_sites:
            if self.unseen_site == "error":
                raise InputError(f"site: {[str(s) for s in new_sites]} not seen at fit; fitted "
                                 f"sites are {[str(s) for s in self.sites_]} (use "
                                 "ComBat(unseen_site='refit') to estimate new sites; on "
                                 "the command line this is --loso-harmonize refit)")
            warnings.warn(f"ComBat: site(s) {[str(s) for s in new_sites]} not seen at fit; "
                          "estimating their location/scale from the new data against the "
                          "fitted model (unseen_site='refit')", DanemapWarning, stacklevel=2)
            extra = self._unseen_parameters(Xa, C, labels, new_sites)

        k = len(self.sites_)
        ok = ~self.constant_features_
        sd = np.sqrt(np.where(ok, self.var_pooled_, 1.0))
        out = np.empty_like(Xa)
        for s in np.unique(labels):
            idx = np.flatnonzero(labels == s)
            if s in known:
                g, d = self.gamma_star_[known[s]], self.delta_star_[known[s]]
            else:
                g, d = extra[s]
            fitted = self.grand_mean_ + C[idx] @ self.coef_[k:]
            out[idx] = (Xa[idx] - fitted - g * sd) / np.sqrt(d) + fitted
        out[:, ~ok] = Xa[:, ~ok]
        if isinstance(X, pd.DataFrame):
            return pd.DataFrame(out, index=X.index, columns=X.columns, copy=False)
        return out

    def fit_transform(self, X: Any, site: Any, covars: Any = None) -> Any:
        """Fit on ``X`` and return it harmonised.

        Parameters
        ----------
        X : array-like or pandas.DataFrame, shape (n_samples, n_features)
            Features.
        site : array-like, shape (n_samples,)
            Site labels.
        covars : pandas.DataFrame or None
            Covariates to preserve.

        Returns
        -------
        numpy.ndarray or pandas.DataFrame
            Harmonised features (same type as ``X``).
        """
        return self.fit(X, site, covars).transform(X, site, covars)
