"""The group report's views: harmonisation, reference, connectome, symptoms, normative z.

Harmonisation before/after, effects beside the reference, the connectome view, symptom
associations and the normative z-scores.

Every view reads what the statistics wrote under ``group/stats/<table>/`` (and, for the
"before" of the harmonisation, the group feature table and ``participants.tsv`` the
statistics name in ``summary.json``); nothing here estimates an effect. A view whose
inputs are absent returns a section that says what is missing and why (the analysis
failed, was skipped, or is not among the table's analyses), never an empty plot.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from danemap.report._figures import PALETTE, SITE_COLORS, axis_ticks, figure, img_tag
from danemap.report._html import Section, paired_forest_svg

__all__ = ["connectome_section", "harmonisation_section", "mega_meta_forest",
           "normative_section", "reference_section", "symptoms_forest"]

#: Features drawn before/after harmonisation (those with the largest site effect).
N_HARMONISATION_FEATURES = 4


def _read(path: Path) -> Any:
    import pandas as pd

    return pd.read_csv(path, sep="\t", na_values="n/a") if path.is_file() else None


def _analysis(summary: Mapping[str, Any], key: str) -> Mapping[str, Any]:
    """Return the record of one analysis (``analyses[key]``, else ``summary[key]``; {})."""
    analyses = summary.get("analyses") if isinstance(summary, Mapping) else None
    entry = analyses.get(key) if isinstance(analyses, Mapping) else None
    if not isinstance(entry, Mapping):
        entry = summary.get(key) if isinstance(summary, Mapping) else None
    return entry if isinstance(entry, Mapping) else {}


def why_absent(summary: Mapping[str, Any], key: str, planned: Sequence[str] | None,
               output: str) -> tuple[str, str]:
    """Say why an analysis' output is absent: ``(status, sentence)``.

    Parameters
    ----------
    summary : mapping
        The table's ``summary.json``.
    key : str
        The analysis (``normative``, ``reference`` ...).
    planned : sequence of str or None
        The table's analyses from ``tables.json`` (None: unknown).
    output : str
        The file that is missing.

    Returns
    -------
    status : str
        ``"failed"`` or ``"missing"``.
    text : str
        The sentence for the report.
    """
    entry = _analysis(summary, key)
    status = entry.get("status")
    if status == "failed":
        error = entry.get("error") or "no error recorded"
        return "failed", (f"FAILED: the {key} analysis failed ({error}), so {output} was "
                          "not written.")
    if status in ("skipped", "not run"):
        return "missing", (f"Not shown: the {key} analysis was {status} "
                           f"({entry.get('reason') or 'no reason recorded'}); {output} was "
                           "not written.")
    if planned is not None and key not in planned:
        return "missing", (f"Not shown: {key} is not among this table's analyses "
                           f"({', '.join(planned) or 'none'}, tables.json), so {output} was "
                           "not written.")
    if not summary:
        return "missing", (f"Not shown: {output} is missing and the table has no "
                           "summary.json (its statistics did not complete).")
    return "missing", (f"Not shown: {output} is missing although the {key} analysis has no "
                       "failure on record; the statistics folder is incomplete (rerun "
                       "`danemap ... group`).")


# ------------------------------------------------------------------ harmonisation


def _participants(group_dir: Path, summary: Mapping[str, Any]) -> Any:
    sources = summary.get("sources") if isinstance(summary, Mapping) else None
    cands = [Path(str(sources["participants"]))] if isinstance(sources, Mapping) and \
        sources.get("participants") else []
    cands.append(group_dir / "participants.tsv")
    for path in cands:
        if path.is_file():
            import pandas as pd

            return pd.read_csv(path, sep="\t", dtype=str, keep_default_na=False), path
    return None, cands[0]


def _raw_features(group_dir: Path, name: str, summary: Mapping[str, Any],
                  table_path: str | None) -> tuple[Any, Path]:
    sources = summary.get("sources") if isinstance(summary, Mapping) else None
    cands = [group_dir / table_path] if table_path else []
    feats = sources.get("features") if isinstance(sources, Mapping) else None
    if isinstance(feats, Sequence) and not isinstance(feats, str):
        cands += [Path(str(f)) for f in feats]
    cands.append(group_dir / f"{name}.tsv")
    for path in cands:
        if path.is_file():
            return _read(path), path
    return None, cands[0]


def _site_eta2(values: Any, sites: Any) -> float:
    """Return the share of a feature's variance between sites (eta squared; NaN: undefined)."""
    import numpy as np

    ok = np.isfinite(values)
    v, s = values[ok], sites[ok]
    if v.size < 3 or len(set(s)) < 2:
        return float("nan")
    total = float(((v - v.mean()) ** 2).sum())
    if total <= 0:
        return float("nan")
    between = sum(float((s == k).sum()) * (float(v[s == k].mean()) - float(v.mean())) ** 2
                  for k in set(s))
    return between / total


