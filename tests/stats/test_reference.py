import pandas as pd
import pytest

from danemap.errors import InputError
from danemap.stats.reference import compare_to_reference, load_reference, map_feature

ENIGMA = """SubcorticalVolume,Structure,d_icv,se_icv,low_ci_icv,up_ci_icv,n_controls,\
n_patients,pobs,fdr_p
ADHDx_casevsCN,Lcaud,-0.11,,-0.18,-0.05,1489,1659,1.40E-03,
ADHDx_casevsCN,Rcaud,-0.13,,-0.20,-0.06,1489,1659,1.40E-03,
ADHDx_casevsCN,Lput,-0.14,,-0.21,-0.07,1497,1660,1.00E-04,
ADHDx_casevsCN,LLatVent,,,,,,,,
"""


@pytest.mark.parametrize(("name", "expected"), [
    ("Caudate_L", ("caudate", "L")),
    ("Putamen_R", ("putamen", "R")),
    ("N_Acc_L", ("accumbens", "L")),
    ("left-accumbens", ("accumbens", "L")),
    ("Pallidum_R", ("pallidum", "R")),
    ("thalamus", ("thalamus", "bilateral")),
    ("Left-Hippocampus", ("hippocampus", "L")),
    ("Amygdala_R", ("amygdala", "R")),
    ("ParaHippocampal_L", None),
    ("Frontal_Mid_L", None),
    ("Caudate_Putamen_L", None),
    ("Caudate_L_R", None),
])
def test_map_feature(name, expected):
    assert map_feature(name) == expected


def test_load_enigma_and_compare(tmp_path):
    p = tmp_path / "ref.csv"
    p.write_text(ENIGMA)
    ref = load_reference(p)
    assert len(ref) == 3  # LLatVent without d is dropped
    assert ref.iloc[0].to_dict()["structure"] == "caudate"
    assert ref["measure"].iloc[0] == "SubcorticalVolume"
    eff = pd.DataFrame({"feature": ["Caudate_L", "caudate", "Putamen_R", "Frontal_Sup_L"],
                        "term": "group", "d": [-0.12, -0.3, 0.1, 0.5],
                        "d_ci_low": [-0.3, -0.5, -0.1, 0.2],
                        "d_ci_high": [0.06, -0.1, 0.3, 0.8],
                        "n_case": 10, "n_control": 12})
    out = compare_to_reference(eff, ref, feature_measure="ALFF")
    assert list(out["feature"]) == ["Caudate_L", "caudate"]  # no R putamen row in the reference
    cl = out.iloc[0]
    assert cl.reference_d == -0.11 and cl.same_sign and cl.d_within_reference_ci
    assert cl.d_difference == pytest.approx(-0.01)
    bil = out.iloc[1]
    assert bil.reference_d == pytest.approx(-0.12)  # L/R averaged
    assert "averaged" in bil.note and "different measures" in bil.note
    assert not bil.d_within_reference_ci and bil.cis_overlap


def test_generic_format(tmp_path):
    p = tmp_path / "ref.tsv"
    p.write_text("structure\themisphere\td\tci_low\tci_high\n"
                 "putamen\tbilateral\t-0.2\t-0.3\t-0.1\n")
    ref = load_reference(p)
    eff = pd.DataFrame({"feature": ["Putamen_L"], "d": [-0.25], "d_ci_low": [-0.4],
                        "d_ci_high": [-0.1]})
    out = compare_to_reference(eff, ref)
    assert out.reference_d.iloc[0] == -0.2 and out.hemisphere.iloc[0] == "L"


@pytest.mark.parametrize(("text", "message"), [
    ("structure,d\ncaudate,0.1\n", r"missing \['ci_low', 'ci_high'\]"),
    ("structure,d,ci_low,ci_high\ncortex,0.1,0,0.2\n", "unknown structure 'cortex'"),
    ("structure,d,ci_low,ci_high\ncaudate,big,0,0.2\n", "column 'd' must be numeric"),
    ("structure,d,ci_low,ci_high\ncaudate,,0,0.2\n", "no row has a d value"),
    ("structure,hemisphere,d,ci_low,ci_high\ncaudate,middle,0.1,0,0.2\n", "hemisphere"),
])
def test_malformed_reference(tmp_path, text, message):
    p = tmp_path / "r.csv"
    p.write_text(text)
    with pytest.raises(InputError, match=message):
        load_reference(p)


def test_errors(tmp_path):
    with pytest.raises(InputError, match="file not found"):
        load_reference(tmp_path / "none.csv")
    with pytest.raises(InputError, match="effects: expected columns"):
        compare_to_reference(pd.DataFrame({"feature": ["x"]}), pd.DataFrame())
