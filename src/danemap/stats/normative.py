"""Normative model: feature ~ smooth(age) + sex, fitted on controls, scoring deviations.

Model
-----
For every feature, ordinary least squares on a cubic B-spline basis of age (interior
knots at quantiles of the training ages, linear extrapolation outside the training
range; the basis sums to one, so it carries the intercept) plus sex indicators.
The residual SD is **homoscedastic** by default (``sqrt(RSS / (n - p))``); with
``heteroscedastic=True`` the absolute residuals are regressed on the same basis and
scaled by ``sqrt(pi / 2)`` (for a normal residual ``E|e| = sigma * sqrt(2 / pi)``),
giving an age-dependent SD (floored at 10% of the homoscedastic SD).

A participant's deviation is ``z = (y - prediction) / sd``; ``|z| > extreme_z``
(default 2) counts as an extreme deviation.

Calibration measured on ADHD-200 ALFF (138 controls, out-of-sample 5-fold CV,
``tests/real/test_stats_real_normative.py``): homoscedastic SD of control z 1.19, but
4.9% of |z| > 2 (nominal 4.6%) and a narrow bulk (MAD-based SD 0.81): the excess SD is
heavy tails (excess kurtosis 36), not a mis-scaled model. ``heteroscedastic=True`` is
worse there (SD 1.48, 8.1% of |z| > 2: the age-dependent SD overfits at this n), so the
default stays homoscedastic. Log-transforming ALFF before the model lowers the
kurtosis to 5 (SD 1.13) at the price of 6.4% of |z| > 2.

Harmonisation
-------------
With ``site`` set, :class:`danemap.stats.combat.ComBat` (estimation ``combat_method``)
is fitted **inside** :meth:`NormativeModel.fit` on the training controls only
(covariates age and sex), and applied to every scored participant. Cases never enter
the harmonisation or the model, so nothing of the case group leaks into the norm; a
participant from a site with no training controls cannot be scored (ComBat raises).

:func:`normative_scores` scores controls **out of sample** by stratified k-fold
cross-validation (folds stratified by site; ComBat and the model refitted on the
training controls of each fold), and cases with the model fitted on all controls.

Saved model format
------------------
:meth:`NormativeModel.save` writes one JSON file (no code is executed on load):
``{"format": "danemap-normative-model", "version": 1, "params": {...},
"fitted": {...}, "combat": {"params": ..., "attributes": ...} | null}``; arrays are
stored as ``{"__ndarray__": nested list, "dtype": str}``.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from sklearn.base import BaseEstimator

from danemap._utils.logging import get_logger
from danemap.errors import DanemapWarning, InputError, NotFittedError
from danemap.io import write_json
from danemap.stats._modelio import (
    decode_value,
    encode_value,
    estimator_from_dict,
    estimator_to_dict,
    model_fields,
    read_model_file,
)
from danemap.stats._tables import check_columns, group_mask
from danemap.stats.combat import ComBat, combat_params

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["NormativeModel", "normative_scores"]

log = get_logger("stats.normative")

FORMAT = "danemap-normative-model"
VERSION = 1


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
class NormativeModel(BaseEstimator):
    """Normative model of features on age (B-spline) and sex, with optional ComBat.

    Parameters
    ----------
    n_knots : int
        Knots of the age spline, including the two boundary knots (placed at the
        training-age quantiles). Default 4.
    degree : int
        Spline degree (3 = cubic).
    heteroscedastic : bool
        Model the residual SD as a smooth function of age (see the module docstring).
    age, sex : str or None
        Covariate columns; ``sex=None`` leaves sex out.
    site : str or None
        Site column; when set, ComBat is fitted on the training data inside :meth:`fit`.
    extreme_z : float
        Threshold of an extreme deviation (``|z| > extreme_z``).
    combat_method : {"parametric", "nonparametric", "no-eb"}
        ComBat estimation (see :data:`danemap.stats.combat.COMBAT_METHODS`); used when
        ``site`` is set.

    Attributes
    ----------
    feature_names_ : list of str
    knots_ : ndarray
    sex_levels_ : list of str
    coef_ : ndarray, shape (n_basis, n_features)
    sd_coef_ : ndarray
        Homoscedastic: shape (1, n_features); heteroscedastic: (n_spline, n_features).
    sd_ : ndarray, shape (n_features,)
        Homoscedastic residual SD.
    combat_ : ComBat or None
    n_train_ : int
    age_range_ : tuple of float
    """

    def __init__(self, n_knots: int = 4, degree: int = 3, heteroscedastic: bool = False,
                 age: str = "age", sex: str | None = "sex", site: str | None = None,
                 extreme_z: float = 2.0, combat_method: str = "parametric") -> None:
        self.n_knots = n_knots
        self.degree = degree
        self.heteroscedastic = heteroscedastic
        self.age = age
        self.sex = sex
        self.site = site
        self.extreme_z = extreme_z
        self.combat_method = combat_method

    # -------------------------------------------------------------- helpers
    def _check_params(self) -> None:
        if int(self.n_knots) < 2:
            raise InputError(f"n_knots: expected an integer >= 2, found {self.n_knots!r}")
        if int(self.degree) not in (1, 2, 3):
            raise InputError(f"degree: expected 1, 2 or 3, found {self.degree!r}")
        if not float(self.extreme_z) > 0:
            raise InputError(f"extreme_z: expected a positive number, found {self.extreme_z!r}")
        combat_params(self.combat_method, "combat_method")

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

    def _covariates(self, covariates: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
        cols = [self.age, *([self.sex] if self.sex else []), *([self.site] if self.site else [])]
        check_columns(covariates, cols, "covariates")
        age = covariates[self.age].to_numpy(float)
        if not np.isfinite(age).all():
            raise InputError(f"covariates: column {self.age!r} has missing values")
        if not self.sex:
            return age, np.empty((len(age), 0))
        sex = covariates[self.sex].astype("string").str.strip()
        if sex.isna().any():
            raise InputError(f"covariates: column {self.sex!r} has missing values")
        if not hasattr(self, "sex_levels_"):
            self.sex_levels_ = sorted({str(s) for s in sex})
        unseen = sorted({str(s) for s in sex} - set(self.sex_levels_))
        if unseen:
            raise InputError(f"covariates: column {self.sex!r} has level(s) {unseen} not seen "
                             f"in the training data ({self.sex_levels_})")
        mat = np.column_stack([(sex == lev).to_numpy(float) for lev in self.sex_levels_[1:]]) \
            if len(self.sex_levels_) > 1 else np.empty((len(age), 0))
        return age, mat

    def _combat_covars(self, covariates: pd.DataFrame) -> pd.DataFrame:
        cols = [self.age, *([self.sex] if self.sex else [])]
        return covariates[cols].reset_index(drop=True)

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
        for attr in ("sex_levels_",):
            if hasattr(self, attr):
                delattr(self, attr)
        X, names = self._features(features, fitting=True)
        if len(covariates) != X.shape[0]:
            raise InputError(f"covariates: expected {X.shape[0]} rows (one per participant), "
                             f"found {len(covariates)}")
        age, sexm = self._covariates(covariates)
        self.combat_ = None
        if self.site:
            combat = ComBat(**combat_params(self.combat_method, "combat_method"))
            self.combat_ = combat.fit(X, covariates[self.site].to_numpy(),
                                      self._combat_covars(covariates))
            X = np.asarray(self.combat_.transform(X, covariates[self.site].to_numpy(),
                                                  self._combat_covars(covariates)), float)
        self.knots_ = _knots(age, int(self.n_knots), int(self.degree))
        B = _bspline_basis(age, self.knots_, int(self.degree))
        D = np.column_stack([B, sexm])
        n, k = D.shape
        if n <= k + 1:
            raise InputError(f"features: {n} training participants cannot fit a model with "
                             f"{k} coefficients; use fewer knots or more controls")
        self.coef_, *_ = np.linalg.lstsq(D, X, rcond=None)
        resid = X - D @ self.coef_
        rank = int(np.linalg.matrix_rank(D))
        self.sd_ = np.sqrt((resid**2).sum(0) / (n - rank))
        zero = self.sd_ <= 1e-10 * np.maximum(1.0, np.abs(X).max(0))
        self.sd_[zero] = 0.0
        if zero.any():
            flat = [names[j] for j in np.flatnonzero(zero)][:5]
            warnings.warn(f"normative model: features {flat} have no residual variance; "
                          "their z-scores are n/a", DanemapWarning, stacklevel=2)
        if self.heteroscedastic:
            target = np.abs(resid) * np.sqrt(np.pi / 2)
            self.sd_coef_, *_ = np.linalg.lstsq(B, target, rcond=None)
        else:
            self.sd_coef_ = self.sd_[None, :]
        self.feature_names_ = names
        self.n_train_ = n
        self.age_range_ = (float(age.min()), float(age.max()))
        return self

    def _check_fitted(self) -> None:
        if not hasattr(self, "coef_"):
            raise NotFittedError("NormativeModel: call fit() (or load()) before transform()")

    def predict(self, features: Any, covariates: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
        """Return the expected value and the SD of every feature for each participant.

        Parameters
        ----------
        features : pandas.DataFrame or ndarray
            Used only to harmonise nothing; kept for symmetry with :meth:`transform`.
        covariates : pandas.DataFrame
            Age and sex (and site) of the participants.

        Returns
        -------
        (mean, sd) : tuple of ndarray, shape (n, p)
        """
        self._check_fitted()
        age, sexm = self._covariates(covariates)
        B = _bspline_basis(age, self.knots_, int(self.degree))
        mean = np.column_stack([B, sexm]) @ self.coef_
        if self.heteroscedastic:
            sd = np.maximum(B @ self.sd_coef_, 0.1 * self.sd_[None, :])
        else:
            sd = np.broadcast_to(self.sd_[None, :], mean.shape).copy()
        return mean, sd

    def transform(self, features: Any, covariates: pd.DataFrame) -> Any:
        """Deviation z-scores of new participants.

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
        if self.combat_ is not None:
            X = np.asarray(self.combat_.transform(X, covariates[self.site].to_numpy(),
                                                  self._combat_covars(covariates)), float)
        mean, sd = self.predict(features, covariates)
        with np.errstate(divide="ignore", invalid="ignore"):
            z = (X - mean) / sd
        z[:, self.sd_ <= 0] = np.nan
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
    def to_dict(self) -> dict[str, Any]:
        """Return the JSON-ready content of :meth:`save`."""
        self._check_fitted()
        fitted = {k: encode_value(getattr(self, k)) for k in
                  ("feature_names_", "knots_", "coef_", "sd_", "sd_coef_", "n_train_",
                   "age_range_") if hasattr(self, k)}
        if hasattr(self, "sex_levels_"):
            fitted["sex_levels_"] = self.sex_levels_
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
        return model


