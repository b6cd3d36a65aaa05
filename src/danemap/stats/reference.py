"""Compare danemap's case-control effect sizes with a published reference (ENIGMA-ADHD).

Reference-table format
----------------------
:func:`load_reference` reads a comma- or tab-separated table in either form:

1. **ENIGMA Toolbox format** (the ``adhd*_case-controls_SubVol.csv`` files of the
   ENIGMA-ADHD working group, Hoogman et al. 2017, Lancet Psychiatry 4:310):
   first column = the analysis label (its header names the measure, e.g.
   ``SubcorticalVolume``), then ``Structure`` (``Laccumb``, ``Lamyg``, ``Lcaud``,
   ``Lhippo``, ``Lpal``, ``Lput``, ``Lthal`` and their ``R`` counterparts),
   ``d_icv`` (Cohen's d, ICV-corrected), ``se_icv``, ``low_ci_icv``, ``up_ci_icv``
   (95% CI), ``n_controls``, ``n_patients``, ``pobs`` (p) and ``fdr_p``.
2. **Generic format**: columns ``structure`` (one of ``accumbens``, ``amygdala``,
   ``caudate``, ``hippocampus``, ``pallidum``, ``putamen``, ``thalamus``, optionally
   prefixed ``L``/``R`` as in ENIGMA), ``d``, ``ci_low``, ``ci_high`` and optionally
   ``hemisphere`` (``L``, ``R`` or ``bilateral``), ``n_controls``, ``n_patients``,
   ``p``, ``measure``.

Rows with an empty ``d`` (e.g. ``LLatVent``) are dropped.

Feature mapping
---------------
A feature maps to a structure when its name, split on non-alphanumeric characters
and case-insensitive, holds a structure token (``caudate``/``caud``, ``putamen``/``put``,
``pallidum``/``pal``/``gp``, ``thalamus``/``thal``, ``hippocampus``/``hippo``,
``amygdala``/``amyg``, ``accumbens``/``accumb``/``nacc``/``acc`` next to ``n``) and
at most one hemisphere token (``l``/``left``/``lh`` or ``r``/``right``/``rh``).
Lateralised features are compared with the same-side reference row; a feature without
hemisphere is compared with the average of the left and right rows (d and CI limits
averaged). Names such as ``ParaHippocampal_L`` do not match (the token is
``parahippocampal``).
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from danemap.errors import InputError

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["AGE_GROUPS", "STRUCTURES", "compare_to_reference", "load_reference", "map_feature",
           "resolve_reference"]

#: Age groups of the ENIGMA-ADHD tables (``adhd<age>_case-controls_SubVol.csv``).
AGE_GROUPS = ("allages", "pediatric", "adolescent", "adult")
REFERENCE_ENV = "DANEMAP_REFERENCE_DIR"

#: Canonical structure names and the name tokens that map to them.
STRUCTURES: dict[str, tuple[str, ...]] = {
    "accumbens": ("accumbens", "accumb", "nacc", "accbns"),
    "amygdala": ("amygdala", "amyg"),
    "caudate": ("caudate", "caud"),
    "hippocampus": ("hippocampus", "hippo", "hipp"),
    "pallidum": ("pallidum", "pal", "pall", "gp", "globuspallidus"),
    "putamen": ("putamen", "put"),
    "thalamus": ("thalamus", "thal"),
}
_TOKEN_TO_STRUCTURE = {tok: s for s, toks in STRUCTURES.items() for tok in toks}
_LEFT = {"l", "left", "lh", "lt"}
_RIGHT = {"r", "right", "rh", "rt"}
_ENIGMA_STRUCT = re.compile(r"^(?P<hemi>[LR])(?P<name>[a-z]+)$")


def map_feature(name: str) -> tuple[str, str] | None:
    """Map a feature name to ``(structure, hemisphere)`` or ``None``.

    Parameters
    ----------
    name : str
        Feature name such as ``Caudate_L``, ``left-putamen``, ``N_Acc_R`` or ``thal``.

    Returns
    -------
    tuple of str or None
        Canonical structure (see :data:`STRUCTURES`) and ``"L"``, ``"R"`` or
        ``"bilateral"``; ``None`` when no single structure matches.
    """
    tokens = [t for t in re.split(r"[^0-9a-zA-Z]+", name.lower()) if t]
    # AAL3 writes the nucleus accumbens as N_Acc
    joined = []
    i = 0
    while i < len(tokens):
        if tokens[i] == "n" and i + 1 < len(tokens) and tokens[i + 1] == "acc":
            joined.append("nacc")
            i += 2
            continue
        joined.append(tokens[i])
        i += 1
    structures = {_TOKEN_TO_STRUCTURE[t] for t in joined if t in _TOKEN_TO_STRUCTURE}
    hemis = {"L" for t in joined if t in _LEFT} | {"R" for t in joined if t in _RIGHT}
    if len(structures) != 1 or len(hemis) > 1:
        return None
    return structures.pop(), (hemis.pop() if hemis else "bilateral")


def _canonical(structure: str) -> str | None:
    token = structure.strip().lower()
    if token in STRUCTURES:
        return token
    return _TOKEN_TO_STRUCTURE.get(token)


def resolve_reference(setting: str, age: str = "allages",
                      start: str | os.PathLike[str] | None = None) -> Path | None:
    """Return the reference table that ``[stats] reference`` names (None: none).

    Parameters
    ----------
    setting : str
        ``""`` (no reference), a table, a folder of ENIGMA-ADHD CSVs, or ``"auto"``: the
        folder ``enigma-adhd`` under ``$DANEMAP_REFERENCE_DIR``, else
        ``shared/data/enigma-adhd`` in ``start`` or one of its parents.
    age : str
        Age group of the ENIGMA-ADHD subcortical table taken from a folder (one of
        :data:`AGE_GROUPS`).
    start : path-like or None
        Where ``"auto"`` starts looking (default: the working folder).

    Returns
    -------
    pathlib.Path or None
        The table; None when ``setting`` is empty, or ``"auto"`` finds none.

    Raises
    ------
    InputError
        If an explicit ``setting`` does not exist, or its folder lacks the table, or
        ``age`` is unknown.
    """
    if age not in AGE_GROUPS:
        raise InputError(f"stats.reference_age: expected one of {list(AGE_GROUPS)}, "
                         f"found {age!r}")
    if not setting:
        return None
    name = f"adhd{age}_case-controls_SubVol.csv"
    if setting == "auto":
        folders = []
        if os.environ.get(REFERENCE_ENV):
            folders.append(Path(os.environ[REFERENCE_ENV]) / "enigma-adhd")
        here = Path(start if start is not None else Path.cwd()).resolve()
        folders += [d / "shared" / "data" / "enigma-adhd" for d in (here, *here.parents)]
        return next((f / name for f in folders if (f / name).is_file()), None)
    path = Path(setting)
    if path.is_dir():
        path = path / name
    if not path.is_file():
        raise InputError(f"stats.reference: expected an ENIGMA-format table or a folder "
                         f"holding {name}, found no file {path}")
    return path


def load_reference(path: str | os.PathLike[str]) -> pd.DataFrame:
    """Read a reference effect-size table (see the module docstring for the format).

    Parameters
    ----------
    path : path-like
        ENIGMA-format CSV or generic CSV/TSV.

    Returns
    -------
    pandas.DataFrame
        Columns ``structure``, ``hemisphere``, ``d``, ``ci_low``, ``ci_high``,
        ``n_controls``, ``n_patients``, ``p``, ``measure``, ``source``.

    Raises
    ------
    InputError
        The file is missing, a required column is absent, a structure is unknown, or
        a d or CI value is not numeric.
    """
    import pandas as pd

    p = Path(path)
    if not p.is_file():
        raise InputError(f"reference table {p}: file not found")
    sep = "\t" if p.suffix.lower() in {".tsv", ".txt"} else ","
    try:
        raw = pd.read_csv(p, sep=sep, dtype=str, keep_default_na=False,
                          na_values=["", "n/a", "NA", "nan"])
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise InputError(f"reference table {p}: not a readable table ({exc})") from exc
    cols = {c.strip(): c for c in raw.columns}
    if "Structure" in cols and "d_icv" in cols:
        measure = str(raw.columns[0]).strip()
        ren = {"Structure": "structure", "d_icv": "d", "low_ci_icv": "ci_low",
               "up_ci_icv": "ci_high", "pobs": "p"}
        df = raw.rename(columns={cols[k]: v for k, v in ren.items() if k in cols})
        df["measure"] = measure
        df["source"] = df[raw.columns[0]].astype(str)
    else:
        df = raw.rename(columns={c: c.strip().lower() for c in raw.columns})
        if "measure" not in df.columns:
            df["measure"] = "unspecified"
        df["source"] = p.name
    need = ["structure", "d", "ci_low", "ci_high"]
    missing = [c for c in need if c not in df.columns]
    if missing:
        raise InputError(
            f"reference table {p}: expected columns {need} (generic format) or the ENIGMA "
            f"columns Structure, d_icv, low_ci_icv, up_ci_icv; missing {missing}, found "
            f"{list(raw.columns)}"
        )
    df = df[df["d"].notna()].copy()
    if df.empty:
        raise InputError(f"reference table {p}: no row has a d value")
    structs, hemis = [], []
    for s, h in zip(df["structure"].astype(str),
                    df.get("hemisphere", pd.Series([None] * len(df), index=df.index)),
                    strict=True):
        m = _ENIGMA_STRUCT.match(s.strip())
        hemi = str(h).strip() if isinstance(h, str) else "bilateral"
        name = s
        if m and _canonical(m["name"]) is not None:
            name, hemi = m["name"], m["hemi"]
        canon = _canonical(name)
        if canon is None:
            raise InputError(f"reference table {p}: unknown structure {s!r}; expected one of "
                             f"{sorted(STRUCTURES)} (optionally prefixed L/R)")
        if hemi not in {"L", "R", "bilateral"}:
            raise InputError(f"reference table {p}: hemisphere of {s!r} must be L, R or "
                             f"bilateral, found {hemi!r}")
        structs.append(canon)
        hemis.append(hemi)
    out = pd.DataFrame({"structure": structs, "hemisphere": hemis})
    for col in ("d", "ci_low", "ci_high", "n_controls", "n_patients", "p"):
        vals = df[col] if col in df.columns else pd.Series([None] * len(df), index=df.index)
        num = pd.to_numeric(vals, errors="coerce")
        bad = num.isna() & vals.notna()
        if bad.any():
            raise InputError(f"reference table {p}: column {col!r} must be numeric, found "
                             f"{vals[bad].head(3).tolist()}")
        out[col] = num.to_numpy(float)
    out["measure"] = df["measure"].to_numpy()
    out["source"] = df["source"].to_numpy()
    return out


def _lookup(ref: pd.DataFrame, structure: str, hemisphere: str) -> dict[str, float] | None:
    rows = ref[ref["structure"] == structure]
    if rows.empty:
        return None
    cols = ["d", "ci_low", "ci_high", "n_controls", "n_patients"]
    exact = rows[rows["hemisphere"] == hemisphere]
    if not exact.empty:
        use = exact.iloc[[0]]
    elif hemisphere == "bilateral":
        use = rows[rows["hemisphere"].isin(["L", "R"])]
    else:
        use = rows[rows["hemisphere"] == "bilateral"]
    if use.empty:
        return None
    out = {c: float(np.nanmean(use[c].to_numpy(float))) if use[c].notna().any() else np.nan
           for c in cols}
    out["n_rows"] = float(len(use))
    return out


def compare_to_reference(
    effects: pd.DataFrame,
    reference: pd.DataFrame,
    *,
    feature_measure: str = "feature",
    term: str | None = None,
) -> pd.DataFrame:
    """Put danemap's Cohen's d next to the reference d for every mappable feature.

    Parameters
    ----------
    effects : pandas.DataFrame
        Case-control effects with ``feature``, ``d``, ``d_ci_low``, ``d_ci_high``,
        ``n_case`` and ``n_control`` (the output of ``case_control``).
    reference : pandas.DataFrame
        Output of :func:`load_reference`.
    feature_measure : str
        What the features measure (e.g. ``"ALFF"``), written in the ``note`` column.
    term : str or None
        If ``effects`` has a ``term`` column, the row kind to use (default: the
        first term of each feature, the group effect).

    Returns
    -------
    pandas.DataFrame
        ``feature``, ``structure``, ``hemisphere``, ``d``, ``d_ci_low``, ``d_ci_high``,
        ``n_case``, ``n_control``, ``reference_d``, ``reference_ci_low``,
        ``reference_ci_high``, ``reference_n_patients``, ``reference_n_controls``,
        ``d_difference``, ``same_sign``, ``d_within_reference_ci``, ``cis_overlap``,
        ``reference_measure``, ``reference_source``, ``note``. Empty when no feature maps.
    """
    import pandas as pd

    need = ["feature", "d", "d_ci_low", "d_ci_high"]
    missing = [c for c in need if c not in effects.columns]
    if missing:
        raise InputError(f"effects: expected columns {need}, missing {missing}")
    eff = effects
    if "term" in eff.columns:
        if term is None:
            eff = eff.groupby("feature", sort=False).head(1)
        else:
            eff = eff[eff["term"] == term]
    rows = []
    measure = str(reference["measure"].iloc[0]) if len(reference) else ""
    source = str(reference["source"].iloc[0]) if len(reference) else ""
    for _, e in eff.iterrows():
        mapped = map_feature(str(e["feature"]))
        if mapped is None:
            continue
        ref = _lookup(reference, *mapped)
        if ref is None:
            continue
        d, lo, hi = float(e["d"]), float(e["d_ci_low"]), float(e["d_ci_high"])
        rlo, rhi = ref["ci_low"], ref["ci_high"]
        rows.append({
            "feature": e["feature"], "structure": mapped[0], "hemisphere": mapped[1],
            "d": d, "d_ci_low": lo, "d_ci_high": hi,
            "n_case": e.get("n_case", np.nan), "n_control": e.get("n_control", np.nan),
            "reference_d": ref["d"], "reference_ci_low": rlo, "reference_ci_high": rhi,
            "reference_n_patients": ref["n_patients"],
            "reference_n_controls": ref["n_controls"],
            "d_difference": d - ref["d"],
            "same_sign": bool(np.sign(d) == np.sign(ref["d"])) if ref["d"] != 0 else False,
            "d_within_reference_ci": bool(rlo <= d <= rhi),
            "cis_overlap": bool(lo <= rhi and rlo <= hi),
            "reference_measure": measure, "reference_source": source,
            "note": (
                f"danemap {feature_measure} vs reference {measure}"
                + ("; L/R reference rows averaged" if ref["n_rows"] > 1 else "")
                + ("" if feature_measure.lower() in measure.lower() else
                   "; different measures: compare direction and magnitude only")
            ),
        })
    cols = ["feature", "structure", "hemisphere", "d", "d_ci_low", "d_ci_high", "n_case",
            "n_control", "reference_d", "reference_ci_low", "reference_ci_high",
            "reference_n_patients", "reference_n_controls", "d_difference", "same_sign",
            "d_within_reference_ci", "cis_overlap", "reference_measure", "reference_source",
            "note"]
    return pd.DataFrame(rows, columns=cols)


def reference_columns() -> dict[str, str]:
    """Descriptions of the columns of :func:`compare_to_reference` (for sidecars)."""
    return {
        "feature": "danemap feature name",
        "structure": "reference structure the feature maps to",
        "hemisphere": "L, R, or bilateral (L/R reference rows averaged)",
        "d": "danemap Cohen's d (case - control)",
        "d_ci_low": "lower 95% CI of danemap's d",
        "d_ci_high": "upper 95% CI of danemap's d",
        "n_case": "cases in danemap's analysis",
        "n_control": "controls in danemap's analysis",
        "reference_d": "reference Cohen's d",
        "reference_ci_low": "lower 95% CI of the reference d",
        "reference_ci_high": "upper 95% CI of the reference d",
        "reference_n_patients": "patients in the reference study",
        "reference_n_controls": "controls in the reference study",
        "d_difference": "d - reference_d",
        "same_sign": "true when d and reference_d have the same sign",
        "d_within_reference_ci": "true when danemap's d lies inside the reference CI",
        "cis_overlap": "true when the two 95% CIs overlap",
        "reference_measure": "what the reference measured (e.g. SubcorticalVolume)",
        "reference_source": "reference analysis label or file",
        "note": "caveats of the comparison",
    }
