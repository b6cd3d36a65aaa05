"""``danemap stats {all,harmonize,glm,meta,...,predict}``: the command line of the statistics.

``danemap stats all --features T.tsv --participants P.tsv --out DIR`` runs every
analysis; each sub-command runs one (``reference`` also runs the GLM). With
``--model M``, ``normative`` scores new participants with a saved normative model and
``predict`` scores them with a saved classifier (``classify --save-model M``).
Defaults come from the ``[stats]`` section of the configuration (``--config``, then the
``DANEMAP_STATS__*`` environment); flags override it. The effective configuration is
written to ``--out`` as ``config.toml``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from danemap._utils.logging import get_logger
from danemap.errors import InputError

__all__ = ["add_arguments", "run"]

log = get_logger("stats.cli")

COMMANDS = ("all", "harmonize", "glm", "meta", "permutation", "nbs", "symptoms", "normative",
            "classify", "reference", "predict")


def _common() -> argparse.ArgumentParser:
    from danemap.stats.combat import COMBAT_METHODS
    from danemap.stats.meta import META_METHODS
    from danemap.stats.sitecheck import TRANSFORMS

    p = argparse.ArgumentParser(add_help=False)
    g = p.add_argument_group("inputs and outputs")
    g.add_argument("--features", nargs="+", required=True, type=Path, metavar="T.tsv",
                   help="feature table(s): participant_id + one numeric column per feature")
    g.add_argument("--participants", required=True, type=Path, metavar="P.tsv",
                   help="participants.tsv with group, covariates and site")
    g.add_argument("--out", required=True, type=Path, metavar="DIR", help="output folder")
    g.add_argument("--session", default=None, metavar="LABEL",
                   help="session to analyse when a feature table has several per participant "
                        "(runs are always averaged within participant)")
    g = p.add_argument_group("design (defaults from the [stats] configuration)")
    g.add_argument("--group", default=None, help="group column")
    g.add_argument("--case", default=None, help="case label of the group column")
    g.add_argument("--control", default=None, help="control label of the group column")
    g.add_argument("--covariates", nargs="*", default=None, metavar="COL",
                   help="covariate columns (e.g. age sex)")
    g.add_argument("--site", default=None, help="site column (ComBat batch, LOSO)")
    g.add_argument("--icv", default=None, help="intracranial-volume column (volumes)")
    g.add_argument("--harmonize", choices=["combat", "none"], default=None,
                   help="site harmonisation of the group analyses (default combat)")
    g.add_argument("--transform", choices=list(TRANSFORMS), default=None,
                   help="log-transform features with multiplicative site effects before "
                        "harmonisation: auto (strictly positive features whose site SD ratio "
                        "is credibly above --scale-threshold), log or none (default auto)")
    g.add_argument("--scale-threshold", type=float, default=None, metavar="RATIO",
                   help="site SD ratio above which auto takes the log and the headline "
                        "prefers the per-site meta-analysis (default 1.5)")
    g.add_argument("--meta-method", choices=list(META_METHODS), default=None,
                   help="between-site variance of the per-site meta-analysis: reml or dl "
                        "(default reml)")
    g.add_argument("--combat-method", choices=list(COMBAT_METHODS), default=None,
                   help="ComBat estimation: parametric or nonparametric empirical Bayes, or "
                        "no-eb (default parametric)")
    g.add_argument("--symptoms", nargs="+", default=None, metavar="COL",
                   help="symptom columns (default adhd_index inattentive hyperimpulsive)")
    g.add_argument("--raw-symptoms", action="store_true", default=None,
                   help="do not z-score symptoms within site ([stats.symptoms] standardize)")
    g.add_argument("--interaction", default=None, metavar="COL",
                   help="GLM: also test the group x COL interaction (e.g. age)")
    g.add_argument("--stratify", default=None, metavar="COL",
                   help="GLM: also fit the group effect within each level of COL (e.g. sex)")
    g.add_argument("--moderator", default=None, metavar="COL",
                   help="GLM: also compare each COL level of cases with all controls "
                        "(e.g. med_status)")
    g = p.add_argument_group("inference")
    g.add_argument("--n-permutations", type=int, default=None,
                   help="permutations of the max-T test")
    g.add_argument("--classify-permutations", type=int, default=None,
                   help="label permutations of the classification p-values (default 100)")
    g.add_argument("--nbs-threshold", type=float, default=None,
                   help="primary |t| threshold of the network-based statistic (default 3)")
    g.add_argument("--folds", type=int, default=None,
                   help="outer CV folds of classification and the normative model (default 5)")
    g.add_argument("--seed", type=int, default=None)
    g.add_argument("--loso-harmonize", choices=["none", "refit"], default=None,
                   help="harmonisation under leave-one-site-out (default none)")
    g = p.add_argument_group("models and references")
    g.add_argument("--model", type=Path, default=None, metavar="M.json",
                   help="saved model to score the table with (normative, predict)")
    g.add_argument("--save-model", type=Path, default=None, metavar="M.json",
                   help="where to save the fitted model (normative, classify)")
    g.add_argument("--reference", type=Path, default=None, metavar="ENIGMA.csv",
                   help="reference effect sizes (ENIGMA format, see danemap.stats.reference)")
    g.add_argument("--feature-measure", default=None,
                   help="what the features measure, e.g. ALFF (default: table file name)")
    g.add_argument("--normative-heteroscedastic", action="store_true", default=None,
                   help="normative model: residual SD as a smooth function of age")
    return p


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the ``stats`` sub-commands and their options to ``parser``.

    Parameters
    ----------
    parser : argparse.ArgumentParser
        The ``danemap stats`` parser.
    """
    parser.description = ("Group statistics on any feature table. A research tool, not a "
                          "diagnostic device.")
    sub = parser.add_subparsers(dest="stats_command", metavar="ANALYSIS", required=True)
    common = _common()
    helps = {
        "all": "run every analysis", "harmonize": "ComBat harmonisation",
        "glm": "case-control GLM with effect sizes, the per-site meta-analysis and the "
               "headline (headline.tsv)",
        "meta": "per-site GLMs and their random-effects meta-analysis (with the GLM and the "
                "headline)",
        "permutation": "max-T permutation test",
        "nbs": "network-based statistic on connectivity edges (frontostriatal, LC-PFC)",
        "symptoms": "partial correlations with symptom scores",
        "normative": "normative z-scores (or score new participants with --model)",
        "classify": "three cross-validated classifiers (covariates, imaging, both)",
        "reference": "compare effect sizes with a reference table (--reference)",
        "predict": "score a table with a saved classifier (--model)",
    }
    for name in COMMANDS:
        sub.add_parser(name, parents=[common], help=helps[name], description=helps[name])