def harmonisation_section(title: str, name: str, folder: Path, group_dir: Path,
                          summary: Mapping[str, Any], table_path: str | None = None,
                          planned: Sequence[str] | None = None) -> list[Section]:
    """Site-coloured distributions before and after ComBat, and the site checks.

    Parameters
    ----------
    title : str
        The table's title.
    name : str
        The table's name (``group/<name>.tsv`` is the "before").
    folder : pathlib.Path
        ``group/stats/<name>``.
    group_dir : pathlib.Path
        ``group/``.
    summary : mapping
        The table's ``summary.json``.
    table_path : str or None
        The feature table's path relative to ``group_dir`` (``tables.json``).
    planned : sequence of str or None
        The table's analyses (``tables.json``).

    Returns
    -------
    list of Section
        The before/after section and the site-checks section; one section saying why
        when there are no site checks; empty when the table plans no harmonisation.
    """
    import numpy as np
    import pandas as pd

    checks = _read(folder / "site_checks.tsv")
    harm = _read(folder / "harmonized_features.tsv")
    entry = _analysis(summary, "harmonize")
    heading = f"{title}: harmonisation before and after"
    if checks is None and harm is None:
        if not entry and (planned is None or "harmonize" not in planned):
            return []
        why = why_absent(summary, "harmonize", planned, "site_checks.tsv")
        return [Section(heading, status=why[0], text=why[1])]
    notes: list[str] = []
    rows = []
    if checks is not None and len(checks):
        logged = checks[checks["transform"].astype(str) == "log"]
        left = checks[~checks["harmonize"].astype(str).str.lower().isin(["true", "1"])]
        for r in checks.itertuples():
            if r.Index in logged.index or r.Index in left.index:
                rows.append({"feature": r.feature, "transform": r.transform,
                             "site SD ratio": r.sd_ratio, "95% lower bound": r.sd_ratio_low,
                             "harmonised": r.Index not in left.index,
                             "why": (r.reason if isinstance(r.reason, str) and r.reason
                                     else "site SDs scale with the site means "
                                          "(multiplicative site effect): analysed on the log "
                                          "scale")})
        checks_text = (f"Assumption checks on {len(checks)} feature(s): {len(logged)} "
                       f"log-transformed, {len(left)} left out of ComBat (analysed with site "
                       "as a covariate instead)." if rows else
                       f"Assumption checks on {len(checks)} feature(s): every feature passed "
                       "(none log-transformed, none left out of ComBat).")
    else:
        checks_text = "No site checks were written (site_checks.tsv is missing)."
    status: str | None = None
    if entry.get("status") == "done":
        text = f"{entry.get('method') or 'ComBat'}."
    elif entry.get("status") in ("skipped", "failed"):
        status = "failed" if entry["status"] == "failed" else "missing"
        text = (f"ComBat {entry['status'].upper() if status == 'failed' else entry['status']}"
                f": {entry.get('error') or entry.get('reason') or 'no reason recorded'}. "
                "Only the distributions before harmonisation are drawn.")
    else:
        text = "No record of the harmonisation in summary.json."
    figures: list[str] = []
    eta_table = None
    P, ppath = _participants(group_dir, summary)
    F, fpath = _raw_features(group_dir, name, summary, table_path)
    site = str(summary.get("site") or "site")
    if P is None or F is None or "participant_id" not in F.columns \
            or site not in getattr(P, "columns", []):
        missing = (f"{ppath} (participants)" if P is None else f"{fpath} (features)"
                   if F is None else f"the site column {site!r} in {ppath}"
                   if site not in P.columns else f"participant_id in {fpath}")
        notes.append(f"No before/after distributions: {missing} cannot be read.")
    else:
        feats = [c for c in (harm.columns if harm is not None else F.columns)
                 if c != "participant_id" and c in F.columns]
        before = F[["participant_id", *feats]].copy()
        before[feats] = before[feats].apply(pd.to_numeric, errors="coerce")
        before = before.groupby("participant_id", sort=False).mean()
        if checks is not None:  # the "before" on the analysed scale (after the transform)
            for f in checks.loc[checks["transform"].astype(str) == "log", "feature"]:
                if f in before.columns:
                    with np.errstate(divide="ignore", invalid="ignore"):
                        before[f] = np.log(before[f].where(before[f] > 0))
        sites = P.set_index("participant_id")[site].reindex(before.index)
        keep = sites.notna() & (sites.astype(str) != "")
        before, sites = before[keep], sites[keep].astype(str)
        after = harm.set_index("participant_id") if harm is not None else None
        eta = {f: _site_eta2(before[f].to_numpy(float), sites.to_numpy(str)) for f in feats}
        shown = [f for f, _ in sorted(((f, e) for f, e in eta.items() if math.isfinite(e)),
                                      key=lambda t: -t[1])][:N_HARMONISATION_FEATURES]
        if shown:
            figures.append(_harmonisation_figure(before, after, sites, shown))
            eta_table = pd.DataFrame({"feature": shown,
                                      "site share of variance, before": [eta[f] for f in
                                                                         shown]})
            if after is not None:
                s_after = sites.reindex(after.index)
                ok = s_after.notna()
                eta_table["after"] = [_site_eta2(after.loc[ok, f].to_numpy(float),
                                                 s_after[ok].to_numpy(str)) for f in shown]
            notes.append("Drawn: the features with the largest site effect (the share of "
                         "their variance between sites, eta squared, before harmonisation), "
                         "one box and the points per site; the 'before' is on the analysed "
                         "scale (after any log transform of the site checks), from "
                         f"{fpath.name} averaged per participant.")
        else:
            notes.append("No before/after distributions: no feature has a defined site "
                         "effect (fewer than two sites with values).")
    sections = [Section(heading, text=text, status=status, figures=figures, table=eta_table,
                        notes=notes)]
    sections.append(Section(f"{title}: site checks (harmonisation assumptions)",
                            text=checks_text, table=pd.DataFrame(rows) if rows else None,
                            notes=["Every feature's checks are in site_checks.tsv."]))
    return sections


