import pytest

from danemap.config import Config, load_config
from danemap.errors import ConfigError


def test_defaults_and_roundtrip(tmp_path):
    cfg = load_config(environ={})
    assert cfg.run.resolution == 1
    assert cfg.functional.strategy == "simple"
    path = tmp_path / "c.toml"
    path.write_text(cfg.to_toml())
    again = load_config(path, environ={})
    assert again == cfg
    assert again.sha256() == cfg.sha256()


def test_layering_file_env_flags(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text('[run]\nn_jobs = 3\nresolution = 3\n[functional]\nfd_threshold = 0.3\n')
    env = {"DANEMAP_RUN__N_JOBS": "5", "DANEMAP_FUNCTIONAL__DETREND": "false"}
    cfg = load_config(path, overrides={"run": {"resolution": None, "n_jobs": 7}}, environ=env)
    assert cfg.run.n_jobs == 7  # flag beats environment beats file
    assert cfg.run.resolution == 3  # None flag leaves the file value
    assert cfg.functional.fd_threshold == 0.3
    assert cfg.functional.detrend is False
    assert cfg.sha256() != Config().sha256()


def test_unknown_key_suggests_closest(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text("[functional]\nfd_treshold = 0.3\n")
    with pytest.raises(ConfigError, match="did you mean 'fd_threshold'"):
        load_config(path, environ={})


def test_unknown_section_and_bad_type(tmp_path):
    with pytest.raises(ConfigError, match="unknown setting 'runn'"):
        load_config(overrides={"runn": {"n_jobs": 2}}, environ={})
    with pytest.raises(ConfigError, match=r"run.n_jobs: expected int, found 'many'"):
        load_config(overrides={"run": {"n_jobs": "many"}}, environ={})


def test_bad_toml_and_missing_file(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("[run\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(bad, environ={})
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "nope.toml", environ={})


def test_list_from_string():
    cfg = load_config(overrides={"stats": {"covariates": "age, sex iq"}}, environ={})
    assert cfg.stats.covariates == ["age", "sex", "iq"]


def test_results_hash_ignores_selection_and_execution():
    base = load_config(environ={})
    sel = load_config(overrides={"run": {"participant_label": ["01"], "n_jobs": 4,
                                         "backend": "dask"}}, environ={})
    assert sel.sha256() != base.sha256()
    assert sel.results_sha256() == base.results_sha256()
    changed = load_config(overrides={"functional": {"fd_threshold": 0.3}}, environ={})
    assert changed.results_sha256() != base.results_sha256()


def test_stats_combat_method_layers_and_typo(tmp_path):
    assert load_config(environ={}).stats.combat_method == "parametric"
    path = tmp_path / "c.toml"
    path.write_text('[stats]\ncombat_method = "no-eb"\n')
    assert load_config(path, environ={}).stats.combat_method == "no-eb"
    env = {"DANEMAP_STATS__COMBAT_METHOD": "nonparametric"}
    assert load_config(path, environ=env).stats.combat_method == "nonparametric"
    flags = {"stats": {"combat_method": "parametric"}}
    assert load_config(path, overrides=flags, environ=env).stats.combat_method == "parametric"
    path.write_text('[stats]\ncombat_metod = "no-eb"\n')
    with pytest.raises(ConfigError, match="did you mean 'combat_method'"):
        load_config(path, environ={})
    changed = load_config(overrides={"stats": {"combat_method": "no-eb"}}, environ={})
    assert changed.results_sha256() != load_config(environ={}).results_sha256()


def test_stats_sub_sections_from_file_env_and_flags(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text('[stats]\nicv = "etiv"\n[stats.nbs]\nthreshold = 2.5\n'
                    '[stats.classify]\nc_grid = [0.1, 1]\n[stats.symptoms]\n'
                    'columns = ["adhd_index"]\n')
    env = {"DANEMAP_STATS__NBS__SUBNETWORKS": "lc_pfc", "DANEMAP_STATS__GLM__INTERACTION": "age"}
    cfg = load_config(path, overrides={"stats": {"nbs": {"threshold": 2.0}}}, environ=env)
    assert cfg.stats.icv == "etiv" and cfg.stats.nbs.threshold == 2.0  # flag beats file
    assert cfg.stats.nbs.subnetworks == ["lc_pfc"] and cfg.stats.glm.interaction == "age"
    assert cfg.stats.classify.c_grid == [0.1, 1.0]  # ints in a float list become floats
    assert cfg.stats.symptoms.columns == ["adhd_index"]
    assert cfg.stats.classify.n_folds == 5  # the rest of the sub-section keeps its defaults
    again = tmp_path / "again.toml"
    again.write_text(cfg.to_toml())
    assert "[stats.nbs]" in again.read_text()
    assert load_config(again, environ={}) == cfg
    grid = load_config(environ={"DANEMAP_STATS__CLASSIFY__C_GRID": "0.01, 1"})
    assert grid.stats.classify.c_grid == [0.01, 1.0]


def test_stats_sub_section_errors(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text("[stats.nbs]\ntreshold = 2.5\n")
    with pytest.raises(ConfigError, match=r"\[stats.nbs\]: unknown setting 'treshold'; did "
                                          "you mean 'threshold'"):
        load_config(path, environ={})
    with pytest.raises(ConfigError, match="unknown setting 'nbz'; did you mean 'nbs'"):
        load_config(overrides={"stats": {"nbz": {"threshold": 2}}}, environ={})
    with pytest.raises(ConfigError, match=r"\[stats\.nbs\] must be a table of settings"):
        load_config(overrides={"stats": {"nbs": 3}}, environ={})
    with pytest.raises(ConfigError, match=r"stats\.classify\.c_grid: expected a list of float"):
        load_config(environ={"DANEMAP_STATS__CLASSIFY__C_GRID": "small large"})
    with pytest.raises(ConfigError, match=r"stats\.nbs\.threshold: expected float"):
        load_config(environ={"DANEMAP_STATS__NBS__THRESHOLD": "high"})
    with pytest.raises(ConfigError, match="sets a setting inside 'nbs'"):
        load_config(environ={"DANEMAP_STATS__NBS": "3", "DANEMAP_STATS__NBS__THRESHOLD": "2"})
    with pytest.raises(ConfigError, match="expected a table of sections"):
        Config().updated(["stats"])  # type: ignore[arg-type]


def test_participant_hash_covers_atlas_and_family_sections_only():
    base = load_config(environ={})
    for other in ({"stats": {"alpha": 0.01}}, {"stats": {"nbs": {"threshold": 2.0}}},
                  {"pet": {"fwhm_mm": 6.0}}, {"run": {"max_nifti_gib": 8.0, "n_jobs": 4}}):
        cfg = load_config(overrides=other, environ={})
        assert cfg.participant_sha256() == base.participant_sha256(), other
    for other in ({"functional": {"fd_threshold": 0.3}}, {"run": {"resolution": 2}},
                  {"run": {"atlas": "/x/atlas-mine_dseg.nii.gz"}}):
        cfg = load_config(overrides=other, environ={})
        assert cfg.participant_sha256() != base.participant_sha256(), other
    pet = load_config(overrides={"pet": {"fwhm_mm": 6.0}}, environ={})
    # a family's section joins the hash once the family is enabled, whatever the order
    assert pet.participant_sha256(["functional", "pet"]) != pet.participant_sha256()
    assert pet.participant_sha256(("pet", "functional")) == pet.participant_sha256(
        ["functional", "pet", "pet"])
    with pytest.raises(ConfigError, match="did you mean 'functional'"):
        base.participant_sha256(["functionnal"])
    with pytest.raises(ConfigError, match="'stats' is not a marker family's section"):
        base.participant_sha256(["functional", "stats"])


def test_group_hash_covers_stats_and_atlas():
    base = load_config(environ={})
    for other in ({"functional": {"fd_threshold": 0.3}}, {"run": {"resolution": 2}},
                  {"pet": {"fwhm_mm": 6.0}}):
        assert load_config(overrides=other, environ={}).group_sha256() == base.group_sha256()
    for other in ({"stats": {"alpha": 0.01}}, {"stats": {"nbs": {"threshold": 2.0}}},
                  {"run": {"atlas": "/x/atlas-mine_dseg.nii.gz"}}):
        assert load_config(overrides=other, environ={}).group_sha256() != base.group_sha256()


def test_participant_resume_keyed_by_the_participant_hash(tmp_path):
    """Changing [stats] resumes every participant; changing [functional] recomputes them."""
    from danemap.cli import main
    from danemap.simulate import simulate_cohort

    bids = tmp_path / "bids"
    simulate_cohort(bids, n_subjects=6, n_sites=2, seed=3, resolution=3,
                    modalities=("func",), n_volumes=60)
    out = tmp_path / "out" / "danemap"
    conf = tmp_path / "c.toml"

    def run(text):
        """Run the participant level; return its resume markers and derivatives (mtimes)."""
        conf.write_text(text)
        assert main([str(bids), str(tmp_path / "out"), "participant", "--participant-label",
                     "01", "02", "--config", str(conf)]) == 0
        markers = {str(p.relative_to(out)): p.stat().st_mtime_ns
                   for p in (out / "logs").glob("done-*/*.done.json")}
        files = {str(p.relative_to(out)): p.stat().st_mtime_ns
                 for p in out.glob("sub-0[12]/func/*.tsv")}
        return markers, files

    markers, files = run("[stats]\nalpha = 0.05\n")
    assert len(markers) == 2 and files
    # [stats] only (the group level's settings): every participant is skipped as done
    assert run("[stats]\nalpha = 0.01\n[stats.nbs]\nthreshold = 2.5\n") == (markers, files)
    # a functional setting: a new resume key, and every participant is recomputed; the
    # markers of the old settings go (their outputs were replaced), so returning to the
    # old settings recomputes too instead of skipping participants that now hold new ones
    markers3, files3 = run("[stats]\nalpha = 0.01\n[functional]\nfd_threshold = 0.4\n")
    assert len(markers3) == 2 and not set(markers) & set(markers3)
    assert files3.keys() == files.keys()
    assert all(files3[k] > files[k] for k in files)
