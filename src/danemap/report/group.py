"""The group report: renders the statistics tables written by :mod:`danemap.stats`.

Reads ``group/stats/<table>/{effects,permutation,classification,symptoms}.tsv`` and the
``summary.json`` of each table; computes nothing but display rounding and ordering.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from danemap.report._html import Section, forest_plot_svg, write_report

__all__ = ["write_group_report"]

_TITLES = {
    "networks": "Network scores (mean within-network Fisher z)",
    "alff": "Regional ALFF (raw, BOLD units)",
    "malff": "Regional mALFF (ALFF / the run's atlas-voxel mean)",
    "zalff": "Regional zALFF",
    "falff": "Regional fALFF",
    "connectivity_corr": "Connectivity edges (correlation, Fisher z)",
    "connectivity_partialcorr": "Connectivity edges (partial correlation, Fisher z)",
    "connectivity_tangent": "Connectivity edges (tangent space)",
}


def _read(path: Path) -> Any:
    import pandas as pd

    return pd.read_csv(path, sep="\t", na_values="n/a") if path.is_file() else None


def _group_rows(effects: Any) -> Any:
    if "term" in effects.columns:
        main = effects["term"].isna() | effects["term"].astype(str).isin(["group", "main"])
        if main.any():
            return effects[main]
    return effects


def _sections_for(name: str, folder: Path, summary: Mapping[str, Any]) -> list[Section]:
    sections: list[Section] = []
    title = _TITLES.get(name, name)
    effects = _read(folder / "effects.tsv")
    if effects is not None and len(effects):
        eff = _group_rows(effects)
        show = eff.reindex(eff["d"].abs().sort_values(ascending=False).index).head(30)
        svg = forest_plot_svg(show["feature"].astype(str).tolist(), show["d"].tolist(),
                              show["d_ci_low"].tolist(), show["d_ci_high"].tolist())
        cols = [c for c in ("feature", "n_case", "n_control", "mean_case", "mean_control",
                            "d", "d_ci_low", "d_ci_high", "g", "t", "p", "p_fdr")
                if c in eff.columns]
        sections.append(Section(
            f"{title}: ADHD vs controls",
            text=_describe(summary, "glm") or "Case-control GLM per feature.",
            svg=svg, table=show[cols],
            notes=["Largest |d| first (at most 30 shown); every feature is in effects.tsv.",
                   "d is computed from the GLM t with covariates; the interval is a 95% CI."],
        ))
    perm = _read(folder / "permutation.tsv")
    if perm is not None and len(perm):
        sort_col = "p_fwe" if "p_fwe" in perm.columns else perm.columns[-1]
        sections.append(Section(
            f"{title}: family-wise error by permutation",
            text=_describe(summary, "permutation")
            or "Freedman–Lane max-T permutation, permutations within site.",
            table=perm.sort_values(sort_col).head(20),
        ))
    nbs = _read(folder / "nbs.tsv")
    if nbs is not None and len(nbs) and "component" in nbs.columns:
        supra = nbs[nbs["component"].notna()].sort_values(["component", "t"])
        sections.append(Section(
            f"{title}: network-based statistic (frontostriatal and LC-PFC edges)",
            text=_describe(summary, "nbs") or (
                "Connected components of supra-threshold edges; the p-value is family-wise "
                "over components, from the same permutations as the max-T test."),
            table=supra if len(supra) else None,
            notes=[] if len(supra) else ["No edge passed the primary threshold."],
        ))
    clf = _read(folder / "classification.tsv")
    if clf is not None and len(clf):
        sections.append(Section(
            f"{title}: can the markers tell ADHD from controls?",
            text=_describe(summary, "classify") or (
                "Three models side by side. The covariate-only model (age, sex, site, IQ) is "
                "the baseline any imaging model must beat."),
            table=_classification_view(clf),
            notes=["Value [95% bootstrap CI]; p from label permutations. Every metric, with "
                   "its fold SD, is in classification.tsv."],
        ))
    sym = _read(folder / "symptoms.tsv")
    if sym is not None and len(sym):
        sort_col = "p" if "p" in sym.columns else sym.columns[-1]
        sections.append(Section(
            f"{title}: association with symptom scores",
            text=_describe(summary, "symptoms") or "Partial correlations with symptom scores.",
            table=sym.sort_values(sort_col).head(20)[
                [c for c in ("feature", "symptom", "sample", "n", "r", "ci_low", "ci_high", "p",
                             "p_fdr", "symptom_scaling") if c in sym.columns]],
            notes=["Strongest 20 associations shown; all are in symptoms.tsv."],
        ))
    return sections


def _classification_view(clf: Any) -> Any:
    """One row per scheme and model; 'value [ci_low, ci_high]' per metric (display only)."""
    import pandas as pd

    rows = []
    metrics = ("balanced_accuracy", "auc", "sensitivity", "specificity")
    for (scheme, model), part in clf.groupby(["scheme", "model"], sort=False):
        row: dict[str, Any] = {"scheme": scheme, "model": model}
        by_metric = part.set_index("metric")
        for metric in metrics:
            if metric in by_metric.index:
                m = by_metric.loc[metric]
                row[metric.replace("_", " ")] = (
                    f"{m['value']:.2f} [{m['ci_low']:.2f}, {m['ci_high']:.2f}]")
        if "balanced_accuracy" in by_metric.index and "p_permutation" in by_metric.columns:
            row["p (balanced accuracy)"] = by_metric.loc["balanced_accuracy", "p_permutation"]
        rows.append(row)
    return pd.DataFrame(rows)


def _cohort_section(summary: Mapping[str, Any]) -> Section:
    """Describe who was analysed and how (counts and methods as the statistics recorded)."""
    import pandas as pd

    n = summary.get("n") or {}
    per_site = n.get("per_site") or {}
    table = pd.DataFrame(
        [{"site": site, "ADHD": c.get("case"), "controls": c.get("control")}
         for site, c in per_site.items()]
        + [{"site": "all", "ADHD": n.get("case"), "controls": n.get("control")}]
    ) if per_site else None
    harm = summary.get("harmonization") or {}
    lines = [f"Covariates: {', '.join(summary.get('covariates') or []) or 'none'}; "
             f"site column: {summary.get('site') or 'none'}."]
    if isinstance(harm, Mapping):
        lines += [f"Harmonisation ({k.replace('_', ' ')}): {v}." for k, v in harm.items()]
    return Section("Cohort and methods", text="\n\n".join(lines), table=table,
                   notes=[str(w) for w in summary.get("warnings") or []])


def _describe(summary: Mapping[str, Any], key: str) -> str:
    entry = summary.get(key) if isinstance(summary, Mapping) else None
    if isinstance(entry, Mapping):
        text = entry.get("description") or entry.get("note")
        return str(text) if text else ""
    return ""


def write_group_report(group_dir: str | Path,
                       summaries: Mapping[str, Mapping[str, Any]] | None = None) -> Path:
    """Write ``group_report.html`` from the statistics outputs under ``group_dir/stats``.

    Parameters
    ----------
    group_dir : path-like
        ``OUT/danemap/group``.
    summaries : mapping or None
        Table name -> summary returned by :func:`danemap.stats.pipeline.run_stats`; when
        None, each ``stats/<table>/summary.json`` is read.

    Returns
    -------
    pathlib.Path
        The report.
    """
    group_dir = Path(group_dir)
    stats_dir = group_dir / "stats"
    found = [p.name for p in stats_dir.iterdir() if p.is_dir()] if stats_dir.is_dir() else []
    # headline tables first (networks, then regions, then edges), then any other, by name
    names = sorted(found, key=lambda n: (list(_TITLES).index(n) if n in _TITLES
                                         else len(_TITLES), n))
    sections: list[Section] = []
    for name in names:
        summary: Mapping[str, Any] = (summaries or {}).get(name) or {}
        if not summary and (stats_dir / name / "summary.json").is_file():
            summary = json.loads((stats_dir / name / "summary.json").read_text())
        if not sections:
            sections.append(_cohort_section(summary))
        sections += _sections_for(name, stats_dir / name, summary)
    if not sections:
        sections.append(Section("No statistics", text="No group statistics were found."))
    return write_report(group_dir / "group_report.html", "danemap group report", sections,
                        subtitle=str(group_dir))
