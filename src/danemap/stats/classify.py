"""Honest case-control classification: three models side by side, nested CV, no leakage.

Three models are always fitted and reported together:

* ``covariates``: age, sex, site (k-fold only) and IQ (``full4_iq``) when present;
* ``imaging``: the features only;
* ``both``: features and covariates.

Each is an sklearn :class:`~sklearn.pipeline.Pipeline` of :class:`FeatureBuilder`
(ComBat harmonisation of the imaging features, median imputation of missing numeric
covariates, one-hot site/sex, standardisation; everything estimated on the training
rows only) and an L2 logistic regression whose ``C`` is chosen by an inner
grid search (:class:`NestedLogistic`: stratified k-fold, ROC AUC). The
outer loop is stratified k-fold and/or leave-one-site-out (LOSO); ComBat, imputation
and scaling are refitted inside every inner and outer training fold and only applied
to the held-out fold.

Leave-one-site-out and harmonisation
------------------------------------
ComBat cannot harmonise a site it has not seen. By default (``loso_harmonize="none"``)
LOSO runs **without** harmonisation, and the site covariate is dropped (it is constant
in training and unseen in test); the output says so. ``loso_harmonize="refit"``
estimates the held-out site's location and scale from its own features (never its
labels) against the frozen training fit (``ComBat(unseen_site="refit")``); this uses
the test fold's unlabelled data (transductive) and is labelled as such.

Metrics
-------
accuracy, balanced accuracy, ROC AUC, sensitivity (cases correctly called) and
specificity, each pooled over the out-of-fold predictions (``value``) with a
percentile bootstrap 95% CI (participants resampled), the mean and SD across folds,
and a label-permutation p-value ``(1 + #{null >= observed}) / (1 + n_permutations)``
where each permutation reruns the whole nested cross-validation with shuffled labels.
"""

from __future__ import annotations

import functools
import os
import warnings
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar, cast

import numpy as np
from sklearn.base import BaseEstimator, TransformerMixin

