"""Run every group analysis on one feature table and write the result files.

:func:`run_stats` is what ``danemap stats all`` and the BIDS-App group level call, on
every marker table (``group/networks.tsv``, ``group/alff.tsv``, connectivity...).

Site checks and harmonisation policy, with at least two sites (otherwise nothing is
checked, transformed or harmonised). Every sidecar and ``summary.json`` state what was
actually done, built from the run (``none`` / ``not run`` where nothing was):

* **Site checks first** (:mod:`danemap.stats.sitecheck`, ``site_checks.tsv``): per
  feature the site SD, mean and CV ratios; with ``stats.transform = "auto"`` strictly
  positive features whose site SD ratio exceeds ``stats.scale_threshold`` are
  log-transformed (a multiplicative site effect becomes additive), and features that are
  constant, nearly empty or mostly missing at a site are not harmonised.
* ``harmonize`` / ``glm`` / ``permutation`` / ``symptoms``: ComBat (when
  ``stats.harmonize = "combat"``) fitted on every analysed participant with the covariates
  **and the group** preserved (Fortin 2018), on the features that can be harmonised. The
  GLM and the permutation test both keep site dummies in the model (so they report the
  same t and df, and the features left out of harmonisation get the site-covariate GLM),
  and the permutation test permutes within site.
* ``meta``: the GLM within each site on the transformed but unharmonised features, and a
  random-effects meta-analysis of the site d's (:mod:`danemap.stats.meta`,
  ``meta_effects.tsv`` and ``meta_sites.tsv``), as ENIGMA does.
* **Headline** (``headline.tsv``, what ``summary.json`` and the report lead with): per
  feature, the mega-analysis (harmonised pooled GLM) where its assumptions hold, that is
  the site SD ratio of what was analysed is not credibly above ``stats.scale_threshold``
  (its 95% lower confidence bound is at most the threshold) and the feature was harmonised,
  **and** it agrees with the meta-analysis (same sign, or both CIs covering 0); otherwise
  the meta-analysis, whose site d's are scale-free. Disagreements are flagged (``agree``
  column), named in a warning and counted in ``summary.json``. With one site the headline
  is the GLM.
* ``normative``: ComBat fitted on the (training) controls only, inside each fit.
* ``classify``: ComBat fitted inside every training fold only (never on test data).
* ``nbs``: the same harmonised features and confounds as ``permutation``.

Every ComBat fit uses the estimation of ``stats.combat_method`` (``parametric`` or
``nonparametric`` empirical Bayes, or ``no-eb``; see
:data:`danemap.stats.combat.COMBAT_METHODS`); the harmonisation texts name it.

Outputs in ``out_dir``: ``site_checks.tsv``, ``harmonized_features.tsv``, ``effects.tsv``,
``meta_effects.tsv``, ``meta_sites.tsv``, ``headline.tsv``, ``permutation.tsv``,
``nbs.tsv`` (connectivity edges only), ``symptoms.tsv``, ``normative_z.tsv``
(+ ``normative_model.json``), ``classification.tsv``, ``reference_comparison.tsv``, each
with a JSON sidecar, and ``summary.json``. The GLM and the meta-analysis always run
together (the headline needs both).

``effects.tsv`` terms (column ``term``; ``stratum`` is ``all`` unless stated):

* ``group``: the main case-control effect (model without interaction, moderator or
  stratification); always present, the only row kind that reports consume by default.
* ``group:<col>`` (``interaction``): group-by-``<col>`` interaction from
  ``feature ~ group + group x <col> (mean-centred) + covariates`` (no d).
* ``group[<mod>=<level>]`` (``moderator``): cases with that level against all controls.
* ``group|<col>=<level>`` (``stratify``): the group effect fitted within the stratum
  ``<level>`` of ``<col>`` (``stratum`` = ``<level>``).

Several rows per participant (``session``/``run`` columns of a feature table): runs
are averaged within participant; several sessions are an error unless one is selected
(``[stats] session``); see :func:`danemap.stats._tables.load_features`.
"""

from __future__ import annotations

import datetime as _dt
import functools
import logging
import os
import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from dataclasses import replace as dataclasses_replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from danemap._utils.logging import SUMMARY, get_logger
from danemap.errors import DanemapError, DanemapWarning, InputError
from danemap.io import write_json
from danemap.stats._design import GroupDesign
from danemap.stats._tables import (
    DISCLAIMER,
    PathLike,
    check_columns,
    encode_covariates,
    group_mask,
    left_out_warning,
    load_inputs,
    rare_levels,
    rows_policy,
    stats_sidecar,
    write_result,
)

if TYPE_CHECKING:
    import pandas as pd

    from danemap.config import StatsConfig

__all__ = ["ANALYSES", "library_versions", "run_stats"]

log = get_logger("stats.pipeline")

ANALYSES = ("harmonize", "glm", "meta", "permutation", "nbs", "symptoms", "normative",
            "classify", "reference")
#: Analyses each one needs first.
_NEEDS = {"reference": ("glm",), "meta": ("glm",), "glm": ("meta",)}
#: Analyses that use the features as read even when harmonised ones exist (they harmonise
#: inside their own fits); once none is left to run, the run lets the raw features go.
_USE_RAW = frozenset({"meta", "normative", "classify"})


@dataclass(frozen=True)
class _Arguments:
    """The per-call arguments of :func:`run_stats` (not study settings)."""

    networks: Mapping[str, Sequence[tuple[str, str]]]
    reference: PathLike | None = None
    feature_measure: str | None = None
    save_classifier: PathLike | None = None
    normative_model: PathLike | None = None


