"""Resting-state BOLD with known region coupling, real motion confounds and nuisance signals.

Generative model (all in units of the unit-variance region signal):

* latent region signals ``S = filter(W @ chol(C).T)``, ``W`` white, one common AR(1) filter;
* voxel ``v`` of region ``a``: ``S_a + sqrt(sigma2) * filter(e_v)`` (same filter), so the
  expected correlation of two ROI means is
  ``rho_ab = c_ab / sqrt((1 + sigma2 / n_a) (1 + sigma2 / n_b))`` and does not change under
  any later linear filter applied to every voxel;
* every brain voxel also gets a random linear combination of the 6 standardised motion
  parameters and of the WM and CSF nuisance signals (so regressing the 24 motion terms and
  ``white_matter``/``csf`` removes them);
* BOLD = ``scale * (baseline + amplitude * Y)``; zero outside the brain mask.

:func:`simulate_roi_timeseries` runs the same code with region means as the units (noise
and voxel-specific weights of a mean of ``n`` voxels drawn with SD ``1/sqrt(n)``, their
exact distribution), so many-subject studies need not draw every voxel.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from danemap.errors import InputError
from danemap.simulate._common import (
    PFC_STEMS,
    STRIATAL_STEMS,
    atlas_arrays,
    stem,
    template_and_mask,
)
from danemap.simulate._effects import SimulationEffects

MOTION_COLUMNS = ("trans_x", "trans_y", "trans_z", "rot_x", "rot_y", "rot_z")
GROUP_SHIFTED = {"frontostriatal": "fc_frontostriatal_z", "lc_pfc": "fc_lc_pfc_z"}


def _ar1(x: np.ndarray, phi: float) -> np.ndarray:
    """Unit-variance stationary AR(1) filter along axis 0 (input: white, unit variance).

    ``y[t] = phi y[t-1] + sqrt(1 - phi^2) x[t]``, ``y[0] = sqrt(1 - phi^2) x[0]`` (scipy's
    ``lfilter([g], [1, -phi])`` with zero initial state), in float64, one time step at a
    time over all columns: a row-wise recursion on a C-ordered (time, units) array, about
    20x faster than ``lfilter`` along its strided first axis.
    """
    g = np.sqrt(1.0 - phi * phi)
    out = np.empty(x.shape, dtype=np.float64)
    n = len(x)
    if n == 0:
        return out
    np.multiply(x[0], g, out=out[0])
    for t in range(1, n):
        np.multiply(out[t - 1], phi, out=out[t])
        out[t] += g * x[t]
    return out


def _burn_in(phi: float) -> int:
    return 0 if phi == 0 else int(np.ceil(np.log(1e-4) / np.log(abs(phi))))


def build_coupling(names: Sequence[str], networks: Mapping[str, Sequence[tuple[str, str]]],
                   effects: SimulationEffects, *, adhd: bool = False,
                   network_shift_z: Mapping[str, float] | None = None,
                   site_shift_z: float = 0.0,
                   base: Mapping[str, float] | None = None,
                   region_groups: Sequence[str] | None = None,
                   ) -> tuple[np.ndarray, dict[str, list[tuple[str, str]]]]:
    """Latent correlation matrix over ``names`` and the network edges present.

    ``region_groups`` (the atlas ``group`` column) selects the within-group couplings;
    without it, groups are guessed from the region stems.

    Returns
    -------
    C : ndarray (R, R)
        Positive-definite correlation matrix.
    edges : dict
        ``{network: [(a, b), ...]}`` restricted to regions present in ``names``.
    """
    pos = {n: i for i, n in enumerate(names)}
    r = len(names)
    c = np.full((r, r), effects.fc_baseline)
    groups = list(region_groups) if region_groups is not None else [
        "PFC" if stem(n) in PFC_STEMS else "striatum" if stem(n) in STRIATAL_STEMS else stem(n)
        for n in names
    ]
    hemi = [n[-2:] if n.endswith(("_L", "_R")) else "" for n in names]
    is_set = np.eye(r, dtype=bool)
    for i in range(r):
        for j in range(r):
            ipsi = hemi[i] == hemi[j] or not hemi[i] or not hemi[j]
            if ipsi and groups[i] == groups[j] and groups[i] in effects.fc_within_group:
                c[i, j] = effects.fc_within_group[groups[i]]
                is_set[i, j] = True
    base = dict(effects.fc_networks if base is None else base)
    shifts = dict(network_shift_z or {})
    edges: dict[str, list[tuple[str, str]]] = {}
    # Which network owns an edge listed by several: the one with the largest base value.
    owner: dict[tuple[int, int], str] = {}
    for net in sorted(networks):
        pairs = [(a, b) for a, b in networks[net] if a in pos and b in pos and a != b]
        edges[net] = pairs
        if net not in base:
            continue
        for a, b in pairs:
            key = (min(pos[a], pos[b]), max(pos[a], pos[b]))
            if key not in owner or base[net] > base[owner[key]]:
                owner[key] = net
    for (i, j), net in owner.items():
        z = np.arctanh(base[net]) + shifts.get(net, 0.0) + site_shift_z
        if adhd and net in GROUP_SHIFTED:
            z += getattr(effects, GROUP_SHIFTED[net])
        c[i, j] = c[j, i] = np.tanh(z)
        is_set[i, j] = is_set[j, i] = True
    # Indirect coupling: a pair set by no group or network takes at least the product of
    # its strongest shared partner's couplings (max_k c_ak c_kb), as a one-factor model
    # would; without it strong bipartite network blocks are not positive definite.
    off = np.where(is_set & ~np.eye(r, dtype=bool), c, 0.0)
    implied = np.max(off[:, :, None] * off.T[None, :, :], axis=1)
    c = np.where(is_set, c, np.maximum(c, implied))
    np.fill_diagonal(c, 1.0)
    min_eig = float(np.linalg.eigvalsh(c)[0])
    if min_eig <= 1e-8:
        raise InputError(
            f"coupling: the latent correlation matrix is not positive definite (smallest "
            f"eigenvalue {min_eig:.3g}); lower fc_networks / fc_within_group or the shifts"
        )
    return c, edges


def expected_roi_corr(c: np.ndarray, n_vox: np.ndarray, sigma2: float) -> np.ndarray:
    """Return the expected correlation of ROI means: ``c_ab / sqrt((1 + s2/n_a)(1 + s2/n_b))``."""
    att = 1.0 / np.sqrt(1.0 + sigma2 / np.asarray(n_vox, dtype=float))
    rho = c * np.outer(att, att)
    np.fill_diagonal(rho, 1.0)
    return rho


def fd_power(motion: np.ndarray, radius: float = 50.0) -> np.ndarray:
    """Framewise displacement (Power et al. 2012); first value NaN.

    Parameters
    ----------
    motion : ndarray (T, 6)
        Translations (mm) then rotations (radians).
    radius : float
        Head radius converting rotations to mm.
    """
    d = np.abs(np.diff(motion, axis=0))
    fd = d[:, :3].sum(axis=1) + radius * d[:, 3:].sum(axis=1)
    return np.concatenate([[np.nan], fd])


def _motion(rng: np.random.Generator, n: int, n_spikes: int) -> tuple[np.ndarray, list[int]]:
    steps = np.empty((n, 6))
    steps[:, :3] = rng.normal(0.0, 0.02, (n, 3))
    steps[:, 3:] = rng.normal(0.0, 0.0003, (n, 3))
    steps[0] = 0.0
    motion = np.cumsum(steps, axis=0)
    motion -= motion.mean(axis=0)
    spikes: list[int] = []
    if n_spikes and n > 10:
        spikes = sorted(rng.choice(np.arange(5, n - 1), size=min(n_spikes, n - 6),
                                   replace=False).tolist())
        for t in spikes:
            jump = np.concatenate([rng.normal(0, 0.6, 3), rng.normal(0, 0.008, 3)])
            motion[t] += jump
    return motion, spikes


def _cosines(n: int, tr: float, period: float = 128.0) -> np.ndarray:
    order = int(np.floor(2.0 * n * tr / period))
    t = np.arange(n)
    k = np.arange(1, order + 1)
    return np.sqrt(2.0 / n) * np.cos(np.pi * np.outer(2 * t + 1, k) / (2 * n))


def confounds_table(motion: np.ndarray, wm: np.ndarray, csf: np.ndarray,
                    gs: np.ndarray | None, compcor: np.ndarray, tr: float) -> Any:
    """Build an fMRIPrep-style confounds DataFrame (NaN where fMRIPrep writes ``n/a``).

    ``gs`` None leaves out the ``global_signal`` column.
    """
    import pandas as pd

    cols: dict[str, np.ndarray] = {} if gs is None else {"global_signal": gs}
    cols.update({"csf": csf, "white_matter": wm})
    for i, name in enumerate(MOTION_COLUMNS):
        x = motion[:, i]
        d = np.concatenate([[np.nan], np.diff(x)])
        cols[name] = x
        cols[f"{name}_derivative1"] = d
        cols[f"{name}_power2"] = x**2
        cols[f"{name}_derivative1_power2"] = d**2
    cols["framewise_displacement"] = fd_power(motion)
    for i in range(compcor.shape[1]):
        cols[f"a_comp_cor_{i:02d}"] = compcor[:, i]
    cos = _cosines(len(wm), tr)
    for i in range(cos.shape[1]):
        cols[f"cosine{i:02d}"] = cos[:, i]
    return pd.DataFrame(cols)


def _region_groups(atlas: Any, names: Sequence[str]) -> list[str] | None:
    regions = atlas.regions
    if "group" not in regions.columns:
        return None
    by_name = dict(zip(regions["name"].astype(str), regions["group"].astype(str), strict=True))
    return [by_name[n] for n in names]


def _standardise(x: np.ndarray) -> np.ndarray:
    sd = x.std(axis=0)
    return (x - x.mean(axis=0)) / np.where(sd > 0, sd, 1.0)


def _check_run_args(n_volumes: int, tr: float, group: str) -> int:
    if int(n_volumes) != n_volumes or n_volumes < 10:
        raise InputError(f"n_volumes: expected an integer >= 10, found {n_volumes!r}")
    if not tr > 0:
        raise InputError(f"tr: expected a positive repetition time in seconds, found {tr!r}")
    if group not in ("TD", "ADHD"):
        raise InputError(f"group: expected 'TD' or 'ADHD', found {group!r}")
    return int(n_volumes)


@dataclass
class _Grid:
    """The atlas on its grid: brain voxels, their region and each region's voxel count."""

    labels: np.ndarray
    affine: np.ndarray
    mask: np.ndarray
    names: list[str]
    networks: dict[str, Any]
    groups: list[str] | None
    vox: np.ndarray  # flat indices of the brain voxels
    vreg: np.ndarray  # region (position in names) of each brain voxel, -1 outside the atlas
    n_vox: np.ndarray  # brain voxels per region