from danemap._utils.logging import get_logger
from danemap.errors import DanemapWarning, InputError, NotFittedError
from danemap.io import write_json
from danemap.stats._design import GroupDesign, design_or_default
from danemap.stats._modelio import (
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

if TYPE_CHECKING:
    import pandas as pd

__all__ = [
    "FeatureBuilder",
    "NestedLogistic",
    "classify",
    "load_classifier",
    "predict",
    "save_classifier",
]

log = get_logger("stats.classify")

METRICS = ("accuracy", "balanced_accuracy", "auc", "sensitivity", "specificity")
MODELS = ("covariates", "imaging", "both")
FORMAT = "danemap-classifier"
VERSION = 1
DEFAULT_C_GRID = (0.001, 0.01, 0.1, 1.0, 10.0)
F = TypeVar("F", bound=Callable[..., Any])
#: Model inputs above which the logistic regression uses L-BFGS instead of Newton-Cholesky
#: (whose cost grows with the cube of the inputs). Measured (3 C values, 1 thread):
#: L-BFGS is as fast from about 100 inputs at 24-300 participants, 10x faster at 465
#: inputs and 250-380x faster at 2000 (the report of issue #4 has the table).
LBFGS_ABOVE = 100


def logistic_solver(n_inputs: int) -> str:
    """Return the logistic-regression solver for ``n_inputs`` model inputs.

    Parameters
    ----------
    n_inputs : int
        Columns of the model matrix.

    Returns
    -------
    str
        ``"newton-cholesky"`` up to :data:`LBFGS_ABOVE` inputs, else ``"lbfgs"``.
    """
    return "newton-cholesky" if n_inputs <= LBFGS_ABOVE else "lbfgs"


class FeatureBuilder(TransformerMixin, BaseEstimator):
    """Turn a participant table into a model matrix, learning everything on ``fit`` rows.

    ``X`` is a :class:`pandas.DataFrame` holding the imaging columns and the covariates
    (site included), so site and covariates travel with the rows through sklearn's
    cross-validation and pipelines.

    Parameters
    ----------
    imaging : sequence of str
        Imaging feature columns (may be empty).
    numeric : sequence of str
        Numeric covariates (missing values imputed with the training median).
    categorical : sequence of str
        Categorical covariates, one-hot encoded with the training levels (an unseen
        or missing level gives all-zero indicators).
    site : str or None
        Site column used by ComBat.
    harmonize : bool
        Fit ComBat on the training rows (imaging columns only).
    combat_covariates : sequence of str
        Covariates ComBat preserves (complete columns, e.g. age and sex; never the label).
    unseen_site : {"error", "refit"}
        Passed to ComBat for sites absent from the training rows.
    combat_method : {"parametric", "nonparametric", "no-eb"}
        ComBat estimation (see :data:`danemap.stats.combat.COMBAT_METHODS`).

    Attributes
    ----------
    combat_ : ComBat or None
    medians_ : dict
    levels_ : dict
    mean_, scale_ : ndarray
    names_ : list of str
    train_index_ : list
        Index labels of the rows ``fit`` saw (used by the leakage tests).
    """

    def __init__(self, imaging: Sequence[str] = (), numeric: Sequence[str] = (),
                 categorical: Sequence[str] = (), site: str | None = None,
                 harmonize: bool = False, combat_covariates: Sequence[str] = (),
                 unseen_site: str = "error", combat_method: str = "parametric") -> None:
        self.imaging = imaging
        self.numeric = numeric
        self.categorical = categorical
        self.site = site
        self.harmonize = harmonize
        self.combat_covariates = combat_covariates
        self.unseen_site = unseen_site
        self.combat_method = combat_method

    def _check_X(self, X: Any) -> pd.DataFrame:
        import pandas as pd

        if not isinstance(X, pd.DataFrame):
            raise InputError(f"FeatureBuilder: X must be a pandas DataFrame holding the "
                             f"imaging and covariate columns, found {type(X).__name__}")
        need = [*self.imaging, *self.numeric, *self.categorical,
                *([self.site] if self.harmonize and self.imaging else []),
                *(self.combat_covariates if self.harmonize and self.imaging else [])]
        check_columns(X, list(dict.fromkeys(need)), "FeatureBuilder X")
        if not (self.imaging or self.numeric or self.categorical):
            raise InputError("FeatureBuilder: no imaging, numeric or categorical column given")
        return X

    def _imaging(self, X: pd.DataFrame) -> np.ndarray:
        if not self.imaging:
            return np.empty((len(X), 0))
        imgs = X[list(self.imaging)].to_numpy(float)
        if self.combat_ is None:
            return imgs
        cov = X[list(self.combat_covariates)].reset_index(drop=True) \
            if self.combat_covariates else None
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DanemapWarning)  # refit warning: stated in output
            return np.asarray(self.combat_.transform(imgs, X[self.site].to_numpy(), cov), float)

    def _raw(self, X: pd.DataFrame) -> np.ndarray:
        blocks = [self._imaging(X)]
        for col in self.numeric:
            v = X[col].to_numpy(float)
            blocks.append(np.where(np.isfinite(v), v, self.medians_[col])[:, None])
        for col in self.categorical:
            vals = X[col].astype("string").to_numpy()
            for lev in self.levels_[col][1:]:
                blocks.append((vals == lev).astype(float)[:, None])
        return np.hstack(blocks)

    def fit(self, X: pd.DataFrame, y: Any = None) -> FeatureBuilder:
        """Learn ComBat, medians, levels and scaling from the training rows.

        Parameters
        ----------
        X : pandas.DataFrame
            Training rows.
        y : ignored
            Present for the sklearn API; the label is never used.

        Returns
        -------
        FeatureBuilder
            ``self``.
        """
        from danemap.stats.combat import ComBat, combat_params

        X = self._check_X(X)
        self.train_index_ = list(X.index)
        self.combat_ = None
        if self.harmonize and self.imaging:
            if self.site is None:
                raise InputError("FeatureBuilder: harmonize=True needs a site column")
            cov = X[list(self.combat_covariates)].reset_index(drop=True) \
                if self.combat_covariates else None
            combat = ComBat(**combat_params(self.combat_method, "combat_method"),
                            unseen_site=self.unseen_site, confounded="drop")
            self.combat_ = combat.fit(
                X[list(self.imaging)].to_numpy(float), X[self.site].to_numpy(), cov)
        self.medians_ = {}
        for col in self.numeric:
            v = X[col].to_numpy(float)
            if not np.isfinite(v).any():
                raise InputError(f"FeatureBuilder: covariate {col!r} is entirely missing in "
                                 "the training rows")
            self.medians_[col] = float(np.nanmedian(v))
        self.levels_ = {col: sorted({str(v) for v in X[col].dropna()})
                        for col in self.categorical}
        raw = self._raw(X)
        self.mean_ = raw.mean(0)
        sd = raw.std(0)
        self.scale_ = np.where(sd > 0, sd, 1.0)
        self.names_ = [*self.imaging, *self.numeric,
                       *[f"{c}[{lv}]" for c in self.categorical for lv in self.levels_[c][1:]]]
        return self

    def transform(self, X: pd.DataFrame) -> np.ndarray:
        """Apply the training-fold ComBat, imputation, encoding and scaling to ``X``.

        Parameters
        ----------
        X : pandas.DataFrame
            Rows to transform.

        Returns
        -------
        ndarray, shape (n, n_columns)
        """
        if not hasattr(self, "mean_"):
            raise NotFittedError("FeatureBuilder: call fit() before transform()")
        X = self._check_X(X)
        return (self._raw(X) - self.mean_) / self.scale_


