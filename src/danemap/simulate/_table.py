"""Region-level feature tables with planted group and site effects (no images).

The harmonisation and group statistics work on feature tables, and the failure that matters
most there (a site effect that *multiplies* the signal, as with ALFF from two scanners) needs
many participants and many seeds to study. :func:`simulate_feature_table` draws such tables
directly: a ``participants`` frame and a ``features`` frame in the layout that
``danemap stats`` reads, plus the planted truth.

Model, for participant ``i`` at site ``s`` and feature ``j``::

    z_ij = d_j * case_i + age_effect * age_std_i + e_ij,      e_ij ~ N(0, 1)
    x_ij = site_scale_s * mean_j * exp(cv * z_ij)              (distribution="lognormal")
    x_ij = site_scale_s * mean_j * (1 + cv * z_ij)             (distribution="normal")

so within every site the case-control effect is ``d_j`` standardised units of ``z`` (the
within-site Cohen's d of ``log x`` for the lognormal model, and of ``x`` for the normal one),
and the site effect is a pure scale factor: site SDs scale with site means, as in the real
ADHD-200 ALFF table (NYU vs Peking: SD ratio 8.0, mean ratio 8.0, equal coefficients of
variation).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from danemap.errors import InputError
from danemap.simulate._common import rng_for

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["simulate_feature_table"]

#: Case fraction per site of the real ADHD-200 NYU (80 of 147) and Peking (50 of 121) tables:
#: unequal case fractions are what turn a multiplicative site effect into a reversed sign.
ADHD200_CASE_FRACTION = (80 / 147, 50 / 121)


def simulate_feature_table(
    n_per_site: Sequence[int] = (130, 130),
    d: float | Mapping[str, float] = 0.3,
    n_features: int = 8,
    site_scale: Sequence[float] = (1.0, 8.0),
    case_fraction: Sequence[float] = ADHD200_CASE_FRACTION,
    cv: float = 0.4,
    age_effect: float = 0.2,
    distribution: str = "lognormal",
    seed: int = 0,
) -> tuple[pd.DataFrame, pd.DataFrame, dict[str, Any]]:
    """Draw a multi-site case-control feature table with known within-site effects.

    Parameters
    ----------
    n_per_site : sequence of int
        Participants per site (at least 4 each).
    d : float or mapping of str to float
        Within-site case-control effect (standardised units), for every feature, or per
        feature name (``feat01``, ``feat02``, ...; features not named get 0).
    n_features : int
        Number of features.
    site_scale : sequence of float
        Multiplicative scale of the measured signal at each site (one per site, > 0).
    case_fraction : sequence of float
        Fraction of cases at each site, in (0, 1); the default is ADHD-200's NYU and
        Peking fractions (0.54, 0.41), repeated if there are more sites.
    cv : float
        Coefficient of variation of the signal within a site (ALFF: about 0.4).
    age_effect : float
        Effect of standardised age on ``z`` (age is also a covariate of the analyses).
    distribution : {"lognormal", "normal"}
        How ``z`` maps to the measured value (see the module docstring).
    seed : int
        Seed; the same seed gives the same tables.

    Returns
    -------
    features : pandas.DataFrame
        ``participant_id`` plus one column per feature.
    participants : pandas.DataFrame
        ``participant_id``, ``site``, ``group`` (ADHD/TD), ``age``, ``sex``.
    truth : dict
        ``d`` per feature, ``site_scale``, ``case_fraction``, ``distribution``, ``cv``.

    Raises
    ------
    InputError
        On a non-positive scale, a site with fewer than 4 participants, a case fraction
        outside (0, 1), or an unknown distribution.
    """
    import pandas as pd

    n_per_site = [int(n) for n in n_per_site]
    scales = [float(s) for s in site_scale]
    if len(scales) != len(n_per_site):
        raise InputError(f"site_scale: expected one factor per site ({len(n_per_site)}), "
                         f"found {len(scales)}")
    if any(s <= 0 for s in scales):
        raise InputError(f"site_scale: expected factors > 0, found {scales}")
    if any(n < 4 for n in n_per_site):
        raise InputError(f"n_per_site: expected at least 4 per site, found {n_per_site}")
    fractions = [float(case_fraction[i % len(case_fraction)]) for i in range(len(n_per_site))]
    if any(not 0 < f < 1 for f in fractions):
        raise InputError(f"case_fraction: expected values in (0, 1), found {fractions}")
    if distribution not in ("lognormal", "normal"):
        raise InputError(f"distribution: expected 'lognormal' or 'normal', found "
                         f"{distribution!r}")
    names = [f"feat{j + 1:02d}" for j in range(int(n_features))]
    if isinstance(d, Mapping):
        unknown = sorted(set(d) - set(names))
        if unknown:
            raise InputError(f"d: unknown feature name(s) {unknown}; features are "
                             f"{names[0]}..{names[-1]}")
        effects = np.array([float(d.get(n, 0.0)) for n in names])
    else:
        effects = np.full(len(names), float(d))
    rng = rng_for(seed, 7)
    means = rng.uniform(0.5, 1.5, len(names))
    rows, values = [], []
    for s, (n, scale, frac) in enumerate(zip(n_per_site, scales, fractions, strict=True)):
        n_case = round(n * frac)
        case = np.zeros(n, bool)
        case[rng.permutation(n)[:n_case]] = True
        age = rng.uniform(7.0, 18.0, n)
        age_std = (age - 12.5) / 3.2
        z = effects * case[:, None] + age_effect * age_std[:, None] \
            + rng.standard_normal((n, len(names)))
        x = np.exp(cv * z) if distribution == "lognormal" else 1.0 + cv * z
        values.append(scale * means * x)
        for i in range(n):
            rows.append({"participant_id": f"sub-s{s + 1}p{i + 1:04d}", "site": f"site{s + 1}",
                         "group": "ADHD" if case[i] else "TD", "age": round(float(age[i]), 2),
                         "sex": "M" if rng.random() < (0.75 if case[i] else 0.55) else "F"})
    participants = pd.DataFrame(rows)
    features = pd.DataFrame(np.vstack(values), columns=names)
    features.insert(0, "participant_id", participants["participant_id"])
    truth = {"d": dict(zip(names, effects.tolist(), strict=True)), "site_scale": scales,
             "case_fraction": fractions, "distribution": distribution, "cv": cv,
             "n_per_site": n_per_site}
    return features, participants, truth