def _grid(atlas: Any) -> _Grid:
    labels, affine, names, indices = atlas_arrays(atlas)
    _, mask = template_and_mask(labels, affine)
    r = len(names)
    vox = np.flatnonzero(mask.ravel())
    lut = np.full(int(labels.max()) + 1, -1, dtype=np.int64)
    lut[np.asarray(indices)] = np.arange(r)
    vreg = lut[labels.ravel()[vox]]
    n_vox = np.bincount(vreg[vreg >= 0], minlength=r)
    return _Grid(labels, affine, mask, names, dict(getattr(atlas, "networks", {}) or {}),
                 _region_groups(atlas, names), vox, vreg, n_vox)


def _draw_coupling(rng: np.random.Generator, grid: _Grid, eff: SimulationEffects,
                   coupling: Mapping[str, float] | np.ndarray | None, group: str,
                   site_shift_z: float,
                   ) -> tuple[np.ndarray, dict[str, list[tuple[str, str]]], dict[str, float]]:
    """Latent correlation matrix of one subject, the network edges and the subject shifts.

    Subject shifts come from a normal truncated to positive-definite matrices: a draw that
    is not positive definite is redrawn (rare with the defaults).
    """
    names, networks, groups = grid.names, grid.networks, grid.groups
    r = len(names)
    net_shift = {net: float(rng.normal(0.0, eff.fc_subject_sd_z)) for net in sorted(networks)}
    if isinstance(coupling, np.ndarray):
        c = np.asarray(coupling, dtype=float)
        if c.shape != (r, r) or not np.allclose(c, c.T) or not np.allclose(np.diag(c), 1):
            raise InputError(
                f"coupling: expected a symmetric ({r}, {r}) correlation matrix over the "
                f"non-empty atlas regions, found shape {c.shape}"
            )
        if np.linalg.eigvalsh(c)[0] <= 1e-8:
            raise InputError("coupling: the correlation matrix is not positive definite")
        _, edges = build_coupling(names, networks, eff, region_groups=groups)
        return c, edges, net_shift
    if coupling is not None:
        unknown = sorted(set(coupling) - set(networks))
        if unknown:
            raise InputError(
                f"coupling: unknown network(s) {unknown}; atlas networks are "
                f"{sorted(networks)}"
            )
    net_base = None if coupling is None else {**eff.fc_networks, **coupling}
    build_coupling(names, networks, eff, adhd=group == "ADHD",  # no-shift check raises
                   site_shift_z=site_shift_z, region_groups=groups, base=net_base)
    for attempt in range(50):
        try:
            c, edges = build_coupling(
                names, networks, eff, adhd=group == "ADHD", network_shift_z=net_shift,
                site_shift_z=site_shift_z, region_groups=groups, base=net_base,
            )
            break
        except InputError:
            if attempt == 49:
                raise
            net_shift = {net: float(rng.normal(0.0, eff.fc_subject_sd_z))
                         for net in sorted(networks)}
    return c, edges, net_shift


