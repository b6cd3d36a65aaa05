"""One typed run configuration: defaults < TOML file < environment < CLI flags.

The effective configuration is written next to the outputs
(``OUT/danemap/config.toml``) and its hash goes into provenance.

Each subsystem owns one section (a dataclass). Unknown keys are refused with
the closest valid name suggested.
"""

from __future__ import annotations

import dataclasses
import difflib
import hashlib
import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from danemap.errors import ConfigError

__all__ = [
    "Config",
    "FunctionalConfig",
    "PetConfig",
    "RunConfig",
    "StatsConfig",
    "load_config",
]

ENV_PREFIX = "DANEMAP_"


@dataclass
class RunConfig:
    """Execution and I/O settings.

    ``resolution`` is the grid (mm) of the DA/NE atlas that is resampled onto each
    image; 1 mm (the AAL3 native grid) keeps tiny regions such as the LC most faithful.
    """

    resolution: int = 1
    n_jobs: int = 1
    backend: str = "local"
    max_nifti_gib: float = 4.0
    atlas: str = "danemap"
    participant_label: list[str] = field(default_factory=list)
    session_label: list[str] = field(default_factory=list)
    dask_address: str = ""  # backend "dask": scheduler address; empty starts a local cluster


@dataclass
class FunctionalConfig:
    """Resting-state fMRI denoising and connectivity settings.

    Confounds are selected like nilearn's ``load_confounds_strategy`` (see
    :mod:`danemap.markers.functional`); its presets are the reference, and the defaults
    below match them except in three places, each on purpose:

    * **WM/CSF model under ``scrubbing``**: ``wm_csf`` is one setting for ``simple`` and
      ``scrubbing``, ``"basic"`` (2 columns) by default, so switching the strategy changes
      only the censoring and the two strategies compare cleanly. nilearn's ``scrubbing``
      preset uses ``"full"`` (8 columns); set ``wm_csf = "full"`` to get it (its
      ``simple`` preset is ``"basic"``, like ours).
    * **Scrubbing padding**: flagged volumes are padded with ``scrub_before = 1`` and
      ``scrub_after = 2`` neighbours (Power et al. 2012: motion artefacts such as spin
      history outlast the displaced volume); nilearn's preset pads 0 and 0. Set both to 0
      for nilearn's censoring.
    * **Number of CompCor components**: ``n_compcor = 5`` for every run (the usual fixed
      choice since Behzadi et al. 2007), whereas nilearn's ``compcor`` preset takes
      all (``"all"``) the components fMRIPrep kept (those explaining 50% of the variance of the
      combined WM+CSF mask: a number that varies from run to run and can be large, which
      nilearn's documentation warns about). A fixed number keeps the degrees of freedom
      lost to denoising equal across participants, so group differences in connectivity
      are not partly differences in regressor count. Set ``n_compcor = -1`` for nilearn's
      ``"all"``.

    Parameters
    ----------
    strategy : {"simple", "scrubbing", "compcor", "custom"}
        Confound strategy; ``custom`` regresses exactly the ``confounds`` columns.
    motion : {"basic", "derivatives", "power2", "full"}
        Motion model: 6 parameters, plus derivatives, squares, or all 24 (nilearn names).
    wm_csf : {"basic", "derivatives", "power2", "full"}
        WM/CSF model of ``simple`` and ``scrubbing`` (see above).
    fd_threshold : float
        Scrubbing: flag volumes with framewise displacement above this (mm; nilearn 0.5).
    std_dvars_threshold : float
        Scrubbing: flag volumes with standardised DVARS above this (nilearn 1.5); <= 0
        uses FD only.
    scrub_before, scrub_after : int
        Neighbours censored before / after each flagged volume (see above).
    scrub_min_segment : int
        Kept segments shorter than this are censored too (nilearn ``scrub=5``); 0 keeps
        them.
    n_compcor : int
        Anatomical CompCor components of the combined mask for ``compcor`` (see above);
        negative: all of them.
    confounds : list of str
        The confound columns of the ``custom`` strategy.
    high_pass, low_pass : float
        Butterworth band-pass cut-offs in Hz; 0 disables either.
    detrend : bool
        Remove a linear trend (in the same projection as filtering and regression).
    max_mean_fd : float
        Motion QC: a run with a larger mean FD (mm) is flagged for exclusion.
    max_scrubbed_pct : float
        Motion QC: a run with a larger percentage of flagged volumes is flagged for
        exclusion.
    connectivity : list of str
        Connectivity kinds computed and written: ``"correlation"`` and ``"partial
        correlation"`` per run, ``"tangent"`` at the group level (``"corr"`` and
        ``"partialcorr"`` are accepted too, which suits the space-separated environment
        variable). Network scores use the correlation whatever this lists.
    """

    strategy: str = "simple"
    motion: str = "full"
    wm_csf: str = "basic"
    fd_threshold: float = 0.5
    std_dvars_threshold: float = 1.5  # <= 0 disables the DVARS criterion
    scrub_before: int = 1
    scrub_after: int = 2
    scrub_min_segment: int = 5
    n_compcor: int = 5
    confounds: list[str] = field(default_factory=list)
    high_pass: float = 0.01
    low_pass: float = 0.1
    detrend: bool = True
    max_mean_fd: float = 0.5
    max_scrubbed_pct: float = 40.0
    connectivity: list[str] = field(
        default_factory=lambda: ["correlation", "partial correlation", "tangent"]
    )


