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
import typing
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from danemap.errors import ConfigError

__all__ = [
    "PARTICIPANT_SECTIONS",
    "ClassifyConfig",
    "Config",
    "FunctionalConfig",
    "GlmConfig",
    "NbsConfig",
    "NormativeConfig",
    "PetConfig",
    "RunConfig",
    "StatsConfig",
    "StructuralConfig",
    "SymptomsConfig",
    "TaskConfig",
    "load_config",
]

ENV_PREFIX = "DANEMAP_"

#: Sections of the marker families enabled by default (see :meth:`Config.participant_sha256`).
PARTICIPANT_SECTIONS: tuple[str, ...] = ("functional",)


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
    #: Marker families to run (``"functional"``, ``"structural"``, ``"pet"``); empty: every
    #: registered family, each on the data it finds.
    markers: list[str] = field(default_factory=list)
    #: Folder for intermediate files (a participant's is removed when it succeeds and kept
    #: when it fails); empty: ``OUTPUT_DIR/work``.
    work_dir: str = ""
    #: Derivative datasets (fMRIPrep output stored outside ``BIDS_DIR``) searched for
    #: preprocessed inputs, in order (``--derivatives``, repeatable).
    derivatives: list[str] = field(default_factory=list)
    #: Memory limit per worker process in GiB (``--memory-limit``); a worker that exceeds it
    #: is stopped and its participant marked failed. 0: no limit.
    memory_limit_gib: float = 0.0


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
    #: Repetition time in seconds that overrides the image header and sidecar
    #: (``--repetition-time``), for files whose two disagree; 0: read them.
    repetition_time: float = 0.0
    #: Accept a run without its confounds file; the run is then flagged
    #: (``qc_exclude``) so the group level leaves it out. False: a missing file is an error.
    allow_missing_confounds: bool = False


@dataclass
class StructuralConfig:
    """Structural MRI volume settings (``[structural]``).

    Parameters
    ----------
    inputs : list of str
        The inputs used, in order of preference (the first one a session has wins):
        ``"aseg"`` (FreeSurfer/FastSurfer ``stats/aseg.stats``), ``"synthseg"`` (SynthSeg
        volume CSV), ``"dseg"`` (a ``*_dseg.nii.gz`` label image, such as fMRIPrep's
        ``desc-aseg_dseg``, with a FreeSurfer lookup table) and ``"t1w"`` (a raw BIDS
        T1w, segmented by danemap with ANTsPy). Leave one out never to use it.
    quick : bool
        Raw-T1w path: coarser registration and fewer iterations (about a minute per
        participant instead of a few).
    lut : str
        Lookup table of the ``dseg`` inputs (FreeSurferColorLUT-style text, or a BIDS
        ``dseg.tsv``); empty: the ``.tsv`` beside the image, else FreeSurfer's aseg labels.
    keep_work : bool
        Keep the raw-T1w path's intermediate files even when it succeeds.
    atlas_space : {"auto", "colin27", "mni152"}
        Raw-T1w path: where the atlas is read. ``"colin27"``: through Colin27, on which
        AAL3 (and so the built-in atlas) was drawn, by a Colin27 -> MNI152 registration
        computed once per machine (needs the Debian package mricron-data); ``"mni152"``:
        on the MNI152 template grid directly; ``"auto"``: ``"colin27"`` for an AAL3-based
        atlas when mricron-data is installed, else ``"mni152"`` with a warning.
    """

    inputs: list[str] = field(default_factory=lambda: ["aseg", "synthseg", "dseg", "t1w"])
    quick: bool = False
    lut: str = ""
    keep_work: bool = False
    atlas_space: str = "auto"


@dataclass
class PetConfig:
    """PET/SPECT quantification settings (``[pet]``); empty values take the tracer's default.

    Parameters
    ----------
    reference_region : str
        ``"occipital"`` (the DaTscan default), ``"cerebellum"`` (cerebellar hemispheres
        without the vermis), ``"caudate"`` (NET tracers), an atlas region name, or a mask
        image path; empty: the tracer's default.
    fwhm_mm : float
        Scanner PSF FWHM (mm) of the partial-volume correction; 0: the tracer's default
        (SPECT 10 mm, PET 5 mm).
    pvc : {"gtm", "rbv", "none"}
        Partial-volume correction reported beside the uncorrected values (GTM, Rousset
        1998; RBV, Thomas 2011, adds a voxel-wise corrected image).
    space : {"auto", "MNI", "native"}
        Whether images are already in MNI space (see :mod:`danemap.markers.pet._normalise`).
    template : str
        Tracer template for images without a T1w (``--pet-template``); empty: one
        synthesised from the atlas.
    models : list of str
        Reference-tissue models of a dynamic series: ``"srtm"``, ``"mrtm2"``, ``"logan"``.
    map_model : str
        The model of the voxel-wise BP_ND map.
    """

    reference_region: str = ""
    fwhm_mm: float = 0.0
    pvc: str = "gtm"
    space: str = "auto"
    template: str = ""
    models: list[str] = field(default_factory=lambda: ["srtm", "mrtm2", "logan"])
    map_model: str = "srtm"


