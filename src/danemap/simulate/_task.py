"""Monetary Incentive Delay (MID) task runs with a planted ventral-striatal reward response.

Timing (:func:`mid_events`, Knutson et al. 2001; ABCD, Casey et al. 2018): ``n_trials``
(60) trials of gain, loss and neutral cues in equal numbers, shuffled. Each trial is a
2 s anticipation cue, a jittered fixation delay (2-2.5 s), a 0.2 s target, a 2 s
outcome (hit with probability ``hit_rate``, as the adaptive MID staircase keeps it near
2/3) and a jittered inter-trial interval (1.5-4.5 s). With TR 2 s a run has about 290
volumes. The events file holds ``gain_anticipation``/``loss_anticipation``/
``neutral_anticipation``, ``target`` and ``<cue>_hit``/``<cue>_miss`` trial types: the
default ``[task] conditions`` coding.

Signal: the resting-state simulator's background (:mod:`danemap.simulate._func`: coupled
region sources, AR(1) voxel noise, motion and WM/CSF mixed into every voxel, the same
fMRIPrep-style confounds) at ``background_pct`` percent signal, plus the task response
``baseline * sum_c A[region, c] * x_c(t) / 100`` with ``x_c`` the condition's boxcar
convolved with the Glover (1999) HRF of unit integral (a response of amplitude ``A`` per
unit of regressor, the scale of nilearn's design), computed here on a 0.05 s grid.

Planted effect: in the NAcc the gain anticipation amplitude of a TD participant is
``nacc_gain`` + N(0, ``subject_sd``) above the neutral one, and an ADHD participant's is
lower by ``d * subject_sd`` (Plichta & Scheres 2014: d = 0.48-0.58); caudate and putamen
respond less; the occipital cortex responds to every cue alike (no contrast), and every
other region does not respond. The measured d is attenuated by the run's estimation
noise; ``truth["expected_observed_d"]`` is not computed, the reliability being design
dependent (see the task family's tests for the measured value).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from danemap.errors import InputError
from danemap.simulate._common import STREAMS, nifti_bytes, stem, write_bytes, write_json
from danemap.simulate._effects import SimulationEffects
from danemap.simulate._func import (
    _amplitude,
    _draw_coupling,
    _draw_signals,
    _grid,
    _run_confounds,
    _to_image,
)

__all__ = ["TASK", "TASK_STREAM", "TaskSimParams", "mid_events", "simulate_mid_roi",
           "simulate_mid_run", "task_responses", "task_subject"]

TASK = "mid"
SPACE = "MNI152NLin2009cAsym"
#: Random stream of the task modality.
TASK_STREAM = STREAMS["task"]
CUES = ("gain", "loss", "neutral")
CONDITIONS = ("gain", "loss", "neutral", "hit", "miss", "outcome_other")


def _amplitudes() -> dict[str, dict[str, float]]:
    # percent signal change per unit of HRF-convolved regressor, TD means
    return {
        "NAcc": {"gain": 0.9, "loss": 0.7, "neutral": 0.3, "hit": 0.5, "miss": 0.1,
                 "outcome_other": 0.2},
        "Caudate": {"gain": 0.6, "loss": 0.5, "neutral": 0.3, "hit": 0.3, "miss": 0.1,
                    "outcome_other": 0.1},
        "Putamen": {"gain": 0.5, "loss": 0.4, "neutral": 0.3, "hit": 0.2, "miss": 0.1,
                    "outcome_other": 0.1},
        "Occipital": {"gain": 0.6, "loss": 0.6, "neutral": 0.6, "hit": 0.3, "miss": 0.3,
                      "outcome_other": 0.3},
    }


@dataclass(frozen=True)
class TaskSimParams:
    """Timing, planted responses and noise of a simulated MID run.

    Parameters
    ----------
    n_trials : int
        Trials (a multiple of 3: gain, loss, neutral).
    tr : float
        Repetition time (s).
    cue_s, target_s, outcome_s : float
        Anticipation cue, target and outcome durations (s).
    delay_s, iti_s : tuple of float
        Uniform ranges of the cue-target delay and of the inter-trial interval (s).
    lead_in_s, tail_s : float
        Fixation before the first trial and after the last (s).
    hit_rate : float
        Probability of a hit.
    amplitudes : dict
        Region stem -> condition -> TD mean amplitude (percent signal per unit regressor).
    nacc_gain_sd : float
        Between-participant SD of the NAcc gain anticipation amplitude (its gain - neutral
        contrast).
    d : float
        ADHD lowers the NAcc gain amplitude by ``d * nacc_gain_sd`` (Cohen's d on the true
        contrast; default 0.5).
    background_pct : float
        Percent signal of the resting-state background (the simulator's
        ``bold_signal_pct``).
    effects : SimulationEffects
        Background coupling, noise, AR(1), motion and intensity settings.
    """

    n_trials: int = 60
    tr: float = 2.0
    cue_s: float = 2.0
    target_s: float = 0.2
    outcome_s: float = 2.0
    delay_s: tuple[float, float] = (2.0, 2.5)
    iti_s: tuple[float, float] = (1.5, 4.5)
    lead_in_s: float = 6.0
    tail_s: float = 14.0
    hit_rate: float = 0.66
    amplitudes: dict[str, dict[str, float]] = field(default_factory=_amplitudes)
    nacc_gain_sd: float = 0.3
    d: float = 0.5
    background_pct: float = 0.5
    effects: SimulationEffects = field(default_factory=SimulationEffects)

    def __post_init__(self) -> None:
        """Validate the settings."""
        if self.n_trials < 3 or self.n_trials % 3:
            raise InputError(f"n_trials: expected a positive multiple of 3, found "
                             f"{self.n_trials!r}")
        if not self.tr > 0:
            raise InputError(f"tr: expected a positive repetition time, found {self.tr!r}")
        if not 0 <= self.hit_rate <= 1:
            raise InputError(f"hit_rate: expected a probability, found {self.hit_rate!r}")
        for name in ("delay_s", "iti_s"):
            lo, hi = getattr(self, name)
            if not 0 <= lo <= hi:
                raise InputError(f"{name}: expected 0 <= low <= high, found {(lo, hi)}")
        bad = sorted({c for v in self.amplitudes.values() for c in v} - set(CONDITIONS))
        if bad:
            raise InputError(f"amplitudes: unknown conditions {bad}; expected among "
                             f"{list(CONDITIONS)}")


def _params(p: TaskSimParams | SimulationEffects | None) -> TaskSimParams:
    if p is None:
        return TaskSimParams()
    if isinstance(p, SimulationEffects):
        return TaskSimParams(effects=p)
    if isinstance(p, TaskSimParams):
        return p
    raise InputError(f"params: expected TaskSimParams or SimulationEffects, found "
                     f"{type(p).__name__}")


def mid_events(rng: np.random.Generator, params: TaskSimParams | None = None) -> tuple[Any, int]:
    """Draw one MID run's events (raw BIDS trial types) and its number of volumes.

    Parameters
    ----------
    rng : numpy.random.Generator
        Random generator.
    params : TaskSimParams or None
        Timing.

    Returns
    -------
    events : pandas.DataFrame
        ``onset, duration, trial_type`` sorted by onset.
    n_volumes : int
    """
    import pandas as pd

    p = TaskSimParams() if params is None else params
    cues = np.repeat(np.array(CUES), p.n_trials // 3)
    rng.shuffle(cues)
    hits = rng.random(p.n_trials) < p.hit_rate
    rows = []
    t = p.lead_in_s
    for cue, hit in zip(cues, hits, strict=True):
        rows.append((t, p.cue_s, f"{cue}_anticipation"))
        t_target = t + p.cue_s + rng.uniform(*p.delay_s)
        rows.append((t_target, p.target_s, "target"))
        t_out = t_target + p.target_s
        rows.append((t_out, p.outcome_s, f"{cue}_{'hit' if hit else 'miss'}"))
        t = t_out + p.outcome_s + rng.uniform(*p.iti_s)
    n_volumes = int(np.ceil((t + p.tail_s) / p.tr))
    ev = pd.DataFrame(rows, columns=["onset", "duration", "trial_type"])
    ev["onset"] = ev["onset"].round(3)
    return ev, n_volumes


def _condition(trial_type: str) -> str | None:
    if trial_type.endswith("_anticipation"):
        return trial_type.removesuffix("_anticipation")
    if trial_type in ("gain_hit", "gain_miss"):
        return trial_type.removeprefix("gain_")
    if trial_type.endswith(("_hit", "_miss")):
        return "outcome_other"
    return None


def task_responses(events: Any, n_volumes: int, tr: float, dt: float = 0.05) -> np.ndarray:
    """Unit-amplitude responses of each condition at the frame times ``k * tr``.

    Each condition's boxcar (sampled every ``dt`` s) convolved with the Glover HRF
    (delay 6 s, undershoot 12 s, dispersion 0.9, ratio 0.48) of unit integral, so a
    sustained event reaches 1.

    Parameters
    ----------
    events : pandas.DataFrame
        Raw MID events (``trial_type`` as written by :func:`mid_events`).
    n_volumes : int
        Volumes.
    tr : float
        Repetition time (s).
    dt : float
        Time step of the convolution (s).

    Returns
    -------
    ndarray (T, len(CONDITIONS))
    """
    from scipy.signal import fftconvolve
    from scipy.stats import gamma

    n_fine = int(np.ceil(n_volumes * tr / dt)) + 1
    box = np.zeros((n_fine, len(CONDITIONS)))
    for onset, dur, tt in zip(events["onset"], events["duration"], events["trial_type"],
                              strict=True):
        cond = _condition(str(tt))
        if cond is None:
            continue
        a = round(onset / dt)
        b = max(a + 1, round((onset + dur) / dt))
        box[a:b, CONDITIONS.index(cond)] += 1.0
    s = np.arange(0.0, 32.0, dt)
    h = gamma.pdf(s, 6.0 / 0.9, scale=0.9) - 0.48 * gamma.pdf(s, 12.0 / 0.9, scale=0.9)
    h /= h.sum()
    conv = fftconvolve(box, h[:, None], axes=0)[:n_fine]
    idx = np.round(np.arange(n_volumes) * tr / dt).astype(int)
    return np.asarray(conv[idx])


def _subject_amplitudes(rng: np.random.Generator, names: Sequence[str], group: str,
                        p: TaskSimParams) -> np.ndarray:
    """(R, C) amplitudes of one participant (percent signal per unit regressor)."""
    amp = np.zeros((len(names), len(CONDITIONS)))
    for i, n in enumerate(names):
        for c, v in p.amplitudes.get(stem(n), {}).items():
            amp[i, CONDITIONS.index(c)] = v
    shift = float(rng.normal(0.0, p.nacc_gain_sd))
    if group == "ADHD":
        shift -= p.d * p.nacc_gain_sd
    g = CONDITIONS.index("gain")
    for i, n in enumerate(names):
        if stem(n) == "NAcc":
            amp[i, g] += shift
    return amp


def _truth(names: Sequence[str], amp: np.ndarray, events: Any, n_volumes: int, group: str,
           p: TaskSimParams, confounds: Any) -> dict[str, Any]:
    ci = {c: i for i, c in enumerate(CONDITIONS)}
    contrasts = {
        "gain_minus_neutral": amp[:, ci["gain"]] - amp[:, ci["neutral"]],
        "loss_minus_neutral": amp[:, ci["loss"]] - amp[:, ci["neutral"]],
        "hit_minus_miss": amp[:, ci["hit"]] - amp[:, ci["miss"]],
    }
    counts = events["trial_type"].value_counts().to_dict()
    fd = confounds["framewise_displacement"].to_numpy()
    planted = sorted({n for n in names if stem(n) in p.amplitudes})
    return {
        "group": group, "task": TASK, "n_volumes": int(n_volumes), "tr": p.tr,
        "regions": list(names),
        "amplitudes": {n: dict(zip(CONDITIONS, amp[i].tolist(), strict=True))
                       for i, n in enumerate(names) if np.any(amp[i])},
        "contrasts": {k: {n: float(v[i]) for i, n in enumerate(names)}
                      for k, v in contrasts.items()},
        "planted_regions": planted,
        "d": p.d, "nacc_gain_sd": p.nacc_gain_sd,
        "events_per_type": {str(k): int(v) for k, v in counts.items()},
        "mean_fd": float(np.nanmean(fd)),
    }


_GRIDS: dict[int, tuple[Any, Any]] = {}


def _atlas_grid(atlas: Any) -> Any:
    """Return the simulator grid of ``atlas``, cached for many-participant studies."""
    hit = _GRIDS.get(id(atlas))
    if hit is not None and hit[0] is atlas:
        return hit[1]
    grid = _grid(atlas)
    if len(_GRIDS) > 8:
        _GRIDS.clear()
    _GRIDS[id(atlas)] = (atlas, grid)
    return grid


def _background_effects(p: TaskSimParams) -> SimulationEffects:
    return dataclasses.replace(p.effects, bold_signal_pct=p.background_pct)


def simulate_mid_roi(atlas: Any, seed: int | Sequence[int] = 0, group: str = "TD",
                     params: TaskSimParams | SimulationEffects | None = None, *,
                     site_shift_z: float = 0.0, intensity_scale: float = 1.0,
                     ) -> tuple[Any, Any, Any, dict[str, Any]]:
    """Simulate one MID run's region-mean series without drawing every voxel.

    The background is :func:`danemap.simulate.simulate_roi_timeseries`' (region means
    drawn with their exact distribution); the task response is added to each region.

    Parameters
    ----------
    atlas : Atlas
        Regions and grid.
    seed : int or sequence of int
        Seed; same seed, same run.
    group : {"TD", "ADHD"}
        Diagnostic group (ADHD: lower NAcc gain response).
    params : TaskSimParams, SimulationEffects or None
        Settings (SimulationEffects: the default task settings with that background).
    site_shift_z, intensity_scale : float
        Site effects on the background coupling and on the intensity.

    Returns
    -------
    timeseries : pandas.DataFrame
        Volumes x regions, BOLD units.
    confounds : pandas.DataFrame
        fMRIPrep-style confounds.
    events : pandas.DataFrame
        The raw events.
    truth : dict
        Planted amplitudes and contrasts per region, events per type.
    """
    import pandas as pd

    p = _params(params)
    if group not in ("TD", "ADHD"):
        raise InputError(f"group: expected 'TD' or 'ADHD', found {group!r}")
    eff = _background_effects(p)
    rng = np.random.default_rng(seed)
    events, n_volumes = mid_events(rng, p)
    grid = _atlas_grid(atlas)
    amp = _subject_amplitudes(rng, grid.names, group, p)
    c, _, _ = _draw_coupling(rng, grid, eff, None, "TD", site_shift_z)
    r = len(grid.names)
    sig = _draw_signals(rng, c, np.arange(r), 1.0 / np.sqrt(grid.n_vox), n_volumes, eff)
    resp = task_responses(events, n_volumes, p.tr) @ amp.T  # (T, R) percent
    base = eff.bold_baseline * intensity_scale
    ts = base * (1.0 + resp / 100.0) + (_amplitude(eff) * intensity_scale) * sig.y
    confounds = _run_confounds(rng, sig, None, eff, intensity_scale, p.tr)
    truth = _truth(grid.names, amp, events, n_volumes, group, p, confounds)
    return pd.DataFrame(ts, columns=grid.names), confounds, events, truth


def simulate_mid_run(atlas: Any, seed: int | Sequence[int] = 0, group: str = "TD",
                     params: TaskSimParams | SimulationEffects | None = None, *,
                     site_shift_z: float = 0.0, intensity_scale: float = 1.0,
                     ) -> tuple[np.ndarray, np.ndarray, np.ndarray, Any, Any, dict[str, Any]]:
    """Simulate one MID run voxel by voxel on the atlas grid.

    Parameters
    ----------
    atlas : Atlas
        Regions and grid (the BOLD grid).
    seed : int or sequence of int
        Seed; same seed, same run.
    group : {"TD", "ADHD"}
        Diagnostic group.
    params : TaskSimParams, SimulationEffects or None
        Settings.
    site_shift_z, intensity_scale : float
        Site effects.

    Returns
    -------
    data : ndarray (X, Y, Z, T) float32
        BOLD, zero outside the brain mask.
    affine : ndarray
    mask : ndarray of bool
        Brain mask.
    confounds : pandas.DataFrame
    events : pandas.DataFrame
    truth : dict
    """
    p = _params(params)
    if group not in ("TD", "ADHD"):
        raise InputError(f"group: expected 'TD' or 'ADHD', found {group!r}")
    eff = _background_effects(p)
    rng = np.random.default_rng(seed)
    events, n_volumes = mid_events(rng, p)
    grid = _grid(atlas)
    amp = _subject_amplitudes(rng, grid.names, group, p)
    c, _, _ = _draw_coupling(rng, grid, eff, None, "TD", site_shift_z)
    sig = _draw_signals(rng, c, grid.vreg, None, n_volumes, eff)
    y = sig.y
    y *= np.float32(_amplitude(eff) * intensity_scale)
    base = eff.bold_baseline * intensity_scale
    resp = (task_responses(events, n_volumes, p.tr) @ amp.T) * (base / 100.0)  # (T, R)
    y += np.float32(base)
    inside = grid.vreg >= 0
    y[:, inside] += resp.astype(np.float32)[:, grid.vreg[inside]]
    data = _to_image(y, grid)
    confounds = _run_confounds(rng, sig, y.mean(axis=1, dtype=np.float64), eff,
                               intensity_scale, p.tr)
    truth = _truth(grid.names, amp, events, n_volumes, group, p, confounds)
    return data, grid.affine, grid.mask, confounds, events, truth


def task_subject(out: Path, sub: str, row: Mapping[str, Any], site: Mapping[str, Any],
                 atlas: Any, idx: int, seed: int,
                 params: TaskSimParams | SimulationEffects | None = None) -> dict[str, Any]:
    """Write one participant's MID run (fMRIPrep-style BOLD, mask, confounds; raw events).

    Files: ``derivatives/fmriprep/<sub>/func/<sub>_task-mid_space-MNI152NLin2009cAsym_
    res-<r>_desc-preproc_bold.nii.gz`` (+ JSON), ``..._desc-brain_mask.nii.gz``,
    ``<sub>_task-mid_desc-confounds_timeseries.tsv`` (+ JSON) and the raw
    ``<sub>/func/<sub>_task-mid_events.tsv`` (+ ``_bold.json`` with the TR).

    Parameters
    ----------
    out : Path
        Dataset root.
    sub : str
        ``sub-XX``.
    row : mapping
        The participant's row (``group``).
    site : mapping
        The site draw (``fc_shift_z``, ``bold_intensity_scale``).
    atlas : Atlas
        Regions and grid.
    idx : int
        Participant index (random stream).
    seed : int
        Cohort seed.
    params : TaskSimParams, SimulationEffects or None
        Settings (the cohort's SimulationEffects: default task settings on that
        background).

    Returns
    -------
    dict
        The participant's task truth (planted amplitudes and contrasts per region).
    """
    p = _params(params)
    data, affine, mask, conf, events, truth = simulate_mid_run(
        atlas, [int(seed), TASK_STREAM, int(idx)], str(row["group"]), p,
        site_shift_z=float(site.get("fc_shift_z", 0.0)),
        intensity_scale=float(site.get("bold_intensity_scale", 1.0)))
    res = round(float(np.sqrt((affine[:3, 0] ** 2).sum())))
    zooms = (float(res),) * 3
    base = out / "derivatives" / "fmriprep" / sub / "func"
    stem_ = f"{sub}_task-{TASK}_space-{SPACE}_res-{res}"
    write_bytes(base / f"{stem_}_desc-preproc_bold.nii.gz",
                nifti_bytes(data, affine, zooms=(*zooms, float(p.tr))))
    write_json(base / f"{stem_}_desc-preproc_bold.json", {
        "RepetitionTime": float(p.tr), "SkullStripped": False, "TaskName": TASK,
        "SliceTimingCorrected": False, "StartTime": 0.0,
        "Sources": [f"bids:raw:{sub}/func/{sub}_task-{TASK}_bold.nii.gz"]})
    write_bytes(base / f"{stem_}_desc-brain_mask.nii.gz",
                nifti_bytes(mask, affine, dtype=np.uint8, zooms=zooms))
    write_json(base / f"{stem_}_desc-brain_mask.json", {"Type": "Brain", "RawSources": []})
    text = conf.to_csv(sep="\t", index=False, na_rep="n/a", float_format="%.8g",
                       lineterminator="\n")
    write_bytes(base / f"{sub}_task-{TASK}_desc-confounds_timeseries.tsv", text.encode())
    write_json(base / f"{sub}_task-{TASK}_desc-confounds_timeseries.json",
               {c: {"Description": "simulated fMRIPrep-style confound"} for c in conf.columns})
    raw = out / sub / "func"
    ev_text = events.to_csv(sep="\t", index=False, float_format="%.3f", lineterminator="\n")
    write_bytes(raw / f"{sub}_task-{TASK}_events.tsv", ev_text.encode())
    write_json(raw / f"{sub}_task-{TASK}_events.json", {
        "trial_type": {"Description": "MID event: <cue>_anticipation (2 s cue), target, "
                                      "<cue>_hit / <cue>_miss (outcome)"}})
    return truth