def _harmonisation_figure(before: Any, after: Any, sites: Any, shown: Sequence[str]) -> str:
    import numpy as np

    labels = sorted(set(sites))
    colours = {s: SITE_COLORS[i % len(SITE_COLORS)] for i, s in enumerate(labels)}
    rng = np.random.default_rng(0)  # jitter only
    with figure(3.0 * len(shown) + 0.6, 3.6) as fig:
        axes = fig.subplots(1, len(shown), squeeze=False)[0]
        for ax, f in zip(axes, shown, strict=True):
            panels = [("before", before[f])]
            if after is not None and f in after.columns:
                panels.append(("after", after[f]))
            for p, (_, col) in enumerate(panels):
                s_of = sites.reindex(col.index)
                for k, s in enumerate(labels):
                    v = col[s_of == s].to_numpy(float)
                    v = v[np.isfinite(v)]
                    if not v.size:
                        continue
                    pos = p * (len(labels) + 1) + k
                    box = ax.boxplot([v], positions=[pos], widths=0.7, patch_artist=True,
                                     showfliers=False)
                    for patch in box["boxes"]:
                        patch.set(facecolor=colours[s], alpha=0.35, edgecolor=colours[s])
                    ax.scatter(pos + rng.uniform(-0.2, 0.2, v.size), v, s=9,
                               color=colours[s], zorder=3)
            centres = [p * (len(labels) + 1) + (len(labels) - 1) / 2
                       for p in range(len(panels))]
            ax.set_xticks(centres, [name for name, _ in panels])
            ax.set_title(str(f)[:40])
            axis_ticks(ax, "y", 4)
        from matplotlib.patches import Patch

        fig.legend(handles=[Patch(color=colours[s], label=str(s)[:30]) for s in labels],
                   loc="outside lower center", ncol=min(len(labels), 6), frameon=False,
                   title="site")
        return img_tag(fig, "site-coloured feature distributions before and after ComBat")