def _mid_conditions() -> list[str]:
    # The common MID coding (Knutson 2001; ABCD, Casey 2018): gain / loss / neutral
    # anticipation cues and the hit / miss outcomes of gain trials; the outcomes of loss
    # and neutral trials are modelled as one nuisance condition.
    return [
        "gain=gain", "gain_cue=gain", "gain_anticipation=gain", "reward_anticipation=gain",
        "LgReward=gain", "SmallReward=gain",
        "loss=loss", "loss_cue=loss", "loss_anticipation=loss", "LgPun=loss",
        "SmallPun=loss",
        "neutral=neutral", "neutral_cue=neutral", "neutral_anticipation=neutral",
        "Triangle=neutral",
        "hit=hit", "gain_hit=hit", "reward_hit=hit",
        "miss=miss", "gain_miss=miss", "reward_miss=miss",
        "loss_hit=outcome_other", "loss_miss=outcome_other", "neutral_hit=outcome_other",
        "neutral_miss=outcome_other",
    ]


def _mid_contrasts() -> list[str]:
    return ["gain_minus_neutral=gain - neutral", "loss_minus_neutral=loss - neutral",
            "hit_minus_miss=hit - miss"]


@dataclass
class TaskConfig:
    """Task-fMRI first-level settings (``[task]``, the Monetary Incentive Delay task).

    Parameters
    ----------
    task : str
        BIDS ``task-`` label of the runs the family reads (``"mid"``).
    conditions : list of str
        ``"trial_type=condition"`` entries: the ``trial_type`` values of the events files
        and the condition (design-matrix regressor) each one is modelled by. The defaults
        follow the common MID coding: gain, loss and neutral anticipation cues, and the hit
        and miss outcomes of gain trials (loss and neutral outcomes: ``outcome_other``).
    ignore : list of str
        ``trial_type`` values that are known but not modelled (implicit baseline).
    contrasts : list of str
        ``"name=expression"`` entries, the expression a sum of condition names with
        optional coefficients (``"gain - neutral"``, ``"0.5*gain + 0.5*loss - neutral"``).
    hrf_model : {"glover", "spm"}
        Haemodynamic response of nilearn's first-level model.
    drift_model : {"cosine", "none"}
        Drift regressors (``"cosine"``: a discrete cosine basis up to ``high_pass``).
    high_pass : float
        Cut-off (Hz) of the cosine drift basis.
    noise_model : {"ar1", "ols"}
        Temporal noise model (nilearn's AR(1) with 100 coefficient bins, or OLS).
    strategy : str
        Confound strategy (see :class:`FunctionalConfig`); empty: ``[functional] strategy``.
        The other confound and censoring settings are those of ``[functional]``; the
        fMRIPrep ``cosine*`` columns are left out because the drift model is the high-pass.
    voxelwise : bool
        Also fit every brain voxel and write voxel-wise effect, variance and t maps (the
        region-level fit is always done; without this the maps paint each region's
        estimate).
    min_trials : int
        Conditions a contrast uses need at least this many events in a run; a contrast
        without them is n/a for that run.
    """

    task: str = "mid"
    conditions: list[str] = field(default_factory=_mid_conditions)
    ignore: list[str] = field(default_factory=lambda: ["fixation", "iti", "rest", "probe",
                                                       "target", "response"])
    contrasts: list[str] = field(default_factory=_mid_contrasts)
    hrf_model: str = "glover"
    drift_model: str = "cosine"
    high_pass: float = 0.01
    noise_model: str = "ar1"
    strategy: str = ""
    voxelwise: bool = False
    min_trials: int = 1


