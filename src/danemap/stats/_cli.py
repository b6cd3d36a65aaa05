"""``danemap stats {all,harmonize,glm,meta,...,predict}``: the command line of the statistics.

``danemap stats all --features T.tsv --participants P.tsv --out DIR`` runs every
analysis; each sub-command runs one (``reference`` also runs the GLM). With
``--model M``, ``normative`` scores new participants with a saved normative model and
``predict`` scores them with a saved classifier (``classify --save-model M``).
Defaults come from the ``[stats]`` section of the configuration (``--config``, then the
``DANEMAP_STATS__*`` environment); flags override it. The effective configuration is
written to ``--out`` as ``config.toml``.

Each sub-command accepts only the options it uses (:data:`USES`): an option of another
analysis is a usage error (exit 2) naming the analyses that take it. On success the
written files are printed on stdout, one per line, and a one-line summary (analyses done,
participants per group) is logged at ``SUMMARY`` level on stderr; a failed analysis under
``all`` is logged and the exit code is 1.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from danemap._utils.logging import SUMMARY, get_logger
from danemap.errors import InputError

__all__ = ["add_arguments", "run"]

log = get_logger("stats.cli")

COMMANDS = ("all", "harmonize", "glm", "meta", "permutation", "nbs", "symptoms", "normative",
            "classify", "reference", "predict")


#: Every command but ``predict`` (which takes its design from the saved model).
_FIT = tuple(c for c in COMMANDS if c != "predict")
#: Commands that run the GLM (``meta`` and ``reference`` need it, ``glm`` runs ``meta``).
_GLM = ("all", "glm", "meta", "reference")

#: Which sub-commands read each option (``dest`` -> commands), from what :func:`run` and
#: :func:`danemap.stats.pipeline.run_stats` use: a sub-command accepts only its own.
USES: dict[str, tuple[str, ...]] = {
    "features": COMMANDS, "participants": COMMANDS, "out": COMMANDS, "session": COMMANDS,
    "group": _FIT, "case": _FIT, "control": _FIT, "covariates": _FIT, "site": _FIT,
    "icv": _FIT, "harmonize": _FIT, "transform": _FIT, "scale_threshold": _FIT,
    "combat_method": _FIT,
    "meta_method": _GLM, "interaction": _GLM, "stratify": _GLM, "moderator": _GLM,
    "symptoms": ("all", "symptoms"), "raw_symptoms": ("all", "symptoms"),
    "n_permutations": ("all", "permutation", "nbs"),
    "classify_permutations": ("all", "classify"),
    "nbs_threshold": ("all", "nbs"),
    "folds": ("all", "normative", "classify"),
    "seed": ("all", "permutation", "nbs", "normative", "classify"),
    "loso_harmonize": ("all", "classify"),
    "model": ("normative", "predict"),
    "save_model": ("all", "normative", "classify"),
    "reference": ("all", "reference"),
    "feature_measure": ("all", "reference"),
    "normative_heteroscedastic": ("all", "normative"),
}


def _options() -> list[tuple[str, list[tuple[tuple[str, ...], dict[str, Any]]]]]:
    """Return the option groups: ``(title, [(flags, add_argument keywords), ...])``."""
    from danemap.cli import config_default as d
    from danemap.stats.combat import COMBAT_METHODS
    from danemap.stats.meta import META_METHODS
    from danemap.stats.sitecheck import TRANSFORMS

    return [
        ("inputs and outputs", [
            (("--features",), dict(nargs="+", required=True, type=Path, metavar="T.tsv",
                                   help="feature table(s): participant_id + one numeric "
                                   "column per feature (required)")),
            (("--participants",), dict(required=True, type=Path, metavar="P.tsv",
                                       help="participants.tsv with group, covariates and "
                                       "site (required)")),
            (("--out",), dict(required=True, type=Path, metavar="DIR",
                              help="output folder (required)")),
            (("--session",), dict(default=None, metavar="LABEL",
                                  help="session to analyse when a feature table has several "
                                  "per participant (runs are always averaged within "
                                  "participant; default: every session averaged)")),
        ]),
        ("design (defaults from the [stats] configuration)", [
            (("--group",), dict(default=None, metavar="COL",
                                help=f"group column (default: {d('stats.group')})")),
            (("--case",), dict(default=None, metavar="LABEL",
                               help=f"case label of the group column (default: "
                               f"{d('stats.case')})")),
            (("--control",), dict(default=None, metavar="LABEL",
                                  help="control label of the group column (default: "
                                  f"{d('stats.control')})")),
            (("--covariates",), dict(nargs="*", default=None, metavar="COL",
                                     help="covariate columns (default: "
                                     f"{d('stats.covariates')}; none with no COL)")),
            (("--site",), dict(default=None, metavar="COL",
                               help=f"site column: ComBat batch, LOSO (default: "
                               f"{d('stats.site')})")),
            (("--icv",), dict(default=None, metavar="COL",
                              help="intracranial-volume column, a covariate of volumes "
                              "(default: none)")),
            (("--interaction",), dict(default=None, metavar="COL",
                                      help="GLM: also test the group x COL interaction "
                                      "(e.g. age; default: none)")),
            (("--stratify",), dict(default=None, metavar="COL",
                                   help="GLM: also fit the group effect within each level "
                                   "of COL (e.g. sex; default: none)")),
            (("--moderator",), dict(default=None, metavar="COL",
                                    help="GLM: also compare each COL level of cases with "
                                    "all controls (e.g. med_status; default: none)")),
            (("--symptoms",), dict(nargs="+", default=None, metavar="COL",
                                   help="symptom columns (default: adhd_index inattentive "
                                   "hyperimpulsive)")),
            (("--raw-symptoms",), dict(action="store_true", default=None,
                                       help="do not z-score symptoms within site "
                                       "([stats.symptoms] standardize; default: "
                                       "z-scored)")),
        ]),
        ("harmonisation", [
            (("--harmonize",), dict(choices=["combat", "none"], default=None,
                                    help="site harmonisation of the group analyses "
                                    f"(default: {d('stats.harmonize')})")),
            (("--transform",), dict(choices=list(TRANSFORMS), default=None,
                                    help="log-transform features with multiplicative site "
                                    "effects before harmonisation: auto (strictly positive "
                                    "features whose site SD ratio is credibly above "
                                    "--scale-threshold), log or none (default: "
                                    f"{d('stats.transform')})")),
            (("--scale-threshold",), dict(type=float, default=None, metavar="RATIO",
                                          help="site SD ratio above which auto takes the "
                                          "log and the headline prefers the per-site "
                                          "meta-analysis (default: "
                                          f"{d('stats.scale_threshold')})")),
            (("--combat-method",), dict(choices=list(COMBAT_METHODS), default=None,
                                        help="ComBat estimation: parametric or "
                                        "nonparametric empirical Bayes, or no-eb (default: "
                                        f"{d('stats.combat_method')})")),
            (("--meta-method",), dict(choices=list(META_METHODS), default=None,
                                      help="between-site variance of the per-site "
                                      "meta-analysis: reml or dl (default: "
                                      f"{d('stats.meta_method')})")),
        ]),
        ("inference", [
            (("--n-permutations",), dict(type=int, default=None, metavar="N",
                                         help="permutations of the max-T test and the NBS "
                                         f"(default: {d('stats.n_permutations')})")),
            (("--classify-permutations",), dict(type=int, default=None, metavar="N",
                                                help="label permutations of the "
                                                "classification p-values (default: "
                                                f"{d('stats.classify_permutations')})")),
            (("--nbs-threshold",), dict(type=float, default=None, metavar="T",
                                        help="primary |t| threshold of the network-based "
                                        f"statistic (default: {d('stats.nbs.threshold')})")),
            (("--folds",), dict(type=int, default=None, metavar="K",
                                help="outer CV folds of classification and the normative "
                                f"model (default: {d('stats.classify.n_folds')})")),
            (("--seed",), dict(type=int, default=None,
                               help=f"random seed (default: {d('stats.seed')})")),
            (("--loso-harmonize",), dict(choices=["none", "refit"], default=None,
                                         help="harmonisation under leave-one-site-out "
                                         f"(default: {d('stats.classify.loso_harmonize')})")),
        ]),
        ("models and references", [
            (("--model",), dict(type=Path, default=None, metavar="M.json",
                                help="saved model to score the table with (required by "
                                "predict; normative: score instead of fitting; default: "
                                "none)")),
            (("--save-model",), dict(type=Path, default=None, metavar="M.json",
                                     help="where to save the fitted model (the classifier "
                                     "for all and classify; default: not saved)")),
            (("--reference",), dict(type=Path, default=None, metavar="ENIGMA.csv",
                                    help="reference effect sizes (ENIGMA format, see "
                                    "danemap.stats.reference; required by reference; "
                                    "default for all: none)")),
            (("--feature-measure",), dict(default=None,
                                          help="what the features measure, e.g. ALFF "
                                          "(default: the table's file name)")),
            (("--normative-heteroscedastic",), dict(action="store_true", default=None,
                                                    help="normative model: residual SD as a "
                                                    "smooth function of age (default: "
                                                    "constant)")),
        ]),
    ]


class _StatsParser(argparse.ArgumentParser):
    """A ``danemap stats ANALYSIS`` parser that names the sub-commands of a foreign option.

    An option of another analysis (``glm --n-permutations``) is a usage error (exit 2)
    that says which sub-commands take it.
    """

    def parse_known_args(self, args: Any = None, namespace: Any = None) -> Any:
        ns, extras = super().parse_known_args(args, namespace)
        command = self.prog.rsplit(" ", 1)[-1]
        if command in COMMANDS:
            for item in extras:
                flag = item.split("=", 1)[0]
                dest = flag.lstrip("-").replace("-", "_")
                if flag.startswith("--") and dest in USES and command not in USES[dest]:
                    users = ", ".join(f"'{c}'" for c in USES[dest])
                    self.error(f"{flag} applies only to {users}; 'stats {command}' does not "
                               "use it")
        return ns, extras


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the ``stats`` sub-commands, each with only the options it uses, to ``parser``.

    Parameters
    ----------
    parser : argparse.ArgumentParser
        The ``danemap stats`` parser.
    """
    parser.description = ("Group statistics on any feature table. A research tool, not a "
                          "diagnostic device. Each ANALYSIS takes only the options it uses "
                          "(see 'danemap stats ANALYSIS --help'). On success the output "
                          "files are printed on stdout, one per line, and a one-line "
                          "summary on stderr.")
    sub = parser.add_subparsers(dest="stats_command", metavar="ANALYSIS", required=True,
                                parser_class=_StatsParser)
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
    groups = _options()
    for name in COMMANDS:
        p = sub.add_parser(name, help=helps[name], description=helps[name],
                           formatter_class=parser.formatter_class, epilog=parser.epilog)
        g = p.add_argument_group("messages and configuration")  # also after ANALYSIS
        g.add_argument("-v", "--verbose", action="count", default=argparse.SUPPRESS,
                       help="more messages on stderr: -v adds info, -vv debug (default: "
                       "summaries, warnings and errors)")
        g.add_argument("-q", "--quiet", action="store_true", default=argparse.SUPPRESS,
                       help="only warnings and errors on stderr (wins over -v)")
        g.add_argument("--config", metavar="FILE.toml", default=argparse.SUPPRESS,
                       help="TOML configuration file, as before ANALYSIS (default: none)")
        for title, options in groups:
            mine = [(flags, kw) for flags, kw in options
                    if name in USES[flags[0].lstrip("-").replace("-", "_")]]
            if mine:
                g = p.add_argument_group(title)
                for flags, kw in mine:
                    g.add_argument(*flags, **kw)


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
    print(path)
    log.log(SUMMARY, "stats normative: %d participants scored with %s; z-scores in %s",
            len(F), args.model, path)
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
    print(path)
    log.log(SUMMARY, "stats predict: %d participants scored with %s; predictions in %s",
            len(F), args.model, path)
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

    for dest in USES:  # an option this sub-command does not take: not given
        if not hasattr(args, dest):
            setattr(args, dest, None)
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
    summary = result["summary"]
    errors = summary["errors"]
    paths = [*result["files"].values(), result["summary_path"]]
    for path in paths:  # the command's output: stdout, one path per line
        print(path)
    n, grp = summary["n"], summary["group"]
    done = [a for a, info in summary["analyses"].items() if info.get("status") == "done"]
    line = (f"stats {command}: {len(done)} analysis(es) done ({', '.join(done) or 'none'}) "
            f"on {summary['n_features']} feature(s) of {n['participants']} participants "
            f"({n['case']} {grp['case']}, {n['control']} {grp['control']}); {len(paths)} "
            f"files in {args.out}")
    if errors:  # each failure was logged by run_stats; one line says how many
        log.error("%s; %d analysis(es) failed: %s (recorded in %s)", line, len(errors),
                  ", ".join(errors), result["summary_path"])
        return 1
    log.log(SUMMARY, "%s", line)
    return 0