def _config(args: argparse.Namespace, config: Any) -> Any:
    """Return the effective configuration: ``config`` (file, environment) < flags.

    A flag left out (``None``) keeps the configured value.
    """
    from danemap.config import Config

    cfg = config if config is not None else Config()
    covariates = None if args.covariates is None else list(dict.fromkeys(args.covariates))
    overrides = {"stats": {
        "group": args.group, "case": args.case, "control": args.control,
        "covariates": covariates, "site": args.site, "icv": args.icv,
        "session": args.session, "harmonize": args.harmonize,
        "combat_method": args.combat_method, "transform": args.transform,
        "scale_threshold": args.scale_threshold, "meta_method": args.meta_method,
        "n_permutations": args.n_permutations,
        "classify_permutations": args.classify_permutations, "seed": args.seed,
        "glm": {"interaction": args.interaction, "stratify": args.stratify,
                "moderator": args.moderator},
        "symptoms": {"columns": args.symptoms,
                     "standardize": None if args.raw_symptoms is None else False},
        "normative": {"n_folds": args.folds,
                      "heteroscedastic": args.normative_heteroscedastic},
        "classify": {"n_folds": args.folds, "loso_harmonize": args.loso_harmonize},
        "nbs": {"threshold": args.nbs_threshold},
    }}
    return cfg.updated(overrides, source="command line")


def _scored_sidecar(args: argparse.Namespace, cfg: Any, F: Any, P: Any, group: dict[str, str],
                    training: dict[str, int], description: str, columns: dict[str, str],
                    **fields: Any) -> dict[str, Any]:
    """Sidecar of a table scored with a saved model: n, covariates, harmonisation, inputs.

    ``fields`` holds ``covariates``, ``site``, ``harmonization`` and extra entries of
    :func:`danemap.stats._tables.stats_sidecar`.
    """
    from danemap.stats._tables import rows_policy, stats_sidecar

    n: dict[str, Any] = {"scored": len(F), **training}
    if group["column"] in P.columns:
        labels = P[group["column"]].astype("string").str.strip()
        n.update(case=int((labels == group["case"]).sum()),
                 control=int((labels == group["control"]).sum()))
    sources = {"features": [str(p) for p in args.features],
               "participants": str(args.participants), "model": str(args.model)}
    return stats_sidecar(description, columns, n=n, group=group, sources=sources,
                         repeated_rows=rows_policy(F.attrs.get("rows", {}),
                                                   cfg.stats.session or None),
                         **fields)