@dataclass
class GlmConfig:
    """Extra terms of the case-control GLM (``[stats.glm]``); ``""`` adds none.

    Parameters
    ----------
    interaction : str
        Numeric column (``"age"``) whose interaction with group the GLM adds
        (``group:<col>`` rows of ``effects.tsv``).
    stratify : str
        Categorical column (``"sex"``): the GLM is also fitted within each level
        (``group|<col>=<level>`` rows).
    moderator : str
        Column describing cases (``"med_status"``): each level of cases against all
        controls (``group[<col>=<level>]`` rows).
    """

    interaction: str = ""
    stratify: str = ""
    moderator: str = ""


@dataclass
class SymptomsConfig:
    """Symptom association settings (``[stats.symptoms]``).

    Parameters
    ----------
    columns : list of str
        Symptom columns; empty: those of ``adhd_index``, ``inattentive`` and
        ``hyperimpulsive`` that are present.
    standardize : bool
        Z-score each symptom within site before the analysis.
    """

    columns: list[str] = field(default_factory=list)
    standardize: bool = True


@dataclass
class NormativeConfig:
    """Normative-model settings (``[stats.normative]``).

    Parameters
    ----------
    n_folds : int
        Folds of the control cross-validation.
    heteroscedastic : bool
        Residual SD as a smooth function of age (see
        :class:`danemap.stats.normative.NormativeModel`).
    """

    n_folds: int = 5
    heteroscedastic: bool = False


@dataclass
class ClassifyConfig:
    """Classification settings (``[stats.classify]``).

    The number of label permutations is ``[stats] classify_permutations``.

    Parameters
    ----------
    n_folds, inner_folds : int
        Outer cross-validation folds and inner (hyper-parameter) folds.
    c_grid : list of float
        Inverse regularisation strengths of the logistic regression searched by the inner
        loop.
    n_bootstrap : int
        Bootstrap resamples of the pooled CIs.
    loso_harmonize : {"none", "refit"}
        Harmonisation under leave-one-site-out.
    extra_covariates : list of str
        Added to the covariate-only classifier when present (IQ).
    """

    n_folds: int = 5
    inner_folds: int = 3
    c_grid: list[float] = field(default_factory=lambda: [0.001, 0.01, 0.1, 1.0, 10.0])
    n_bootstrap: int = 1000
    loso_harmonize: str = "none"
    extra_covariates: list[str] = field(default_factory=lambda: ["full4_iq"])


@dataclass
class NbsConfig:
    """Network-based statistic settings (``[stats.nbs]``).

    Parameters
    ----------
    threshold : float
        Primary |t| threshold.
    subnetworks : list of str
        Atlas networks whose edges are analysed (as one graph). Empty: the built-in
        default (``frontostriatal`` and ``lc_pfc``) when the atlas has those networks,
        else every network of the atlas (a user atlas with its own networks).
    """

    threshold: float = 3.0
    subnetworks: list[str] = field(default_factory=list)


@dataclass
class StatsConfig:
    """Group-statistics settings (``[stats]`` and its sub-sections).

    ``harmonize`` is ``"combat"`` or ``"none"``; ``combat_method`` is the ComBat
    estimation used by every ComBat fit (group analyses, normative model, classification):
    ``"parametric"`` or ``"nonparametric"`` empirical Bayes, or ``"no-eb"`` (per-feature
    least-squares site estimates). ``transform`` (``"auto"``, ``"log"`` or ``"none"``) and
    ``scale_threshold`` choose which features are log-transformed before harmonisation
    (see :mod:`danemap.stats.sitecheck`); ``meta_method`` (``"reml"`` or ``"dl"``) is the
    between-site variance estimator of the per-site meta-analysis
    (:mod:`danemap.stats.meta`). All are checked by
    :func:`danemap.stats.pipeline.run_stats` before any analysis runs.

    ``group``, ``case``, ``control``, ``covariates``, ``site`` and ``icv`` are the study
    design (:class:`danemap.stats.GroupDesign`); ``icv`` (``""``: none) is the
    intracranial-volume column added to the covariates of the analyses that take it
    (harmonisation, GLM, meta-analysis, permutation, NBS). ``session`` (``""``: none)
    selects the session of feature tables with several per participant. The analyses'
    own settings are the sub-sections ``[stats.glm]``, ``[stats.symptoms]``,
    ``[stats.normative]``, ``[stats.classify]`` and ``[stats.nbs]``.

    ``reference`` is the published table the FreeSurfer-style volume tables are compared
    with (ENIGMA-ADHD, Hoogman et al. 2017): an ENIGMA-format CSV, or a folder of the
    ENIGMA-ADHD CSVs, of which ``adhd<reference_age>_case-controls_SubVol.csv`` is used
    (``reference_age``: ``allages``, ``pediatric``, ``adolescent`` or ``adult``).
    ``"auto"`` looks for a folder ``enigma-adhd`` in ``$DANEMAP_REFERENCE_DIR``, then for
    ``shared/data/enigma-adhd`` in the working folder and its parents (the layout of a
    danemap checkout); ``""`` turns the comparison off.
    """

    group: str = "group"
    case: str = "ADHD"
    control: str = "TD"
    site: str = "site"
    covariates: list[str] = field(default_factory=lambda: ["age", "sex"])
    icv: str = ""
    session: str = ""
    harmonize: str = "combat"
    combat_method: str = "parametric"
    transform: str = "auto"
    scale_threshold: float = 1.5
    meta_method: str = "reml"
    reference: str = "auto"
    reference_age: str = "allages"
    n_permutations: int = 5000
    classify_permutations: int = 100
    alpha: float = 0.05
    seed: int = 0
    glm: GlmConfig = field(default_factory=GlmConfig)
    symptoms: SymptomsConfig = field(default_factory=SymptomsConfig)
    normative: NormativeConfig = field(default_factory=NormativeConfig)
    classify: ClassifyConfig = field(default_factory=ClassifyConfig)
    nbs: NbsConfig = field(default_factory=NbsConfig)


