"""The group report: renders the statistics tables written by :mod:`danemap.stats`.

Reads ``group/stats/<table>/{headline,effects,meta_effects,site_checks,permutation,
classification,symptoms}.tsv`` and the ``summary.json`` of each table; computes nothing but
display rounding and ordering. Each table's section leads with the headline effect (the
mega-analysis where its assumptions hold, else the per-site meta-analysis), shows the two
side by side with their agreement, and says which analyses failed or were skipped and why
(a failed analysis is never drawn as an empty plot).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from danemap.report._group_views import (
    connectome_section,
    harmonisation_section,
    mega_meta_forest,
    normative_section,
    reference_section,
    symptoms_forest,
    why_absent,
)
from danemap.report._html import Section, forest_plot_svg, write_report

__all__ = ["FAILURES", "MANIFEST", "write_group_report"]

#: The group tables' manifest the workflow writes (``group/tables.json``, ``{"tables": [...]}``):
#: name, title, kind, analyses and family of every table, in the order the families gave them.
MANIFEST = "tables.json"
#: The tables whose statistics failed as a whole, with the error (``group/failures.json``,
#: ``{"tables": {name: error}}``), written by the group level.
FAILURES = "failures.json"


def _manifest(group_dir: Path) -> dict[str, Mapping[str, Any]]:
    """Return the group tables of the workflow's manifest by name (empty when absent)."""
    from danemap.io import read_json

    path = group_dir / MANIFEST
    if not path.is_file():
        return {}
    tables = read_json(path, "group tables manifest").get("tables") or []
    return {str(t["name"]): t for t in tables if isinstance(t, Mapping) and "name" in t}


def _manifest_titles(group_dir: Path) -> dict[str, str]:
    """Titles of the group tables from the workflow's manifest (empty when absent)."""
    return {n: str(t["title"]) for n, t in _manifest(group_dir).items() if "title" in t}


def _read(path: Path) -> Any:
    import pandas as pd

    return pd.read_csv(path, sep="\t", na_values="n/a") if path.is_file() else None


def _group_rows(effects: Any) -> Any:
    if "term" in effects.columns:
        main = effects["term"].isna() | effects["term"].astype(str).isin(["group", "main"])
        if main.any():
            return effects[main]
    return effects


def _forest(show: Any) -> str:
    """Draw the forest plot of the rows with a finite d and CI; a note when there is none.

    A table whose effects are all undefined gets a sentence, never an empty plot.
    """
    import numpy as np

    finite = np.isfinite(show[["d", "d_ci_low", "d_ci_high"]].to_numpy(float)).all(axis=1)
    if not finite.any():
        return ('<p class="failed">No effect size could be estimated (every d or its '
                "interval is undefined), so there is no forest plot.</p>")
    rows = show[finite]
    return forest_plot_svg(rows["feature"].astype(str).tolist(), rows["d"].tolist(),
                           rows["d_ci_low"].tolist(), rows["d_ci_high"].tolist())


def _status_section(title: str, summary: Mapping[str, Any]) -> Section | None:
    """Name every analysis of the table that failed or was skipped, with the reason."""
    import pandas as pd

    analyses = summary.get("analyses") if isinstance(summary, Mapping) else None
    if not isinstance(analyses, Mapping):
        return None
    rows = [{"analysis": a, "status": v.get("status"),
             "reason": v.get("error") or v.get("reason") or ""}
            for a, v in analyses.items() if isinstance(v, Mapping)
            and v.get("status") in ("failed", "skipped", "not run")]
    if not rows:
        return None
    failed = [r["analysis"] for r in rows if r["status"] == "failed"]
    text = (f"FAILED: {', '.join(failed)}. Their results are absent, not empty: see the "
            "reasons below and summary.json." if failed else
            "Every analysis that applies ran; these did not apply.")
    return Section(f"{title}: analyses that failed or did not run", text=text,
                   table=pd.DataFrame(rows), status="failed" if failed else None)