@dataclass
class _Signals:
    """One run's unit signals (signal units) and the nuisance processes behind them."""

    y: np.ndarray  # (T, U) float32
    motion: np.ndarray
    spikes: list[int]
    nuis: np.ndarray  # standardised WM and CSF processes (T, 2)


def _draw_signals(rng: np.random.Generator, c: np.ndarray, unit_region: np.ndarray,
                  unit_scale: np.ndarray | None, n_volumes: int,
                  eff: SimulationEffects) -> _Signals:
    """Draw the signals of U units: voxels (``unit_scale`` None) or region means.

    Unit ``u`` is ``S[region] + sqrt(sigma2) * s_u * filter(e_u) + mix @ (w + s_u * w_u)``
    with ``s_u = 1`` for a voxel. The mean of ``n`` voxels of one region has exactly the
    distribution of a unit with ``s_u = 1 / sqrt(n)`` (iid voxel noise and voxel-specific
    weights average to ``1/sqrt(n)`` of their SD), so region means are drawn directly.
    Units with ``unit_region == -1`` (brain voxels outside the atlas) carry no source.
    """
    phi = eff.fc_ar1
    burn = _burn_in(phi)
    r = c.shape[0]
    n_units = unit_region.size
    chol = np.linalg.cholesky(c)
    sources = _ar1(rng.standard_normal((n_volumes + burn, r)) @ chol.T, phi)[burn:]

    noise = rng.standard_normal((n_volumes + burn, n_units), dtype=np.float32)
    y = _ar1(noise, phi)[burn:].astype(np.float32)
    y *= np.float32(np.sqrt(eff.fc_noise_var))
    if unit_scale is not None:
        y *= unit_scale.astype(np.float32)
    inside = unit_region >= 0
    y[:, inside] += sources.astype(np.float32)[:, unit_region[inside]]

    motion, spikes = _motion(rng, n_volumes, eff.n_spikes)
    nuis = _ar1(rng.standard_normal((n_volumes + burn, 2)), phi)[burn:]
    nuis = _standardise(nuis)
    mix = np.concatenate([_standardise(motion), nuis], axis=1).astype(np.float32)
    # Each unit's weight = a brain-wide weight (shared: biases ROI correlations when not
    # regressed out) + a unit-specific one, both with SD motion/nuisance_strength.
    sd = np.repeat([eff.motion_strength, eff.nuisance_strength], [6, 2])[:, None]
    specific = rng.normal(0.0, 1.0, (8, 1)), rng.normal(0.0, 1.0, (8, n_units))
    own = specific[1] if unit_scale is None else specific[1] * unit_scale
    weights = ((specific[0] + own) * sd).astype(np.float32)
    y += mix @ weights
    return _Signals(y, motion, spikes, nuis)


