"""Compartment-model PET time-activity curves for validating the reference-tissue models.

Independent of the fitting code in :mod:`danemap.markers.pet._kinetics`: the TACs come
from integrating the compartment ODEs, not from the models' operational equations.

* **Plasma input** (Feng et al. 1993, their model 2, the parameters of the paper's
  example): ``Cp(t) = (A1 τ - A2 - A3) e^{-λ1 τ} + A2 e^{-λ2 τ} + A3 e^{-λ3 τ}``,
  ``τ = t - delay`` (0 before the delay), ``A1 = 851.1225``, ``A2 = 21.8798``,
  ``A3 = 20.8113`` (kBq/mL/min, kBq/mL), ``λ1 = 4.133859``, ``λ2 = 0.01043449``,
  ``λ3 = 0.1190996`` /min, ``delay = 0.5`` min.
* **Tissue**: the reference region is a one-tissue compartment (``K1'``, ``k2'``); a
  target is a two-tissue compartment (``K1, k2, k3, k4``; ``BP_ND = k3 / k4``) or the
  one-tissue equivalent (``K1``, ``k2a = k2 / (1 + BP_ND)``, exactly the SRTM
  assumption). Targets are parametrised as in SRTM: ``K1 = R1 K1'``, ``k2 = R1 k2'``
  (same non-displaceable distribution volume as the reference).
* **Integration**: the input's exponentials, the compartments and their running
  integrals form one autonomous linear ODE ``x' = A x``; it is solved exactly by the
  matrix exponential from one frame boundary to the next (one ``expm`` per distinct
  step), so frame means are exact (up to rounding) without a time grid. Concentrations
  are tissue-only (blood volume ``vb`` optional).
* **Frames**: :data:`FRAMES_11C` (24 frames, 90 min: 6x30 s, 3x1 min, 2x2 min, 10x5 min,
  3x10 min) and :data:`FRAMES_11C_30` (exactly 30 frames, 90 min: 6x30 s, 3x1 min,
  3x2 min, 6x3 min, 12x5 min), durations in seconds as in PET-BIDS ``FrameDuration``.
* **Noise** (:func:`add_counting_noise`): Gaussian with
  ``σ_i ∝ sqrt(C_i exp(λ t_i) / Δt_i)`` (counting statistics of decay-corrected data,
  ``t_i`` the frame mid-time, ``λ = ln 2 / T½``, [11C] ``T½ = 20.334`` min), scaled so that
  ``level`` is the coefficient of variation of the mid-scan frame (the frame containing
  the scan's middle time; the earlier one if that time is a boundary) of each TAC (or of
  a given reference curve).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from danemap.errors import InputError

__all__ = [
    "FRAMES_11C",
    "FRAMES_11C_30",
    "HALF_LIFE_11C_MIN",
    "FengInput",
    "add_counting_noise",
    "compartment_tacs",
    "dynamic_pet_image",
    "frame_times",
    "reference_target_tacs",
]

#: [11C] 90-min schedule, 24 frames (s).
FRAMES_11C: tuple[float, ...] = ((30.0,) * 6 + (60.0,) * 3 + (120.0,) * 2 + (300.0,) * 10
                                 + (600.0,) * 3)
#: [11C] 90-min schedule with exactly 30 frames (s).
FRAMES_11C_30: tuple[float, ...] = ((30.0,) * 6 + (60.0,) * 3 + (120.0,) * 3
                                    + (180.0,) * 6 + (300.0,) * 12)
HALF_LIFE_11C_MIN = 20.334


@dataclass(frozen=True)
class FengInput:
    """Feng et al. (1993) plasma input function (model 2); defaults: the paper's example.

    Attributes
    ----------
    a1, a2, a3 : float
        Amplitudes (kBq/mL/min, kBq/mL, kBq/mL).
    l1, l2, l3 : float
        Rates (/min).
    delay : float
        Arrival time (min); ``Cp = 0`` before it.
    """

    a1: float = 851.1225
    a2: float = 21.8798
    a3: float = 20.8113
    l1: float = 4.133859
    l2: float = 0.01043449
    l3: float = 0.1190996
    delay: float = 0.5

    def __call__(self, t: Any) -> np.ndarray:
        """Plasma concentration at times ``t`` (minutes)."""
        tau = np.asarray(t, dtype=np.float64) - self.delay
        pos = np.maximum(tau, 0.0)
        cp = ((self.a1 * pos - self.a2 - self.a3) * np.exp(-self.l1 * pos)
              + self.a2 * np.exp(-self.l2 * pos) + self.a3 * np.exp(-self.l3 * pos))
        return np.where(tau > 0, cp, 0.0)


def frame_times(durations_s: Sequence[float] | np.ndarray,
                start_s: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """Contiguous frames from durations: (start, end) in minutes after injection.

    Parameters
    ----------
    durations_s : sequence of float
        Frame durations (seconds), e.g. :data:`FRAMES_11C`.
    start_s : float
        Start of the first frame (seconds after injection).

    Returns
    -------
    start, end : numpy.ndarray
        Minutes.

    Raises
    ------
    InputError
        If a duration is not > 0 or ``start_s`` < 0.
    """
    d = np.asarray(durations_s, dtype=np.float64)
    if d.ndim != 1 or d.size == 0 or not np.isfinite(d).all() or (d <= 0).any():
        raise InputError(f"durations_s: expected a non-empty sequence of durations > 0 "
                         f"(seconds), found {d.tolist()}")
    if not (np.isfinite(start_s) and start_s >= 0):
        raise InputError(f"start_s: expected >= 0 seconds, found {start_s!r}")
    edges = (start_s + np.concatenate([[0.0], np.cumsum(d)])) / 60.0
    return edges[:-1], edges[1:]


def _system(k1: float, k2: float, k3: float, k4: float, p: FengInput) -> np.ndarray:
    """Return A of x' = A x, x = [e1, τ e1, e2, e3, C1, C2, ∫C1, ∫C2, ∫Cp], τ = t - delay."""
    a = np.zeros((9, 9))
    a[0, 0] = -p.l1
    a[1, 0], a[1, 1] = 1.0, -p.l1
    a[2, 2] = -p.l2
    a[3, 3] = -p.l3
    cp = np.array([-(p.a2 + p.a3), p.a1, p.a2, p.a3])  # Cp = cp @ x[:4]
    a[4, :4] = k1 * cp
    a[4, 4], a[4, 5] = -(k2 + k3), k4
    a[5, 4], a[5, 5] = k3, -k4
    a[6, 4] = 1.0
    a[7, 5] = 1.0
    a[8, :4] = cp
    return a