# ------------------------------------------------------------------ effects


def mega_meta_forest(effects: Any, meta: Any, head: Any) -> str:
    """Draw a paired forest plot: the mega-analysis' and the meta-analysis' d per feature.

    Parameters
    ----------
    effects : pandas.DataFrame
        The main-effect rows of ``effects.tsv``.
    meta : pandas.DataFrame
        ``meta_effects.tsv``.
    head : pandas.DataFrame or None
        ``headline.tsv`` (its ``agree`` column is the flag drawn per row).

    Returns
    -------
    str
        SVG markup (or a sentence when no row has a finite d).
    """
    import numpy as np

    eff = effects.set_index("feature")
    me = meta.set_index("feature").reindex(eff.index)
    order = eff["d"].abs().sort_values(ascending=False).index[:30]
    eff, me = eff.loc[order], me.loc[order]
    if not np.isfinite(eff["d"].to_numpy(float)).any() and \
            not np.isfinite(me["d"].to_numpy(float)).any():
        return ('<p class="failed">No effect size could be estimated by either analysis, so '
                "there is no forest plot.</p>")
    flags = None
    if head is not None and "agree" in head.columns:
        agree = head.set_index("feature")["agree"].reindex(order)
        flags = ["agree" if str(a).lower() in ("true", "1") else
                 "n/a" if str(a) in ("nan", "<NA>", "None") else "DISAGREE" for a in agree]
    return paired_forest_svg(
        [str(f) for f in order],
        [("mega-analysis (pooled GLM)", eff["d"].tolist(), eff["d_ci_low"].tolist(),
          eff["d_ci_high"].tolist()),
         ("meta-analysis (per site)", me["d"].tolist(), me["d_ci_low"].tolist(),
          me["d_ci_high"].tolist())], flags=flags)


def reference_section(title: str, folder: Path, summary: Mapping[str, Any],
                      planned: Sequence[str] | None) -> Section | None:
    """ENIGMA-ADHD's (or the configured reference's) d and CI beside danemap's.

    Returns None when the table neither plans nor records a reference comparison (not
    a structural table).
    """
    ref = _read(folder / "reference_comparison.tsv")
    heading = f"{title}: danemap beside the published reference (ENIGMA-ADHD)"
    if ref is None:
        if not _analysis(summary, "reference") and (planned is None
                                                     or "reference" not in planned):
            return None
        status, text = why_absent(summary, "reference", planned, "reference_comparison.tsv")
        return Section(heading, status=status, text=text)
    if not len(ref):
        return Section(heading, status="missing", text=(
            "No feature of this table maps to a reference structure (caudate, putamen, "
            "pallidum, thalamus, hippocampus, amygdala, accumbens), so there is nothing to "
            "compare."))
    labels = [f"{f} ({s}{'' if str(h) in ('nan', 'bilateral') else ' ' + str(h)})"
              for f, s, h in zip(ref["feature"], ref["structure"],
                                 ref.get("hemisphere", [""] * len(ref)), strict=True)]
    source = str(ref["reference_source"].dropna().iloc[0]) if "reference_source" in \
        ref.columns and ref["reference_source"].notna().any() else "reference"
    flags = ["same sign" if str(s).lower() in ("true", "1") else "OPPOSITE"
             for s in ref.get("same_sign", [True] * len(ref))]
    svg = paired_forest_svg(labels, [
        ("danemap", ref["d"].tolist(), ref["d_ci_low"].tolist(), ref["d_ci_high"].tolist()),
        (source[:40], ref["reference_d"].tolist(), ref["reference_ci_low"].tolist(),
         ref["reference_ci_high"].tolist())], flags=flags)
    n_same = int(ref["same_sign"].astype(str).str.lower().isin(["true", "1"]).sum())
    n_in = int(ref["d_within_reference_ci"].astype(str).str.lower().isin(["true", "1"]).sum())
    cols = [c for c in ("feature", "structure", "hemisphere", "d", "d_ci_low", "d_ci_high",
                        "reference_d", "reference_ci_low", "reference_ci_high", "same_sign",
                        "d_within_reference_ci", "cis_overlap", "note") if c in ref.columns]
    return Section(heading, svg=svg, table=ref[cols], text=(
        f"{len(ref)} structure(s) match the reference; {n_same} have the same sign and "
        f"{n_in} of danemap's d lie inside the reference CI. The reference's CIs come from "
        "thousands of participants: a wide danemap CI that contains the reference is "
        "consistent with it, not a replication."),
        notes=["Circles: danemap's d (95% CI); squares: the reference's. Intervals cut at "
               "the axis end in an arrowhead."])