def _to_image(y: np.ndarray, grid: Any) -> np.ndarray:
    """Paint (T, units) voxel series into a (X, Y, Z, T) float32 image of ``grid``.

    Fortran order (voxels contiguous per volume, as NIfTI stores them): a C-order
    (T, Z, Y, X) buffer transposed to (X, Y, Z, T) is that layout, filled row by row.
    """
    labels, vox = grid.labels, grid.vox
    f_index = np.ravel_multi_index(np.unravel_index(vox, labels.shape), labels.shape, order="F")
    buf = np.zeros((y.shape[0], labels.size), dtype=np.float32)
    buf[:, f_index] = y
    return buf.reshape(y.shape[0], *labels.shape[::-1]).transpose(3, 2, 1, 0)


def _amplitude(eff: SimulationEffects) -> float:
    return eff.bold_baseline * eff.bold_signal_pct / 100.0 / np.sqrt(1.0 + eff.fc_noise_var)


def _run_confounds(rng: np.random.Generator, sig: _Signals, gs: np.ndarray | None,
                   eff: SimulationEffects, intensity_scale: float, tr: float) -> Any:
    """fMRIPrep-style confounds of a run (draws the CompCor-only components)."""
    n_volumes = sig.y.shape[0]
    phi = eff.fc_ar1
    burn = _burn_in(phi)
    amp = _amplitude(eff) * intensity_scale
    base = eff.bold_baseline * intensity_scale
    wm = base * 0.95 + amp * sig.nuis[:, 0]
    csf = base * 1.3 + amp * sig.nuis[:, 1]
    extra = _ar1(rng.standard_normal((n_volumes + burn, 4)), phi)[burn:]
    cc = np.concatenate([sig.nuis, extra], axis=1)
    q, _ = np.linalg.qr(cc - cc.mean(axis=0))
    q *= np.sign(np.diag(q.T @ cc))  # deterministic sign: positive loading
    return confounds_table(sig.motion, wm, csf, gs, q, tr)


