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