# ------------------------------------------------------------------ connectome


def _edge_parts(feature: str) -> tuple[str, str] | None:
    parts = str(feature).split("__")
    return (parts[0], parts[1]) if len(parts) == 2 and all(parts) else None


def edge_matrices(effects: Any, perm: Any, alpha: float) -> tuple[list[str], Any, Any]:
    """Return the regions, the symmetric t matrix and the max-T significance mask.

    Parameters
    ----------
    effects : pandas.DataFrame
        Main-effect rows with ``feature`` (``A__B``) and ``t``.
    perm : pandas.DataFrame or None
        ``permutation.tsv`` (``feature``, ``p_fwe``); None: nothing is significant.
    alpha : float
        The family-wise level.

    Returns
    -------
    names : list of str
        The regions, in the atlas' order (others after, sorted).
    t : numpy.ndarray
        ``t[i, j] = t[j, i]`` of the edge; NaN where no edge was tested.
    significant : numpy.ndarray of bool
        True where the edge's max-T ``p_fwe < alpha``.
    """
    import numpy as np

    from danemap.atlas import REGION_TABLE

    edges = [_edge_parts(f) for f in effects["feature"].astype(str)]
    atlas_order = [n for r in REGION_TABLE
                   for n in ([f"{r[0]}_L", f"{r[0]}_R"] if r[1] == "LR" else [r[0]])]
    present = {x for p in edges if p for x in p}
    names = [n for n in atlas_order if n in present] + sorted(present - set(atlas_order))
    index = {n: i for i, n in enumerate(names)}
    t = np.full((len(names), len(names)), np.nan)
    for p, value in zip(edges, effects["t"].to_numpy(float), strict=True):
        if p is not None:
            t[index[p[0]], index[p[1]]] = t[index[p[1]], index[p[0]]] = value
    sig = np.zeros(t.shape, dtype=bool)
    if perm is not None:
        hit = perm[perm["p_fwe"].astype(float) < alpha]
        for f in hit["feature"].astype(str):
            p = _edge_parts(f)
            if p and p[0] in index and p[1] in index:
                sig[index[p[0]], index[p[1]]] = sig[index[p[1]], index[p[0]]] = True
    return names, t, sig