def _truth(grid: _Grid, c: np.ndarray, edges: Mapping[str, list[tuple[str, str]]],
           net_shift: Mapping[str, float], sig: _Signals, confounds: Any, group: str,
           eff: SimulationEffects, site_shift_z: float,
           intensity_scale: float) -> dict[str, Any]:
    names = grid.names
    rho = expected_roi_corr(c, grid.n_vox, eff.fc_noise_var)
    pos = {n: i for i, n in enumerate(names)}
    net_truth: dict[str, Any] = {}
    for net, pairs in sorted(edges.items()):
        e_list = []
        for a, b in pairs:
            i, j = pos[a], pos[b]
            e_list.append({"a": a, "b": b, "latent_r": c[i, j], "expected_roi_r": rho[i, j],
                           "expected_roi_z": float(np.arctanh(rho[i, j]))})
        score = float(np.mean([e["expected_roi_z"] for e in e_list])) if e_list else None
        net_truth[net] = {"edges": e_list, "expected_score_z": score,
                          "subject_shift_z": net_shift.get(net, 0.0)}
    fd = confounds["framewise_displacement"].to_numpy()
    return {
        "group": group,
        "regions": names,
        "n_vox": grid.n_vox.tolist(),
        "latent_corr": c,
        "expected_roi_corr": rho,
        "networks": net_truth,
        "site_shift_z": site_shift_z,
        "intensity_scale": intensity_scale,
        "noise_var": eff.fc_noise_var,
        "ar1": eff.fc_ar1,
        "amplitude": _amplitude(eff) * intensity_scale,
        "spike_volumes": sig.spikes,
        "mean_fd": float(np.nanmean(fd)),
        "n_brain_voxels": int(grid.vox.size),
    }