def _headline_section(title: str, head: Any, summary: Mapping[str, Any]) -> Section:
    """Show the headline effect per feature, with its source and the mega/meta agreement."""
    info = summary.get("headline") if isinstance(summary, Mapping) else None
    info = info if isinstance(info, Mapping) else {}
    show = head.reindex(head["d"].abs().sort_values(ascending=False).index).head(30)
    svg = _forest(show)
    cols = [c for c in ("feature", "source", "d", "d_ci_low", "d_ci_high", "p", "p_fdr",
                        "mega_d", "meta_d", "agree", "transform") if c in show.columns]
    text = ("Headline: per feature, the pooled GLM after harmonisation (mega) where its site "
            "checks pass and it agrees with the per-site random-effects meta-analysis (meta),"
            " otherwise the meta-analysis, whose within-site d's do not depend on the "
            "sites' scales.")
    if info:
        text += (f"\n\n{info.get('n_mega', 0)} feature(s) from the mega-analysis, "
                 f"{info.get('n_meta', 0)} from the meta-analysis, {info.get('n_glm', 0)} "
                 f"from a single-site GLM; {info.get('n_fdr_significant', 0)} with p_FDR "
                 "below alpha.")
    notes = ["Largest |d| first (at most 30 shown); every feature is in headline.tsv.",
             "d from the GLM t with covariates (ENIGMA); exact 95% CI (noncentral t) for the"
             " mega-analysis, Hartung-Knapp 95% CI for the meta-analysis."]
    disagree = list(info.get("disagree") or [])
    if disagree:
        notes.insert(0, f"WARNING: mega- and meta-analysis disagree for {len(disagree)} "
                        f"feature(s): {', '.join(map(str, disagree[:20]))}"
                        f"{' ...' if len(disagree) > 20 else ''}. The meta-analysis leads "
                        "for them.")
    return Section(f"{title}: ADHD vs controls", text=text, svg=svg, table=show[cols],
                   notes=notes)


def _mega_meta_section(title: str, effects: Any, meta: Any, checks: Any,
                       head: Any = None) -> Section:
    """Mega- and meta-analysis side by side, with the site checks behind the choice."""
    import pandas as pd

    eff = _group_rows(effects).set_index("feature")
    me = meta.set_index("feature")
    both = pd.DataFrame({
        "mega d": eff["d"], "mega CI": [f"[{lo:+.2f}, {hi:+.2f}]" for lo, hi in
                                        zip(eff["d_ci_low"], eff["d_ci_high"], strict=True)],
        "meta d": me["d"].reindex(eff.index),
        "meta CI": [f"[{lo:+.2f}, {hi:+.2f}]" for lo, hi in
                    zip(me["d_ci_low"].reindex(eff.index), me["d_ci_high"].reindex(eff.index),
                        strict=True)],
        "sites": me["k_sites"].reindex(eff.index), "I2": me["I2"].reindex(eff.index)})
    notes = []
    if checks is not None and len(checks):
        ck = checks.set_index("feature")
        both["site SD ratio"] = ck["sd_ratio"].reindex(eff.index)
        both["transform"] = ck["transform"].reindex(eff.index)
        n_log = int((ck["transform"] == "log").sum())
        excluded = ck[~ck["harmonize"].astype(bool)]
        notes.append(f"Site checks: {n_log} of {len(ck)} feature(s) log-transformed (site SDs "
                     "that scale with the site means: a multiplicative site effect, which "
                     "ComBat's additive model would turn into a biased, even reversed, "
                     "group effect).")
        if len(excluded):
            notes.append(f"Not harmonised ({len(excluded)}): " + "; ".join(
                f"{f}: {r}" for f, r in excluded["reason"].head(10).items()))
    both = both.reset_index()
    order = both["mega d"].abs().sort_values(ascending=False).index
    notes.insert(0, "Circles: the mega-analysis' d (95% CI); squares: the meta-analysis' "
                    "(Hartung-Knapp 95% CI); right: the agreement flag of headline.tsv. "
                    "Intervals cut at the axis end in an arrowhead.")
    return Section(
        f"{title}: mega-analysis and per-site meta-analysis", table=both.loc[order].head(30),
        svg=mega_meta_forest(_group_rows(effects), meta, head),
        text=("The pooled GLM (mega) and the random-effects pooling of the within-site GLMs "
              "(meta) estimate the same effect under different assumptions; they should "
              "agree."), notes=notes)