@dataclass
class PetConfig:
    """PET/SPECT quantification settings."""

    reference_region: str = "occipital"
    fwhm_mm: float = 0.0


@dataclass
class StatsConfig:
    """Group-statistics settings.

    ``harmonize`` is ``"combat"`` or ``"none"``; ``combat_method`` is the ComBat
    estimation used by every ComBat fit (group analyses, normative model, classification):
    ``"parametric"`` or ``"nonparametric"`` empirical Bayes, or ``"no-eb"`` (per-feature
    least-squares site estimates). ``transform`` (``"auto"``, ``"log"`` or ``"none"``) and
    ``scale_threshold`` choose which features are log-transformed before harmonisation
    (see :mod:`danemap.stats.sitecheck`); ``meta_method`` (``"reml"`` or ``"dl"``) is the
    between-site variance estimator of the per-site meta-analysis
    (:mod:`danemap.stats.meta`). All are checked by
    :func:`danemap.stats.pipeline.run_stats` before any analysis runs.
    """

    group: str = "group"
    case: str = "ADHD"
    control: str = "TD"
    site: str = "site"
    covariates: list[str] = field(default_factory=lambda: ["age", "sex"])
    harmonize: str = "combat"
    combat_method: str = "parametric"
    transform: str = "auto"
    scale_threshold: float = 1.5
    meta_method: str = "reml"
    n_permutations: int = 5000
    classify_permutations: int = 100
    alpha: float = 0.05
    seed: int = 0


@dataclass
class Config:
    """The whole danemap configuration, one dataclass per section."""

    run: RunConfig = field(default_factory=RunConfig)
    functional: FunctionalConfig = field(default_factory=FunctionalConfig)
    pet: PetConfig = field(default_factory=PetConfig)
    stats: StatsConfig = field(default_factory=StatsConfig)

    def updated(self, values: Mapping[str, Any], source: str = "arguments") -> Config:
        """Return a copy with ``values`` (``{section: {key: value}}``) applied.

        Parameters
        ----------
        values : mapping
            Nested mapping of section name to settings. ``None`` values are ignored.
        source : str
            Where the values come from, used in error messages.
        """
        new = dataclasses.replace(self)
        for section_name, settings in values.items():
            section = _get_field(new, section_name, source)
            if not isinstance(settings, Mapping):
                raise ConfigError(
                    f"{source}: [{section_name}] must be a table of settings, "
                    f"found {type(settings).__name__}"
                )
            changes = {}
            for key, value in settings.items():
                current = _get_field(section, key, f"{source} [{section_name}]")
                if value is None:
                    continue
                changes[key] = _coerce(value, current, f"{source}: {section_name}.{key}")
            setattr(new, section_name, dataclasses.replace(section, **changes))
        return new

    def to_dict(self) -> dict[str, dict[str, Any]]:
        """Return the configuration as plain nested dictionaries."""
        return dataclasses.asdict(self)

    def to_toml(self) -> str:
        """Serialise to TOML text (deterministic key order)."""
        import tomli_w

        return tomli_w.dumps(self.to_dict())

    def sha256(self) -> str:
        """Hash of the whole configuration's TOML text."""
        return hashlib.sha256(self.to_toml().encode()).hexdigest()

    def results_sha256(self) -> str:
        """Hash of the settings that can change results.

        Participant/session selection and the execution back-end are left out, so every
        task of a SLURM array, and a rerun with more workers, share one hash. It is the
        ``ConfigHash`` of ``dataset_description.json`` and keys the resume markers.
        """
        neutral = dataclasses.replace(self.run, participant_label=[], session_label=[],
                                      n_jobs=1, backend="local", dask_address="")
        return dataclasses.replace(self, run=neutral).sha256()