def _check_rates(**rates: float) -> None:
    for name, v in rates.items():
        if not np.isfinite(v) or v < 0:
            raise InputError(f"{name}: expected a finite rate constant >= 0, found {v!r}")


def compartment_tacs(start: Any, end: Any, k1: float, k2: float, k3: float = 0.0,
                     k4: float = 0.0, *, plasma: FengInput | None = None,
                     vb: float = 0.0) -> np.ndarray:
    """Frame means of a one- or two-tissue compartment TAC, integrated exactly.

    ``C1' = K1 Cp - (k2 + k3) C1 + k4 C2``, ``C2' = k3 C1 - k4 C2``; the measured
    concentration is ``(1 - vb)(C1 + C2) + vb Cp``. ``k3 = k4 = 0`` is the one-tissue
    model.

    Parameters
    ----------
    start, end : array_like
        Frame start and end times (minutes after injection).
    k1 : float
        ``K1`` (mL/min/mL).
    k2, k3, k4 : float
        Rate constants (/min).
    plasma : FengInput or None
        The input function; default :class:`FengInput` ().
    vb : float
        Blood volume fraction in [0, 1).

    Returns
    -------
    numpy.ndarray
        (``n_frames``,) frame-mean concentrations (kBq/mL).

    Raises
    ------
    InputError
        On negative rates, ``vb`` outside [0, 1) or malformed frames.
    """
    from scipy.linalg import expm

    _check_rates(k1=k1, k2=k2, k3=k3, k4=k4)
    if not 0.0 <= vb < 1.0:
        raise InputError(f"vb: expected a blood volume fraction in [0, 1), found {vb!r}")
    s, e = _frames(start, end)
    p = FengInput() if plasma is None else plasma
    a = _system(k1, k2, k3, k4, p)
    x0 = np.zeros(9)
    x0[[0, 2, 3]] = 1.0
    edges = np.unique(np.concatenate([s, e]))
    tau = np.maximum(edges - p.delay, 0.0)
    # propagate x(τ_{i+1}) = expm(A Δτ_i) x(τ_i); one expm per distinct step length
    steps = np.diff(np.concatenate([[0.0], tau]))
    cache: dict[float, np.ndarray] = {}
    states = np.empty((edges.size, 9))
    x = x0
    for i, h in enumerate(steps):
        key = round(float(h), 12)
        if key not in cache:
            cache[key] = expm(a * key)
        x = cache[key] @ x
        states[i] = x
    ia = np.searchsorted(edges, s)
    ib = np.searchsorted(edges, e)
    d = states[ib] - states[ia]
    tissue = (d[:, 6] + d[:, 7]) / (e - s)
    blood = d[:, 8] / (e - s)
    return (1.0 - vb) * tissue + vb * blood