def _sections_for(name: str, title: str, folder: Path, summary: Mapping[str, Any],
                  group_dir: Path | None = None,
                  entry: Mapping[str, Any] | None = None) -> list[Section]:
    entry = entry or {}
    planned_raw = entry.get("analyses")
    planned = [str(a) for a in planned_raw] if isinstance(planned_raw, list) else None
    sections: list[Section] = []
    status = _status_section(title, summary)
    if status is not None:
        sections.append(status)
    sections += harmonisation_section(
        title, name, folder, group_dir if group_dir is not None else folder.parent.parent,
        summary, str(entry["path"]) if entry.get("path") else None, planned)
    effects = _read(folder / "effects.tsv")
    head = _read(folder / "headline.tsv")
    meta = _read(folder / "meta_effects.tsv")
    if head is not None and len(head):
        sections.append(_headline_section(title, head, summary))
        if effects is not None and meta is not None and len(meta):
            sections.append(_mega_meta_section(title, effects, meta,
                                               _read(folder / "site_checks.tsv"), head))
    elif effects is not None and len(effects):
        eff = _group_rows(effects)
        show = eff.reindex(eff["d"].abs().sort_values(ascending=False).index).head(30)
        svg = _forest(show)
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
    if (head is None or not len(head)) and (effects is None or not len(effects)):
        _absent(sections, f"{title}: ADHD vs controls", summary, "glm", planned,
                "effects.tsv")
    ref = reference_section(title, folder, summary, planned)
    if ref is not None:
        sections.append(ref)
    conn = connectome_section(title, folder, _group_rows(effects) if effects is not None
                              else None, summary, planned,
                              str(entry["kind"]) if entry.get("kind") else None)
    if conn is not None:
        sections.append(conn)
    perm = _read(folder / "permutation.tsv")
    if perm is not None and len(perm):
        sort_col = "p_fwe" if "p_fwe" in perm.columns else perm.columns[-1]
        sections.append(Section(
            f"{title}: family-wise error by permutation",
            text=_describe(summary, "permutation")
            or "Freedman–Lane max-T permutation, permutations within site.",
            table=perm.sort_values(sort_col).head(20),
        ))
    else:
        _absent(sections, f"{title}: family-wise error by permutation", summary,
                "permutation", planned, "permutation.tsv")
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
            text="\n\n".join([_describe(summary, "classify") or (
                "Three models side by side. The covariate-only model (age, sex, site, IQ) is "
                "the baseline any imaging model must beat."), *_beats_baseline(summary)]),
            table=_classification_view(clf),
            notes=["Value [95% bootstrap CI]; p from label permutations. Every metric, with "
                   "its fold SD, is in classification.tsv."],
        ))
    else:
        _absent(sections, f"{title}: can the markers tell ADHD from controls?", summary,
                "classify", planned, "classification.tsv")
    sym = _read(folder / "symptoms.tsv")
    if sym is not None and len(sym):
        sort_col = "p" if "p" in sym.columns else sym.columns[-1]
        sections.append(Section(
            f"{title}: association with symptom scores",
            text=_describe(summary, "symptoms") or "Partial correlations with symptom scores.",
            svg=symptoms_forest(sym),
            table=sym.sort_values(sort_col).head(20)[
                [c for c in ("feature", "symptom", "sample", "n", "r", "ci_low", "ci_high", "p",
                             "p_fdr", "symptom_scaling") if c in sym.columns]],
            notes=["Strongest 20 associations shown; all are in symptoms.tsv."],
        ))
    else:
        _absent(sections, f"{title}: association with symptom scores", summary, "symptoms",
                planned, "symptoms.tsv")
    norm = normative_section(title, folder, summary, planned)
    if norm is not None:
        sections.append(norm)
    return sections