def connectome_section(title: str, folder: Path, effects: Any, summary: Mapping[str, Any],
                       planned: Sequence[str] | None,
                       kind: str | None = None) -> Section | None:
    """Draw a matrix of the group-difference t of the edges, thresholded by the corrected p.

    Returns None when the table is not one of connectivity edges: its ``kind`` in
    ``tables.json`` is not ``edge`` (the task table's ``contrast__region`` columns are not
    edges), or, without a kind, a feature is not named ``A__B``.
    """
    import numpy as np
    import pandas as pd

    from danemap.atlas import NETWORKS

    if effects is None or "t" not in effects.columns or (kind is not None and kind != "edge"):
        return None
    edges = [(f, _edge_parts(f)) for f in effects["feature"].astype(str)]
    if not edges or not all(p for _, p in edges):
        return None
    alpha = float(summary.get("alpha") or 0.05) if isinstance(summary, Mapping) else 0.05
    perm = _read(folder / "permutation.tsv")
    have_perm = perm is not None and "p_fwe" in perm.columns
    names, t, sig = edge_matrices(effects, perm if have_perm else None, alpha)
    index = {n: i for i, n in enumerate(names)}
    notes: list[str] = []
    status = None
    text_parts = []
    if have_perm:
        n_hit = int(np.triu(sig, 1).sum())
        n_tested = int(perm["p_fwe"].notna().sum())
        min_p = float(perm["p_fwe"].min()) if n_tested else float("nan")
        text_parts.append(f"Max-T permutation (family-wise over {n_tested} edges): "
                          f"{n_hit} edge(s) with p_FWE < {alpha:g}" + (
                              "." if n_hit else
                              f"; the smallest p_FWE is {min_p:.3g}, so the thresholded "
                              "matrix is empty by result, not by failure."))
    else:
        status, why = why_absent(summary, "permutation", planned, "permutation.tsv")
        text_parts.append(why + " Only the uncorrected t is drawn.")
    nbs_edges: set[tuple[int, int]] = set()
    nbs = _read(folder / "nbs.tsv")
    if nbs is not None and "component_p_fwe" in nbs.columns:
        comp = nbs[nbs["component_p_fwe"].astype(float) < alpha]
        for f in comp["feature"].astype(str):
            p = _edge_parts(f)
            if p and p[0] in index and p[1] in index:
                nbs_edges.add((index[p[0]], index[p[1]]))
        n_comp = int(comp["component"].nunique()) if len(comp) else 0
        text_parts.append(f"Network-based statistic: {n_comp} component(s) with p_FWE < "
                          f"{alpha:g} ({len(comp)} edge(s), outlined in black).")
    elif _analysis(summary, "nbs") or (planned and "nbs" in planned):
        text_parts.append(why_absent(summary, "nbs", planned, "nbs.tsv")[1])
    figure_tag = _connectome_figure(t, sig, nbs_edges, names, NETWORKS, alpha)
    notes.append("Left: the group-difference t (ADHD - controls) of every edge; right: only "
                 f"the edges whose max-T p_FWE < {alpha:g}. Outlined blocks: the "
                 "frontostriatal and LC-PFC networks; grey: not tested.")
    strongest = effects.reindex(effects["t"].abs().sort_values(ascending=False).index).head(10)
    cols = [c for c in ("feature", "t", "d", "p", "p_fdr") if c in strongest.columns]
    table = strongest[cols].copy()
    if have_perm:
        table["p_fwe"] = perm.set_index("feature")["p_fwe"].reindex(table["feature"]).to_numpy()
    return Section(f"{title}: connectome view", text="\n\n".join(text_parts), status=status,
                   figures=[figure_tag], table=pd.DataFrame(table),
                   notes=[*notes, "The 10 edges with the largest |t|."])


def _connectome_figure(t: Any, sig: Any, nbs_edges: set[tuple[int, int]],
                       names: Sequence[str], networks: Mapping[str, Any], alpha: float) -> str:
    import numpy as np
    from matplotlib.patches import Rectangle

    from danemap.report._figures import nice_limit

    finite = t[np.isfinite(t)]
    lim, ticks = nice_limit(float(np.abs(finite).max()) if finite.size else 1.0)
    index = {n: i for i, n in enumerate(names)}
    colours = {"frontostriatal": PALETTE["primary"], "lc_pfc": PALETTE["secondary"]}
    with figure(12.0, 6.2) as fig:
        axes = fig.subplots(1, 2)
        for ax, data, sub in ((axes[0], t, "t, uncorrected"),
                              (axes[1], np.where(sig, t, np.nan),
                               f"t where max-T p_FWE < {alpha:g}")):
            ax.set_facecolor("#eeeeee")
            im = ax.imshow(data, cmap="RdBu_r", vmin=-lim, vmax=lim, interpolation="nearest")
            ax.set_xticks(range(len(names)), names, rotation=90, fontsize=6)
            ax.set_yticks(range(len(names)), names, fontsize=6)
            ax.set_title(sub)
            for net, colour in colours.items():
                pairs = networks.get(net, ())
                rows = sorted({index[a] for a, b in pairs if a in index and b in index})
                cols = sorted({index[b] for a, b in pairs if a in index and b in index})
                if not rows or not cols:
                    continue
                for r0, r1, c0, c1 in ((rows[0], rows[-1], cols[0], cols[-1]),
                                       (cols[0], cols[-1], rows[0], rows[-1])):
                    ax.add_patch(Rectangle((c0 - 0.5, r0 - 0.5), c1 - c0 + 1, r1 - r0 + 1,
                                           fill=False, lw=1.8, ec=colour))
                # labelled under its lower-triangle block (x: the rows' regions)
                ax.text(rows[0], cols[-1] + 0.9, net, color=colour, fontsize=8,
                        fontweight="bold", va="top", bbox={"facecolor": "white",
                                                           "alpha": 0.8, "lw": 0})
            for i, j in nbs_edges:
                for a, b in ((i, j), (j, i)):
                    ax.add_patch(Rectangle((b - 0.5, a - 0.5), 1, 1, fill=False, lw=1.2,
                                           ec="black"))
        cbar = fig.colorbar(im, ax=axes, shrink=0.7, ticks=ticks)
        cbar.set_label("group-difference t")
        return img_tag(fig, "connectome: group-difference t of the edges, uncorrected and "
                            "thresholded by max-T")