def _single_threaded(func: F) -> F:
    """Run ``func`` with single-threaded BLAS (many small fits are faster that way)."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        from threadpoolctl import threadpool_limits

        with threadpool_limits(1):
            return func(*args, **kwargs)

    return cast(F, wrapper)


# --------------------------------------------------------------------------- metrics
def _auc(y: np.ndarray, score: np.ndarray) -> float:
    from scipy.stats import rankdata

    n1 = int(y.sum())
    n0 = len(y) - n1
    if n1 == 0 or n0 == 0:
        return float("nan")
    ranks = rankdata(score)
    return float((ranks[y == 1].sum() - n1 * (n1 + 1) / 2) / (n1 * n0))


def _metrics(y: np.ndarray, prob: np.ndarray) -> dict[str, float]:
    pred = prob >= 0.5
    pos, neg = y == 1, y == 0
    sens = float(pred[pos].mean()) if pos.any() else float("nan")
    spec = float((~pred[neg]).mean()) if neg.any() else float("nan")
    return {
        "accuracy": float((pred == pos).mean()),
        "balanced_accuracy": float(np.nanmean([sens, spec])),
        "auc": _auc(y, prob),
        "sensitivity": sens,
        "specificity": spec,
    }


def _bootstrap(y: np.ndarray, prob: np.ndarray, n_boot: int, seed: int) -> dict[str, tuple]:
    rng = np.random.default_rng(seed)
    vals: dict[str, list[float]] = {m: [] for m in METRICS}
    for _ in range(n_boot):
        idx = rng.integers(0, len(y), len(y))
        for k, v in _metrics(y[idx], prob[idx]).items():
            vals[k].append(v)
    out = {}
    for k, vv in vals.items():
        arr = np.asarray(vv)
        arr = arr[np.isfinite(arr)]
        out[k] = (float(np.quantile(arr, 0.025)), float(np.quantile(arr, 0.975))) \
            if arr.size else (float("nan"), float("nan"))
    return out


# ------------------------------------------------------------------------ estimators
class NestedLogistic:
    """Nested model selection: :class:`FeatureBuilder` + L2 logistic regression.

    The inner loop (stratified k-fold, ROC AUC) chooses ``C``; the builder is fitted
    once per inner training fold and shared by every ``C`` (it does not depend on
    ``C``), which is equivalent to a ``GridSearchCV`` over a
    ``Pipeline([builder, LogisticRegression])`` and several times faster.

    Parameters
    ----------
    builder : FeatureBuilder
        Unfitted builder.
    c_grid : sequence of float
        Candidate inverse regularisation strengths.
    inner_folds : int
        Inner folds.
    seed : int
        Seed of the inner folds.
    stratify_on : str or None
        Column of ``X`` (the site) whose levels the inner folds are stratified on together
        with the diagnosis, so every inner training fold holds its share of every site
        (ComBat inside it needs three per site).
    """

    def __init__(self, builder: FeatureBuilder, c_grid: Sequence[float], inner_folds: int,
                 seed: int, stratify_on: str | None = None) -> None:
        self.builder = builder
        self.c_grid = c_grid
        self.inner_folds = inner_folds
        self.seed = seed
        self.stratify_on = stratify_on

    @staticmethod
    def _lr(C: float, n_inputs: int) -> Any:
        from sklearn.linear_model import LogisticRegression

        solver = logistic_solver(n_inputs)
        return LogisticRegression(C=C, solver=solver,
                                  max_iter=200 if solver == "newton-cholesky" else 1000)

    def fit(self, X: pd.DataFrame, y: np.ndarray) -> NestedLogistic:
        """Choose ``C`` by inner CV, then refit builder and classifier on all rows."""
        from sklearn.base import clone
        from sklearn.model_selection import StratifiedKFold

        grid = list(self.c_grid)
        scores = np.zeros(len(grid))
        if len(grid) > 1:
            inner = StratifiedKFold(self.inner_folds, shuffle=True, random_state=self.seed)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", UserWarning)  # a stratum below the folds
                splits = list(inner.split(X, _strata(X, y, self.stratify_on,
                                                     self.inner_folds)))
            for tr, va in splits:
                b = clone(self.builder).fit(X.iloc[tr])
                ztr, zva = b.transform(X.iloc[tr]), b.transform(X.iloc[va])
                for i, C in enumerate(grid):
                    lr = self._lr(C, ztr.shape[1]).fit(ztr, y[tr])
                    scores[i] += _auc(y[va], lr.decision_function(zva))
        self.best_C_ = float(grid[int(np.nanargmax(scores))]) if np.isfinite(scores).any() \
            else float(grid[0])
        self.builder_ = clone(self.builder).fit(X)
        Z = self.builder_.transform(X)
        self.clf_ = self._lr(self.best_C_, Z.shape[1]).fit(Z, y)
        return self

    def predict_proba(self, X: pd.DataFrame) -> np.ndarray:
        """Class probabilities ``(n, 2)``, column 1 for the case."""
        if not hasattr(self, "clf_"):
            raise NotFittedError("NestedLogistic: call fit() first")
        return self.clf_.predict_proba(self.builder_.transform(X))


def _builders(imaging: list[str], numeric: list[str], categorical: list[str], site: str,
              harmonize: bool, combat_covariates: list[str], scheme: str,
              loso_harmonize: str, combat_method: str) -> dict[str, FeatureBuilder]:
    cat = list(categorical)
    if scheme == "loso":
        cat = [c for c in cat if c != site]
        h = harmonize and loso_harmonize == "refit"
        unseen = "refit"
    else:
        cat = [*cat, site] if site not in cat else cat
        h, unseen = harmonize, "error"
    kw: dict[str, Any] = {"site": site, "combat_covariates": combat_covariates,
                          "unseen_site": unseen, "combat_method": combat_method}
    return {
        "covariates": FeatureBuilder(numeric=numeric, categorical=cat, **kw),
        "imaging": FeatureBuilder(imaging=imaging, harmonize=h, **kw),
        "both": FeatureBuilder(imaging=imaging, numeric=numeric, categorical=cat,
                               harmonize=h, **kw),
    }


def _cv_predict(model: NestedLogistic, X: pd.DataFrame, y: np.ndarray,
                splits: list[tuple[np.ndarray, np.ndarray]]) -> tuple[np.ndarray, list, list]:
    prob = np.full(len(y), np.nan)
    folds, best = [], []
    for train, test in splits:
        m = NestedLogistic(model.builder, model.c_grid, model.inner_folds, model.seed,
                           stratify_on=model.stratify_on).fit(X.iloc[train], y[train])
        prob[test] = m.predict_proba(X.iloc[test])[:, 1]
        folds.append(_metrics(y[test], prob[test]))
        best.append(m.best_C_)
    return prob, folds, best


def _strata(X: pd.DataFrame, y: np.ndarray, column: str | None, n_splits: int) -> np.ndarray:
    """Labels to stratify folds on: the diagnosis, crossed with ``column`` (the site).

    A stratum smaller than the folds is spread as evenly as sklearn can; the diagnosis
    alone is used when every crossed stratum is that small (sklearn refuses that case).
    """
    if column is None or column not in X.columns:
        return y
    crossed = X[column].astype(str).to_numpy() + "|" + np.asarray(y).astype(str)
    if np.unique(crossed, return_counts=True)[1].max() < n_splits:
        return y
    return crossed


def _min_level(n_folds: int) -> int:
    """Fewest participants a site or categorical level needs to be classified.

    The folds are stratified on site x diagnosis, so a site with twice as many participants
    as outer folds keeps the three that ComBat needs in every outer and inner training fold
    (10 with 5 folds; 12 per site, the demo's size, pass).
    """
    return 2 * int(n_folds)


def _design_columns(design: GroupDesign | None) -> tuple[str, Any, Any, list[str], str]:
    """Return the group column, labels, covariates and site of a classification design."""
    d = design_or_default(design)
    if d.site is None:
        raise InputError("design: classification needs a site column (a covariate for "
                         "k-fold, the grouping of leave-one-site-out, ComBat's batch); "
                         "GroupDesign(site=None) was given")
    return d.group, d.case, d.control, list(d.covariates), d.site


def _training_table(features: pd.DataFrame, participants: pd.DataFrame, group: str,
                    case: str, control: str, covariates: Sequence[str],
                    extra_covariates: Sequence[str], site: str, min_level: int,
                    ) -> tuple[pd.DataFrame, np.ndarray, list[str], list[str], list[str], int]:
    """Join features and covariates of the case and control rows the classifiers use.

    The rule of :mod:`danemap.stats._tables` (*participants left out*): complete site and
    ``covariates``, finite features, a site held by at least ``min_level`` participants
    and a categorical-covariate level by at least half as many; everyone left out is
    named in one warning.
    Returns the joined table, the labels (case = 1), the imaging, numeric and categorical
    column names and the number of case/control rows left out.
    """
    import pandas as pd

    where = "classification (participants)"
    if not features.index.equals(participants.index):
        raise InputError(f"{where}: features and participants are not aligned on participant_id")
    covariates = list(dict.fromkeys(covariates))
    check_columns(participants, [group, site, *covariates], where)
    is_case, is_ctrl = group_mask(participants, group, case, control, where)
    # IQ is added when present, unless it is a covariate already (listed once)
    extras = [c for c in dict.fromkeys(extra_covariates)
              if c in participants.columns and c not in covariates and c != site]
    imaging = [str(c) for c in features.columns]
    clash = [c for c in imaging if c in {group, site, *covariates, *extras}]
    if clash:
        raise InputError(f"features: column(s) {clash} clash with participants columns")
    data = pd.concat([features.set_axis(imaging, axis=1),
                      participants[[site, *covariates, *extras]]], axis=1)
    numeric = [c for c in [*covariates, *extras] if pd.api.types.is_numeric_dtype(data[c])]
    categorical = [c for c in [*covariates, *extras] if c not in numeric]
    for c in numeric:  # inf is a missing value (imputed for the extras, else left out)
        data[c] = data[c].where(np.isfinite(data[c].to_numpy(float)))
    rows = is_case | is_ctrl
    complete = rows & data[[site, *covariates]].notna().all(axis=1).to_numpy() \
        & np.isfinite(data[imaging].to_numpy(float)).all(axis=1)
    notes = incomplete_note(participants, rows, complete, [site, *covariates])
    keep, rare = rare_levels(participants, complete, [site], min_level,
                             need="participants to be in every training fold with ComBat's "
                                  "three")
    # a covariate level only has to be in every training fold: half the site minimum
    keep, rare_cov = rare_levels(participants, keep,
                                 [c for c in covariates if c in categorical], min_level // 2,
                                 need="participants to be in every training fold")
    left_out_warning("classification", [*notes, *rare, *rare_cov])
    dropped = int((rows & ~keep).sum())
    data = data[keep]
    return data, is_case[keep].astype(int), imaging, numeric, categorical, dropped


@_single_threaded
def classify(
    features: pd.DataFrame,
    participants: pd.DataFrame,
    design: GroupDesign | None = None,
    *,
    extra_covariates: Sequence[str] = ("full4_iq",),
    harmonize: bool = True,
    combat_method: str = "parametric",
    schemes: Sequence[str] = ("kfold", "loso"),
    n_folds: int = 5,
    inner_folds: int = 3,
    c_grid: Sequence[float] = DEFAULT_C_GRID,
    n_permutations: int = 100,
    n_bootstrap: int = 1000,
    loso_harmonize: str = "none",
    seed: int = 0,
) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Cross-validated ADHD-vs-control classification with three models side by side.

    Parameters
    ----------
    features : pandas.DataFrame
        Imaging features indexed by participant, aligned with ``participants``.
    participants : pandas.DataFrame
        Group, covariates and site, indexed by participant.
    design : GroupDesign or None
        Group column and labels (the case is the positive class); covariates of the
        covariate model (text columns one-hot encoded), also preserved by ComBat; site
        (required: a covariate for k-fold, the grouping of LOSO, ComBat's batch). Its
        ``icv`` is not used. Participants are left out by the rule of
        :mod:`danemap.stats._tables` (missing or non-finite values, a site or level held
        by fewer than ``2 * n_folds`` participants), named in one warning. Default
        ``GroupDesign()``.
    extra_covariates : sequence of str
        Covariates added when present and not already in the covariates (e.g. IQ);
        missing values are median-imputed within each training fold.
    harmonize : bool
        Fit ComBat inside every training fold.
    combat_method : {"parametric", "nonparametric", "no-eb"}
        ComBat estimation (see :data:`danemap.stats.combat.COMBAT_METHODS`).
    schemes : sequence of {"kfold", "loso"}
        Outer cross-validation schemes.
    n_folds, inner_folds : int
        Outer stratified k-fold and inner (hyper-parameter) folds.
    c_grid : sequence of float
        Inverse regularisation strengths searched by the inner loop.
    n_permutations : int
        Label permutations for the p-values (0 skips them).
    n_bootstrap : int
        Bootstrap resamples of the pooled CIs.
    loso_harmonize : {"none", "refit"}
        Harmonisation under LOSO (see the module docstring).
    seed : int
        Seed of folds, permutations and bootstrap.

    Returns
    -------
    table : pandas.DataFrame
        One row per scheme × model × metric: ``scheme``, ``model``, ``metric``,
        ``value``, ``ci_low``, ``ci_high``, ``fold_mean``, ``fold_sd``,
        ``p_permutation``, ``n_permutations``, ``chance``, ``n_folds``, ``n``,
        ``n_case``, ``n_control``, ``inputs``, ``harmonization``, ``best_C``.
    info : dict
        Participants used, dropped, per-fold metrics and notes.
    """
    import pandas as pd
    from sklearn.model_selection import LeaveOneGroupOut, StratifiedKFold

    from danemap.stats.combat import ComBat, combat_params

    group, case, control, covariates, site = _design_columns(design)
    method = ComBat(**combat_params(combat_method, "combat_method")).describe()
    bad = sorted(set(schemes) - {"kfold", "loso"})
    if bad or not schemes:
        raise InputError(f"schemes: expected 'kfold' and/or 'loso', found {list(schemes)}")
    if loso_harmonize not in ("none", "refit"):
        raise InputError(f"loso_harmonize (--loso-harmonize): expected 'none' or 'refit', "
                         f"found {loso_harmonize!r}")
    if int(n_folds) < 2 or int(inner_folds) < 2:
        raise InputError(f"n_folds (--folds) / inner_folds: expected integers >= 2, found "
                         f"{n_folds}, {inner_folds}")
    if int(n_permutations) < 0:
        raise InputError(f"n_permutations (--classify-permutations): expected >= 0, found "
                         f"{n_permutations}")
    if not c_grid:
        raise InputError("c_grid: expected at least one value of C")
    data, y, imaging, numeric, categorical, dropped = _training_table(
        features, participants, group, case, control, covariates, extra_covariates, site,
        _min_level(n_folds))
    n_case, n_ctrl = int(y.sum()), int(len(y) - y.sum())
    if min(n_case, n_ctrl) < n_folds:
        raise InputError(f"classification: {n_case} cases and {n_ctrl} controls are too few "
                         f"for {n_folds}-fold cross-validation (lower --folds)")
    combat_cov = list(dict.fromkeys(covariates))
    sites = data[site].astype(str).to_numpy()
    info: dict[str, Any] = {"n": len(y), "n_case": n_case, "n_control": n_ctrl,
                            "n_dropped": dropped, "covariate_model_inputs": {}, "folds": {},
                            "notes": []}
    rows = []
    for scheme in schemes:
        if scheme == "kfold":
            outer = StratifiedKFold(int(n_folds), shuffle=True, random_state=seed)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", UserWarning)  # a stratum below n_folds
                splits = list(outer.split(data, _strata(data, y, site, int(n_folds))))
        else:
            uniq = np.unique(sites)
            if uniq.size < 2:
                warnings.warn("classification: leave-one-site-out needs at least two sites; "
                              "skipped", DanemapWarning, stacklevel=2)
                continue
            splits = list(LeaveOneGroupOut().split(data, y, sites))
            for train, test in splits:
                if len(np.unique(y[test])) < 2 or min(np.bincount(y[train])) < inner_folds:
                    raise InputError(f"classification: site {sites[test][0]!r} has a single "
                                     "group or too few participants for leave-one-site-out; "
                                     "merge it with a similar site or remove its participants "
                                     "from participants.tsv")
        builders = _builders(imaging, numeric, categorical, site, harmonize, combat_cov,
                             scheme, loso_harmonize, combat_method)
        for name, builder in builders.items():
            model = NestedLogistic(builder, c_grid, int(inner_folds), seed, stratify_on=site)
            prob, folds, best = _cv_predict(model, data, y, splits)
            observed = _metrics(y, prob)
            ci = _bootstrap(y, prob, int(n_bootstrap), seed)
            rng = np.random.default_rng(seed + 1)
            null: dict[str, list[float]] = {m: [] for m in METRICS}
            for _ in range(int(n_permutations)):
                yp = rng.permutation(y)
                pp, _f, _b = _cv_predict(model, data, yp, splits)
                for k, v in _metrics(yp, pp).items():
                    null[k].append(v)
            if harmonize and builder.imaging:
                if scheme == "kfold":
                    harm = (f"ComBat fitted in each training fold ({method}; preserving "
                            f"{combat_cov}), applied to the test fold")
                elif loso_harmonize == "refit":
                    harm = (f"ComBat fitted in each training fold ({method}); held-out site "
                            "estimated from its own unlabelled features (transductive)")
                else:
                    harm = "none (LOSO: ComBat cannot harmonise an unseen site)"
            else:
                harm = "none" if builder.imaging or not harmonize else "not applicable"
            inputs = ", ".join(
                ([f"{len(imaging)} imaging features"] if builder.imaging else [])
                + list(builder.numeric) + list(builder.categorical))
            info["covariate_model_inputs"][f"{scheme}/{name}"] = inputs
            info["folds"][f"{scheme}/{name}"] = folds
            counts = np.bincount(y)
            for metric in METRICS:
                fold_vals = np.array([f[metric] for f in folds], float)
                nv = np.asarray(null[metric], float)
                p = (1 + np.sum(nv >= observed[metric] - 1e-12)) / (1 + nv.size) \
                    if nv.size else np.nan
                chance = {"accuracy": counts.max() / counts.sum(), "balanced_accuracy": 0.5,
                          "auc": 0.5}.get(metric, np.nan)
                rows.append({
                    "scheme": scheme, "model": name, "metric": metric,
                    "value": observed[metric], "ci_low": ci[metric][0],
                    "ci_high": ci[metric][1], "fold_mean": float(np.nanmean(fold_vals)),
                    "fold_sd": float(np.nanstd(fold_vals, ddof=1)) if len(folds) > 1
                    else np.nan,
                    "p_permutation": p, "n_permutations": int(n_permutations),
                    "chance": chance, "n_folds": len(splits), "n": len(y),
                    "n_case": n_case, "n_control": n_ctrl, "inputs": inputs,
                    "harmonization": harm,
                    "best_C": float(pd.Series(best).mode().iloc[0]),
                })
    if "loso" in schemes:
        info["notes"].append(
            "LOSO: site is not a covariate (unseen in the test fold); harmonisation: "
            + ("held-out site refitted from its own unlabelled features (transductive)"
               if loso_harmonize == "refit" else "none"))
    return pd.DataFrame(rows), info


def classification_columns() -> dict[str, str]:
    """Descriptions of the columns of :func:`classify` (for sidecars)."""
    return {
        "scheme": "kfold = stratified k-fold; loso = leave-one-site-out",
        "model": "covariates = covariates only (baseline); imaging = features only; "
                 "both = features and covariates",
        "metric": "accuracy, balanced_accuracy, auc (ROC), sensitivity (cases), specificity",
        "value": "metric of the pooled out-of-fold predictions (threshold 0.5)",
        "ci_low": "bootstrap 2.5th percentile (participants resampled)",
        "ci_high": "bootstrap 97.5th percentile",
        "fold_mean": "mean of the metric across outer folds",
        "fold_sd": "SD of the metric across outer folds",
        "p_permutation": "label-permutation p-value, whole nested CV rerun per permutation",
        "n_permutations": "number of label permutations",
        "chance": "majority-class rate for accuracy, 0.5 for balanced accuracy and AUC",
        "n_folds": "outer folds",
        "n": "participants classified",
        "n_case": "cases",
        "n_control": "controls",
        "inputs": "model inputs",
        "harmonization": "harmonisation used for the imaging features",
        "best_C": "most frequently chosen inverse regularisation strength (inner CV)",
    }


# ---------------------------------------------------------------------- save / predict
@_single_threaded
def save_classifier(
    path: str | os.PathLike[str],
    features: pd.DataFrame,
    participants: pd.DataFrame,
    design: GroupDesign | None = None,
    *,
    model: str = "both",
    extra_covariates: Sequence[str] = ("full4_iq",),
    harmonize: bool = True,
    combat_method: str = "parametric",
    inner_folds: int = 3,
    c_grid: Sequence[float] = DEFAULT_C_GRID,
    seed: int = 0,
    n_folds: int = 5,
) -> Path:
    """Fit one of the three models on everyone and save it as JSON (no code on load).

    Parameters
    ----------
    path : path-like
        Output JSON file.
    features, participants : pandas.DataFrame
        Aligned training tables.
    design : GroupDesign or None
        As in :func:`classify`.
    model : {"covariates", "imaging", "both"}
        Which model to save.
    extra_covariates, harmonize, combat_method, inner_folds, c_grid, seed
        As in :func:`classify`.
    n_folds : int
        The outer folds of the :func:`classify` run the model goes with: the same
        participants are left out (a site or categorical level held by fewer than
        ``2 * n_folds`` participants).

    Returns
    -------
    pathlib.Path
        The written file.
    """
    if model not in MODELS:
        raise InputError(f"model: expected one of {list(MODELS)}, found {model!r}")
    group, case, control, covariates, site = _design_columns(design)
    data, y, imaging, numeric, categorical, _ = _training_table(
        features, participants, group, case, control, covariates, extra_covariates, site,
        _min_level(n_folds))
    builder = _builders(imaging, numeric, categorical, site, harmonize,
                        list(dict.fromkeys(covariates)),
                        "kfold", "none", combat_method)[model]
    nested = NestedLogistic(builder, c_grid, int(inner_folds), seed,
                            stratify_on=site).fit(data, y)
    fb, clf = nested.builder_, nested.clf_
    payload = {
        "format": FORMAT, "version": VERSION, "model": model,
        "labels": {"group": group, "case": case, "control": control},
        "builder": {"params": {k: list(v) if isinstance(v, tuple | list) else v
                               for k, v in fb.get_params(deep=False).items()},
                    "medians": fb.medians_, "levels": fb.levels_,
                    "mean": fb.mean_.tolist(), "scale": fb.scale_.tolist(),
                    "names": fb.names_,
                    "combat": None if fb.combat_ is None else estimator_to_dict(fb.combat_)},
        "coef": clf.coef_.ravel().tolist(), "intercept": float(clf.intercept_[0]),
        "C": nested.best_C_, "n_train": len(y),
        "n_case": int(y.sum()), "n_control": int(len(y) - y.sum()),
        "disclaimer": "research use only; not a diagnostic device",
    }
    return write_json(path, payload)


def load_classifier(path: str | os.PathLike[str]) -> tuple[FeatureBuilder, dict[str, Any]]:
    """Read a classifier saved by :func:`save_classifier`.

    Parameters
    ----------
    path : path-like
        JSON model file.

    Returns
    -------
    (builder, payload) : tuple
        The fitted :class:`FeatureBuilder` and the stored content.
    """
    p = Path(path)
    data = read_model_file(p, "classifier model", FORMAT, VERSION)
    with model_fields(p, "classifier model"):
        b = data["builder"]
        fb = FeatureBuilder(**b["params"])
        fb.medians_ = dict(b["medians"])
        fb.levels_ = {k: list(v) for k, v in b["levels"].items()}
        fb.mean_ = np.asarray(b["mean"], float)
        fb.scale_ = np.asarray(b["scale"], float)
        fb.names_ = list(b["names"])
        fb.combat_ = None if b["combat"] is None else estimator_from_dict(b["combat"])
        fb.train_index_ = []
        coef = np.asarray(data["coef"], float)
    if coef.size != len(fb.names_):
        raise InputError(f"classifier model {p}: {coef.size} coefficients for "
                         f"{len(fb.names_)} inputs")
    return fb, data


def _check_seen_levels(fb: FeatureBuilder, X: pd.DataFrame,
                       model_path: str | os.PathLike[str]) -> None:
    """Refuse participants whose site (or other categorical level) the model never saw.

    The one-hot encoding would give them the reference level's indicators, i.e. the
    reference site's probabilities, silently.
    """
    known: dict[str, list[str]] = {c: [str(v) for v in lv] for c, lv in fb.levels_.items()}
    if fb.combat_ is not None and fb.site:
        known[fb.site] = [str(v) for v in fb.combat_.sites_]
    for col, levels in known.items():
        values = X[col].astype("string").str.strip()
        new = values.notna() & ~values.isin(levels)
        if new.any():
            unseen = sorted({str(v) for v in values[new]})
            raise InputError(
                f"predict: {int(new.sum())} participant(s) (e.g. "
                f"{list(map(str, X.index[new.to_numpy()][:3]))}) have {col} {unseen}, which "
                f"the saved classifier {model_path} was not trained on (it knows {levels}); "
                f"it cannot score them: save a classifier trained on a table that includes "
                f"their {col} ('danemap stats classify --save-model M.json')")


def predict(
    model_path: str | os.PathLike[str],
    features: pd.DataFrame,
    participants: pd.DataFrame,
) -> pd.DataFrame:
    """Score a separate table with a saved classifier.

    Parameters
    ----------
    model_path : path-like
        JSON file written by :func:`save_classifier`.
    features : pandas.DataFrame
        Features (the model's imaging columns) indexed by participant.
    participants : pandas.DataFrame
        The covariates (and site) of the same participants.

    Returns
    -------
    pandas.DataFrame
        ``participant_id``, ``probability_case``, ``predicted`` (case/control label,
        threshold 0.5) and ``model``. ``DataFrame.attrs`` describes the saved model for
        sidecars: ``labels``, ``n_train``, ``n_train_case``, ``n_train_control``,
        ``covariates`` (model inputs besides the imaging features), ``site`` and
        ``harmonization``.
    """
    import pandas as pd

    fb, data = load_classifier(model_path)
    missing = [c for c in fb.imaging if c not in features.columns]
    if missing:
        raise InputError(f"features: the saved model needs feature columns absent here: "
                         f"{missing[:5]} ({len(missing)} in all)")
    cols = [c for c in dict.fromkeys([*fb.numeric, *fb.categorical,
                                      *([fb.site] if fb.combat_ is not None else []),
                                      *(fb.combat_covariates if fb.combat_ is not None
                                        else [])])]
    check_columns(participants, cols, "participants (predict)")
    X = pd.concat([features[list(fb.imaging)], participants[cols]], axis=1)
    need = [*fb.imaging, *([fb.site] if fb.combat_ is not None else []),
            *(fb.combat_covariates if fb.combat_ is not None else [])]
    incomplete = X[need].isna().any(axis=1)
    if incomplete.any():
        raise InputError(f"features/participants (predict): missing values for "
                         f"{list(X.index[incomplete.to_numpy()][:5])} in {need[:6]}")
    _check_seen_levels(fb, X, model_path)
    Z = fb.transform(X)
    logit = Z @ np.asarray(data["coef"], float) + float(data["intercept"])
    prob = 1.0 / (1.0 + np.exp(-logit))
    labels: Mapping[str, str] = data["labels"]
    out = pd.DataFrame({
        "participant_id": list(features.index),
        "probability_case": prob,
        "predicted": np.where(prob >= 0.5, labels["case"], labels["control"]),
        "model": data["model"],
    })
    harm = "none"
    if fb.combat_ is not None:
        harm = (f"saved ComBat ({fb.combat_.describe()}) fitted on the {data['n_train']} "
                f"training participants (batch {fb.site!r}, preserving "
                f"{list(fb.combat_covariates)}), applied to these participants")
    out.attrs.update({
        "labels": dict(labels), "n_train": int(data["n_train"]),
        "n_train_case": int(data["n_case"]), "n_train_control": int(data["n_control"]),
        "covariates": [*fb.numeric, *fb.categorical],
        "site": fb.site if fb.combat_ is not None or fb.site in fb.categorical else None,
        "harmonization": harm,
    })
    return out