def _absent(sections: list[Section], heading: str, summary: Mapping[str, Any], key: str,
            planned: Sequence[str] | None, output: str) -> None:
    """Append a section saying why ``output`` is absent, when the analysis was wanted.

    Wanted: listed in the table's analyses (tables.json) or recorded in summary.json as
    failed or skipped; an analysis neither planned nor recorded adds nothing.
    """
    analyses = summary.get("analyses") if isinstance(summary, Mapping) else None
    record = analyses.get(key) if isinstance(analyses, Mapping) else None
    recorded = isinstance(record, Mapping) and record.get("status") in (
        "failed", "skipped", "not run")
    if not recorded and (planned is None or key not in planned):
        return
    status, text = why_absent(summary, key, planned, output)
    sections.append(Section(heading, status=status, text=text))


def _beats_baseline(summary: Mapping[str, Any]) -> list[str]:
    """Say, per scheme, whether imaging beats the covariate-only baseline."""
    entry = summary.get("classify") if isinstance(summary, Mapping) else None
    if not isinstance(entry, Mapping):
        return []
    out = []
    for scheme, block in entry.items():
        if not isinstance(block, Mapping) or "imaging_beats_covariate_baseline" not in block:
            continue
        name = {"kfold": "stratified k-fold", "loso": "leave-one-site-out"}.get(
            str(scheme), str(scheme))
        ba = {m: (block.get(m) or {}).get("balanced_accuracy", {}).get("value")
              for m in ("covariates", "imaging", "both")}
        nums = ", ".join(f"{m} {v:.2f}" for m, v in ba.items() if isinstance(v, int | float))
        if block["imaging_beats_covariate_baseline"]:
            out.append(f"{name}: imaging beats the covariate-only baseline (balanced "
                       f"accuracy {nums}); check its CI and permutation p before reading "
                       "anything into it.")
        else:
            out.append(f"{name}: IMAGING DOES NOT BEAT THE COVARIATE-ONLY BASELINE (balanced "
                       f"accuracy {nums}): these markers add nothing to age, sex, site and IQ "
                       "in telling ADHD from controls here.")
    return out


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
    analyses = summary.get("analyses") if isinstance(summary.get("analyses"), Mapping) else {}
    combat = analyses.get("harmonize") if isinstance(analyses, Mapping) else None
    why = ""
    if isinstance(combat, Mapping) and combat.get("status") in ("skipped", "failed"):
        why = (f" (ComBat {combat['status']}: "
               f"{combat.get('reason') or combat.get('error') or 'no reason recorded'})")
    if isinstance(harm, Mapping):
        for k, v in harm.items():
            extra = why if k == "group_analyses" and str(v) == "none" else ""
            status = (analyses.get({"normative": "normative", "classification": "classify"}
                                   .get(k, "")) if isinstance(analyses, Mapping) else None)
            if str(v) == "not run" and isinstance(status, Mapping) \
                    and status.get("status") == "failed":
                extra = f" (the analysis FAILED: {status.get('error')})"
            lines.append(f"Harmonisation ({k.replace('_', ' ')}): {v}{extra}.")
    if not summary:
        lines.insert(0, "This table has no summary.json: its statistics did not complete.")
    return Section("Cohort and methods", text="\n\n".join(lines), table=table,
                   notes=[str(w) for w in summary.get("warnings") or []])


def _describe(summary: Mapping[str, Any], key: str) -> str:
    entry = summary.get(key) if isinstance(summary, Mapping) else None
    if isinstance(entry, Mapping):
        text = entry.get("description") or entry.get("note")
        return str(text) if text else ""
    return ""