def _frames(start: Any, end: Any) -> tuple[np.ndarray, np.ndarray]:
    s = np.asarray(start, dtype=np.float64)
    e = np.asarray(end, dtype=np.float64)
    if s.ndim != 1 or s.shape != e.shape or s.size == 0:
        raise InputError(f"frame times: expected 1-D start and end of equal length, found "
                         f"shapes {s.shape} and {e.shape}")
    if not (np.isfinite(s).all() and np.isfinite(e).all()) or (s < 0).any() \
            or (e <= s).any() or (s[1:] < e[:-1] - 1e-9).any():
        raise InputError("frame times: expected finite, increasing, non-overlapping frames "
                         "(end > start >= 0, minutes)")
    return s, e


def reference_target_tacs(start: Any, end: Any, bpnd: Any, *, r1: Any = 1.0,
                          k2_ref: float = 0.3, k1_ref: float = 0.25, k4: Any = 0.5,
                          target: str = "2tcm", plasma: FengInput | None = None,
                          vb: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """Simulate reference (1TCM) and target TACs with planted ``BP_ND``, ``R1``, ``k2'``.

    The target has ``K1 = R1 K1'``, ``k2 = R1 k2'`` and either two tissue compartments
    with ``k3 = BP_ND k4`` (``target="2tcm"``) or one with ``k2a = k2 / (1 + BP_ND)``
    (``target="1tcm"``, the SRTM assumption, exact for the reference models).

    Parameters
    ----------
    start, end : array_like
        Frame start and end times (minutes after injection).
    bpnd : array_like
        Planted ``BP_ND`` of each target (scalar or 1-D).
    r1 : array_like
        ``R1`` (broadcast with ``bpnd``).
    k2_ref : float
        Reference efflux ``k2'`` (/min).
    k1_ref : float
        Reference ``K1'`` (mL/min/mL).
    k4 : array_like
        Dissociation rate (/min) of the 2TCM (broadcast with ``bpnd``).
    target : {"2tcm", "1tcm"}
        Target model.
    plasma : FengInput or None
        The input function; default :class:`FengInput` ().
    vb : float
        Blood volume fraction of every region.

    Returns
    -------
    cr : numpy.ndarray
        (``n_frames``,) reference TAC.
    ct : numpy.ndarray
        (``n_frames``, ``n_targets``) target TACs.

    Raises
    ------
    InputError
        On an unknown ``target`` or invalid rates.
    """
    if target not in ("2tcm", "1tcm"):
        raise InputError(f"target: expected '2tcm' or '1tcm', found {target!r}")
    bp, rr, kk = np.broadcast_arrays(np.atleast_1d(np.asarray(bpnd, dtype=float)),
                                     np.asarray(r1, dtype=float), np.asarray(k4, dtype=float))
    if bp.ndim != 1:
        raise InputError(f"bpnd: expected a scalar or 1-D array, found shape {bp.shape}")
    cr = compartment_tacs(start, end, k1_ref, k2_ref, plasma=plasma, vb=vb)
    cols = []
    for b, r, k in zip(bp, rr, kk, strict=True):
        if target == "2tcm":
            cols.append(compartment_tacs(start, end, r * k1_ref, r * k2_ref, b * k, k,
                                         plasma=plasma, vb=vb))
        else:
            cols.append(compartment_tacs(start, end, r * k1_ref, r * k2_ref / (1.0 + b),
                                         plasma=plasma, vb=vb))
    return cr, np.stack(cols, axis=1)


def add_counting_noise(tacs: Any, start: Any, end: Any, level: float,
                       rng: np.random.Generator | int | Sequence[int] | None = None, *,
                       half_life_min: float = HALF_LIFE_11C_MIN,
                       reference: Any = None) -> np.ndarray:
    """Add Gaussian counting noise ``σ_i ∝ sqrt(C_i exp(λ t_i) / Δt_i)`` to frame means.

    Parameters
    ----------
    tacs : array_like
        (``n_frames``,) or (``n_frames``, k) decay-corrected frame means.
    start, end : array_like
        Frame start and end times (minutes after injection).
    level : float
        Coefficient of variation of the mid-scan frame (0.05 = "5 % noise").
    rng : numpy.random.Generator, int, sequence of int or None
        Random generator or seed of :func:`numpy.random.default_rng`.
    half_life_min : float
        Radionuclide half-life (minutes); [11C] by default.
    reference : array_like or None
        Curve (``n_frames``,) whose mid-scan CV is ``level`` (one count scale for every
        column, as in one scan); None: each column is scaled on its own mid-scan frame.

    Returns
    -------
    numpy.ndarray
        Noisy copy, same shape.

    Raises
    ------
    InputError
        On ``level`` < 0, a non-positive half-life, or a mid-scan frame <= 0.
    """
    s, e = _frames(start, end)
    c = np.asarray(tacs, dtype=np.float64)
    if c.shape[0] != s.size:
        raise InputError(f"tacs: expected {s.size} frames on axis 0, found shape {c.shape}")
    if not (np.isfinite(level) and level >= 0):
        raise InputError(f"level: expected a coefficient of variation >= 0, found {level!r}")
    if not (np.isfinite(half_life_min) and half_life_min > 0):
        raise InputError(f"half_life_min: expected > 0 minutes, found {half_life_min!r}")
    gen = rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)
    mid = 0.5 * (s + e)
    lam = np.log(2.0) / half_life_min
    fm = int(np.clip(np.searchsorted(e, 0.5 * (s[0] + e[-1]), side="left"), 0, s.size - 1))
    shape = (-1,) + (1,) * (c.ndim - 1)
    var_unit = (np.clip(c, 0.0, None) * np.exp(lam * mid).reshape(shape)
                / (e - s).reshape(shape))
    ref = c if reference is None else np.asarray(reference, dtype=np.float64).reshape(shape)
    if ref.shape[0] != s.size:
        raise InputError(f"reference: expected {s.size} frames, found shape {ref.shape}")
    ref_mid = ref[fm]
    if np.any(ref_mid <= 0):
        raise InputError(f"noise: the mid-scan frame {fm} of the scaling curve is <= 0; "
                         f"the noise level is undefined")
    unit_mid = ref_mid * np.exp(lam * mid[fm]) / (e[fm] - s[fm])
    scale = level * ref_mid / np.sqrt(unit_mid)
    return c + scale * np.sqrt(var_unit) * gen.standard_normal(c.shape)