def _nbs_subnetworks(names: Sequence[str],
                     networks: Mapping[str, Sequence[tuple[str, str]]]) -> list[str]:
    """Return the networks NBS analyses: ``names``, or the default of the atlas when empty."""
    import difflib

    from danemap.stats.multiple import default_subnetworks

    chosen = list(names) or default_subnetworks(networks)
    unknown = [n for n in chosen if n not in networks]
    if unknown:
        close = difflib.get_close_matches(unknown[0], list(networks), n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise InputError(f"stats.nbs.subnetworks: unknown network(s) {unknown}{hint}; the "
                         f"atlas has {sorted(networks)}")
    return chosen


def _stats_config(config: Any) -> StatsConfig:
    from danemap.config import Config, StatsConfig

    if config is None:
        return StatsConfig()
    if isinstance(config, Config):
        return config.stats
    if isinstance(config, StatsConfig):
        return config
    raise InputError(f"config: expected a danemap Config or StatsConfig, found "
                     f"{type(config).__name__}")


def _check_stats_config(cfg: StatsConfig) -> None:
    """Refuse an unknown harmonisation, transform or method before any analysis runs."""
    from danemap.stats.combat import combat_params
    from danemap.stats.meta import META_METHODS
    from danemap.stats.sitecheck import TRANSFORMS

    if cfg.harmonize not in ("combat", "none", "off", ""):
        raise InputError(f"stats.harmonize: expected 'combat' or 'none', found "
                         f"{cfg.harmonize!r}")
    combat_params(cfg.combat_method, "stats.combat_method")
    if cfg.transform not in TRANSFORMS:
        raise InputError(f"stats.transform: expected one of {list(TRANSFORMS)}, found "
                         f"{cfg.transform!r}")
    if not float(cfg.scale_threshold) > 1:
        raise InputError(f"stats.scale_threshold: expected a site SD ratio > 1, found "
                         f"{cfg.scale_threshold!r}")
    if cfg.meta_method not in META_METHODS:
        raise InputError(f"stats.meta_method: expected one of {list(META_METHODS)}, found "
                         f"{cfg.meta_method!r}")


class _Run:
    """State shared by the analyses of one :func:`run_stats` call."""

    def __init__(self, features: pd.DataFrame, participants: pd.DataFrame, out: Path,
                 cfg: StatsConfig, args: _Arguments, sources: dict[str, Any]) -> None:
        self._raw: pd.DataFrame | None = features
        self.P, self.out, self.cfg, self.args = participants, out, cfg, args
        self.icv: str | None = cfg.icv or None
        self.n_features = features.shape[1]
        self.sources = sources
        self.summary: dict[str, Any] = {}
        self.files: dict[str, Path] = {}
        self.harmonized: pd.DataFrame | None = None
        self.harmonization = "none"
        #: What normative / classification actually did (set when they run).
        self.normative_harmonization = "not run"
        self.classify_harmonization = "not run"
        self.effects: pd.DataFrame | None = None
        #: Site checks (one row per feature) and the features as analysed (transformed).
        self.checks: pd.DataFrame | None = None
        self._analysed: pd.DataFrame | None = None
        self.covariates = list(cfg.covariates)
        #: Covariates of the analyses that take the ICV (harmonisation, GLM, permutation,
        #: NBS, reference); symptoms, normative model and classification do not.
        self.icv_covariates = [*self.covariates, *([self.icv] if self.icv else [])]
        self.site: str | None = cfg.site if cfg.site in participants.columns else None
        #: The study design of the analyses (site None when its column is absent).
        self.design = GroupDesign.from_config(cfg).replace(site=self.site)
        self.rows_policy = rows_policy(features.attrs.get("rows", {}), cfg.session or None)

    # ---------------------------------------------------------------- helpers
    @property
    def raw(self) -> pd.DataFrame:
        """The features as read (one row per participant of the participants table)."""
        if self._raw is None:  # a programming error: see release_raw
            raise RuntimeError("stats: the raw features were released after harmonisation; "
                               "an analysis that needs them must be listed in _USE_RAW")
        return self._raw

    def release_raw(self) -> None:
        """Let the raw features go once harmonised ones replace them for what is left to run.

        With a large table this halves the memory the remaining analyses need.
        """
        if self.harmonized is not None:
            _ = self.analysis_rows  # needs the raw features: computed (and kept) first
            self._raw = None
            self._analysed = None

    @functools.cached_property
    def base_rows(self) -> np.ndarray:
        """Mask of the participants in either group with every covariate and the site.

        With ComBat, the participants of a site with fewer than ComBat's minimum of three
        are left out too, with a warning naming them (the same drop-and-name rule as the
        normative model and classification).
        """
        from danemap.stats.combat import MIN_SITE_SIZE

        cfg = self.cfg
        is_case, is_ctrl = group_mask(self.P, cfg.group, cfg.case, cfg.control, "participants")
        cols = [*self.icv_covariates, *([self.site] if self.site else [])]
        check_columns(self.P, cols, "participants")
        rows = (is_case | is_ctrl) & self.P[cols].notna().all(axis=1).to_numpy()
        if cfg.harmonize == "combat" and self.site is not None \
                and self.P.loc[rows, self.site].nunique() > 1:
            rows, notes = rare_levels(self.P, rows, [self.site], MIN_SITE_SIZE)
            left_out_warning("group analyses (ComBat needs 3 per site)", notes)
        return rows

    @property
    def multi_site(self) -> bool:
        """Whether the analysed participants come from at least two sites."""
        return self.site is not None and self.P.loc[self.base_rows, self.site].nunique() > 1

    def site_checks(self) -> pd.DataFrame | None:
        """Return the per-feature site checks (:func:`~danemap.stats.sitecheck.check_sites`).

        None with fewer than two sites. Computed once, on the base rows.
        """
        if self.checks is None and self.multi_site:
            from danemap.stats.sitecheck import check_sites

            assert self.site is not None
            rows = self.base_rows
            X = self.raw if rows.all() else self.raw[rows]
            self.checks = check_sites(X, self.P.loc[rows, self.site].to_numpy(),
                                      transform=self.cfg.transform,
                                      scale_threshold=float(self.cfg.scale_threshold))
        return self.checks

    def harmonizable(self) -> np.ndarray:
        """Mask of the features ComBat may harmonise.

        All of them with one site or without ComBat: the mask only matters to ComBat (and
        to which n/a the analysis rows tolerate).
        """
        checks = self.site_checks()
        if checks is None or self.cfg.harmonize != "combat":
            return np.ones(self.n_features, bool)
        return checks["harmonize"].to_numpy(bool)

    @functools.cached_property
    def analysis_rows(self) -> np.ndarray:
        """Mask of the participants of the group analyses.

        They are in either group and have every covariate, the site and a value of every
        feature except those left out of harmonisation (which may have n/a; each of them
        uses its own complete rows).
        """
        keep = self.harmonizable()
        finite = np.isfinite(self.analysed.to_numpy(float))  # a bool mask, no float copy
        return self.base_rows & finite[:, keep].all(axis=1)

    @property
    def analysed(self) -> pd.DataFrame:
        """The features as the group analyses see them: transformed per the site checks."""
        if self._analysed is None:
            from danemap.stats.sitecheck import apply_transform

            checks = self.site_checks()
            self._analysed = self.raw if checks is None else apply_transform(self.raw, checks)
        return self._analysed

    def base_sidecar(self, description: str, columns: Mapping[str, str],
                     harmonization: str, covariates: Sequence[str] | None = None,
                     **extra: Any) -> dict[str, Any]:
        """Sidecar of a table of this run (``covariates`` default: the configured ones)."""
        is_case, is_ctrl = group_mask(self.P, self.cfg.group, self.cfg.case, self.cfg.control,
                                      "participants")
        return stats_sidecar(
            description, columns,
            n={"case": int(is_case.sum()), "control": int(is_ctrl.sum()),
               "note": "participants in the tables; each row gives the n it used"},
            covariates=self.covariates if covariates is None else covariates,
            harmonization=harmonization, site=self.site,
            group={"column": self.cfg.group, "case": self.cfg.case,
                   "control": self.cfg.control},
            sources=self.sources, repeated_rows=self.rows_policy, **extra)

    def features_for_stats(self) -> tuple[pd.DataFrame, str]:
        """Harmonised features when available (else as analysed) and how they were made.

        The features left out of harmonisation are in the harmonised table unchanged
        (transformed only), with their n/a.
        """
        if self.harmonized is not None:
            return self.harmonized, self.harmonization
        return self.analysed, self.transform_text()

    def transform_text(self) -> str:
        """Describe what was done to the features before harmonisation, for sidecars."""
        checks = self.site_checks()
        n_log = 0 if checks is None else int((checks["transform"] == "log").sum())
        return "none" if not n_log else (f"log-transformed {n_log} of {self.n_features} "
                                         "feature(s) (site_checks.tsv)")

    def write(self, key: str, name: str, df: pd.DataFrame, sidecar: Mapping[str, Any]) -> None:
        self.files[key] = write_result(df, self.out / name, sidecar)


# ------------------------------------------------------------------------- analyses
def _rows(df: pd.DataFrame, index: pd.Index) -> pd.DataFrame:
    """``df.loc[index]``, without copying the table when ``index`` is all its rows in order."""
    return df if df.index.equals(index) else df.loc[index]


def _write_site_checks(run: _Run) -> None:
    """Write ``site_checks.tsv`` and warn about transformed and unharmonised features."""
    from danemap.stats.sitecheck import describe_checks

    checks = run.site_checks()
    if checks is None:
        return
    info = describe_checks(checks, float(run.cfg.scale_threshold))
    if info["n_log_transformed"]:
        warnings.warn(
            f"site checks: {info['n_log_transformed']} of {run.n_features} feature(s) have "
            f"site SDs that scale with the site means (SD ratio up to "
            f"{info['sd_ratio_max']:.1f}, its 95% lower bound above "
            f"{info['scale_threshold']:g}) and are "
            f"log-transformed before harmonisation (stats.transform = "
            f"{run.cfg.transform!r}); their d is on the log scale", DanemapWarning,
            stacklevel=2)
    if info["n_not_harmonized"] and run.cfg.harmonize == "combat":
        shown = "; ".join(f"{f}: {r}" for f, r in list(info["not_harmonized"].items())[:5])
        warnings.warn(
            f"site checks: {info['n_not_harmonized']} feature(s) cannot be harmonised safely "
            f"and are analysed by the GLM with site as a covariate instead ({shown})",
            DanemapWarning, stacklevel=2)
    cols = {"feature": "feature name", "positive": "every analysed value > 0",
            "sd_ratio": "largest / smallest within-site SD of the values as given",
            "sd_ratio_low": "lower 95% confidence bound of sd_ratio (F distribution); the "
                            "transform and the headline use it",
            "mean_ratio": "largest / smallest site mean (positive features)",
            "cv_ratio": "largest / smallest site coefficient of variation (positive features)"
                        "; near 1 with a large sd_ratio: a multiplicative site effect",
            "log_sd_ratio": "sd_ratio of log(values) (positive features)",
            "transform": "transform applied before every group analysis (log or none)",
            "analysed_sd_ratio": "sd_ratio of the values analysed (after the transform)",
            "analysed_sd_ratio_low": "lower 95% confidence bound of analysed_sd_ratio",
            "harmonize": "whether ComBat may harmonise the feature",
            "reason": "why not (the site named), when harmonize is false"}
    run.write("site_checks", "site_checks.tsv", checks, run.base_sidecar(
        "Site scale and degeneracy checks done before harmonisation", cols, "none",
        covariates=run.icv_covariates, Transform=run.cfg.transform,
        ScaleThreshold=float(run.cfg.scale_threshold)))
    run.summary["site_checks"] = info


def _do_harmonize(run: _Run) -> None:
    from danemap.stats.combat import ComBat, combat_params

    cfg = run.cfg
    if run.site is None and cfg.harmonize == "combat":
        raise InputError(f"participants: site column {cfg.site!r} not found; it is needed for "
                         "ComBat (set [stats] harmonize = \"none\", or --harmonize none, for "
                         "single-site data)")
    _write_site_checks(run)
    if cfg.harmonize != "combat":
        run.summary["harmonize"] = {"status": "skipped", "reason": "harmonize = none"}
        return
    if not run.multi_site:
        n_sites = run.P[run.site].nunique()
        run.summary["harmonize"] = {"status": "skipped", "reason": "a single site" if n_sites < 2
                                    else f"fewer than two of the {n_sites} sites have the "
                                    "3 analysed participants ComBat needs"}
        return
    rows = run.analysis_rows
    dropped = int((run.base_rows & ~rows).sum())  # base_rows' own drops are named already
    if dropped:
        warnings.warn(f"harmonisation: {dropped} participant(s) outside the two groups or with "
                      "missing features/covariates/site are left out of every group analysis",
                      DanemapWarning, stacklevel=2)
    keep = run.harmonizable()
    preserved = [*run.icv_covariates, cfg.group]
    covars = run.P.loc[rows, preserved].reset_index(drop=True)
    A = run.analysed if rows.all() else run.analysed[rows]
    combat = ComBat(**combat_params(cfg.combat_method, "stats.combat_method"))
    site_labels = run.P.loc[rows, run.site].to_numpy()
    if keep.all():  # the common case: no copy of the table besides ComBat's output
        run.harmonized = combat.fit_transform(A, site_labels, covars)
    else:
        # one float64 block (a column-by-column assignment leaves thousands of blocks,
        # which made writing a 10,000 x 4,950 table take minutes)
        values = A.to_numpy(dtype=np.float64, copy=True)
        if keep.any():
            values[:, keep] = combat.fit_transform(values[:, keep], site_labels, covars)
        import pandas as pd

        run.harmonized = pd.DataFrame(values, index=A.index, columns=A.columns, copy=False)
    n_left = int((~keep).sum())
    transform = run.transform_text()
    run.harmonization = (
        f"ComBat ({combat.describe()}) fitted on all {int(rows.sum())} analysed participants, "
        f"batch {run.site!r}, preserving {preserved}"
        + ("" if transform == "none" else f", after a {transform}")
        + (f"; {n_left} feature(s) not harmonised (site_checks.tsv)" if n_left else ""))
    out = run.harmonized.reset_index()
    cols_doc = {"participant_id": "participant identifier",
                **{c: ("ComBat-harmonised feature" if k else
                       "not harmonised (see site_checks.tsv)")
                   for c, k in zip(A.columns, keep, strict=True)}}
    sites = {} if not keep.any() else {
        str(s): int(n) for s, n in zip(combat.sites_, combat.n_per_site_, strict=True)}
    run.write("harmonized", "harmonized_features.tsv", out,
              run.base_sidecar("Features after the site checks' transform and ComBat", cols_doc,
                               run.harmonization, covariates=run.icv_covariates, Sites=sites))
    run.summary["harmonize"] = {"status": "done", "n": int(rows.sum()),
                                "n_sites": int(run.P.loc[rows, run.site].nunique()),
                                "n_harmonized": int(keep.sum()), "n_not_harmonized": n_left,
                                "preserved": preserved, "combat_method": cfg.combat_method,
                                "method": run.harmonization}


def _effects_columns(group: str = "group") -> dict[str, str]:
    return {
        "feature": "feature name",
        "term": ("'group': main case-control effect; 'group:<col>': group x <col> "
                 "interaction; 'group[<mod>=<level>]': cases with that moderator level vs "
                 "all controls; 'group|<col>=<level>': group effect within a stratum"),
        "stratum": "stratum level ('all' unless stratified)", "n_case": "cases with this feature",
        "n_control": "controls with this feature", "mean_case": "mean in cases",
        "sd_case": "SD in cases", "mean_control": "mean in controls",
        "sd_control": "SD in controls",
        "beta": f"case - control difference ({group} coefficient) or interaction slope, "
                "adjusted",
        "se": "standard error of beta", "t": "t statistic", "df": "residual degrees of freedom",
        "p": "two-sided p-value", "d": "Cohen's d from t (ENIGMA method; n/a for interactions)",
        "d_ci_low": "lower 95% CI of d", "d_ci_high": "upper 95% CI of d",
        "g": "Hedges' g",
        "p_fdr": "Benjamini-Hochberg adjusted p across features within term and stratum "
                 "(features not tested are left out of the family)",
        "note": "why a feature was not tested, or was not harmonised (empty: neither)",
        "transform": "transform applied before the analysis (log: d and beta are on the log "
                     "scale; see site_checks.tsv)",
    }


def _do_glm(run: _Run) -> None:
    import pandas as pd

    from danemap.stats.glm import case_control

    cfg = run.cfg
    interaction = cfg.glm.interaction or None
    stratify = cfg.glm.stratify or None
    moderator = cfg.glm.moderator or None
    feats, harm = run.features_for_stats()
    # site stays in the model after ComBat: the permutation test has the same design (same t
    # and df), and the features left out of harmonisation get the site-covariate GLM
    site = run.site if run.multi_site else None
    check_columns(run.P, [interaction, stratify, moderator], "participants")
    # the participants of every group analysis (analysis_rows: a site below ComBat's
    # minimum is left out of all of them); a feature left out of harmonisation then uses
    # its complete rows among them
    if not run.base_rows.any():
        raise InputError("glm: no participant is left: none is in either group with every "
                         "covariate and a site of at least 3 analysed participants (ComBat's "
                         "minimum; with --harmonize none sites of any size are kept); the "
                         "warnings name who was left out and why")
    F, P = feats, run.P[run.analysis_rows]
    design = run.design.replace(site=site)
    main = case_control(F, P, design)
    parts = [main]
    terms = {"group": "main case-control effect, all participants"}
    if interaction:
        inter = case_control(F, P, design, interaction=interaction)
        parts.append(inter[inter["term"] != "group"])
        terms[f"group:{interaction}"] = (f"group x {interaction} (mean-centred) interaction"
                                           " in a model that adds it to the main model")
    if moderator:
        mod = case_control(F, P, design, moderator=moderator)
        parts.append(mod[mod["term"] != "group"])
        terms[f"group[{moderator}=<level>]"] = (f"cases with that {moderator} level vs all "
                                                  "controls")
    if stratify:
        strat = case_control(F, P, design, stratify=stratify).copy()
        strat["term"] = [f"group|{stratify}={lv}" for lv in strat["stratum"]]
        parts.append(strat)
        terms[f"group|{stratify}=<level>"] = (f"group effect fitted within each {stratify}"
                                                f" level, without {stratify} as covariate")
    res = pd.concat(parts, ignore_index=True) if len(parts) > 1 else main
    checks = run.site_checks()
    if checks is not None:
        info = checks.set_index("feature")
        res["transform"] = res["feature"].map(info["transform"]).to_numpy()
        unharmonized = (~info["harmonize"].astype(bool)) & (run.harmonized is not None)
        why = info["reason"].where(unharmonized, "")
        extra = res["feature"].map(why).fillna("")
        res["note"] = [n if not e else (f"{n}; " if n else "") + f"not harmonised ({e}): GLM "
                       "with site as covariate" for n, e in zip(res["note"], extra, strict=True)]
    else:
        res["transform"] = "none"
    main = res[res["term"] == "group"].reset_index(drop=True) if len(parts) > 1 else res
    run.effects = main
    model = (f"feature ~ {cfg.group} + " + " + ".join(main.attrs.get("covariates", []))
             + ("" if site is None else " (site as covariate)"))
    run.write("effects", "effects.tsv", res,
              run.base_sidecar("Case-control GLM per feature", _effects_columns(cfg.group),
                               harm, covariates=run.icv_covariates, Model=model, Terms=terms,
                               Alpha=cfg.alpha))
    g = main
    top = g.sort_values("p").head(5)
    run.summary["glm"] = {
        "status": "done", "model": model, "n_features": len(g),
        "n_case": int(g["n_case"].max()), "n_control": int(g["n_control"].max()),
        "n_fdr_significant": int((g["p_fdr"] < cfg.alpha).sum()),
        "median_abs_d": float(np.nanmedian(np.abs(g["d"]))),
        "top": [{"feature": r.feature, "d": r.d, "d_ci_low": r.d_ci_low,
                 "d_ci_high": r.d_ci_high, "p": r.p, "p_fdr": r.p_fdr}
                for r in top.itertuples()],
        "terms": terms,
        "extra_terms": {t: {"n_fdr_significant": int((sub["p_fdr"] < cfg.alpha).sum()),
                            "min_p": float(sub["p"].min())}
                        for t, sub in res[res["term"] != "group"].groupby("term", sort=False)},
    }


_HEADLINE_COLUMNS = {
    "feature": "feature name",
    "source": "mega (harmonised pooled GLM, effects.tsv), meta (random-effects meta-analysis"
              " of the within-site GLMs, meta_effects.tsv) or glm (one site)",
    "d": "headline Cohen's d", "d_ci_low": "lower 95% CI of d", "d_ci_high": "upper 95% CI",
    "p": "two-sided p of the headline estimate",
    "p_fdr": "Benjamini-Hochberg p across the features' headline p",
    "mega_d": "d of the mega-analysis", "meta_d": "d of the meta-analysis",
    "agree": "mega and meta agree: same sign, or both CIs cover 0 (n/a: one is missing)",
    "transform": "transform applied before the analysis (log: d on the log scale)",
    "reason": "why this source leads",
}


def _headline(run: _Run, meta: pd.DataFrame | None) -> pd.DataFrame:
    """Choose, per feature, the estimate whose assumptions hold (see the module docstring)."""
    import pandas as pd

    from danemap.stats.meta import agreement
    from danemap.stats.multiple import fdr_bh

    assert run.effects is not None
    mega = run.effects.set_index("feature")
    names = list(mega.index)
    thr = float(run.cfg.scale_threshold)
    out = pd.DataFrame({"feature": names, "source": "mega" if meta is not None else "glm",
                        "d": mega["d"].to_numpy(), "d_ci_low": mega["d_ci_low"].to_numpy(),
                        "d_ci_high": mega["d_ci_high"].to_numpy(), "p": mega["p"].to_numpy(),
                        "mega_d": mega["d"].to_numpy(), "meta_d": np.nan, "agree": None,
                        "transform": mega["transform"].to_numpy(), "reason": ""})
    if meta is None:
        out["reason"] = "one site: no meta-analysis"
    else:
        me = meta.set_index("feature").reindex(names)
        out["meta_d"] = me["d"].to_numpy()
        agree = agreement(mega["d"], mega["d_ci_low"], mega["d_ci_high"], me["d"],
                          me["d_ci_low"], me["d_ci_high"])
        checks = run.site_checks()
        assert checks is not None
        info = checks.set_index("feature").reindex(names)
        scale_bad = (info["analysed_sd_ratio_low"] > thr).to_numpy()
        not_harm = ~info["harmonize"].astype(bool).to_numpy() & (run.harmonized is not None)
        has_meta = np.isfinite(me["d"].to_numpy(float)) & (me["k_sites"].to_numpy() >= 2)
        agree[~has_meta] = None  # one site's d is no meta-analysis to agree with
        out["agree"] = agree
        disagree = np.array([a is False for a in agree])
        use_meta = has_meta & (scale_bad | disagree | not_harm)
        reasons = np.where(
            disagree, "mega and meta disagree: the meta-analysis, whose site d's are "
            "scale-free, leads",
            np.where(scale_bad, f"site SD ratio credibly above {thr:g} after the "
                     "transform: ComBat's shared additive group effect is doubtful",
                     np.where(not_harm, "not harmonised (degenerate at a site)", "")))
        out["reason"] = np.where(use_meta, reasons, np.where(
            has_meta, "mega-analysis: site checks passed and meta agrees",
            "mega-analysis: fewer than two sites estimate this feature"))
        for col, src in (("d", "d"), ("d_ci_low", "d_ci_low"), ("d_ci_high", "d_ci_high"),
                         ("p", "p")):
            out[col] = np.where(use_meta, me[src].to_numpy(float), out[col].to_numpy(float))
        out["source"] = np.where(use_meta, "meta", "mega")
    out["p_fdr"] = fdr_bh(out["p"].to_numpy(float), nan="keep")
    return out[list(_HEADLINE_COLUMNS)]


def _needs_glm(run: _Run, analysis: str) -> None:
    """Refuse an analysis that builds on the GLM when the GLM did not produce effects."""
    if run.effects is None:
        raise InputError(f"{analysis}: needs the case-control GLM, which failed (see the glm "
                         "entry of summary.json)")


def _do_meta(run: _Run) -> None:
    from danemap.stats.meta import site_meta_analysis

    _needs_glm(run, "meta")
    cfg = run.cfg
    meta = None
    if not run.multi_site:
        run.summary["meta"] = {"status": "skipped", "reason": "a single site: no per-site "
                               "meta-analysis (the headline is the GLM)"}
    else:
        assert run.site is not None
        rows = run.analysis_rows
        A = run.analysed if rows.all() else run.analysed[rows]
        meta, per_site = site_meta_analysis(A, run.P.loc[A.index], run.design,
                                            method=cfg.meta_method)
        transform = run.transform_text()
        pooled_cols = {
            "feature": "feature name", "k_sites": "sites with a within-site estimate",
            "n_case": "cases over those sites", "n_control": "controls over those sites",
            "d": "random-effects pooled Cohen's d", "se": "Hartung-Knapp SE of d (truncated)",
            "d_ci_low": "lower 95% CI (t on k_sites - 1 df)", "d_ci_high": "upper 95% CI",
            "t": "d / se", "df": "k_sites - 1", "p": "two-sided p",
            "p_fdr": "Benjamini-Hochberg p across features", "tau2": "between-site variance",
            "I2": "share of variation due to between-site heterogeneity",
            "Q": "Cochran's Q", "Q_p": "p of Q on k_sites - 1 df", "method": "pooling"}
        site_cols = {
            "feature": "feature name", "site": "site", "n_case": "cases", "n_control":
            "controls", "beta": "case - control difference, adjusted", "t": "t of the group "
            "term", "df": "residual df", "p": "two-sided p", "d": "Cohen's d (ENIGMA, from t)",
            "d_ci_low": "lower exact 95% CI (noncentral t)", "d_ci_high": "upper exact 95% CI",
            "var_d": "large-sample variance of d (meta-analytic weight 1 / (var_d + tau2))",
            "weight": "relative random-effects weight", "note": "why not fitted"}
        desc = (f"GLM feature ~ {cfg.group} + {' + '.join(run.icv_covariates)} within each "
                f"site, on unharmonised features ({transform})")
        run.write("meta", "meta_effects.tsv", meta, run.base_sidecar(
            "Random-effects meta-analysis of the within-site case-control d", pooled_cols,
            "none (within-site analyses need none)", covariates=run.icv_covariates,
            Model=desc, Method=f"{cfg.meta_method.upper()} tau2, Hartung-Knapp CI truncated "
            "at the unadjusted variance (Roever 2015)"))
        run.write("meta_sites", "meta_sites.tsv", per_site, run.base_sidecar(
            "Within-site case-control effects entering the meta-analysis", site_cols,
            "none", covariates=run.icv_covariates, Model=desc))
    head = _headline(run, meta)
    disagree = head.loc[head["agree"].map(lambda a: a is False), "feature"].tolist()
    if disagree:
        warnings.warn(
            f"mega- and meta-analysis disagree for {len(disagree)} feature(s) "
            f"({', '.join(disagree[:10])}{', ...' if len(disagree) > 10 else ''}): the "
            "pooled harmonised GLM and the per-site meta-analysis give opposite signs with a "
            "CI excluding 0; the headline for them is the meta-analysis (headline.tsv)",
            DanemapWarning, stacklevel=2)
    run.write("headline", "headline.tsv", head, run.base_sidecar(
        "Headline case-control effect per feature: the estimate whose assumptions hold",
        _HEADLINE_COLUMNS, run.harmonization, covariates=run.icv_covariates,
        Rule=("mega-analysis where the feature was harmonised, the 95% lower bound of its "
              f"analysed site SD ratio is at most {float(cfg.scale_threshold):g} and it "
              "agrees with the "
              "meta-analysis; otherwise the meta-analysis (with at least two sites)")))
    top = head.sort_values("p").head(5)
    if meta is not None:
        run.summary["meta"] = {
            "status": "done", "method": cfg.meta_method, "n_features": len(meta),
            "k_sites_max": int(meta["k_sites"].max()),
            "n_fdr_significant": int((meta["p_fdr"] < cfg.alpha).sum()),
            "median_I2": float(np.nanmedian(meta["I2"])) if meta["I2"].notna().any() else None}
    run.summary["headline"] = {
        "rule": "mega where its assumptions hold and it agrees with meta, else meta",
        "n_mega": int((head["source"] == "mega").sum()),
        "n_meta": int((head["source"] == "meta").sum()),
        "n_glm": int((head["source"] == "glm").sum()),
        "n_disagree": len(disagree), "disagree": disagree[:50],
        "n_fdr_significant": int((head["p_fdr"] < cfg.alpha).sum()),
        "top": [{"feature": r.feature, "source": r.source, "d": r.d, "d_ci_low": r.d_ci_low,
                 "d_ci_high": r.d_ci_high, "p": r.p, "p_fdr": r.p_fdr}
                for r in top.itertuples()],
    }


def _edge_features(columns: Sequence[Any]) -> bool:
    """Tell whether every feature is a connectivity edge named ``RegionA__RegionB``."""
    parts = [str(c).split("__") for c in columns]
    return bool(parts) and all(len(p) == 2 and all(p) for p in parts)


def _confounds(run: _Run) -> tuple[Any, np.ndarray, np.ndarray, Any, list[str]]:
    """Rows, group regressor, confounds and blocks shared by ``permutation`` and ``nbs``."""
    cfg = run.cfg
    feats, _ = run.features_for_stats()
    rows = run.analysis_rows
    is_case, _ = group_mask(run.P, cfg.group, cfg.case, cfg.control, "participants")
    idx = feats.index.intersection(run.P.index[rows])
    sel = run.P.index.get_indexer(idx)
    cov_cols = [*run.icv_covariates, *([run.site] if run.site else [])]
    C, names = encode_covariates(run.P.iloc[sel], cov_cols, "participants")
    blocks = run.P[run.site].iloc[sel].astype(str).to_numpy() if run.site else None
    return idx, is_case[sel].astype(float), C, blocks, names


def _do_permutation(run: _Run) -> None:
    import pandas as pd

    from danemap.stats.multiple import permutation_test

    cfg = run.cfg
    feats, harm = run.features_for_stats()
    idx, tested, C, blocks, names = _confounds(run)
    if len(idx) < 3:
        raise InputError(f"permutation: {len(idx)} participant(s) have every covariate, the "
                         "site and every feature; the test needs more")
    Y = _rows(feats, idx).to_numpy(float)
    complete = np.isfinite(Y).all(axis=0)
    if not complete.any():
        raise InputError("permutation: no feature has a value for every analysed participant")
    res = permutation_test(Y if complete.all() else Y[:, complete], tested, C,
                           n_permutations=int(cfg.n_permutations), blocks=blocks,
                           seed=int(cfg.seed))

    def full(values: np.ndarray) -> np.ndarray:
        out = np.full(len(complete), np.nan)
        out[complete] = values
        return out

    df = pd.DataFrame({"feature": list(feats.columns), "t": full(res.t), "df": res.df,
                       "p_uncorrected": full(res.p_uncorrected), "p_fwe": full(res.p_fwe),
                       "n_permutations": res.n_permutations, "n": len(idx),
                       "note": np.where(complete, np.where(np.isnan(full(res.t)),
                                        "not tested: constant after the confounds", ""),
                                        "not tested: n/a for some participants (not "
                                        "harmonised; see site_checks.tsv)")})
    cols = {"feature": "feature name", "t": "observed t of the group regressor (case = 1); "
            "the same model as effects.tsv, so the same t and df",
            "df": "residual degrees of freedom", "p_uncorrected": "per-feature permutation p",
            "p_fwe": "family-wise error p (max-T over the features tested)",
            "n_permutations": "random permutations", "n": "participants",
            "note": "why a feature is not in the max-T family"}
    run.write("permutation", "permutation.tsv", df, run.base_sidecar(
        "Freedman-Lane permutation test of the group effect, max-T FWE", cols, harm,
        covariates=run.icv_covariates,
        Confounds=names, ExchangeabilityBlocks=run.site, Seed=int(cfg.seed)))
    run.summary["permutation"] = {
        "status": "done", "n_permutations": res.n_permutations,
        "n_fwe_significant": int(np.sum(res.p_fwe < cfg.alpha)),
        "min_p_fwe": float(np.nanmin(res.p_fwe)) if np.isfinite(res.p_fwe).any() else None,
        "n_not_tested": int(df["t"].isna().sum()), "blocks": run.site, "seed": int(cfg.seed),
    }


def _do_nbs(run: _Run) -> None:
    import pandas as pd

    from danemap.stats.multiple import nbs

    cfg = run.cfg
    feats, harm = run.features_for_stats()
    if not _edge_features(feats.columns):
        run.summary["nbs"] = {"status": "skipped",
                              "reason": "features are not connectivity edges 'A__B'"}
        return
    networks = run.args.networks
    if not networks:
        run.summary["nbs"] = {"status": "skipped", "reason": "the atlas has no networks"}
        return
    subnetworks = _nbs_subnetworks(cfg.nbs.subnetworks, networks)
    member = {frozenset(p): [n for n in subnetworks
                             if frozenset(p) in {frozenset(q) for q in networks[n]}]
              for n in subnetworks for p in networks[n]}
    edges = [str(c) for c in feats.columns]
    in_sub = [e for e in edges if frozenset(e.split("__")) in member]
    if not in_sub:
        run.summary["nbs"] = {"status": "skipped", "reason": (
            f"no edge of the subnetworks {subnetworks} in the table (the region names are "
            "not those of the atlas)")}
        return
    idx, tested, C, blocks, names = _confounds(run)
    Y = _rows(feats, idx).to_numpy(float)
    complete = np.isfinite(Y).all(axis=0)
    if not complete.all():  # not harmonised and n/a for some participants (site_checks.tsv)
        left = [e for e, c in zip(edges, complete, strict=True) if not c]
        warnings.warn(f"nbs: {len(left)} edge(s) with n/a for some participants are left out "
                      f"of the graph (e.g. {left[:5]}; see site_checks.tsv)", DanemapWarning,
                      stacklevel=2)
        Y, edges = Y[:, complete], [e for e, c in zip(edges, complete, strict=True) if c]
    res = nbs(Y, edges, tested, C,
              subnetworks=subnetworks, networks=networks,
              threshold_t=float(cfg.nbs.threshold),
              n_permutations=int(cfg.n_permutations), blocks=blocks, seed=int(cfg.seed))
    comp_of = {e: k for k, c in enumerate(res.components, 1) for e in c["edges"]}
    comps = [{"component": k, **c, "subnetworks": sorted({n for e in c["edges"]
                                                          for n in member[frozenset(
                                                              e.split("__"))]})}
             for k, c in enumerate(res.components, 1)]
    df = pd.DataFrame({
        "feature": res.edges,
        "subnetwork": [",".join(member[frozenset(e.split("__"))]) for e in res.edges],
        "t": res.t,
        "supra_threshold": np.abs(res.t) > res.threshold_t,
        "component": [comp_of.get(e) for e in res.edges],
    })
    df["component"] = df["component"].astype("Int64")
    size = {c["component"]: c["size"] for c in comps}
    pfwe = {c["component"]: c["p_fwe"] for c in comps}
    df["component_size"] = df["component"].map(size).astype("Int64")
    df["component_p_fwe"] = df["component"].map(pfwe).astype(float)
    cols = {"feature": "edge 'RegionA__RegionB'",
            "subnetwork": "atlas subnetwork(s) holding the edge",
            "t": "observed t of the group regressor (case = 1)",
            "supra_threshold": "|t| above the primary threshold",
            "component": "supra-threshold component the edge belongs to (n/a: none)",
            "component_size": "number of supra-threshold edges in the component",
            "component_p_fwe": "family-wise error p of the component (max component size)"}
    run.write("nbs", "nbs.tsv", df, run.base_sidecar(
        "Network-based statistic (Zalesky 2010) on the connectivity subnetworks", cols, harm,
        covariates=run.icv_covariates,
        Threshold=res.threshold_t, NPermutations=res.n_permutations,
        Subnetworks=subnetworks, NEdges=len(res.edges), Confounds=names,
        ExchangeabilityBlocks=run.site, Seed=int(cfg.seed),
        Method=("Freedman-Lane permutations; components of |t| > threshold formed separately "
                "for positive and negative t over the union of the subnetworks; FWE p from the"
                " null of the largest component size (edges), both signs pooled"),
        Components=comps))
    run.summary["nbs"] = {
        "status": "done", "threshold_t": res.threshold_t, "n_permutations": res.n_permutations,
        "subnetworks": subnetworks, "n_edges": len(res.edges),
        "n_components": len(comps),
        "n_fwe_significant": sum(c["p_fwe"] < cfg.alpha for c in comps),
        "components": [{k: c[k] for k in ("component", "size", "sign", "p_fwe", "subnetworks",
                                          "edges")} for c in comps],
    }


def _do_symptoms(run: _Run) -> None:
    from danemap.stats.symptoms import DEFAULT_SYMPTOMS, symptom_association

    cfg = run.cfg
    symptoms: list[str] | None = list(cfg.symptoms.columns) or None
    if symptoms is None:
        symptoms = [s for s in DEFAULT_SYMPTOMS if s in run.P.columns]
        if not symptoms:
            run.summary["symptoms"] = {"status": "skipped",
                                       "reason": f"no symptom column ({list(DEFAULT_SYMPTOMS)})"}
            return
    feats, harm = run.features_for_stats()
    idx = feats.index.intersection(run.P.index[run.analysis_rows])
    res = symptom_association(_rows(feats, idx), run.P.loc[idx], run.design,
                              symptoms=symptoms, standardize=cfg.symptoms.standardize)
    cols = {"feature": "feature name", "symptom": "symptom score",
            "sample": f"participants analysed ({cfg.case} only, or all)",
            "n": "participants with feature, score and covariates",
            "r": "partial correlation", "t": "t statistic of r", "df": "n - 2 - k covariates",
            "p": "two-sided p-value", "ci_low": "lower 95% CI of r (Fisher z, se 1/sqrt(n-3-k))",
            "ci_high": "upper 95% CI of r",
            "p_fdr": "Benjamini-Hochberg p across features within symptom and sample",
            "symptom_scaling": "raw, or z-scored within site (scales differ by site)",
            "covariates": "covariates partialled out (site indicators included)"}
    scaling = str(res["symptom_scaling"].iloc[0])
    run.write("symptoms", "symptoms.tsv", res, run.base_sidecar(
        "Partial correlation of every feature with every symptom score", cols, harm,
        SymptomScaling=scaling, Symptoms=list(symptoms)))
    best = res.loc[res["p"].idxmin()] if res["p"].notna().any() else None
    run.summary["symptoms"] = {
        "status": "done", "symptoms": list(symptoms), "symptom_scaling": scaling,
        "n_fdr_significant": int((res["p_fdr"] < cfg.alpha).sum()),
        "strongest": None if best is None else {
            k: (best[k].item() if hasattr(best[k], "item") else best[k])
            for k in ("feature", "symptom", "sample", "n", "r", "ci_low", "ci_high", "p",
                      "p_fdr")},
    }


def _do_normative(run: _Run) -> None:
    from danemap.stats.normative import control_calibration, normative_scores

    cfg = run.cfg
    # with several sites, site always enters the model: through ComBat and site
    # indicators, or (harmonize = none) indicators and a residual SD per site
    harmonize = cfg.harmonize == "combat" and run.site is not None
    sex = "sex" if "sex" in run.covariates else None
    z, model = normative_scores(run.raw, run.P, run.design, age="age", sex=sex,
                                harmonize=harmonize, combat_method=cfg.combat_method,
                                n_folds=cfg.normative.n_folds,
                                seed=int(cfg.seed), model_params={
                                    "heteroscedastic": cfg.normative.heteroscedastic})
    path = Path(run.args.normative_model or run.out / "normative_model.json")
    model.save(path)
    run.files["normative_model"] = path
    ref = z.attrs["reference"]
    # what the model does with site beyond ComBat is in Model.site_term
    harm = (f"ComBat ({model.combat_.describe()}) fitted on the training controls inside "
            "every fit (cases never enter it)" if model.combat_ is not None else "none")
    run.normative_harmonization = harm
    cols = {"participant_id": "participant identifier", "group": "group label",
            "scored": "out-of-sample CV (controls), model fitted on all controls (cases), or "
                      "not scored (missing values or a sex/site level with too few controls)",
            "n_extreme": f"number of features with |z| > {model.extreme_z:g}",
            **{c: "predictive deviation z-score" for c in run.raw.columns}}
    calibration = control_calibration(z, run.P, run.site, float(model.extreme_z))
    run.write("normative", "normative_z.tsv", z, run.base_sidecar(
        "Normative-model deviation z-scores (feature ~ age + sex + site, fitted on controls; "
        "predictive t with the design's leverage, mapped to a normal z)", cols,
        harm, covariates=["age", *([sex] if sex else []), *([run.site] if run.site else [])],
        Model={"n_knots": model.n_knots, "degree": model.degree,
               "age_term": model.age_term_, "site_term": ref["site_term"],
               "heteroscedastic": model.heteroscedastic, "n_folds": cfg.normative.n_folds,
               "n_train_controls": model.n_train_},
        Reference={k: ref[k] for k in ("small_reference", "min_reference",
                                       "min_site_reference", "fits")},
        SmallReference=bool(ref["small_reference"]),
        ControlCalibration=calibration, ModelFile=path.name))
    zc = z[z["scored"] == "out-of-sample CV"][list(map(str, run.raw.columns))].to_numpy(float)
    zk = z[z["scored"] == "model fitted on all controls"]
    run.summary["normative"] = {
        "status": "done", "n_controls_cv": len(zc), "n_cases": len(zk),
        "n_not_scored": int((z["scored"] == "not scored").sum()),
        "control_z_mean": float(np.nanmean(zc)) if zc.size else None,
        "control_z_sd": float(np.nanstd(zc)) if zc.size else None,
        "control_calibration": calibration,
        "small_reference": bool(ref["small_reference"]),
        "age_term": model.age_term_, "site_term": ref["site_term"],
        "mean_extreme_controls": float(z.loc[z["scored"] == "out-of-sample CV",
                                             "n_extreme"].mean()),
        "mean_extreme_cases": float(zk["n_extreme"].mean()) if len(zk) else None,
        "model_file": path.name,
    }


def _do_classify(run: _Run) -> None:
    from danemap.stats.classify import classification_columns, classify, save_classifier

    cfg = run.cfg
    o = cfg.classify
    if run.site is None:
        raise InputError(f"participants: site column {cfg.site!r} not found (classification "
                         "needs it for harmonisation and leave-one-site-out; name it with "
                         "--site or [stats] site)")
    multi_site = run.P[run.site].nunique() > 1
    harmonize = cfg.harmonize == "combat" and multi_site  # one site: nothing to remove
    schemes = ("kfold", "loso") if multi_site else ("kfold",)
    kw: dict[str, Any] = {"extra_covariates": o.extra_covariates,
          "harmonize": harmonize, "combat_method": cfg.combat_method,
          "inner_folds": o.inner_folds,
          "c_grid": tuple(o.c_grid), "seed": int(cfg.seed)}
    table, info = classify(run.raw, run.P, run.design, schemes=schemes, n_folds=o.n_folds,
                           n_permutations=cfg.classify_permutations, n_bootstrap=o.n_bootstrap,
                           loso_harmonize=o.loso_harmonize, **kw)
    imaging = table[table["model"] == "imaging"]
    run.classify_harmonization = "; ".join(
        f"{scheme}: {h}" for scheme, h in
        imaging.groupby("scheme", sort=False)["harmonization"].first().items())
    run.write("classification", "classification.tsv", table, run.base_sidecar(
        "Cross-validated classification: covariate-only baseline, imaging, both",
        classification_columns(), run.classify_harmonization,
        Notes=info["notes"], Threshold=0.5, Seed=int(cfg.seed)))
    if run.args.save_classifier:
        with warnings.catch_warnings():  # the same participants left out: warned above
            warnings.simplefilter("ignore", DanemapWarning)
            run.files["classifier_model"] = save_classifier(
                run.args.save_classifier, run.raw, run.P, run.design, model="both",
                n_folds=o.n_folds, **kw)
    summ: dict[str, Any] = {"status": "done", "n": info["n"], "n_case": info["n_case"],
                            "n_control": info["n_control"], "notes": info["notes"]}
    for scheme in schemes:
        block: dict[str, Any] = {}
        for model in ("covariates", "imaging", "both"):
            sub = table[(table["scheme"] == scheme) & (table["model"] == model)]
            block[model] = {r.metric: {"value": r.value, "ci_low": r.ci_low,
                                       "ci_high": r.ci_high, "fold_sd": r.fold_sd,
                                       "p_permutation": r.p_permutation}
                            for r in sub.itertuples()}
        ba = {m: block[m]["balanced_accuracy"]["value"] for m in block}
        block["imaging_beats_covariate_baseline"] = bool(ba["imaging"] > ba["covariates"])
        block["imaging_adds_to_covariates"] = bool(ba["both"] > ba["covariates"])
        summ[scheme] = block
    run.summary["classify"] = summ


def _do_reference(run: _Run) -> None:
    from danemap.stats.reference import compare_to_reference, load_reference, reference_columns

    if run.args.reference is None:
        run.summary["reference"] = {"status": "skipped", "reason": "no reference table given"}
        return
    _needs_glm(run, "reference")
    ref = load_reference(run.args.reference)
    assert run.effects is not None
    measure = run.args.feature_measure or "feature"
    table = compare_to_reference(run.effects, ref, feature_measure=measure)
    if table.empty:
        warnings.warn("reference: no feature name maps to a reference structure "
                      "(caudate, putamen, pallidum, thalamus, hippocampus, amygdala, "
                      "accumbens)", DanemapWarning, stacklevel=2)
    _, harm = run.features_for_stats()
    run.write("reference", "reference_comparison.tsv", table, run.base_sidecar(
        "danemap Cohen's d next to a published reference", reference_columns(), harm,
        covariates=run.icv_covariates,
        Reference=str(run.args.reference), ReferenceMeasure=str(ref["measure"].iloc[0])))
    run.summary["reference"] = {
        "status": "done", "n_mapped": len(table),
        "n_same_sign": int(table["same_sign"].sum()) if len(table) else 0,
        "n_within_reference_ci": int(table["d_within_reference_ci"].sum()) if len(table) else 0,
        "rows": [{"feature": r.feature, "structure": r.structure, "d": r.d,
                  "d_ci_low": r.d_ci_low, "d_ci_high": r.d_ci_high,
                  "reference_d": r.reference_d} for r in table.itertuples()],
    }


_STEPS: dict[str, Callable[[_Run], None]] = {
    "harmonize": _do_harmonize, "glm": _do_glm, "meta": _do_meta,
    "permutation": _do_permutation,
    "nbs": _do_nbs, "symptoms": _do_symptoms, "normative": _do_normative, "classify": _do_classify,
    "reference": _do_reference,
}


def _icv_from_features(F: pd.DataFrame, P: pd.DataFrame, cfg: StatsConfig, column: str,
                       path: PathLike) -> tuple[pd.DataFrame, pd.DataFrame, StatsConfig]:
    """Move the feature table's ICV column into the participants, as the design's ICV."""
    if column not in F.columns:
        raise InputError(f"{path}: expected an ICV column {column!r} (icv_feature), found "
                         f"columns {list(F.columns)[:8]}")
    if F.shape[1] < 2:
        raise InputError(f"{path}: the table holds only its ICV column {column!r}; no "
                         "feature is left to analyse")
    if not F[column].notna().any():
        raise InputError(f"{path}: the ICV column {column!r} is empty for every participant "
                         "(inputs without an ICV: SynthSeg 1, a dseg); give participants.tsv "
                         "an ICV column and set [stats] icv, or use inputs that have one")
    if cfg.icv and cfg.icv != column:
        log.info("stats: %s brings its own ICV column %r; [stats] icv = %r is not used for "
                 "it", path, column, cfg.icv)
    name = column if column not in P.columns else f"{column}_features"
    P = P.assign(**{name: F[column].to_numpy()})
    return F.drop(columns=[column]), P, dataclasses_replace(cfg, icv=name)


def run_stats(
    features: PathLike | Sequence[PathLike],
    participants: PathLike,
    out_dir: PathLike,
    config: Any = None,
    analyses: Sequence[str] = ANALYSES,
    *,
    networks: Mapping[str, Sequence[tuple[str, str]]] | None = None,
    reference: PathLike | None = None,
    feature_measure: str | None = None,
    save_classifier: PathLike | None = None,
    normative_model: PathLike | None = None,
    on_error: str = "raise",
    icv_feature: str | None = None,
    progress: bool = False,
) -> dict[str, Any]:
    """Run the group analyses on a feature table and write TSVs, sidecars and a summary.

    Parameters
    ----------
    features : path-like or sequence of path-like
        Feature table(s): ``participant_id`` plus one numeric column per feature.
    participants : path-like
        ``participants.tsv`` with group, covariates, site (and symptoms).
    out_dir : path-like
        Output folder (created).
    config : danemap.config.Config, StatsConfig or None
        The ``[stats]`` settings: the design (group, labels, covariates, site, ICV),
        harmonisation, permutations, alpha, seed and each analysis's sub-section
        (``glm``, ``symptoms``, ``normative``, ``classify``, ``nbs``).
    analyses : sequence of str
        Subset of :data:`ANALYSES`; ``harmonize`` is always run first when ComBat is
        configured and another analysis uses harmonised features; ``reference`` runs
        ``glm`` too. ``nbs`` runs on connectivity-edge tables (every column
        ``RegionA__RegionB``) and is recorded as skipped for other tables.
    networks : mapping or None
        The atlas's networks (name -> region pairs, e.g.
        ``atlas_from_setting(config.run.atlas).networks``) whose edges ``nbs`` analyses;
        None: the built-in atlas's (:data:`danemap.atlas.NETWORKS`). Which of them:
        ``[stats.nbs] subnetworks`` (default :func:`~danemap.stats.multiple.default_subnetworks`).
    reference : path-like or None
        ENIGMA-format reference table of ``reference``.
    feature_measure : str or None
        What the features measure (e.g. ``"ALFF"``); default: the table's file stem.
    save_classifier : path-like or None
        Fit the classifier ``both`` on everyone and save it here (with ``classify``).
    normative_model : path-like or None
        Where to save the normative model (default ``out_dir/normative_model.json``).
    on_error : {"raise", "record"}
        Stop at the first failing analysis, or record the error in ``summary.json`` and
        go on with the others.
    icv_feature : str or None
        A column of the feature table that holds each participant's intracranial volume
        (a volume table's ``ICV``): it leaves the features and becomes the design's ICV
        covariate, in place of ``[stats] icv``.
    progress : bool
        Log each analysis as it finishes at the ``SUMMARY`` level, which the command
        line shows by default (the group level's progress); otherwise at ``INFO``.

    Returns
    -------
    dict
        ``files`` (analysis -> path), ``summary`` (the content of ``summary.json``) and
        ``summary_path``.

    Raises
    ------
    InputError
        Invalid inputs, or (with ``on_error="raise"``) any analysis error.
    """
    cfg = _stats_config(config)
    _check_stats_config(cfg)
    unknown = [a for a in analyses if a not in ANALYSES]
    if unknown or not analyses:
        raise InputError(f"analyses: expected a subset of {list(ANALYSES)}, found {list(analyses)}")
    if on_error not in ("raise", "record"):
        raise InputError(f"on_error: expected 'raise' or 'record', found {on_error!r}")
    if networks is None:
        from danemap.atlas import NETWORKS

        networks = NETWORKS
    wanted = set(analyses)
    while True:
        needed = {n for a in wanted for n in _NEEDS.get(a, ())} - wanted
        if not needed:
            break
        wanted |= needed
    if wanted & {"glm", "meta", "permutation", "nbs", "symptoms"}:
        wanted.add("harmonize")
    order = [a for a in ANALYSES if a in wanted]
    paths = [features] if isinstance(features, str | os.PathLike) else list(features)
    with warnings.catch_warnings(record=True) as read_warnings:
        warnings.simplefilter("always", DanemapWarning)
        F, P = load_inputs(paths, participants, session=cfg.session or None)
    if icv_feature is not None:
        F, P, cfg = _icv_from_features(F, P, cfg, icv_feature, paths[0])
    all_warnings: list[str] = []
    for w in read_warnings:
        if issubclass(w.category, DanemapWarning):
            all_warnings.append(f"inputs: {w.message}")
            log.warning("inputs: %s", w.message)
    check_columns(P, [cfg.group, *cfg.covariates], f"participants {participants}")
    group_mask(P, cfg.group, cfg.case, cfg.control, f"participants {participants}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    args = _Arguments(networks=networks, reference=reference,
                      feature_measure=feature_measure or Path(paths[0]).stem,
                      save_classifier=save_classifier, normative_model=normative_model)
    sources = {"features": [str(p) for p in paths], "participants": str(participants)}
    run = _Run(F, P, out, cfg, args, sources)
    del F  # the run holds the features, and lets them go once harmonised ones replace them
    errors: dict[str, str] = {}
    timings: dict[str, float] = {}
    for i, name in enumerate(order):
        t0 = time.perf_counter()
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", DanemapWarning)
            try:
                _STEPS[name](run)
            except DanemapError as exc:
                if on_error == "raise":
                    raise
                errors[name] = str(exc)
                run.summary[name] = {"status": "failed", "error": str(exc)}
                log.error("stats %s failed: %s", name, exc)
        for w in caught:
            if issubclass(w.category, DanemapWarning):
                msg = f"{name}: {w.message}"
                all_warnings.append(msg)
                log.warning("%s", msg)
            else:
                log.debug("%s: %s", name, w.message)
        timings[name] = round(time.perf_counter() - t0, 3)
        if name not in errors:
            log.log(SUMMARY if progress else logging.INFO,
                    "stats %s: %s done (%d/%d, %.1f s)", out.name, name, i + 1, len(order),
                    timings[name])
        if not _USE_RAW.intersection(order[i + 1:]):
            run.release_raw()
    is_case, is_ctrl = group_mask(P, cfg.group, cfg.case, cfg.control, "participants")
    per_site = {}
    if run.site:
        for s in sorted(P[run.site].dropna().astype(str).unique()):
            m = (P[run.site].astype(str) == s).to_numpy()
            per_site[s] = {"case": int((m & is_case).sum()), "control": int((m & is_ctrl).sum())}
    from danemap._version import __version__

    summary = {
        "danemap_version": __version__,
        "versions": library_versions(),
        "created": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        "sources": sources,
        "feature_measure": args.feature_measure,
        "n_features": int(run.n_features),
        "n": {"participants": len(P), "case": int(is_case.sum()),
              "control": int(is_ctrl.sum()), "per_site": per_site},
        "group": {"column": cfg.group, "case": cfg.case, "control": cfg.control},
        "covariates": list(cfg.covariates),
        "icv": run.icv,
        "site": run.site,
        "repeated_rows": run.rows_policy,
        "harmonization_settings": {"harmonize": cfg.harmonize,
                                   "combat_method": cfg.combat_method,
                                   "transform": cfg.transform,
                                   "scale_threshold": float(cfg.scale_threshold),
                                   "meta_method": cfg.meta_method},
        "harmonization": {
            "group_analyses": run.harmonization,
            "normative": run.normative_harmonization,
            "classification": run.classify_harmonization,
        },
        "alpha": cfg.alpha,
        "seed": cfg.seed,
        "site_checks": run.summary.get("site_checks", {"status": "not run"}),
        "headline": run.summary.get("headline", {"status": "not run"}),
        "analyses": {a: run.summary.get(a, {"status": "not run"}) for a in order},
        "files": {k: v.name for k, v in run.files.items()},
        "timings_s": timings,
        "warnings": all_warnings,
        "errors": errors,
        "disclaimer": DISCLAIMER,
    }
    spath = write_json(out / "summary.json", summary)
    return {"files": run.files, "summary": summary, "summary_path": spath}


#: The libraries whose versions ``summary.json`` records (``versions``), in order.
RECORDED_LIBRARIES = ("numpy", "scipy", "pandas", "scikit-learn", "statsmodels", "nilearn",
                      "nibabel")


def library_versions() -> dict[str, str | None]:
    """Return the versions of danemap, Python and the libraries the statistics use.

    Returns
    -------
    dict
        ``{"danemap": ..., "python": ..., "numpy": ..., ...}`` (:data:`RECORDED_LIBRARIES`);
        None for a library that is not installed.
    """
    import platform
    from importlib import metadata

    from danemap._version import __version__

    out: dict[str, str | None] = {"danemap": __version__,
                                  "python": platform.python_version()}
    for lib in RECORDED_LIBRARIES:
        try:
            out[lib] = metadata.version(lib)
        except metadata.PackageNotFoundError:
            out[lib] = None
    return out