def bold_arrays(atlas: Any, n_volumes: int, tr: float, seed: int | Sequence[int],
                coupling: Mapping[str, float] | np.ndarray | None = None, *,
                group: str = "TD", effects: SimulationEffects | None = None,
                site_shift_z: float = 0.0, intensity_scale: float = 1.0,
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray, Any, dict[str, Any]]:
    """Core of :func:`simulate_bold`; returns (data4d, affine, mask, confounds, truth)."""
    eff = SimulationEffects() if effects is None else effects
    n_volumes = _check_run_args(n_volumes, tr, group)
    rng = np.random.default_rng(seed)
    grid = _grid(atlas)
    c, edges, net_shift = _draw_coupling(rng, grid, eff, coupling, group, site_shift_z)
    sig = _draw_signals(rng, c, grid.vreg, None, n_volumes, eff)
    y = sig.y
    y *= np.float32(_amplitude(eff) * intensity_scale)
    y += np.float32(eff.bold_baseline * intensity_scale)
    data = _to_image(y, grid)

    confounds = _run_confounds(rng, sig, y.mean(axis=1, dtype=np.float64), eff,
                               intensity_scale, tr)
    truth = _truth(grid, c, edges, net_shift, sig, confounds, group, eff, site_shift_z,
                   intensity_scale)
    return data, grid.affine, grid.mask, confounds, truth


def simulate_bold(atlas: Any, n_volumes: int = 120, tr: float = 2.0,
                  seed: int | Sequence[int] = 0,
                  coupling: Mapping[str, float] | np.ndarray | None = None, *,
                  group: str = "TD", effects: SimulationEffects | None = None,
                  site_shift_z: float = 0.0, intensity_scale: float = 1.0,
                  ) -> tuple[Any, Any, dict[str, Any]]:
    """Simulate one resting-state BOLD run on the atlas grid with known region coupling.

    Parameters
    ----------
    atlas : Atlas
        From :func:`danemap.atlas.load_atlas`; its grid is the BOLD grid. Every non-empty
        region carries a latent signal.
    n_volumes : int
        Number of volumes (>= 10).
    tr : float
        Repetition time in seconds.
    seed : int or sequence of int
        Seed of :func:`numpy.random.default_rng`; same seed, same arrays.
    coupling : mapping, ndarray or None
        ``{network: TD latent correlation}`` overriding ``effects.fc_networks``, or a full
        (R, R) latent correlation matrix over the non-empty regions in atlas order (then no
        group, subject or site shift is applied).
    group : {"TD", "ADHD"}
        ADHD lowers frontostriatal and LC-PFC coupling by ``effects.fc_frontostriatal_z`` and
        ``effects.fc_lc_pfc_z`` (Fisher z).
    effects : SimulationEffects or None
        Planted effects and noise levels (defaults if None).
    site_shift_z : float
        Fisher-z shift added to every network edge (site effect).
    intensity_scale : float
        Global multiplicative intensity scale (site effect).

    Returns
    -------
    bold_img : nibabel.Nifti1Image
        4D float32 image, zero outside the brain mask.
    confounds : pandas.DataFrame
        fMRIPrep-style confounds (``NaN`` where fMRIPrep writes ``n/a``).
    truth : dict
        Latent and expected ROI-mean correlations, per-network expected scores
        (mean Fisher z of the expected ROI-mean correlation over the network's edges),
        voxel counts, spikes and noise settings.

    Raises
    ------
    InputError
        If an argument is out of range or the coupling is not positive definite.
    """
    import nibabel as nib

    data, affine, _, confounds, truth = bold_arrays(
        atlas, n_volumes, tr, seed, coupling, group=group, effects=effects,
        site_shift_z=site_shift_z, intensity_scale=intensity_scale,
    )
    img = nib.Nifti1Image(data, affine)
    img.header.set_xyzt_units("mm", "sec")
    zooms = tuple(float(z) for z in np.abs(np.diag(affine)[:3]))
    img.header.set_zooms((*zooms, float(tr)))
    return img, confounds, truth