def _get_field(obj: Any, name: str, where: str) -> Any:
    names = [f.name for f in dataclasses.fields(obj)]
    if name not in names:
        close = difflib.get_close_matches(name, names, n=1)
        hint = f"; did you mean '{close[0]}'?" if close else f"; valid: {', '.join(names)}"
        raise ConfigError(f"{where}: unknown setting '{name}'{hint}")
    return getattr(obj, name)


def _coerce(value: Any, current: Any, where: str) -> Any:
    if isinstance(current, bool):
        if isinstance(value, str) and value.lower() in {"1", "true", "yes", "0", "false", "no"}:
            return value.lower() in {"1", "true", "yes"}
        if isinstance(value, bool):
            return value
    elif isinstance(current, list):
        if isinstance(value, str):
            return [v for v in value.replace(",", " ").split() if v]
        if isinstance(value, list | tuple):
            return list(value)
    elif isinstance(current, int | float) and not isinstance(value, bool):
        try:
            return type(current)(value)
        except (TypeError, ValueError):
            pass
    elif isinstance(current, str):
        return str(value)
    raise ConfigError(
        f"{where}: expected {type(current).__name__}, found {value!r} ({type(value).__name__})"
    )


def _from_environment(environ: Mapping[str, str]) -> dict[str, dict[str, Any]]:
    """Read ``DANEMAP_<SECTION>__<KEY>`` variables (e.g. ``DANEMAP_RUN__N_JOBS=4``)."""
    out: dict[str, dict[str, Any]] = {}
    for name, value in environ.items():
        if not name.startswith(ENV_PREFIX) or "__" not in name:
            continue
        section, _, key = name[len(ENV_PREFIX):].lower().partition("__")
        out.setdefault(section, {})[key] = value
    return out


def load_config(
    path: str | os.PathLike[str] | None = None,
    overrides: Mapping[str, Any] | None = None,
    environ: Mapping[str, str] | None = None,
) -> Config:
    """Build the effective configuration: defaults < TOML file < environment < overrides.

    Parameters
    ----------
    path : path-like or None
        A TOML file with ``[run]``, ``[functional]``, ``[pet]`` and ``[stats]`` tables.
    overrides : mapping or None
        ``{section: {key: value}}`` from the command line; ``None`` values are ignored.
    environ : mapping or None
        Environment to read ``DANEMAP_<SECTION>__<KEY>`` from (default ``os.environ``).

    Returns
    -------
    Config
        The effective configuration.
    """
    cfg = Config()
    if path is not None:
        p = Path(path)
        try:
            data = tomllib.loads(p.read_text(encoding="utf-8"))
        except FileNotFoundError as exc:
            raise ConfigError(f"{p}: configuration file not found") from exc
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{p}: not valid TOML ({exc})") from exc
        cfg = cfg.updated(data, source=str(p))
    env = _from_environment(os.environ if environ is None else environ)
    if env:
        cfg = cfg.updated(env, source="environment")
    if overrides:
        cfg = cfg.updated(overrides, source="command line")
    return cfg