@dataclass
class Config:
    """The whole danemap configuration, one dataclass per section."""

    run: RunConfig = field(default_factory=RunConfig)
    functional: FunctionalConfig = field(default_factory=FunctionalConfig)
    structural: StructuralConfig = field(default_factory=StructuralConfig)
    pet: PetConfig = field(default_factory=PetConfig)
    task: TaskConfig = field(default_factory=TaskConfig)
    stats: StatsConfig = field(default_factory=StatsConfig)

    def updated(self, values: Mapping[str, Any], source: str = "arguments") -> Config:
        """Return a copy with ``values`` (``{section: {key: value}}``) applied.

        Sub-sections nest: ``{"stats": {"alpha": 0.01, "nbs": {"threshold": 2.5}}}``.

        Parameters
        ----------
        values : mapping
            Nested mapping of section name to settings. ``None`` values are ignored.
        source : str
            Where the values come from, used in error messages.
        """
        if not isinstance(values, Mapping):
            raise ConfigError(f"{source}: expected a table of sections, found "
                              f"{type(values).__name__}")
        return _updated(self, values, "", source)

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
        """Hash of the settings that can change results, of every level.

        Participant/session selection and the execution back-end are left out, so every
        task of a SLURM array, and a rerun with more workers, share one hash. It is the
        ``ConfigHash`` of ``dataset_description.json``. Resume uses the narrower
        :meth:`participant_sha256`.
        """
        neutral = dataclasses.replace(self.run, participant_label=[], session_label=[],
                                      n_jobs=1, backend="local", dask_address="",
                                      work_dir="")
        return dataclasses.replace(self, run=neutral).sha256()

    def participant_sha256(self, sections: Sequence[str] = PARTICIPANT_SECTIONS) -> str:
        """Hash of the settings that change the participant level's outputs.

        It keys the participant level's resume markers: a participant done with the same
        hash is skipped. It covers ``run.atlas``, ``run.resolution`` and the sections of
        the enabled marker families, so changing ``[stats]`` (or the section of a family
        that is not enabled) resumes every participant instead of recomputing it.
        ``run.max_nifti_gib`` is left out: it decides whether an image is read at all (a
        participant over the limit fails and is never marked done), never what is
        computed from it; so are the selection and execution settings. The atlas is hashed
        as its setting (``"danemap"`` or a path), not the file's content.

        Parameters
        ----------
        sections : sequence of str
            Configuration sections of the enabled marker families (each family's
            ``config_section``); default ``("functional",)``. Order and repeats do not
            matter.

        Returns
        -------
        str
            Hex SHA-256.

        Raises
        ------
        ConfigError
            If a section is unknown (the closest name suggested) or is ``run``/``stats``.
        """
        payload: dict[str, Any] = {"run": {"atlas": self.run.atlas,
                                           "resolution": self.run.resolution}}
        for name in sorted(set(sections)):
            if name in ("run", "stats"):
                raise ConfigError(f"participant_sha256: '{name}' is not a marker family's "
                                  "section")
            payload[name] = dataclasses.asdict(_get_field(self, name, "participant_sha256"))
        return _sha256(payload)

    def group_sha256(self) -> str:
        """Hash of the settings that change the group level's statistics.

        It covers ``[stats]`` with its sub-sections and ``run.atlas`` (its networks enter
        the network-based statistic).

        Returns
        -------
        str
            Hex SHA-256.
        """
        return _sha256({"run": {"atlas": self.run.atlas},
                        "stats": dataclasses.asdict(self.stats)})