def write_group_report(group_dir: str | Path,
                       summaries: Mapping[str, Mapping[str, Any]] | None = None,
                       titles: Mapping[str, str] | None = None) -> Path:
    """Write ``group_report.html`` from the statistics outputs under ``group_dir/stats``.

    Parameters
    ----------
    group_dir : path-like
        ``OUT/danemap/group``.
    summaries : mapping or None
        Table name -> summary returned by :func:`danemap.stats.pipeline.run_stats`; when
        None, each ``stats/<table>/summary.json`` is read.
    titles : mapping or None
        Table name -> section title, in report order (the families' ``GroupTable``
        titles); when None, the workflow's manifest ``group/tables.json`` gives them, and
        a table it does not list is titled by its name, after the listed ones.

    Returns
    -------
    pathlib.Path
        The report.
    """
    group_dir = Path(group_dir)
    stats_dir = group_dir / "stats"
    found = [p.name for p in stats_dir.iterdir() if p.is_dir()] if stats_dir.is_dir() else []
    manifest = _manifest(group_dir)
    titles = dict(titles) if titles is not None else _manifest_titles(group_dir)
    order = list(titles)
    names = sorted(found, key=lambda n: (order.index(n) if n in order else len(order), n))
    sections: list[Section] = []
    loaded: dict[str, Mapping[str, Any]] = {}
    for name in names:
        summary: Mapping[str, Any] = (summaries or {}).get(name) or {}
        if not summary and (stats_dir / name / "summary.json").is_file():
            summary = json.loads((stats_dir / name / "summary.json").read_text())
        loaded[name] = summary
    if names:
        sections += [_cohort_section(loaded[names[0]]), _methods_section(loaded, titles),
                     _failures_section(loaded, titles, _table_errors(group_dir))]
    for name in names:
        sections += _sections_for(name, titles.get(name, name), stats_dir / name,
                                  loaded[name], group_dir, manifest.get(name))
    if not sections and _table_errors(group_dir):
        sections.append(_failures_section(loaded, titles, _table_errors(group_dir)))
    if not sections:
        sections.append(Section("No statistics", status="missing", text=(
            "No group statistics were found" + (
                f": the tables {', '.join(order)} have no statistics folder under "
                f"{stats_dir.name}/ (their statistics failed or have not run; see the group "
                "log)." if order else " (the group level has not run on these outputs).")),
            anchor="failures"))
    return write_report(group_dir / "group_report.html", "danemap group report", sections,
                        subtitle=str(group_dir), meta=_provenance(group_dir, loaded))


