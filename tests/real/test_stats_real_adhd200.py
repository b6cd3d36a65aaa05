"""Real data: the whole statistics pipeline on ADHD-200 ALFF (NYU + Peking, 268 participants).

Measured here (seed 0; the note of issue #4 reports them): striatal ALFF d with 95% CI,
and the cross-validated accuracies of the covariate-only, imaging-only and combined models
under stratified 5-fold and leave-one-site-out cross-validation.
"""

import json

import numpy as np
import pandas as pd
import pytest
from statsmodels.stats.multitest import multipletests

from danemap.config import ClassifyConfig, StatsConfig
from danemap.stats.pipeline import run_stats

pytestmark = pytest.mark.real


@pytest.fixture(scope="module")
def result(shared_data, tmp_path_factory):
    root = shared_data / "adhd200-alff"
    out = tmp_path_factory.mktemp("stats_real")
    ref = shared_data / "enigma-adhd" / "adhdallages_case-controls_SubVol.csv"
    cfg = StatsConfig(n_permutations=1000, classify_permutations=5,
                      classify=ClassifyConfig(n_bootstrap=200, c_grid=[0.01, 0.1, 1.0]))
    res = run_stats(root / "alff_aal116.tsv", root / "participants.tsv", out, cfg,
                    reference=ref, feature_measure="ALFF")
    return out, res["summary"]


def test_every_analysis_ran(result):
    out, s = result
    assert {a: v["status"] for a, v in s["analyses"].items()} == {
        **dict.fromkeys(["harmonize", "glm", "meta", "permutation", "symptoms", "normative",
                         "classify", "reference"], "done"),
        "nbs": "skipped"}  # regional ALFF, not connectivity edges
    assert s["n"]["per_site"] == {"NYU": {"case": 80, "control": 67},
                                  "Peking": {"case": 50, "control": 71}}
    assert s["analyses"]["harmonize"]["n_sites"] == 2
    assert "ComBat" in json.loads((out / "effects.json").read_text())["Harmonization"]
    eff = pd.read_csv(out / "effects.tsv", sep="\t")
    assert len(eff) == 116 and (eff["term"] == "group").all()
    # FDR over the 116 real p-values is statsmodels' Benjamini-Hochberg (the TSV keeps 10
    # significant digits, hence rtol 1e-8)
    np.testing.assert_allclose(eff["p_fdr"], multipletests(eff["p"], method="fdr_bh")[1],
                               rtol=1e-8)


def test_striatal_effects_small_with_cis(result):
    out, _ = result
    eff = pd.read_csv(out / "effects.tsv", sep="\t").set_index("feature")
    striatum = eff.loc[["Caudate_L", "Caudate_R", "Putamen_L", "Putamen_R"]]
    assert (striatum["n_case"] == 130).all() and (striatum["n_control"] == 138).all()
    assert (striatum["d_ci_low"] < striatum["d"]).all()
    assert (striatum["d"] < striatum["d_ci_high"]).all()
    assert (striatum["d"].abs() < 0.5).all()  # small effects, as the literature expects
    width = striatum["d_ci_high"] - striatum["d_ci_low"]
    np.testing.assert_allclose(width, 0.48, atol=0.03)  # 2 x 1.96 x sqrt(1/130 + 1/138)


def test_covariate_baseline_reported_and_not_beaten_by_imaging(result):
    out, s = result
    cl = pd.read_csv(out / "classification.tsv", sep="\t")
    assert set(zip(cl.scheme, cl.model, strict=True)) == {
        (sc, m) for sc in ("kfold", "loso") for m in ("covariates", "imaging", "both")}
    auc = cl[cl.metric == "auc"].set_index(["scheme", "model"])["value"]
    # ADHD-200 lesson: age, sex, site and IQ predict diagnosis better than ALFF does
    assert auc["kfold", "covariates"] > auc["kfold", "imaging"]
    assert auc["loso", "covariates"] > auc["loso", "imaging"]
    assert s["analyses"]["classify"]["kfold"]["imaging_beats_covariate_baseline"] is False
    loso = cl[cl.scheme == "loso"]
    assert loso["harmonization"].str.startswith(("none (LOSO", "not applicable")).all()


def test_symptoms_normative_reference(result):
    out, _s = result
    sy = pd.read_csv(out / "symptoms.tsv", sep="\t")
    assert set(sy["symptom"]) == {"adhd_index", "inattentive", "hyperimpulsive"}
    assert (sy["symptom_scaling"] == "z-scored within site").all()
    assert sy[sy["sample"] == "ADHD"]["n"].max() == 130
    nz = pd.read_csv(out / "normative_z.tsv", sep="\t")
    ctrl = nz[nz.group == "TD"]
    assert (ctrl.scored == "out-of-sample CV").all() and len(ctrl) == 138
    z = ctrl.iloc[:, 4:].to_numpy(float)
    assert abs(np.nanmean(z)) < 0.1 and 0.9 < np.nanstd(z) < 1.3
    ref = pd.read_csv(out / "reference_comparison.tsv", sep="\t").set_index("feature")
    assert len(ref) == 12  # 6 AAL structures x 2 hemispheres (AAL116 has no accumbens)
    assert ref.loc["Caudate_L", "reference_d"] == -0.11
    assert ref.loc["Putamen_R", "reference_d"] == -0.14
    assert ref.loc["Pallidum_L", "reference_d"] == 0.0
    assert ref["note"].str.contains("different measures").all()