def simulate_roi_timeseries(atlas: Any, n_volumes: int = 120, tr: float = 2.0,
                            seed: int | Sequence[int] = 0,
                            coupling: Mapping[str, float] | np.ndarray | None = None, *,
                            group: str = "TD", effects: SimulationEffects | None = None,
                            site_shift_z: float = 0.0, intensity_scale: float = 1.0,
                            ) -> tuple[Any, Any, dict[str, Any]]:
    """Simulate the region-mean time series of one run, without drawing every voxel.

    The generative model of :func:`simulate_bold` (same coupling, subject/group/site
    shifts, AR(1) filter, motion, WM/CSF nuisance and intensities, drawn by the same code),
    with each region mean drawn directly: the mean of ``n`` voxels' iid noise and
    voxel-specific confound weights is drawn with SD ``1/sqrt(n)``, which is exactly its
    distribution. So the series have the distribution of the ROI means of
    :func:`simulate_bold` images (not the same draws: the voxel noise is not drawn), in a
    fraction of the time and memory; use it for many-subject studies (power,
    false-positive rates) through :func:`danemap.markers.process_timeseries`. The same seed
    gives the same latent coupling and region sources as :func:`simulate_bold`.

    Parameters
    ----------
    atlas : Atlas
        From :func:`danemap.atlas.load_atlas`; regions with voxels on its grid get a series,
        their voxel counts (inside the simulated brain mask) set the noise of the means.
    n_volumes : int
        Number of volumes (>= 10).
    tr : float
        Repetition time in seconds.
    seed : int or sequence of int
        Seed of :func:`numpy.random.default_rng`; same seed, same series.
    coupling : mapping, ndarray or None
        As in :func:`simulate_bold`.
    group : {"TD", "ADHD"}
        ADHD lowers frontostriatal and LC-PFC coupling (see :func:`simulate_bold`).
    effects : SimulationEffects or None
        Planted effects and noise levels (defaults if None).
    site_shift_z : float
        Fisher-z shift added to every network edge (site effect).
    intensity_scale : float
        Global multiplicative intensity scale (site effect).

    Returns
    -------
    timeseries : pandas.DataFrame
        Volumes x regions (non-empty atlas regions, atlas order), in BOLD units (baseline
        plus signal, like ``NiftiLabelsMasker`` on the image before cleaning).
    confounds : pandas.DataFrame
        fMRIPrep-style confounds as in :func:`simulate_bold`, without ``global_signal``
        (the mean over every brain voxel needs the voxels).
    truth : dict
        As in :func:`simulate_bold` (``n_vox`` gives each region's voxel count).

    Raises
    ------
    InputError
        If an argument is out of range or the coupling is not positive definite.
    """
    import pandas as pd

    eff = SimulationEffects() if effects is None else effects
    n_volumes = _check_run_args(n_volumes, tr, group)
    rng = np.random.default_rng(seed)
    grid = _grid(atlas)
    c, edges, net_shift = _draw_coupling(rng, grid, eff, coupling, group, site_shift_z)
    r = len(grid.names)
    sig = _draw_signals(rng, c, np.arange(r), 1.0 / np.sqrt(grid.n_vox), n_volumes, eff)
    ts = (eff.bold_baseline * intensity_scale
          + (_amplitude(eff) * intensity_scale) * sig.y.astype(np.float64))
    confounds = _run_confounds(rng, sig, None, eff, intensity_scale, tr)
    truth = _truth(grid, c, edges, net_shift, sig, confounds, group, eff, site_shift_z,
                   intensity_scale)
    return pd.DataFrame(ts, columns=grid.names), confounds, truth