def _methods_section(loaded: Mapping[str, Mapping[str, Any]],
                     titles: Mapping[str, str]) -> Section:
    """Write a methods paragraph from what the statistics recorded (summary.json).

    Only the analyses that ran (status ``done``) in at least one table are described,
    each naming its tables; the references are those of the methods used.
    """
    import platform
    from importlib import metadata

    done: dict[str, list[str]] = {}
    info: dict[str, Mapping[str, Any]] = {}
    for name, summary in loaded.items():
        analyses = summary.get("analyses") if isinstance(summary, Mapping) else None
        for key, entry in (analyses.items() if isinstance(analyses, Mapping) else ()):
            if isinstance(entry, Mapping) and entry.get("status") == "done":
                done.setdefault(key, []).append(titles.get(name, name))
                info.setdefault(key, entry)
    first = next((s for s in loaded.values() if s), {})
    recorded = first.get("versions")
    if isinstance(recorded, Mapping) and recorded:
        versions = [f"{lib} {v}" for lib, v in recorded.items()
                    if lib not in ("danemap", "python") and v]
        python = str(recorded.get("python") or "n/a")
        where = "as recorded in summary.json by the statistics run"
        others = sorted({name for name, summ in loaded.items()
                         if isinstance(summ, Mapping) and summ.get("versions") != recorded})
    else:
        versions = []
        for lib in ("numpy", "scipy", "pandas", "scikit-learn", "statsmodels", "nilearn",
                    "nibabel"):
            try:
                versions.append(f"{lib} {metadata.version(lib)}")
            except metadata.PackageNotFoundError:
                continue
        python = platform.python_version()
        where = ("in the environment that generated this report: summary.json records no "
                 "library versions")
        others = []
    settings = first.get("harmonization_settings") or {}
    covs = ", ".join(first.get("covariates") or []) or "no covariates"

    def which(key: str) -> str:
        tables = done.get(key, [])
        return "" if len(tables) == len(loaded) else f" ({'; '.join(tables)})"

    version = (recorded.get("danemap") if isinstance(recorded, Mapping) else None) or \
        first.get("danemap_version") or "n/a"
    parts = [f"Group statistics were computed with danemap {version} (Python {python}; "
             f"{', '.join(versions)}; {where})."]
    if others:
        parts.append("The library versions of "
                     + ", ".join(titles.get(n, n) for n in others)
                     + " differ from these (each table's summary.json has its own).")
    refs = []
    if "harmonize" in done:
        transform = settings.get("transform", "auto")
        parts.append(
            "Before harmonisation, each feature's site standard deviations were checked; "
            + ("features whose site SDs scaled with the site means (lower 95% bound of the "
               f"SD ratio above {settings.get('scale_threshold', 'n/a')}) were "
               "log-transformed" if transform == "auto" else f"transform = {transform}")
            + f". Site effects were removed with ComBat{which('harmonize')}: "
            f"{info['harmonize'].get('method') or 'ComBat'}.")
        refs += ["Johnson WE et al. Biostatistics 2007;8:118-127 (ComBat)",
                 "Fortin JP et al. NeuroImage 2018;167:104-120 (ComBat for neuroimaging)"]
    if "glm" in done:
        parts.append(f"Case-control differences were estimated per feature by ordinary least "
                     f"squares ({info['glm'].get('model') or 'feature ~ group + covariates'};"
                     f" covariates: {covs}){which('glm')}; Cohen's d was derived from the "
                     "group t with an exact 95% confidence interval (noncentral t), and "
                     "p-values were corrected for the false discovery rate "
                     "(Benjamini-Hochberg) within each table.")
        refs.append("Benjamini Y, Hochberg Y. J R Stat Soc B 1995;57:289-300 (FDR)")
    if "meta" in done:
        tau = str(info["meta"].get("method") or "REML").upper()
        parts.append(f"The same model was fitted within each site and the site d's pooled by "
                     f"a random-effects meta-analysis ({tau}"
                     f" heterogeneity, Hartung-Knapp 95% CI){which('meta')}; the headline "
                     "effect is the pooled (mega) analysis where the site checks pass and "
                     "it agrees with the meta-analysis, otherwise the meta-analysis.")
        refs.append("Hartung J, Knapp G. Stat Med 2001;20:1771-1782 (Hartung-Knapp CI)")
    if "permutation" in done:
        e = info["permutation"]
        parts.append(f"Family-wise error was controlled with Freedman-Lane max-T "
                     f"permutation ({e.get('n_permutations', 'n/a')} permutations"
                     + (f", exchangeable within {e['blocks']}" if e.get("blocks") else "")
                     + f"){which('permutation')}.")
        refs.append("Winkler AM et al. NeuroImage 2014;92:381-397 (permutation inference)")
    if "nbs" in done:
        parts.append(f"Connectivity edges were also tested with the network-based statistic"
                     f"{which('nbs')} on the frontostriatal and LC-PFC subnetworks.")
        refs.append("Zalesky A et al. NeuroImage 2010;53:1197-1207 (NBS)")
    if "symptoms" in done:
        parts.append(f"Associations with symptom scores were partial correlations with the "
                     f"same covariates (scores {info['symptoms'].get('symptom_scaling') or ''}"
                     f"){which('symptoms')}.")
    if "normative" in done:
        parts.append(f"Normative models (feature ~ age + sex + site) were fitted on the "
                     f"controls, scoring controls out of sample by cross-validation; "
                     f"deviations are predictive z-scores{which('normative')}.")
        refs.append("Marquand AF et al. Mol Psychiatry 2019;24:1415-1424 (normative "
                    "modelling)")
    if "classify" in done:
        parts.append(f"Classification compared a covariate-only model, an imaging model and "
                     f"both, by cross-validation with harmonisation inside the training "
                     f"folds{which('classify')}.")
    if "reference" in done:
        parts.append(f"Effect sizes were compared with ENIGMA-ADHD's{which('reference')}.")
        refs.append("Hoogman M et al. Lancet Psychiatry 2017;4:310-319 (ENIGMA-ADHD)")
    parts.append(f"Significance level alpha = {first.get('alpha', 0.05)}.")
    failed = sorted({k for s in loaded.values() for k, e in (
        (s.get("analyses") or {}).items() if isinstance(s.get("analyses"), Mapping) else ())
        if isinstance(e, Mapping) and e.get("status") == "failed"})
    notes = [f"References: {'; '.join(refs)}."] if refs else []
    if failed:
        notes.append(f"Not described (FAILED in some table, see Failures): "
                     f"{', '.join(failed)}.")
    return Section("Methods", anchor="methods", text=" ".join(parts), notes=notes)