def _score_normative(args: argparse.Namespace, cfg: Any) -> int:
    import pandas as pd

    from danemap.stats._tables import load_inputs, write_result
    from danemap.stats.normative import NormativeModel

    model = NormativeModel.load(args.model)
    F, P = load_inputs(args.features, args.participants, session=cfg.stats.session or None)
    z = model.transform(F, P)
    out = pd.concat([pd.DataFrame({"participant_id": list(F.index),
                                   "n_extreme": model.count_extreme(z)}),
                     z.reset_index(drop=True)], axis=1)
    cols = {"participant_id": "participant identifier",
            "n_extreme": f"features with |z| > {model.extreme_z:g}",
            **{c: "deviation z-score from the saved normative model" for c in z.columns}}
    covariates = [model.age, *([model.sex] if model.sex else [])]
    site_in_model = bool(model.site) and len(model.site_levels_) > 1
    harm = "none"
    if model.combat_ is not None:
        harm = (f"saved ComBat ({model.combat_.describe()}) fitted on the {model.n_train_} "
                f"reference controls (batch {model.site!r}, preserving {covariates}), "
                "applied to these participants")
    site_term = ("none" if not site_in_model else "ComBat + site indicators"
                 if model.combat_ is not None else "site indicators, residual SD per site")
    st = cfg.stats
    side = _scored_sidecar(
        args, cfg, F, P, {"column": st.group, "case": st.case, "control": st.control},
        {"training_controls": int(model.n_train_)},
        "Deviation z-scores of new participants from a saved normative model", cols,
        covariates=[*covariates, *([model.site] if site_in_model else [])],
        site=model.site if site_in_model else None, harmonization=harm,
        Model=str(args.model), NTrainControls=int(model.n_train_), SiteTerm=site_term,
        AgeTerm=model.age_term_, SmallReference=bool(model.small_reference_))
    if model.small_reference_:
        log.warning("normative model %s: fitted on a small reference (%d controls); the "
                    "z-scores are flagged (SmallReference in the sidecar)", args.model,
                    model.n_train_)
    args.out.mkdir(parents=True, exist_ok=True)
    path = write_result(out, args.out / "normative_z.tsv", side)
    log.info("wrote %s", path)
    return 0


def _predict(args: argparse.Namespace, cfg: Any) -> int:
    from danemap.stats._tables import load_inputs, write_result
    from danemap.stats.classify import predict

    if args.model is None:
        raise InputError("predict: --model M.json (a classifier saved by 'classify "
                         "--save-model') is required")
    F, P = load_inputs(args.features, args.participants, session=cfg.stats.session or None)
    res = predict(args.model, F, P)
    info = res.attrs
    labels = info["labels"]
    side = _scored_sidecar(
        args, cfg, F, P, {"column": labels["group"], "case": labels["case"],
                     "control": labels["control"]},
        {"training": info["n_train"], "training_case": info["n_train_case"],
         "training_control": info["n_train_control"]},
        "Scores of a saved ADHD-vs-control classifier",
        {"participant_id": "participant identifier",
         "probability_case": "predicted probability of the case label",
         "predicted": "label at threshold 0.5", "model": "covariates, imaging or both"},
        covariates=info["covariates"], site=info["site"],
        harmonization=info["harmonization"], Model=str(args.model))
    args.out.mkdir(parents=True, exist_ok=True)
    path = write_result(res, args.out / "predictions.tsv", side)
    log.info("wrote %s", path)
    return 0


def run(args: argparse.Namespace, config: Any) -> int:
    """Run one ``danemap stats`` sub-command.

    Parameters
    ----------
    args : argparse.Namespace
        Parsed arguments (see :func:`add_arguments`).
    config : danemap.config.Config or None
        Effective configuration; the ``[stats]`` section gives the defaults.

    Returns
    -------
    int
        0 on success, 1 when an analysis failed under ``all`` (recorded in summary.json).
    """
    from danemap.io import atomic_write_text
    from danemap.stats.pipeline import ANALYSES, run_stats

    cfg = _config(args, config)
    args.out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(args.out / "config.toml", cfg.to_toml())
    command = args.stats_command
    if command == "predict":
        return _predict(args, cfg)
    if command == "normative" and args.model is not None:
        return _score_normative(args, cfg)
    if command == "reference" and args.reference is None:
        raise InputError("reference: --reference ENIGMA.csv is required")
    if args.model is not None:
        raise InputError(f"{command}: --model applies only to 'normative' and 'predict'")
    analyses = ANALYSES if command == "all" else (command,)
    result = run_stats(
        args.features, args.participants, args.out, cfg, analyses,
        reference=args.reference, feature_measure=args.feature_measure,
        save_classifier=args.save_model if command in ("classify", "all") else None,
        normative_model=args.save_model if command == "normative" else None,
        on_error="record" if command == "all" else "raise")
    for key, path in result["files"].items():
        log.info("%s: %s", key, path)
    errors = result["summary"]["errors"]
    if errors:
        for name, message in errors.items():
            print(f"danemap stats: {name} failed: {message}", file=sys.stderr)
        print(f"danemap stats: {len(errors)} analysis(es) failed: {', '.join(errors)} "
              f"(recorded in {result['summary_path']})", file=sys.stderr)
    return 1 if errors else 0
