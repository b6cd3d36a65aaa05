"""The planted effects of the simulator, one dataclass with documented defaults."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any

from danemap.errors import InputError

__all__ = ["SimulationEffects"]


def _fc_networks() -> dict[str, float]:
    return {"frontostriatal": 0.4, "lc_pfc": 0.3, "mesolimbic": 0.35, "nigrostriatal": 0.45}


def _fc_within() -> dict[str, float]:
    return {"PFC": 0.4, "striatum": 0.6, "midbrain": 0.3, "cerebellum": 0.4, "occipital": 0.4}


def _dat_bp() -> dict[str, float]:
    # Specific binding (BP_ND) by region stem. Striatal values follow FE-PE2I PET
    # (putamen ~3.1, caudate ~2.5; Hansen et al. 2022 scale033 table); the rest are
    # "small elsewhere" values, the occipital reference has none by construction.
    return {
        "Caudate": 2.5, "Putamen": 3.1, "NAcc": 1.8, "Pallidum": 0.6,
        "SNc": 0.8, "VTA": 0.6, "Thalamus": 0.15, "Occipital": 0.0,
    }


def _vol_d() -> dict[str, float]:
    # ENIGMA-ADHD all-ages subcortical Cohen's d (Hoogman et al. 2017), plus small
    # PFC and cerebellar reductions.
    return {
        "Caudate": -0.11, "Putamen": -0.14, "NAcc": -0.15, "Pallidum": 0.0,
        "Thalamus": -0.03, "DLPFC": -0.05, "VLPFC": -0.05, "OFC": -0.05, "mPFC": -0.05,
        "ACC": -0.05, "Cerebellum": -0.05, "Vermis": -0.05,
    }


@dataclass(frozen=True)
class SimulationEffects:
    """Every planted effect and noise level of :func:`simulate_cohort`.

    Region-keyed settings use the region *stem* (the atlas name without ``_L``/``_R``),
    e.g. ``"Caudate"`` applies to ``Caudate_L`` and ``Caudate_R``.

    Parameters
    ----------
    fc_baseline : float
        Latent correlation between any two regions (default 0.1).
    fc_within_group : dict
        Latent correlation between two same-hemisphere regions (or one midline) of the
        same atlas ``group`` (PFC 0.4,
        striatum 0.6, midbrain 0.3, cerebellum 0.4, occipital 0.4) not otherwise set by a
        network. Pairs set by neither take ``max(fc_baseline, max_k c_ak c_kb)`` (indirect
        coupling), which keeps the matrix positive definite with strong network edges.
    fc_networks : dict
        Latent TD correlation of every edge of each atlas network (``frontostriatal`` 0.4,
        ``lc_pfc`` 0.3, ``mesolimbic`` 0.35, ``nigrostriatal`` 0.45). An edge in two
        networks takes the larger value.
    fc_frontostriatal_z, fc_lc_pfc_z : float
        ADHD minus TD shift of the frontostriatal and LC-PFC edges, in Fisher-z units of the
        latent correlation (default -0.045 each: a latent Cohen's d of -0.3 against
        ``fc_subject_sd_z``, the |d| <= 0.3 the resting-state FC literature supports;
        measured on the network scores of 2,000 + 2,000 runs of 120 volumes from
        :func:`simulate_roi_timeseries` through ``process_timeseries`` with the default
        confounds, d = -0.31 frontostriatal and -0.28 LC-PFC; the former -0.15 gave -0.98
        and -0.84). Power studies and tests that need a detectable effect in a few
        subjects raise it explicitly.
    fc_subject_sd_z : float
        Between-subject SD (Fisher z) of each subject's network shift, drawn once per
        subject and network and applied to all its edges (default 0.15, the order of real
        between-subject variability); a draw giving a matrix that is not positive definite
        is redrawn.
    fc_site_sd_z : float
        SD of a per-site Fisher-z shift added to every network edge (default 0.05); the
        realised site shifts are in ``ground_truth.json``.
    fc_noise_var : float
        Voxel noise variance sigma2 relative to the unit-variance region signal (default 4).
    fc_ar1 : float
        AR(1) coefficient of the common temporal filter shared by region sources and voxel
        noise (default 0.5); correlations are therefore invariant to later linear filtering.
    bold_baseline : float
        Mean BOLD intensity before the site scale (default 1000).
    bold_signal_pct : float
        Standard deviation of region signal plus noise as a percentage of the baseline
        divided by sqrt(1 + sigma2) (default 1.0).
    motion_strength : float
        SD (in units of the unit-variance region signal) of each voxel's weight on each
        standardised motion parameter (default 0.3).
    nuisance_strength : float
        SD of each voxel's weight on the standardised WM and CSF signals (default 0.3).
    n_spikes : int
        High-motion spikes per run (default 3).
    site_intensity_sd : float
        SD of the log of the multiplicative BOLD / T1w global intensity scale drawn per
        site (default 0.1).
    site_scale : tuple of float or None
        Explicit multiplicative site effect on the measured signal: site ``k``
        (``site-{k+1}``) multiplies its BOLD intensity (baseline and fluctuations), its
        SPECT counts (calibration) and its T1w intensity by ``site_scale[k]``, in place of
        the scales drawn from ``site_intensity_sd`` and ``dat_site_scale_sd``. One positive
        factor per site (:func:`simulate_cohort` checks the length against ``n_sites``);
        applied even with ``site_effects=False``, which then leaves this multiplicative
        effect alone. Raw ALFF and image intensities scale with it; correlations, SBR and
        label volumes do not. Default None (drawn scales). The factors are in
        ``ground_truth.json`` (``effects.site_scale`` and each site's scales).
    dat_bp : dict
        TD specific binding BP_ND by region stem; unlisted regions get ``dat_bp_other``.
    dat_bp_other : float
        BP_ND of regions not in ``dat_bp`` (default 0.1).
    dat_adhd_pct : float
        ADHD minus TD change of striatal (caudate, putamen, NAcc) BP, in percent, of an
        ADHD group with as many previously medicated as drug-naive participants
        (default -5). Literature caveat: drug-naive adults show lower striatal DAT
        (Volkow et al. 2009), whereas the meta-analysis of Fusar-Poli et al. (2012,
        Am J Psychiatry 169:264) found DAT 14 % higher on average, lower in drug-naive and
        higher in previously medicated patients; the sign is not settled.
    dat_med_pct : float
        Medication modifier, in percentage points: added to ``dat_adhd_pct`` for ADHD
        participants whose ``med_status`` is ``"stimulant"`` (previously medicated:
        stimulants up-regulate DAT) and subtracted for ``"naive"`` ones. Default 0 (off,
        so that every ADHD participant carries ``dat_adhd_pct``); the literature direction
        (Fusar-Poli et al. 2012: lower in drug-naive, higher in previously medicated
        patients) is a positive value, e.g. 10 gives drug-naive -15 % and previously
        medicated +5 % around a -5 % mean (the magnitude is not pinned down by the
        meta-analysis). ADHD participants without a known status get ``dat_adhd_pct``;
        TD participants are unchanged.
    dat_subject_sd_pct : float
        Between-subject SD of striatal BP, percent (log-normal; default 10).
    dat_site_scale_sd : float
        SD of the multiplicative SPECT calibration scale per site (default 0.1).
    spect_fwhm_mm : float
        Isotropic Gaussian point-spread function of the SPECT scanner (default 8 mm).
    spect_counts : float
        Expected counts per voxel of non-displaceable uptake; sets the Poisson noise
        (default 200).
    vol_d : dict
        Planted Cohen's d (ADHD minus TD) of regional volume by region stem, relative to
        the between-subject SD of log volume (defaults: ENIGMA-ADHD).
    effect_scale : float
        Multiplies every ``vol_d`` (power studies; default 1).
    vol_subject_sd : float
        Between-subject SD of log regional volume, after ICV (default 0.08).
    vol_site_sd : float
        SD of a per-site log-volume bias applied to every region (default 0.02).
    icv_sd : float
        SD of log ICV (global scale; default 0.07).
    """

    fc_baseline: float = 0.1
    fc_within_group: dict[str, float] = field(default_factory=_fc_within)
    fc_networks: dict[str, float] = field(default_factory=_fc_networks)
    fc_frontostriatal_z: float = -0.045
    fc_lc_pfc_z: float = -0.045
    fc_subject_sd_z: float = 0.15
    fc_site_sd_z: float = 0.05
    fc_noise_var: float = 4.0
    fc_ar1: float = 0.5
    bold_baseline: float = 1000.0
    bold_signal_pct: float = 1.0
    motion_strength: float = 0.3
    nuisance_strength: float = 0.3
    n_spikes: int = 3
    site_intensity_sd: float = 0.1
    site_scale: tuple[float, ...] | None = None
    dat_bp: dict[str, float] = field(default_factory=_dat_bp)
    dat_bp_other: float = 0.1
    dat_adhd_pct: float = -5.0
    dat_med_pct: float = 0.0
    dat_subject_sd_pct: float = 10.0
    dat_site_scale_sd: float = 0.1
    spect_fwhm_mm: float = 8.0
    spect_counts: float = 200.0
    vol_d: dict[str, float] = field(default_factory=_vol_d)
    effect_scale: float = 1.0
    vol_subject_sd: float = 0.08
    vol_site_sd: float = 0.02
    icv_sd: float = 0.07

    def __post_init__(self) -> None:
        checks = {
            "fc_noise_var": self.fc_noise_var >= 0,
            "fc_ar1": -1 < self.fc_ar1 < 1,
            "fc_subject_sd_z": self.fc_subject_sd_z >= 0,
            "fc_site_sd_z": self.fc_site_sd_z >= 0,
            "bold_baseline": self.bold_baseline > 0,
            "n_spikes": self.n_spikes >= 0,
            "spect_fwhm_mm": self.spect_fwhm_mm >= 0,
            "spect_counts": self.spect_counts > 0,
            "vol_subject_sd": self.vol_subject_sd > 0,
            "icv_sd": self.icv_sd >= 0,
            "dat_adhd_pct": self.dat_adhd_pct > -100,
            "dat_med_pct": math.isfinite(self.dat_med_pct)
            and self.dat_adhd_pct - abs(self.dat_med_pct) > -100,
        }
        for name, ok in checks.items():
            if not ok:
                raise InputError(
                    f"SimulationEffects.{name}: value {getattr(self, name)!r} is out of range"
                )
        if self.site_scale is not None:
            try:
                if isinstance(self.site_scale, str):
                    raise TypeError
                scale = tuple(float(v) for v in self.site_scale)
            except (TypeError, ValueError):
                raise InputError(
                    f"SimulationEffects.site_scale: expected a sequence of positive numbers "
                    f"(one per site), found {self.site_scale!r}"
                ) from None
            if not scale or not all(math.isfinite(v) and v > 0 for v in scale):
                raise InputError(
                    f"SimulationEffects.site_scale: expected one finite factor > 0 per site, "
                    f"found {self.site_scale!r}"
                )
            object.__setattr__(self, "site_scale", scale)  # frozen: normalise to a tuple
        for name, value in {**self.fc_networks, **self.fc_within_group}.items():
            if not -1 < value < 1:
                raise InputError(
                    f"SimulationEffects.fc_networks/fc_within_group[{name!r}]: expected a "
                    f"correlation in (-1, 1), found {value!r}"
                )

    def to_dict(self) -> dict[str, Any]:
        """Return the effects as a JSON-ready dictionary."""
        return dataclasses.asdict(self)