# ------------------------------------------------------------------ symptoms


def symptoms_forest(sym: Any) -> str:
    """Draw a forest plot of the strongest symptom associations (partial r with 95% CI).

    Returns a sentence instead when no association has a finite r and CI.
    """
    import numpy as np

    from danemap.report._html import forest_plot_svg

    cols = ["r", "ci_low", "ci_high"]
    if not set(cols) <= set(sym.columns):
        return '<p class="missing">symptoms.tsv has no r / ci_low / ci_high columns.</p>'
    finite = np.isfinite(sym[cols].to_numpy(float)).all(axis=1)
    if not finite.any():
        return ('<p class="missing">No association could be estimated (every r or its CI '
                "is undefined: too few participants with scores in each sample), so there "
                "is no forest plot.</p>")
    rows = sym[finite]
    rows = rows.reindex(rows["p"].sort_values().index).head(20) if "p" in rows.columns \
        else rows.head(20)
    labels = [f"{f} ~ {s}" + (f" ({g})" if "sample" in rows.columns else "")
              for f, s, g in zip(rows["feature"], rows["symptom"],
                                 rows["sample"] if "sample" in rows.columns else rows["symptom"],
                                 strict=True)]
    return forest_plot_svg(labels, rows["r"].tolist(), rows["ci_low"].tolist(),
                           rows["ci_high"].tolist(), xlabel="partial correlation r (95% CI)")


# ------------------------------------------------------------------ normative


