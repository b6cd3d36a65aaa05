"""Normative model: feature ~ age + sex (+ site), fitted on controls, scoring deviations.

Model
-----
For every feature, ordinary least squares on a basis of age plus sex indicators and,
with several sites in the training controls, site indicators. With at least
:data:`SPLINE_MIN_N` (60) training controls age enters as a cubic B-spline (interior
knots at quantiles of the training ages, linear extrapolation outside the training
range; the basis sums to one, so it carries the intercept); with fewer, as a straight
line (intercept and slope), because the spline's 6 coefficients overfit a small
reference.

Deviation z-scores are **predictive**: for a new participant with design row ``x0``,
``t = (y - x0'b) / sqrt(s**2 + x0' Var(b) x0)`` (for one residual SD this is
``(y - x0'b) / (s * sqrt(1 + h))`` with the leverage ``h = x0' (D'D)^-1 x0``), and
``z = Phi^-1(T_df(t))``: the normal quantile of the same tail area of Student's t with
the residual SD's degrees of freedom. A reference of 10 controls then gives z-scores as
wide as the uncertainty of its fit, not 2 to 5 times too wide as a plug-in
``(y - prediction) / s`` does. ``|z| > extreme_z`` (default 2) counts as an extreme
deviation.

Site. With ComBat (``harmonize``, the default) the scale of every site is harmonised on
the training controls and the site indicators stay in the model, so the leverage carries
the uncertainty of each site's mean (about ``1/n_site``). Without ComBat each site also
gets its own residual SD (``RSS_site / (n_site - sum of the site's leverages)``, with
those degrees of freedom), and ``Var(b)`` is the OLS sandwich with one variance per site:
a site-blind model gives one site mean z -0.72 and the other +0.69 on ADHD-200.

The residual SD is homoscedastic in age by default; with ``heteroscedastic=True`` the
absolute standardised residuals are regressed on the age basis and scaled by
``sqrt(pi / 2)`` (for a normal residual ``E|e| = sigma * sqrt(2 / pi)``), giving a
relative SD that depends on age (floored at 0.1).

Reference size. A fit on fewer than :data:`MIN_REFERENCE` (50) controls, or on fewer
than :data:`MIN_SITE_REFERENCE` (15) controls of one site, sets ``small_reference_``:
:func:`normative_scores` still writes those z-scores but flags them
(``z.attrs["reference"]``, the sidecar and ``summary.json``) with a
:class:`~danemap.errors.DanemapWarning`, since the shape of the distribution (tails, the
age trend) cannot be checked with so few controls.

Calibration measured (out-of-sample 5-fold CV of the controls; ``robust SD`` is
1.4826 x MAD; nominal ``|z| > 2`` rate 4.55 %):

* simulated, 3 sites x 12 controls (20 seeds, 20 features, site location and scale
  effects; ``tests/stats/test_normative.py``): SD 1.03, robust SD 0.98 (0.92-1.06),
  5.6 % of ``|z| > 2`` with ComBat; SD 0.97, robust SD 0.98, 3.7 % with site indicators
  and per-site SD; every fit flagged as a small reference. The plug-in z of danemap
  0.4 had robust SD 1.23 (1.16-1.31) and 12.8 % of ``|z| > 2`` there.
* ADHD-200 ALFF (138 controls: 67 NYU, 71 Peking; seed 0;
  ``tests/real/test_stats_real_normative.py``), ComBat, homoscedastic: SD 1.08, robust
  SD 0.78, 4.3 % of ``|z| > 2``; NYU mean 0.01, SD 1.10, robust SD 0.63; Peking mean
  0.02, SD 1.06, robust SD 0.97. The SD near 1 with a narrow bulk is heavy tails (excess
  kurtosis 17), not a mis-scaled model. ``heteroscedastic=True`` is worse (SD 1.22, 6.7 %
  of ``|z| > 2``: the age-dependent SD overfits at this n), so the default stays
  homoscedastic. Without ComBat (site indicators, SD per site): SD 0.96, robust SD 0.82,
  3.2 %; NYU mean -0.01, SD 0.91; Peking mean 0.01, SD 1.00.

Participants left out
---------------------
One rule, the one the group analyses follow for their rows: a participant in either
group with every covariate of the model (age, sex, site) and every feature finite is
scored, unless their sex or site level has fewer than ``n_folds`` such controls (it
could not be in every training fold; a case from a site without controls has no norm).
Everyone left out is named in one :class:`~danemap.errors.DanemapWarning` and written
as ``not scored``.

Harmonisation
-------------
With ``site`` set and ``harmonize``, :class:`danemap.stats.combat.ComBat` (estimation
``combat_method``) is fitted **inside** :meth:`NormativeModel.fit` on the training
controls only (covariates age and sex), and applied to every scored participant. Cases
never enter the harmonisation or the model, so nothing of the case group leaks into the
norm; a participant from a site without training controls cannot be scored.

:func:`normative_scores` scores controls **out of sample** by stratified k-fold
cross-validation (folds stratified by site and sex, ComBat and the model refitted on
the training controls of each fold), and cases with the model fitted on all controls.

Saved model format
------------------
:meth:`NormativeModel.save` writes one JSON file (no code is executed on load):
``{"format": "danemap-normative-model", "version": 2, "params": {...},
"fitted": {...}, "combat": {"params": ..., "attributes": ...} | null}``; arrays are
stored as ``{"__ndarray__": nested list, "dtype": str}``. Version 1 files (plug-in z)
are refused: refit the model.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from sklearn.base import BaseEstimator

from danemap._utils.docs import fill_doc
from danemap._utils.logging import get_logger
from danemap.errors import DanemapWarning, InputError, NotFittedError
from danemap.io import write_json
from danemap.stats._design import GroupDesign, design_or_default
from danemap.stats._modelio import (
    decode_value,
    encode_value,
    estimator_from_dict,
    estimator_to_dict,
    model_fields,
    read_model_file,
)
from danemap.stats._tables import (
    check_columns,
    group_mask,
    incomplete_note,
    left_out_warning,
    rare_levels,
)
from danemap.stats.combat import ComBat, combat_params

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["NormativeModel", "control_calibration", "normative_scores"]

log = get_logger("stats.normative")

FORMAT = "danemap-normative-model"
VERSION = 2


# ----------------------------------------------------------------------------- splines
def _knots(age: np.ndarray, n_knots: int, degree: int) -> np.ndarray:
    """Full knot vector: quantile knots, boundary knots repeated ``degree`` times."""
    inner = np.unique(np.quantile(age, np.linspace(0, 1, n_knots)))
    if inner.size < 2:
        raise InputError("age: the training ages are all equal; a smooth age term needs spread")
    return np.r_[np.repeat(inner[0], degree), inner, np.repeat(inner[-1], degree)]


def _bspline_basis(x: np.ndarray, t: np.ndarray, degree: int) -> np.ndarray:
    """B-spline basis at ``x`` with linear extrapolation outside the boundary knots."""
    from scipy.interpolate import BSpline

    nb = len(t) - degree - 1
    spl = BSpline(t, np.eye(nb), degree, extrapolate=False)
    lo, hi = t[degree], t[-degree - 1]
    xc = np.clip(x, lo, hi)
    basis = np.nan_to_num(spl(xc))
    # the right boundary is excluded by BSpline's half-open intervals: evaluate inside
    at_hi = xc >= hi
    if at_hi.any():
        basis[at_hi] = np.nan_to_num(BSpline(t, np.eye(nb), degree, extrapolate=True)(
            np.full(int(at_hi.sum()), hi)))
    deriv = BSpline(t, np.eye(nb), degree, extrapolate=True).derivative()
    below, above = x < lo, x > hi
    if below.any():
        basis[below] += (x[below] - lo)[:, None] * deriv(np.array([lo]))
    if above.any():
        basis[above] += (x[above] - hi)[:, None] * deriv(np.array([hi]))
    return basis


# ------------------------------------------------------------------------------ model
#: Fewer training controls than this: age enters linearly (intercept and slope) instead of
#: through the B-spline, whose 6 default coefficients overfit a small reference.
SPLINE_MIN_N = 60
#: Fewer controls than this in the fit that scored a participant: the z-scores are still
#: written but flagged (sidecar, ``summary.json``, a :class:`DanemapWarning`).
MIN_REFERENCE = 50
#: Fewer controls of one site than this in that fit (site in the model): flagged too.
MIN_SITE_REFERENCE = 15


def _levels(values: pd.Series) -> list[str]:
    return sorted({str(s) for s in values})


def _indicators(values: np.ndarray, levels: list[str]) -> np.ndarray:
    """Treatment-coded indicators of ``levels[1:]`` (no column for a single level)."""
    if len(levels) < 2:
        return np.empty((len(values), 0))
    return np.column_stack([(values == lev).astype(float) for lev in levels[1:]])


def _z_from_t(t: np.ndarray, df: np.ndarray) -> np.ndarray:
    """Map a predictive t (``df`` per row) to the normal quantile of the same tail area."""
    from scipy.stats import norm
    from scipy.stats import t as student

    with np.errstate(invalid="ignore"):
        tail = student.sf(np.abs(t), df[:, None])
        return np.sign(t) * norm.isf(tail)


class NormativeModel(BaseEstimator):
    """Normative model of features on age, sex and site, with predictive z-scores.

    Parameters
    ----------
    n_knots : int
        Knots of the age spline, including the two boundary knots (placed at the
        training-age quantiles). Default 4. Used from ``spline_min_n`` training controls.
    degree : int
        Spline degree (3 = cubic).
    heteroscedastic : bool
        Model the residual SD as a smooth function of age (see the module docstring).
    age, sex : str or None
        Covariate columns; ``sex=None`` leaves sex out.
    site : str or None
        Site column. With several sites in the training data it enters the model as
        indicators; with ``harmonize`` ComBat is also fitted on the training data inside
        :meth:`fit`, else each site gets its own residual SD.
    harmonize : bool
        Fit ComBat on the training data (when ``site`` is set).
    extreme_z : float
        Threshold of an extreme deviation (``|z| > extreme_z``).
    combat_method : {"parametric", "nonparametric", "no-eb"}
        ComBat estimation (see :data:`danemap.stats.combat.COMBAT_METHODS`); used when
        ``site`` is set and ``harmonize`` is true.
    spline_min_n : int
        Fewer training controls than this: age enters linearly (:data:`SPLINE_MIN_N`).
    min_reference : int
        Fewer training controls than this: ``small_reference_`` is set
        (:data:`MIN_REFERENCE`; also set when a site has fewer than
        :data:`MIN_SITE_REFERENCE`).

    Attributes
    ----------
    feature_names_ : list of str
    age_term_ : {"spline", "linear"}
    knots_ : ndarray
    degree_ : int
        Degree of the age basis used (1 for the linear term).
    sex_levels_ : list of str
    site_levels_ : list of str
        Sites of the model (empty when site is not in it).
    coef_ : ndarray, shape (n_coef, n_features)
    scale_groups_ : list of str
        ``["all"]``, or the sites when each site has its own residual SD.
    scale_ : ndarray, shape (n_groups, n_features)
        Residual SD of each scale group.
    df_ : ndarray, shape (n_groups,)
        Degrees of freedom of each residual SD (``n_group - sum of its leverages``).
    vcov_parts_ : ndarray, shape (n_groups, n_coef, n_coef)
        ``Var(coef) = sum_g scale_g**2 * vcov_parts_[g]`` (OLS sandwich by scale group).
    sd_coef_ : ndarray or None
        Heteroscedastic: coefficients of the relative SD on the age basis.
    sd_ : ndarray, shape (n_features,)
        Pooled residual SD (0 for a feature without residual variance).
    combat_ : ComBat or None
    n_train_ : int
    n_train_per_site_ : dict
    small_reference_ : bool
    age_range_ : tuple of float
    """

    def __init__(self, n_knots: int = 4, degree: int = 3, heteroscedastic: bool = False,
                 age: str = "age", sex: str | None = "sex", site: str | None = None,
                 extreme_z: float = 2.0, combat_method: str = "parametric",
                 harmonize: bool = True, spline_min_n: int = SPLINE_MIN_N,
                 min_reference: int = MIN_REFERENCE) -> None:
        self.n_knots = n_knots
        self.degree = degree
        self.heteroscedastic = heteroscedastic
        self.age = age
        self.sex = sex
        self.site = site
        self.extreme_z = extreme_z
        self.combat_method = combat_method
        self.harmonize = harmonize
        self.spline_min_n = spline_min_n
        self.min_reference = min_reference

    # -------------------------------------------------------------- helpers
    def _check_params(self) -> None:
        if int(self.n_knots) < 2:
            raise InputError(f"n_knots: expected an integer >= 2, found {self.n_knots!r}")
        if int(self.degree) not in (1, 2, 3):
            raise InputError(f"degree: expected 1, 2 or 3, found {self.degree!r}")
        if not float(self.extreme_z) > 0:
            raise InputError(f"extreme_z: expected a positive number, found {self.extreme_z!r}")
        if int(self.min_reference) < 1 or int(self.spline_min_n) < 0:
            raise InputError(f"min_reference / spline_min_n: expected positive integers, found "
                             f"{self.min_reference!r}, {self.spline_min_n!r}")
        combat_params(self.combat_method, "combat_method")

    @property
    def _combat_on(self) -> bool:
        return bool(self.site) and bool(self.harmonize)

    def _features(self, features: Any, fitting: bool) -> tuple[np.ndarray, list[str]]:
        import pandas as pd

        if isinstance(features, pd.DataFrame):
            names = [str(c) for c in features.columns]
            X = features.to_numpy(float)
        else:
            X = np.asarray(features, float)
            if X.ndim != 2:
                raise InputError(f"features: expected a 2-D array, found shape {X.shape}")
            names = [f"feature_{j}" for j in range(X.shape[1])]
        if not fitting:
            if isinstance(features, pd.DataFrame):
                missing = [c for c in self.feature_names_ if c not in names]
                if missing:
                    raise InputError(f"features: the model was fitted on features that are "
                                     f"absent here: {missing[:5]}")
                X = features[self.feature_names_].to_numpy(float)
                names = list(self.feature_names_)
            elif X.shape[1] != len(self.feature_names_):
                raise InputError(f"features: expected {len(self.feature_names_)} columns, "
                                 f"found {X.shape[1]}")
        if not np.isfinite(X).all():
            raise InputError("features: expected finite values; drop or impute n/a first")
        return X, names

    def _categorical(self, covariates: pd.DataFrame, col: str, fitting: bool,
                     attr: str) -> np.ndarray:
        """Return the stripped labels of ``col``; at fit, store its levels in ``attr``."""
        values = covariates[col].astype("string").str.strip()
        if values.isna().any():
            raise InputError(f"covariates: column {col!r} has missing values")
        if fitting:
            setattr(self, attr, _levels(values))
        levels = getattr(self, attr)
        unseen = sorted({str(s) for s in values} - set(levels))
        if unseen and levels:
            raise InputError(f"covariates: column {col!r} has level(s) {unseen} not seen "
                             f"in the training data ({levels}); the normative model cannot "
                             "score them")
        return values.to_numpy(str)

    def _covariates(self, covariates: pd.DataFrame,
                    fitting: bool = False) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Age, the sex and site indicators, and the site label of each row."""
        cols = [self.age, *([self.sex] if self.sex else []), *([self.site] if self.site else [])]
        check_columns(covariates, cols, "covariates")
        age = covariates[self.age].to_numpy(float)
        if not np.isfinite(age).all():
            raise InputError(f"covariates: column {self.age!r} has missing values")
        n = len(age)
        blocks = []
        if self.sex:
            sex = self._categorical(covariates, self.sex, fitting, "sex_levels_")
            blocks.append(_indicators(sex, self.sex_levels_))
        sites = np.full(n, "all", dtype=object)
        if fitting and not self.site:
            self.site_levels_: list[str] = []
        if self.site:
            labels = self._categorical(covariates, self.site, fitting, "site_levels_")
            if len(self.site_levels_) > 1:  # one site: nothing to model
                sites = labels
                blocks.append(_indicators(sites, self.site_levels_))
        return age, np.hstack(blocks) if blocks else np.empty((n, 0)), sites

    def _combat_covars(self, covariates: pd.DataFrame) -> pd.DataFrame:
        cols = [self.age, *([self.sex] if self.sex else [])]
        return covariates[cols].reset_index(drop=True)

    def _age_basis(self, age: np.ndarray) -> np.ndarray:
        return _bspline_basis(age, self.knots_, int(self.degree_))

    def _group_index(self, sites: np.ndarray) -> np.ndarray:
        if len(self.scale_groups_) == 1:
            return np.zeros(len(sites), int)
        pos = {g: i for i, g in enumerate(self.scale_groups_)}
        return np.array([pos[str(s)] for s in sites], int)

    # -------------------------------------------------------------- API
    def fit(self, features: Any, covariates: pd.DataFrame) -> NormativeModel:
        """Fit the model on reference (control) participants.

        Parameters
        ----------
        features : pandas.DataFrame or ndarray, shape (n, p)
            Features of the reference participants.
        covariates : pandas.DataFrame
            Age, sex and (if ``site`` is set) site of the same participants, in order.

        Returns
        -------
        NormativeModel
            ``self``.
        """
        self._check_params()
        for attr in ("sex_levels_", "site_levels_"):
            if hasattr(self, attr):
                delattr(self, attr)
        X, names = self._features(features, fitting=True)
        if len(covariates) != X.shape[0]:
            raise InputError(f"covariates: expected {X.shape[0]} rows (one per participant), "
                             f"found {len(covariates)}")
        age, cat, sites = self._covariates(covariates, fitting=True)
        n = len(age)
        self.combat_ = None
        if self._combat_on and len(self.site_levels_) > 1:
            combat = ComBat(**combat_params(self.combat_method, "combat_method"))
            site_col = covariates[self.site].to_numpy()
            self.combat_ = combat.fit(X, site_col, self._combat_covars(covariates))
            X = np.asarray(self.combat_.transform(X, site_col, self._combat_covars(covariates)),
                           float)
        if n < int(self.spline_min_n):
            self.age_term_, self.degree_ = "linear", 1
            self.knots_ = _knots(age, 2, 1)
        else:
            self.age_term_, self.degree_ = "spline", int(self.degree)
            self.knots_ = _knots(age, int(self.n_knots), int(self.degree))
        B = self._age_basis(age)
        D = np.column_stack([B, cat])
        k = D.shape[1]
        if n <= k + 1:
            raise InputError(f"features: {n} training controls cannot fit a model with "
                             f"{k} coefficients (age, sex, site); more controls are needed")
        # each site its own residual SD when ComBat did not equalise the scales
        per_site = len(self.site_levels_) > 1 and self.combat_ is None
        self.scale_groups_ = list(self.site_levels_) if per_site else ["all"]
        g = self._group_index(sites)
        self.coef_, *_ = np.linalg.lstsq(D, X, rcond=None)
        resid = X - D @ self.coef_
        G = np.linalg.pinv(D.T @ D)
        lev = np.einsum("ij,jk,ik->i", D, G, D)
        parts, scale, dfs = [], [], []
        for j in range(len(self.scale_groups_)):
            rows = g == j
            dj = float(rows.sum() - lev[rows].sum())
            if dj < 1:
                raise InputError(f"normative model: site {self.scale_groups_[j]!r} has too few "
                                 "training controls to estimate its residual SD")
            dfs.append(dj)
            scale.append(np.sqrt((resid[rows] ** 2).sum(0) / dj))
            parts.append(G @ (D[rows].T @ D[rows]) @ G)
        self.df_ = np.asarray(dfs)
        self.scale_ = np.asarray(scale)
        self.vcov_parts_ = np.asarray(parts)
        rank = int(np.linalg.matrix_rank(D))
        self.sd_ = np.sqrt((resid**2).sum(0) / (n - rank))
        tol = 1e-10 * np.maximum(1.0, np.abs(X).max(0))
        zero = self.sd_ <= tol
        self.sd_[zero] = 0.0
        self.scale_[self.scale_ <= tol] = 0.0
        if zero.any():
            flat = [names[j] for j in np.flatnonzero(zero)][:5]
            warnings.warn(f"normative model: features {flat} have no residual variance; "
                          "their z-scores are n/a", DanemapWarning, stacklevel=2)
        self.sd_coef_ = None
        if self.heteroscedastic:
            with np.errstate(divide="ignore", invalid="ignore"):
                shrink = np.sqrt(np.clip(1 - lev, 1e-6, None))[:, None]
                rel = np.abs(resid) / self.scale_[g] / shrink
            target = np.nan_to_num(rel, posinf=0.0) * np.sqrt(np.pi / 2)
            self.sd_coef_, *_ = np.linalg.lstsq(B, target, rcond=None)
        self.feature_names_ = names
        self.n_train_ = n
        self.n_train_per_site_ = ({str(s): int((sites == s).sum()) for s in self.site_levels_}
                                  if len(self.site_levels_) > 1 else {})
        few_site = any(v < MIN_SITE_REFERENCE for v in self.n_train_per_site_.values())
        self.small_reference_ = bool(n < int(self.min_reference) or few_site)
        self.age_range_ = (float(age.min()), float(age.max()))
        return self

    def _check_fitted(self) -> None:
        if not hasattr(self, "coef_"):
            raise NotFittedError("NormativeModel: call fit() (or load()) before transform()")

    def _predictive(self, covariates: pd.DataFrame) -> tuple[np.ndarray, ...]:
        """Return the expected value, predictive SD and degrees of freedom of every row."""
        age, cat, sites = self._covariates(covariates)
        B = self._age_basis(age)
        D = np.column_stack([B, cat])
        mean = D @ self.coef_
        g = self._group_index(sites)
        resid_sd = self.scale_[g]
        if self.sd_coef_ is not None:
            resid_sd = resid_sd * np.maximum(B @ self.sd_coef_, 0.1)
        # Var(x0' coef) = sum_j scale_j^2 x0' vcov_parts_[j] x0
        h = np.einsum("ik,jkl,il->ij", D, self.vcov_parts_, D)
        var = resid_sd**2 + h @ self.scale_**2
        return mean, np.sqrt(var), self.df_[g]

    def predict(self, features: Any, covariates: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
        """Return the expected value and the predictive SD of every feature.

        The predictive SD adds the uncertainty of the fitted mean at the participant's
        covariates (leverage) to the residual SD.

        Parameters
        ----------
        features : pandas.DataFrame or ndarray
            Not used (the prediction depends on the covariates only); kept for symmetry
            with :meth:`transform`.
        covariates : pandas.DataFrame
            Age and sex (and site) of the participants.

        Returns
        -------
        (mean, sd) : tuple of ndarray, shape (n, p)
        """
        self._check_fitted()
        mean, sd, _df = self._predictive(covariates)
        return mean, sd

    def transform(self, features: Any, covariates: pd.DataFrame) -> Any:
        """Deviation z-scores of new participants (predictive t mapped to a normal z).

        Parameters
        ----------
        features : pandas.DataFrame or ndarray, shape (n, p)
            Features (same columns as at fit).
        covariates : pandas.DataFrame
            Age, sex and (if ``site`` is set) site, in the same row order.

        Returns
        -------
        pandas.DataFrame or ndarray
            z-scores, a DataFrame (same index) when ``features`` is one.
        """
        import pandas as pd

        self._check_fitted()
        X, names = self._features(features, fitting=False)
        if len(covariates) != X.shape[0]:
            raise InputError(f"covariates: expected {X.shape[0]} rows (one per participant), "
                             f"found {len(covariates)}")
        mean, sd, df = self._predictive(covariates)
        if self.combat_ is not None:
            X = np.asarray(self.combat_.transform(X, covariates[self.site].to_numpy(),
                                                  self._combat_covars(covariates)), float)
        with np.errstate(divide="ignore", invalid="ignore"):
            t = (X - mean) / sd
        z = _z_from_t(t, df)
        z[:, self.sd_ <= 0] = np.nan
        g = self._group_index(self._covariates(covariates)[2])
        z[self.scale_[g] <= 0] = np.nan
        z[~np.isfinite(z)] = np.nan
        if isinstance(features, pd.DataFrame):
            return pd.DataFrame(z, index=features.index, columns=names)
        return z

    def count_extreme(self, z: Any) -> np.ndarray:
        """Count ``|z| > extreme_z`` per participant (NaN never counts)."""
        arr = np.asarray(z, float)
        with np.errstate(invalid="ignore"):
            return (np.abs(arr) > float(self.extreme_z)).sum(1)

    # ----------------------------------------------------------- persistence
    _FITTED = ("feature_names_", "age_term_", "knots_", "degree_", "sex_levels_",
               "site_levels_", "coef_", "scale_groups_", "scale_", "df_", "vcov_parts_",
               "sd_coef_", "sd_", "n_train_", "n_train_per_site_", "small_reference_",
               "age_range_")

    def to_dict(self) -> dict[str, Any]:
        """Return the JSON-ready content of :meth:`save`."""
        self._check_fitted()
        fitted = {k: encode_value(getattr(self, k)) for k in self._FITTED if hasattr(self, k)}
        combat = None if self.combat_ is None else estimator_to_dict(self.combat_)
        return {"format": FORMAT, "version": VERSION, "params": self.get_params(deep=False),
                "fitted": fitted, "combat": combat}

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write the fitted model as JSON (see the module docstring).

        Parameters
        ----------
        path : path-like
            Output file (``.json``).

        Returns
        -------
        pathlib.Path
            The written file.
        """
        return write_json(path, self.to_dict())

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> NormativeModel:
        """Read a model written by :meth:`save`.

        Parameters
        ----------
        path : path-like
            JSON model file.

        Returns
        -------
        NormativeModel
            The fitted model.
        """
        data = read_model_file(path, "normative model", FORMAT, VERSION)
        with model_fields(path, "normative model"):
            model = cls(**data["params"])
            for k, v in data["fitted"].items():
                setattr(model, k, decode_value(v))
            model.feature_names_ = list(model.feature_names_)
            model.age_range_ = (float(model.age_range_[0]), float(model.age_range_[1]))
            model.combat_ = None if data["combat"] is None else estimator_from_dict(data["combat"])
            for k in ("scale_", "df_", "vcov_parts_", "coef_", "knots_", "sd_"):
                setattr(model, k, np.asarray(getattr(model, k), float))
        return model


# --------------------------------------------------------------------- scoring
def _complete_rows(features: pd.DataFrame, participants: pd.DataFrame, rows: np.ndarray,
                   cols: list[str]) -> np.ndarray:
    """Mask of ``rows`` with every column of ``cols`` present and every feature finite."""
    ok = participants[cols].notna().all(axis=1).to_numpy() & np.isfinite(
        features.to_numpy(float)).all(1)
    return rows & ok


#: Fewest controls a sex level needs (stratified folds then keep it in every training fold).
_MIN_SEX_LEVEL = 3


def _folds(strata: np.ndarray, levels: list[np.ndarray], n_folds: int,
           seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """Folds stratified on ``strata``, every training fold seeing every level of its test fold.

    ``StratifiedKFold`` deals each stratum round-robin over the folds in sorted order, so a
    site (the first part of the stratum label) with at least ``n_folds`` controls is in
    every training fold; the other columns (sex) are checked and, in the rare split that
    misses one, the next seed is tried.
    """
    from sklearn.model_selection import StratifiedKFold

    counts = np.unique(strata, return_counts=True)[1]
    if len(levels) > 1 and np.all(counts < int(n_folds)):
        # every site x sex stratum is smaller than the folds: stratify on the site alone
        # (every level is still checked to be in every training fold below)
        strata = levels[0]
        counts = np.unique(strata, return_counts=True)[1]
    if np.all(counts < int(n_folds)):
        raise InputError(f"normative model: every stratum has fewer than {n_folds} controls "
                         f"(largest {int(counts.max())}); use fewer folds (--folds)")
    for attempt in range(50):
        splitter = StratifiedKFold(int(n_folds), shuffle=True, random_state=seed + attempt)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # strata smaller than n_folds
            splits = list(splitter.split(strata, strata))
        if all(set(col[test]) <= set(col[train]) for train, test in splits for col in levels):
            return splits
    raise InputError("normative model: no cross-validation split keeps every sex and site "
                     "level in every training fold; use fewer folds (--folds)")


@fill_doc
def normative_scores(
    features: pd.DataFrame,
    participants: pd.DataFrame,
    design: GroupDesign | None = None,
    *,
    age: str = "age",
    sex: str | None = "sex",
    harmonize: bool = True,
    combat_method: str = "parametric",
    n_folds: int = 5,
    seed: int = 0,
    model_params: Mapping[str, Any] | None = None,
) -> tuple[pd.DataFrame, NormativeModel]:
    """Normative z-scores for everyone: controls out of sample, cases from all controls.

    Which participants are scored follows one rule (the module docstring, *Participants
    left out*): a participant in either group with every covariate and every feature is
    scored unless their sex or site level has fewer than ``n_folds`` such controls; every
    participant left out is named in a :class:`~danemap.errors.DanemapWarning`.

    Parameters
    ----------
    features : pandas.DataFrame
        Features indexed by participant, aligned with ``participants``.
    participants : pandas.DataFrame
        Group, age, sex and site, indexed by participant.
    %(design)s
        Here, with several sites among the scored controls, site always enters the
        model (ComBat with ``harmonize``, else site indicators and a residual SD per
        site); the model's covariates are ``age`` and ``sex``, and the design's
        ``covariates`` and ``icv`` are not used.
    age, sex : str or None
        Covariate columns of the model (``sex`` None: none).
    harmonize : bool
        Fit ComBat on the training controls inside every fit (needs ``site``).
    combat_method : {"parametric", "nonparametric", "no-eb"}
        ComBat estimation (see :data:`danemap.stats.combat.COMBAT_METHODS`).
    n_folds : int
        Folds of the control cross-validation (stratified by site and sex).
    seed : int
        Seed of the fold assignment.
    model_params : mapping or None
        Extra :class:`NormativeModel` parameters (``n_knots``, ``heteroscedastic``...).

    Returns
    -------
    z : pandas.DataFrame
        ``participant_id``, ``group``, ``scored`` (``out-of-sample CV``,
        ``model fitted on all controls`` or ``not scored``), ``n_extreme`` and one z
        column per feature. ``z.attrs["reference"]`` describes the reference of every fit
        (:func:`reference_info`).
    model : NormativeModel
        The model fitted on all controls (to save and score new individuals).
    """
    import pandas as pd

    d = design_or_default(design)
    group, case, control, site = d.group, d.case, d.control, d.site
    where = "normative model (participants)"
    check_columns(participants, [group, age, sex, site if harmonize else None], where)
    if harmonize and site is None:
        raise InputError("normative model: harmonisation needs a site column (set [stats] "
                         "site, or --harmonize none)")
    if site is not None and site not in participants.columns:
        site = None
    if int(n_folds) < 2:
        raise InputError(f"n_folds: expected an integer >= 2 (--folds), found {n_folds!r}")
    is_case, is_ctrl = group_mask(participants, group, case, control, where)
    cols = [age, *([sex] if sex else []), *([site] if site else [])]
    in_groups = is_case | is_ctrl
    complete = _complete_rows(features, participants, in_groups, cols)
    notes = incomplete_note(participants, in_groups, complete, cols)
    # folds are stratified on site x sex: a site needs n_folds controls (ComBat's three in
    # every training fold), a sex level three (it is then in every training fold)
    complete, rare = rare_levels(participants, complete, [site] if site else [],
                                 int(n_folds), counted=is_ctrl,
                                 need="controls to fit the model in every fold")
    complete, rare_sex = rare_levels(participants, complete, [sex] if sex else [],
                                     _MIN_SEX_LEVEL, counted=is_ctrl,
                                     need="controls to fit the model in every fold")
    left_out_warning("normative model (not scored)", [*notes, *rare, *rare_sex])
    ctrl = np.flatnonzero(is_ctrl & complete)
    cases = np.flatnonzero(is_case & complete)
    if len(ctrl) < 2 * int(n_folds):
        fewer = len(ctrl) // 2
        if fewer < 2:
            raise InputError(f"normative model: {len(ctrl)} complete controls are too few for "
                             "cross-validation (at least 4 are needed)")
        warnings.warn(f"normative model: {len(ctrl)} complete controls are too few for "
                      f"{n_folds}-fold cross-validation; using {fewer} folds (the z of so "
                      "small a reference are flagged)", DanemapWarning, stacklevel=2)
        n_folds = fewer
    params = dict(model_params or {})
    multi_site = bool(site) and participants[site].iloc[ctrl].astype(str).nunique() > 1
    params.update(age=age, sex=sex, site=site if multi_site else None,
                  harmonize=bool(harmonize), combat_method=combat_method)
    F, P = features, participants
    z = np.full(features.shape, np.nan)
    scored = np.array(["not scored"] * len(features), dtype=object)
    levels = [P[c].iloc[ctrl].astype("string").str.strip().to_numpy(str)
              for c in (site if multi_site else None, sex) if c]
    strata = np.array(["|".join(parts) for parts in zip(*levels, strict=True)]) if levels \
        else np.zeros(len(ctrl), str)
    fits: list[dict[str, Any]] = []
    for train, test in _folds(strata, levels, int(n_folds), int(seed)):
        m = NormativeModel(**params).fit(F.iloc[ctrl[train]], P.iloc[ctrl[train]])
        z[ctrl[test]] = np.asarray(m.transform(F.iloc[ctrl[test]], P.iloc[ctrl[test]]))
        scored[ctrl[test]] = "out-of-sample CV"
        fits.append(_fit_info(m, "fold"))
    model = NormativeModel(**params).fit(F.iloc[ctrl], P.iloc[ctrl])
    fits.append(_fit_info(model, "all controls"))
    if len(cases):
        z[cases] = np.asarray(model.transform(F.iloc[cases], P.iloc[cases]))
        scored[cases] = "model fitted on all controls"
    out = pd.DataFrame(z, columns=[str(c) for c in features.columns])
    with np.errstate(invalid="ignore"):
        n_ext = (np.abs(z) > float(model.extreme_z)).sum(1)
    head = pd.DataFrame({
        "participant_id": list(features.index),
        "group": participants[group].astype("string").to_numpy(),
        "scored": scored,
        "n_extreme": np.where(scored == "not scored", np.nan, n_ext.astype(float)),
    })
    table = pd.concat([head, out], axis=1)
    small = [f for f in fits if f["small_reference"]]
    table.attrs["reference"] = {
        "min_reference": int(model.min_reference), "min_site_reference": MIN_SITE_REFERENCE,
        "small_reference": bool(small), "age_term": model.age_term_,
        "site_term": ("ComBat + site indicators" if model.combat_ is not None else
                      "site indicators, residual SD per site" if model.site_levels_[1:]
                      else "none"),
        "fits": fits}
    if small:
        warnings.warn(
            f"normative model: z-scores flagged: {len(small)} of {len(fits)} fits have a small "
            f"reference (fewer than {model.min_reference} controls, or fewer than "
            f"{MIN_SITE_REFERENCE} of one site; smallest {min(f['n_controls'] for f in small)}"
            "); predictive intervals allow for the reference size, but the shape of the "
            "distribution (tails, age trend) cannot be checked with so few controls",
            DanemapWarning, stacklevel=2)
    return table, model


def _fit_info(model: NormativeModel, fit: str) -> dict[str, Any]:
    return {"fit": fit, "n_controls": int(model.n_train_),
            "per_site": dict(model.n_train_per_site_), "age_term": model.age_term_,
            "small_reference": bool(model.small_reference_)}


def _robust_sd(z: np.ndarray) -> float:
    return float(1.4826 * np.median(np.abs(z - np.median(z))))


def control_calibration(z: pd.DataFrame, participants: pd.DataFrame,
                        site: str | None = None, extreme_z: float = 2.0) -> dict[str, Any]:
    """Calibration of the out-of-sample control z-scores, overall and per site.

    Parameters
    ----------
    z : pandas.DataFrame
        The table of :func:`normative_scores`.
    participants : pandas.DataFrame
        The participants table it was computed from (same rows, same order).
    site : str or None
        Site column (per-site entries when given).
    extreme_z : float
        Threshold of the extreme fraction.

    Returns
    -------
    dict
        ``all`` and ``per_site`` (site -> entry); each entry has ``n_controls``,
        ``mean``, ``sd``, ``robust_sd`` (1.4826 x MAD) and ``frac_extreme``
        (``|z| > extreme_z``; nominal 4.55 % at 2) over every finite control z.
    """
    zcols = [c for c in z.columns if c not in ("participant_id", "group", "scored",
                                               "n_extreme")]
    cv = (z["scored"] == "out-of-sample CV").to_numpy()
    values = z[zcols].to_numpy(float)

    def entry(mask: np.ndarray) -> dict[str, Any]:
        v = values[mask].ravel()
        v = v[np.isfinite(v)]
        if not v.size:
            return {"n_controls": int(mask.sum()), "mean": None, "sd": None,
                    "robust_sd": None, "frac_extreme": None}
        return {"n_controls": int(mask.sum()), "mean": round(float(v.mean()), 4),
                "sd": round(float(v.std()), 4), "robust_sd": round(_robust_sd(v), 4),
                "frac_extreme": round(float(np.mean(np.abs(v) > extreme_z)), 4)}

    out: dict[str, Any] = {"all": entry(cv), "per_site": {}}
    if site and site in participants.columns:
        labels = participants[site].astype("string").str.strip().to_numpy(str)
        for s in sorted(set(labels[cv])):
            out["per_site"][s] = entry(cv & (labels == s))
    return out