def dynamic_pet_image(labels: Any, region_params: Mapping[int, Mapping[str, float]],
                      start: Any, end: Any, *, k2_ref: float = 0.3, k1_ref: float = 0.25,
                      reference_label: int | None = None, noise: float = 0.0,
                      seed: int | Sequence[int] = 0, plasma: FengInput | None = None,
                      target: str = "2tcm") -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    """4-D dynamic image from a label image and per-region kinetic parameters.

    Parameters
    ----------
    labels : array_like of int
        3-D label image; 0 is outside (zero signal).
    region_params : mapping of int to mapping
        Label value -> ``{"bpnd": ..., "r1": ..., "k4": ...}`` (``r1`` default 1, ``k4``
        default 0.5 /min). Labels absent from the mapping (other than 0) get the
        reference TAC.
    start, end : array_like
        Frame start and end times (minutes after injection).
    k2_ref, k1_ref : float
        Reference region ``k2'`` (/min) and ``K1'`` (mL/min/mL).
    reference_label : int or None
        Label of the reference region (also gets the reference TAC); recorded in truth.
    noise : float
        Counting-noise level per voxel (mid-scan CV, :func:`add_counting_noise`); 0 for
        none.
    seed : int or sequence of int
        Seed of the noise.
    plasma : FengInput or None
        Input function.
    target : {"2tcm", "1tcm"}
        Target model (:func:`reference_target_tacs`).

    Returns
    -------
    data : numpy.ndarray
        (x, y, z, ``n_frames``) float32.
    ref_tac : numpy.ndarray
        Noise-free reference TAC (``n_frames``,).
    truth : dict
        Planted parameters per label and the settings.

    Raises
    ------
    InputError
        If ``labels`` is not 3-D or a parameter is invalid.
    """
    lab = np.asarray(labels)
    if lab.ndim != 3:
        raise InputError(f"labels: expected a 3-D label image, found shape {lab.shape}")
    s, e = _frames(start, end)
    keys = sorted(int(k) for k in region_params)
    if 0 in keys:
        raise InputError("region_params: label 0 is the outside of the image")
    bp = [float(region_params[k].get("bpnd", 0.0)) for k in keys]
    r1 = [float(region_params[k].get("r1", 1.0)) for k in keys]
    k4 = [float(region_params[k].get("k4", 0.5)) for k in keys]
    cr, ct = reference_target_tacs(s, e, bp if keys else [0.0], r1=r1 if keys else 1.0,
                                   k2_ref=k2_ref, k1_ref=k1_ref, k4=k4 if keys else 0.5,
                                   target=target, plasma=plasma)
    lut = np.repeat(cr[None, :], int(max(lab.max(), max(keys, default=0))) + 1, axis=0)
    lut[0] = 0.0
    for j, k in enumerate(keys):
        lut[k] = ct[:, j]
    data = lut[lab]  # (x, y, z, frames)
    if noise > 0:
        inside = lab > 0
        vox = data[inside].T
        data[inside] = add_counting_noise(vox, s, e, noise, seed).T
    truth = {"model": target, "k2_ref": k2_ref, "k1_ref": k1_ref,
             "reference_label": reference_label, "noise": noise,
             "regions": {k: {"bpnd": b, "r1": r, "k4": q}
                         for k, b, r, q in zip(keys, bp, r1, k4, strict=True)}}
    return data.astype(np.float32), cr, truth
