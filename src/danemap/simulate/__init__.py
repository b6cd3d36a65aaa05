"""danemap.simulate: seeded synthetic BIDS cohorts with planted, recorded effects.

:func:`simulate_cohort` writes a BIDS dataset (raw ``anat/`` and ``pet/``, fMRIPrep-style
``derivatives/fmriprep``, warped atlas labels in ``derivatives/danemap-sim``) and
``ground_truth.json`` with every planted effect and each participant's true values.
The in-memory generators (:func:`simulate_bold`, :func:`simulate_dat_spect`,
:func:`simulate_t1w`) serve tests and benchmarks; :func:`simulate_roi_timeseries` draws
the region means of :func:`simulate_bold`'s model without the voxels (many-subject
power and false-positive studies).
"""

from __future__ import annotations

from danemap.simulate._anat import simulate_t1w
from danemap.simulate._cohort import simulate_cohort
from danemap.simulate._effects import SimulationEffects
from danemap.simulate._func import simulate_bold, simulate_roi_timeseries
from danemap.simulate._pet import simulate_dat_spect

__all__ = [
    "SimulationEffects",
    "simulate_bold",
    "simulate_cohort",
    "simulate_dat_spect",
    "simulate_roi_timeseries",
    "simulate_t1w",
]