def normative_scores(
    features: pd.DataFrame,
    participants: pd.DataFrame,
    *,
    group: str = "group",
    case: str = "ADHD",
    control: str = "TD",
    age: str = "age",
    sex: str | None = "sex",
    site: str | None = "site",
    harmonize: bool = True,
    combat_method: str = "parametric",
    n_folds: int = 5,
    seed: int = 0,
    model_params: Mapping[str, Any] | None = None,
) -> tuple[pd.DataFrame, NormativeModel]:
    """Normative z-scores for everyone: controls out of sample, cases from all controls.

    Parameters
    ----------
    features : pandas.DataFrame
        Features indexed by participant, aligned with ``participants``.
    participants : pandas.DataFrame
        Group, age, sex and site.
    group, case, control : str
        Group column and labels.
    age, sex, site : str or None
        Covariate columns.
    harmonize : bool
        Fit ComBat on the training controls inside every fit (needs ``site``).
    combat_method : {"parametric", "nonparametric", "no-eb"}
        ComBat estimation (see :data:`danemap.stats.combat.COMBAT_METHODS`).
    n_folds : int
        Folds of the control cross-validation (stratified by site when given).
    seed : int
        Seed of the fold assignment.
    model_params : mapping or None
        Extra :class:`NormativeModel` parameters (``n_knots``, ``heteroscedastic``...).

    Returns
    -------
    z : pandas.DataFrame
        ``participant_id``, ``group``, ``scored`` (``out-of-sample CV`` or
        ``model fitted on all controls``), ``n_extreme`` and one z column per feature.
    model : NormativeModel
        The model fitted on all controls (to save and score new individuals).
    """
    import pandas as pd
    from sklearn.model_selection import KFold, StratifiedKFold

    where = "normative model (participants)"
    check_columns(participants, [group, age, sex, site if harmonize else None], where)
    if harmonize and site is None:
        raise InputError("normative model: harmonize=True needs a site column")
    is_case, is_ctrl = group_mask(participants, group, case, control, where)
    cols = [age, *([sex] if sex else []), *([site] if harmonize and site else [])]
    complete = participants[cols].notna().all(axis=1).to_numpy() & np.isfinite(
        features.to_numpy(float)).all(1)
    if (~complete & (is_case | is_ctrl)).any():
        warnings.warn(f"normative model: {int((~complete & (is_case | is_ctrl)).sum())} "
                      f"participant(s) with missing {cols} or features are not scored",
                      DanemapWarning, stacklevel=2)
    ctrl = np.flatnonzero(is_ctrl & complete)
    cases = np.flatnonzero(is_case & complete)
    if int(n_folds) < 2:
        raise InputError(f"n_folds: expected an integer >= 2, found {n_folds!r}")
    if len(ctrl) < 2 * int(n_folds):
        raise InputError(f"normative model: {len(ctrl)} complete controls are too few for "
                         f"{n_folds}-fold cross-validation")
    params = dict(model_params or {})
    params.update(age=age, sex=sex, site=site if harmonize else None,
                  combat_method=combat_method)
    F, P = features, participants
    z = np.full(features.shape, np.nan)
    scored = np.array(["not scored"] * len(features), dtype=object)
    if harmonize and site:
        strata = P[site].iloc[ctrl].astype(str).to_numpy()
        counts = pd.Series(strata).value_counts()
        if counts.min() >= n_folds:
            splitter: Any = StratifiedKFold(int(n_folds), shuffle=True, random_state=seed)
            splits = splitter.split(ctrl, strata)
        else:
            raise InputError(f"normative model: site(s) {counts[counts < n_folds].index.tolist()}"
                             f" have fewer than {n_folds} controls; every fold must see every "
                             "site for ComBat (lower n_folds or drop the site)")
    else:
        splits = KFold(int(n_folds), shuffle=True, random_state=seed).split(ctrl)
    for train, test in splits:
        m = NormativeModel(**params).fit(F.iloc[ctrl[train]], P.iloc[ctrl[train]])
        z[ctrl[test]] = np.asarray(m.transform(F.iloc[ctrl[test]], P.iloc[ctrl[test]]))
        scored[ctrl[test]] = "out-of-sample CV"
    model = NormativeModel(**params).fit(F.iloc[ctrl], P.iloc[ctrl])
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
    return pd.concat([head, out], axis=1), model