def normative_section(title: str, folder: Path, summary: Mapping[str, Any],
                      planned: Sequence[str] | None) -> Section | None:
    """Show the normative z by group, and the calibration of the control z per site.

    Returns None when the table neither plans nor records a normative analysis.
    """
    import numpy as np
    import pandas as pd

    heading = f"{title}: normative z-scores"
    z = _read(folder / "normative_z.tsv")
    entry = _analysis(summary, "normative")
    if z is None:
        if not entry and (planned is None or "normative" not in planned):
            return None
        status, text = why_absent(summary, "normative", planned, "normative_z.tsv")
        return Section(heading, status=status, text=text)
    zcols = [c for c in z.columns if c not in ("participant_id", "group", "scored",
                                               "n_extreme")]
    scored = z[z["scored"].astype(str) != "not scored"] if "scored" in z.columns else z
    groups = [g for g in dict.fromkeys(scored["group"].astype(str))] if "group" in \
        scored.columns else ["all"]
    figures = []
    values = {g: scored[scored["group"].astype(str) == g][zcols].to_numpy(float).ravel()
              for g in groups} if "group" in scored.columns else \
        {"all": scored[zcols].to_numpy(float).ravel()}
    values = {g: v[np.isfinite(v)] for g, v in values.items()}
    if any(v.size for v in values.values()):
        figures.append(_normative_figure(values, scored, zcols))
    calib = entry.get("control_calibration") if isinstance(entry, Mapping) else None
    rows = []
    if isinstance(calib, Mapping):
        blocks = [("all sites", calib.get("all"))] + [
            (str(s), e) for s, e in (calib.get("per_site") or {}).items()]
        for s, e in blocks:
            if not isinstance(e, Mapping):
                continue
            sd, frac = e.get("sd"), e.get("frac_extreme")
            ok = (sd is not None and 0.8 <= float(sd) <= 1.25
                  and frac is not None and float(frac) <= 0.10)
            rows.append({"site": s, "controls": e.get("n_controls"), "mean z": e.get("mean"),
                         "SD z": sd, "robust SD": e.get("robust_sd"),
                         "|z| > 2": frac,
                         "calibration": ("n/a" if sd is None else
                                         "ok" if ok else "MISCALIBRATED")})
    small = bool(entry.get("small_reference")) if isinstance(entry, Mapping) else False
    bad = [str(r["site"]) for r in rows if r["calibration"] == "MISCALIBRATED"]
    text = ("Predictive deviation z of each participant against the normative model fitted "
            "on the controls (controls scored out of sample by cross-validation). Well "
            "calibrated control z have mean 0, SD 1 and 4.55% beyond |z| > 2.")
    if small:
        text += ("\n\nSMALL REFERENCE: the normative model was fitted on few controls; its z "
                 "are imprecise and should not be read one participant at a time.")
    if not rows:
        text += "\n\nNo calibration was recorded in summary.json."
    notes = ["Calibration 'ok' when the control SD is within 0.8-1.25 and at most 10% of "
             "control z exceed |2| (display rule of the report, not a test)."]
    if bad:
        notes.insert(0, f"MISCALIBRATED: {', '.join(bad)}.")
    return Section(heading, text=text, figures=figures,
                   table=pd.DataFrame(rows) if rows else None,
                   status="flag" if bad or small else None, notes=notes)


def _normative_figure(values: Mapping[str, Any], scored: Any, zcols: Sequence[str]) -> str:
    import numpy as np

    colours = [PALETTE["primary"], PALETTE["secondary"], *SITE_COLORS[2:]]
    every = np.concatenate([v for v in values.values() if v.size])
    lim = max(4.0, math.ceil(float(np.abs(every).max())))
    bins = np.linspace(-lim, lim, int(4 * lim) + 1)
    with figure(10.0, 3.6) as fig:
        ax, ax2 = fig.subplots(1, 2, width_ratios=[1.2, 1])
        for k, (g, v) in enumerate(values.items()):
            if v.size:
                people = int((scored["group"].astype(str) == g).sum()) if "group" in \
                    scored.columns else len(scored)
                ax.hist(v, bins=bins, density=True, histtype="step", lw=2,
                        color=colours[k % len(colours)],
                        label=f"{str(g)[:20]} ({people} participants, {v.size} z)")
        grid = np.linspace(-lim, lim, 200)
        ax.plot(grid, np.exp(-grid ** 2 / 2) / math.sqrt(2 * math.pi), color="#888888",
                ls="--", lw=1, label="N(0, 1)")
        ax.set_xlabel("normative z (all features)")
        ax.set_ylabel("density")
        ax.legend(frameon=False)
        axis_ticks(ax, "x", 4)
        # mean z per feature by group: the features whose group means differ the most
        if "group" in scored.columns and len(values) > 1:
            means = scored.groupby(scored["group"].astype(str))[list(zcols)].mean()
            spread = (means.max() - means.min()).sort_values(ascending=False)
            feats = list(spread.index[:12])
            y = np.arange(len(feats))
            for k, g in enumerate(means.index):
                ax2.scatter(means.loc[g, feats], y, color=colours[k % len(colours)], s=22,
                            label=str(g), zorder=3)
            ax2.set_yticks(y, [str(f)[:28] for f in feats], fontsize=8)
            ax2.invert_yaxis()
            ax2.axvline(0, color="#888888", lw=0.8)
            ax2.set_xlabel("mean z by group")
            axis_ticks(ax2, "x", 4)
            ax2.legend(frameon=False, fontsize=8)
        else:
            ax2.set_axis_off()
            ax2.text(0.5, 0.5, "one group only", ha="center", va="center",
                     transform=ax2.transAxes)
        return img_tag(fig, "normative z distribution by group")
