"""The PET family end to end on simulated DaTscan SPECT: participant files, group table, stats.

Recovery reads what danemap wrote (the per-participant tables and group/pet.tsv) and
compares it with the simulator's truth (``true_sbr`` = the planted BP of each region).
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from danemap.config import Config
from danemap.io import read_tsv
from danemap.markers.pet import PetFamily  # noqa: F401  (importing it registers the family)
from danemap.pipeline import run_group, run_participant
from danemap.simulate import SimulationEffects, simulate_cohort

#: The simulator's PSF (SimulationEffects.spect_fwhm_mm): the PVC is told the truth here.
FWHM = 8.0


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("pet")
    # +14% striatal DAT in ADHD (Fusar-Poli 2012), raised from the -5% default for power;
    # the between-subject SD lowered to 5% so 24 participants resolve it
    eff = SimulationEffects(dat_adhd_pct=14.0, dat_subject_sd_pct=5.0)
    bids = simulate_cohort(tmp / "bids", n_subjects=24, n_sites=2, modalities=("pet",),
                           seed=11, resolution=2, effects=eff)
    cfg = Config().updated({"run": {"markers": ["pet"]},
                            "pet": {"fwhm_mm": FWHM},
                            "stats": {"n_permutations": 50, "classify_permutations": 5}})
    assert run_participant(bids, tmp / "out", cfg) == 0
    run_group(bids, tmp / "out", cfg)  # normative/classify may fail at n = 24: recorded
    truth = json.loads((bids / "ground_truth.json").read_text())
    return tmp / "out" / "danemap", truth


def _table(root, sub):
    return read_tsv(root / sub / "pet" / f"{sub}_trc-FPCIT_atlas-danemap_desc-sbr_stats.tsv")


def test_gtm_sbr_recovers_the_planted_sbr_and_uncorrected_is_low(run):
    root, truth = run
    errs, low = [], []
    for sub, info in truth["participants"].items():
        t = _table(root, sub)
        sbr = t[t["measure"] == "SBR"].set_index(["region", "hemisphere", "method"])["value"]
        for region, stem in (("caudate", "Caudate"), ("putamen", "Putamen")):
            for h in ("L", "R"):
                true = info["pet"]["true_sbr"][f"{stem}_{h}"]
                errs.append(sbr[(region, h, "gtm")] / true - 1)
                low.append(sbr[(region, h, "uncorrected")] / true - 1)
    print(f"GTM SBR median |error| {np.median(np.abs(errs)):.2%}; uncorrected median "
          f"{np.median(low):+.1%}")
    assert np.median(np.abs(errs)) <= 0.05
    assert np.median(low) < -0.2


def test_group_table_and_the_planted_group_difference(run):
    root, truth = run
    group = read_tsv(root / "group" / "pet.tsv").set_index("participant_id")
    groups = {s: p["group"] for s, p in truth["participants"].items()}
    is_adhd = np.array([groups[s] == "ADHD" for s in group.index])
    measured = 100 * (group.loc[is_adhd, "striatum"].mean()
                      / group.loc[~is_adhd, "striatum"].mean() - 1)
    planted_sbr = {s: np.mean([p["pet"]["true_sbr"][f"{r}_{h}"] for r in ("Caudate", "Putamen")
                               for h in "LR"]) for s, p in truth["participants"].items()}
    true = np.array([planted_sbr[s] for s in group.index])
    planted = 100 * (true[is_adhd].mean() / true[~is_adhd].mean() - 1)
    print(f"group difference: measured {measured:+.2f}%, planted {planted:+.2f}%")
    assert measured == pytest.approx(planted, abs=3.0)  # percentage points
    side = json.loads((root / "group" / "pet.json").read_text())
    assert "gtm" in side["Measure"]


def test_participant_outputs_and_provenance(run):
    root, _ = run
    side = json.loads((root / "sub-01" / "pet"
                       / "sub-01_trc-FPCIT_atlas-danemap_desc-sbr_stats.json").read_text())
    assert side["Normalisation"]["Route"] == "mni"
    assert side["PSF_FWHM_mm"] == FWHM and side["Reference"] == "occipital"
    fig = root / "sub-01" / "figures" / "sub-01_trc-FPCIT_atlas-danemap_desc-qc_pet.png"
    assert fig.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_medication_status_moderates_the_glm(run):
    root, _ = run
    eff = read_tsv(root / "group" / "stats" / "pet" / "effects.tsv")
    terms = set(eff["term"])
    assert "group" in terms
    assert {"group[med_status=naive]", "group[med_status=stimulant]"} <= terms


def test_a_dynamic_series_gets_regional_bpnd_a_map_and_tacs(tmp_path):
    import nibabel as nib

    bids = simulate_cohort(tmp_path / "bids", n_subjects=2, n_sites=1, modalities=("pet",),
                           seed=5, resolution=2, dynamic_pet=True)
    cfg = Config().updated({"run": {"markers": ["pet"]},
                            "pet": {"fwhm_mm": FWHM}})
    assert run_participant(bids, tmp_path / "out", cfg) == 0
    pet = tmp_path / "out" / "danemap" / "sub-01" / "pet"
    table = read_tsv(pet / "sub-01_trc-FEPE2I_atlas-danemap_desc-bpnd_stats.tsv")
    bp = table[table["measure"] == "BPND"].pivot_table(index="region", columns="method",
                                                      values="value")
    truth = json.loads((bids / "ground_truth.json").read_text())
    true = truth["participants"]["sub-01"]["pet"]["dynamic"]["true_bpnd"]
    for model in ("srtm", "mrtm2", "logan"):
        # the 5 mm PSF lowers the small striatal regions' BP_ND (no PVC for dynamic data);
        # the order putamen > caudate > thalamus and the sign must hold
        assert bp.loc["Putamen_L", model] > bp.loc["Caudate_L", model] > \
            bp.loc["Thalamus_L", model] > 0, model
        assert 0.4 * true["Putamen_L"] < bp.loc["Putamen_L", model] < 1.05 * true["Putamen_L"]
    bpmap = nib.load(pet / "sub-01_trc-FEPE2I_space-MNI152NLin2009cAsym_desc-bpnd_pet.nii.gz")
    assert bpmap.ndim == 3 and np.nanmax(np.asarray(bpmap.dataobj)) > 1.0
    tacs = read_tsv(pet / "sub-01_trc-FEPE2I_atlas-danemap_tacs.tsv")
    assert len(tacs) == 24 and "reference_cerebellum" in tacs
    fits = read_tsv(pet / "sub-01_trc-FEPE2I_atlas-danemap_desc-fits_tacs.tsv")
    assert list(fits["frame_mid_min"]) == pytest.approx(
        list((tacs["frame_start_min"] + tacs["frame_end_min"]) / 2), rel=1e-9)
    # the fitted SRTM curve follows the measured putamen TAC (blurred, noisy: within 10%
    # of its peak)
    dev = (fits["Putamen_L__srtm"] - tacs["Putamen_L"]).abs().max()
    assert dev <= 0.10 * tacs["Putamen_L"].abs().max()
    side = json.loads((pet / "sub-01_trc-FEPE2I_atlas-danemap_desc-fits_tacs.json").read_text())
    assert side["frame_mid_min"]["Units"] == "min" and side["Models"] == ["mrtm2", "srtm"]