def _table_errors(group_dir: Path) -> dict[str, str]:
    """Read the group level's record of the tables that failed as a whole (empty: none)."""
    from danemap.io import read_json

    path = group_dir / FAILURES
    if not path.is_file():
        return {}
    tables = read_json(path, "group failures").get("tables") or {}
    return {str(k): str(v) for k, v in tables.items()} if isinstance(tables, Mapping) else {}


def _failures_section(loaded: Mapping[str, Mapping[str, Any]], titles: Mapping[str, str],
                      errors: Mapping[str, str]) -> Section:
    """Every analysis that failed, over every table, with its reason (or that none did).

    ``errors`` names the tables whose statistics failed as a whole (no folder).
    """
    import pandas as pd

    rows = []
    order = [*titles, *[n for n in [*loaded, *errors] if n not in titles]]
    for name in dict.fromkeys(n for n in order if n in loaded or n in errors):
        if name not in loaded:
            rows.append({"table": name, "analysis": "all", "reason": errors[name]})
            continue
        summary = loaded[name]
        if not summary:
            rows.append({"table": name, "analysis": "all",
                         "reason": "no summary.json: the statistics did not complete"})
            continue
        analyses = summary.get("analyses")
        if isinstance(analyses, Mapping):
            rows += [{"table": name, "analysis": a,
                      "reason": v.get("error") or "no reason recorded"}
                     for a, v in analyses.items()
                     if isinstance(v, Mapping) and v.get("status") == "failed"]
    if not rows:
        return Section("Failures", anchor="failures", status="pass",
                       text="No analysis failed.")
    return Section("Failures", anchor="failures", status="failed", table=pd.DataFrame(rows),
                   text=f"FAILED: {len(rows)} analysis(es). Each failed analysis is absent "
                        "from its table's section below, which says so.")


def _provenance(group_dir: Path, loaded: Mapping[str, Mapping[str, Any]]) -> list[str]:
    """Return the run date and group configuration hash, as the outputs record them."""
    import datetime as dt
    import tomllib

    from danemap.config import Config

    created = sorted(str(s.get("created")) for s in loaded.values() if s.get("created"))
    lines = [f"Statistics run {created[-1] if created else 'n/a (no summary.json)'}; report "
             f"generated {dt.datetime.now(dt.UTC).isoformat(timespec='seconds')}."]
    cfg = group_dir / "config.toml"
    if cfg.is_file():
        try:
            config = Config().updated(tomllib.loads(cfg.read_text()), source=str(cfg))
            lines.append(f"Group configuration hash ([stats] and the atlas) "
                         f"{config.group_sha256()} ({cfg.name}).")
        except (ValueError, TypeError, OSError) as exc:
            lines.append(f"Group configuration hash: n/a ({cfg.name} cannot be read: {exc}).")
    else:
        lines.append("Group configuration hash: n/a (no group/config.toml).")
    return lines