def _sha256(payload: Mapping[str, Any]) -> str:
    import tomli_w

    return hashlib.sha256(tomli_w.dumps(dict(payload)).encode()).hexdigest()


def _updated(obj: Any, values: Mapping[str, Any], path: str, source: str) -> Any:
    """Return a copy of the dataclass ``obj`` with ``values`` applied, nested sections too."""
    hints = typing.get_type_hints(type(obj))
    changes: dict[str, Any] = {}
    where = f"{source} [{path}]" if path else source
    for key, value in values.items():
        current = _get_field(obj, key, where)
        name = f"{path}.{key}" if path else key
        if value is None:
            continue
        if dataclasses.is_dataclass(current):
            if not isinstance(value, Mapping):
                raise ConfigError(f"{source}: [{name}] must be a table of settings, "
                                  f"found {type(value).__name__}")
            changes[key] = _updated(current, value, name, source)
        else:
            changes[key] = _coerce(value, current, f"{source}: {name}", hints.get(key))
    return dataclasses.replace(obj, **changes)


def _get_field(obj: Any, name: str, where: str) -> Any:
    names = [f.name for f in dataclasses.fields(obj)]
    if name not in names:
        close = difflib.get_close_matches(name, names, n=1)
        hint = f"; did you mean '{close[0]}'?" if close else f"; valid: {', '.join(names)}"
        raise ConfigError(f"{where}: unknown setting '{name}'{hint}")
    return getattr(obj, name)


def _coerce(value: Any, current: Any, where: str, hint: Any = None) -> Any:
    if isinstance(current, bool):
        if isinstance(value, str) and value.lower() in {"1", "true", "yes", "0", "false", "no"}:
            return value.lower() in {"1", "true", "yes"}
        if isinstance(value, bool):
            return value
    elif isinstance(current, list):
        items: list[Any] | None = None
        if isinstance(value, str):
            items = [v for v in value.replace(",", " ").split() if v]
        elif isinstance(value, list | tuple):
            items = list(value)
        if items is not None:
            kind = (typing.get_args(hint) or (None,))[0]
            if kind in (int, float):
                try:
                    if not any(isinstance(v, bool) for v in items):
                        return [kind(v) for v in items]
                except (TypeError, ValueError):
                    pass
                raise ConfigError(f"{where}: expected a list of {kind.__name__}, found "
                                  f"{value!r}")
            return [str(v) for v in items] if kind is str else items
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


def _from_environment(environ: Mapping[str, str]) -> dict[str, Any]:
    """Read ``DANEMAP_<SECTION>__<KEY>`` variables (e.g. ``DANEMAP_RUN__N_JOBS=4``).

    Sub-sections add one ``__`` per level: ``DANEMAP_STATS__NBS__THRESHOLD=2.5``.
    """
    out: dict[str, Any] = {}
    for name, value in sorted(environ.items()):
        if not name.startswith(ENV_PREFIX) or "__" not in name:
            continue
        *sections, key = name[len(ENV_PREFIX):].lower().split("__")
        node = out
        for part in sections:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"environment: {name} sets a setting inside "
                                  f"'{part}', which another variable sets as a value")
        if isinstance(node.get(key), dict):
            raise ConfigError(f"environment: {name} sets '{key}', a section that other "
                              "variables set settings of")
        node[key] = value
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
        A TOML file with ``[run]``, ``[functional]``, ``[pet]`` and ``[stats]`` tables
        (and ``[stats]``'s sub-tables, e.g. ``[stats.nbs]``).
    overrides : mapping or None
        ``{section: {key: value}}`` from the command line; ``None`` values are ignored.
    environ : mapping or None
        Environment to read ``DANEMAP_<SECTION>__<KEY>`` (``DANEMAP_STATS__NBS__THRESHOLD``
        for a sub-section) from (default ``os.environ``).

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
