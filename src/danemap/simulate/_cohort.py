"""Write a whole simulated BIDS cohort with ``ground_truth.json``."""

from __future__ import annotations

import functools
import os
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from danemap._utils.logging import get_logger, progress
from danemap._version import __version__
from danemap.errors import DanemapError, InputError
from danemap.simulate._common import (
    STREAMS,
    check_resolution,
    json_text,
    nifti_bytes,
    rng_for,
    to_jsonable,
    write_bytes,
    write_json,
)
from danemap.simulate._effects import SimulationEffects

log = get_logger("simulate")

MODALITIES = ("anat", "func", "pet", "task")
SPACE = "MNI152NLin2009cAsym"
TASK = "rest"

#: Planted phenotype distributions (T-score-like symptom scales; ADHD-200 NYU uses Conners).
SYMPTOMS = {
    "adhd_index": {"TD": (45.0, 7.0), "ADHD": (70.0, 9.0)},
    "inattentive": {"TD": (46.0, 7.0), "ADHD": (68.0, 9.0)},
    "hyperimpulsive": {"TD": (47.0, 7.0), "ADHD": (62.0, 11.0)},
}
SYMPTOM_WITHIN_CORR = 0.6
IQ = {"TD": (108.0, 13.0), "ADHD": (102.0, 14.0)}
P_MALE = {"TD": 0.55, "ADHD": 0.75}
AGE_RANGE = (7.0, 21.0)


def _check_args(out_dir: Any, n_subjects: int, n_sites: int, modalities: Sequence[str],
                n_volumes: int, tr: float, overwrite: bool = False) -> tuple[Path, tuple[str, ...]]:
    if isinstance(modalities, str):
        modalities = (modalities,)
    bad = sorted(set(modalities) - set(MODALITIES))
    if bad:
        raise InputError(f"modalities: unknown {bad}; expected some of {list(MODALITIES)}")
    if not modalities:
        raise InputError("modalities: expected at least one of anat, func, pet, found none")
    if int(n_subjects) != n_subjects or n_subjects < 2:
        raise InputError(f"n_subjects: expected an integer >= 2, found {n_subjects!r}")
    if int(n_sites) != n_sites or not 1 <= n_sites <= n_subjects:
        raise InputError(
            f"n_sites: expected an integer between 1 and n_subjects ({n_subjects}), "
            f"found {n_sites!r}"
        )
    if int(n_volumes) != n_volumes or n_volumes < 10:
        raise InputError(f"n_volumes: expected an integer >= 10, found {n_volumes!r}")
    if not tr > 0:
        raise InputError(f"tr: expected a positive repetition time in seconds, found {tr!r}")
    out = Path(os.fspath(out_dir))
    _check_out_dir(out, overwrite)
    return out, tuple(m for m in MODALITIES if m in modalities)


def _check_out_dir(out: Path, overwrite: bool) -> bool:
    """Check that ``out`` may receive a simulated dataset.

    Parameters
    ----------
    out : pathlib.Path
        The dataset root to write.
    overwrite : bool
        Whether a previous simulation there may be replaced.

    Returns
    -------
    bool
        True when ``out`` holds a previous simulation that must be removed first
        (``overwrite`` given), false when it is missing or empty.

    Raises
    ------
    InputError
        If ``out`` is a file; if it is a non-empty folder without ``ground_truth.json``
        (never removed, even with ``overwrite``); or if it holds a previous simulation and
        ``overwrite`` is false.
    """
    if out.exists() and not out.is_dir():
        raise InputError(f"out_dir {out}: exists and is not a folder")
    if not out.is_dir() or not any(out.iterdir()):
        return False
    if not (out / "ground_truth.json").is_file():
        raise InputError(
            f"out_dir {out}: folder is not empty and holds no ground_truth.json (not a previous "
            "simulation); refusing to write into it, even with overwrite: expected a missing "
            "or empty folder"
        )
    if not overwrite:
        raise InputError(
            f"out_dir {out}: folder is not empty: it holds a previous simulation "
            f"({out / 'ground_truth.json'}); expected a missing or empty folder. Pass "
            "overwrite=True (danemap simulate --overwrite) to remove it and write a new one, "
            "or choose another folder"
        )
    return True


def _remove_contents(out: Path) -> None:
    """Remove everything inside ``out`` (links are removed, never followed)."""
    for child in out.iterdir():
        if child.is_dir() and not child.is_symlink():
            shutil.rmtree(child)
        else:
            child.unlink()


def _participants(n: int, n_sites: int, seed: int) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    rng = rng_for(seed, STREAMS["cohort"])
    width = max(2, len(str(n)))
    rows = []
    cov = np.full((3, 3), SYMPTOM_WITHIN_CORR)
    np.fill_diagonal(cov, 1.0)
    for i in range(n):
        site = i % n_sites
        group = "ADHD" if (i // n_sites) % 2 == 0 else "TD"
        z = rng.multivariate_normal(np.zeros(3), cov)
        row: dict[str, Any] = {
            "participant_id": f"sub-{i + 1:0{width}d}",
            "group": group,
            "age": round(float(rng.uniform(*AGE_RANGE)), 1),
            "sex": "M" if rng.random() < P_MALE[group] else "F",
            "site": f"site-{site + 1}",
            "full4_iq": round(float(rng.normal(*IQ[group]))),
            "med_status": ("stimulant" if rng.random() < 0.5 else "naive")
            if group == "ADHD" else None,
        }
        for k, name in enumerate(SYMPTOMS):
            mu, sd = SYMPTOMS[name][group]
            row[name] = round(float(mu + sd * z[k]))
        rows.append(row)
    g = np.array([r["group"] == "ADHD" for r in rows], dtype=float)
    realised = {}
    for name in SYMPTOMS:
        x = np.array([r[name] for r in rows], dtype=float)
        realised[name] = {
            "corr_with_group": float(np.corrcoef(x, g)[0, 1]) if g.std() > 0 else None,
            "mean_TD": float(x[g == 0].mean()) if (g == 0).any() else None,
            "mean_ADHD": float(x[g == 1].mean()) if (g == 1).any() else None,
        }
    pheno = {
        "symptoms_planted": {k: {grp: {"mean": v[0], "sd": v[1]} for grp, v in d.items()}
                             for k, d in SYMPTOMS.items()},
        "symptoms_within_group_corr": SYMPTOM_WITHIN_CORR,
        "symptoms_realised": realised,
        "full4_iq_planted": {grp: {"mean": v[0], "sd": v[1]} for grp, v in IQ.items()},
        "p_male": P_MALE,
        "age_range": list(AGE_RANGE),
        "group_assignment": "balanced: site = index mod n_sites, group alternates within site",
    }
    return rows, pheno


def _sites(n_sites: int, seed: int, eff: SimulationEffects, on: bool) -> dict[str, Any]:
    rng = rng_for(seed, STREAMS["site"])
    out = {}
    for s in range(n_sites):
        draw: dict[str, Any] = {
            "bold_intensity_scale": float(np.exp(rng.normal(0.0, eff.site_intensity_sd))),
            "fc_shift_z": float(rng.normal(0.0, eff.fc_site_sd_z)),
            "spect_calibration_scale": float(np.exp(rng.normal(0.0, eff.dat_site_scale_sd))),
            "volume_bias_log": float(rng.normal(0.0, eff.vol_site_sd)),
            "t1_intensity_scale": float(np.exp(rng.normal(0.0, eff.site_intensity_sd))),
        }
        if not on:
            draw = {k: (0.0 if k in ("fc_shift_z", "volume_bias_log") else 1.0) for k in draw}
        if eff.site_scale is not None:  # explicit multiplicative effect on what is measured
            scale = eff.site_scale[s]
            draw |= {"bold_intensity_scale": scale, "spect_calibration_scale": scale,
                     "t1_intensity_scale": scale}
        draw["signal_scale_source"] = "site_scale" if eff.site_scale is not None else (
            "drawn" if on else "none")
        out[f"site-{s + 1}"] = draw
    return out


def _tsv(rows: list[dict[str, Any]]) -> str:
    cols = list(rows[0])
    lines = ["\t".join(cols)]
    for r in rows:
        lines.append("\t".join("n/a" if r[c] is None else str(r[c]) for c in cols))
    return "\n".join(lines) + "\n"


PARTICIPANTS_JSON = {
    "group": {"Description": "diagnostic group",
              "Levels": {"ADHD": "attention-deficit/hyperactivity disorder",
                         "TD": "typically developing"}},
    "age": {"Description": "age at scan", "Units": "year"},
    "sex": {"Description": "sex", "Levels": {"M": "male", "F": "female"}},
    "site": {"Description": "acquisition site (simulated site effects)"},
    "full4_iq": {"Description": "full-scale IQ (4 subtests)"},
    "med_status": {"Description": "stimulant medication history (ADHD only)",
                   "Levels": {"stimulant": "previously medicated", "naive": "medication naive"}},
    "adhd_index": {"Description": "ADHD index, T-score-like scale (simulated)"},
    "inattentive": {"Description": "inattentive symptom score, T-score-like (simulated)"},
    "hyperimpulsive": {"Description": "hyperactive/impulsive symptom score, T-score-like "
                       "(simulated)"},
}


def _description(name: str, derivative: bool) -> dict[str, Any]:
    d: dict[str, Any] = {
        "Name": name,
        "BIDSVersion": "1.9.0",
        "DatasetType": "derivative" if derivative else "raw",
        "License": "CC0",
        "Authors": ["danemap simulator"],
        "GeneratedBy": [{"Name": "danemap.simulate", "Version": __version__,
                         "Description": "synthetic data with planted effects; "
                                        "see ground_truth.json at the dataset root"}],
    }
    if derivative:
        d["SourceDatasets"] = [{"URL": "bids::"}]
    return d


def _func_subject(out: Path, sub: str, row: dict[str, Any], site: dict[str, Any], atlas: Any,
                  idx: int, seed: int, n_volumes: int, tr: float, res: int,
                  eff: SimulationEffects) -> dict[str, Any]:
    from danemap.simulate._func import bold_arrays

    data, affine, mask, conf, truth = bold_arrays(
        atlas, n_volumes, tr, [seed, STREAMS["func"], idx], group=row["group"], effects=eff,
        site_shift_z=site["fc_shift_z"], intensity_scale=site["bold_intensity_scale"],
    )
    base = out / "derivatives" / "fmriprep" / sub / "func"
    stem = f"{sub}_task-{TASK}_space-{SPACE}_res-{res}"
    zooms = (float(res),) * 3
    write_bytes(base / f"{stem}_desc-preproc_bold.nii.gz",
                nifti_bytes(data, affine, zooms=(*zooms, float(tr))))
    write_json(base / f"{stem}_desc-preproc_bold.json", {
        "RepetitionTime": float(tr), "SkullStripped": False, "TaskName": TASK,
        "SliceTimingCorrected": False, "StartTime": 0.0,
        "Sources": [f"bids:raw:{sub}/func/{sub}_task-{TASK}_bold.nii.gz"],
    })
    write_bytes(base / f"{stem}_desc-brain_mask.nii.gz",
                nifti_bytes(mask, affine, dtype=np.uint8, zooms=zooms))
    write_json(base / f"{stem}_desc-brain_mask.json", {"Type": "Brain", "RawSources": []})
    conf_text = conf.to_csv(sep="\t", index=False, na_rep="n/a", float_format="%.8g",
                            lineterminator="\n")
    write_bytes(base / f"{sub}_task-{TASK}_desc-confounds_timeseries.tsv",
                conf_text.encode("utf-8"))
    write_json(base / f"{sub}_task-{TASK}_desc-confounds_timeseries.json", {
        c: {"Description": "simulated fMRIPrep-style confound"} for c in conf.columns
    })
    keep = ("networks", "site_shift_z", "intensity_scale", "spike_volumes", "mean_fd",
            "amplitude")
    return {k: truth[k] for k in keep} | {"_regions": truth["regions"], "_n_vox": truth["n_vox"]}


def _simulate_participant(sub: str, *, out: Path, rows: dict[str, tuple[int, dict[str, Any]]],
                          sites: dict[str, Any], mods: tuple[str, ...], atlas: Any,
                          anat_atlas: Any, seed: int, n_volumes: int, tr: float, res: int,
                          anat_res: int, eff: SimulationEffects, dynamic_pet: bool,
                          anat_base: str, anat_realistic: bool | None,
                          ) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """Write one participant's images; return its truth and the shared functional truth.

    Module level (picklable) for :func:`danemap.engine.run_many`. Every draw is seeded by
    ``seed`` and the participant's index, so the output does not depend on ``n_jobs``.
    """
    idx, row = rows[sub]
    site = sites[row["site"]]
    entry: dict[str, Any] = {"group": row["group"], "site": row["site"]}
    func_shared = None
    if "func" in mods:
        ft = _func_subject(out, sub, row, site, atlas, idx, seed, n_volumes, tr, res, eff)
        func_shared = {"regions": ft.pop("_regions"), "n_vox": ft.pop("_n_vox")}
        entry["func"] = ft
    if "pet" in mods:
        from danemap.simulate._pet import pet_subject

        entry["pet"] = pet_subject(out, sub, row, site, atlas, idx, seed, eff, dynamic_pet)
    if "anat" in mods:
        from danemap.simulate._anat import anat_subject

        entry["anat"] = anat_subject(out, sub, row, site, anat_atlas, idx, seed, anat_res,
                                     eff, anat_base, anat_realistic)
    if "task" in mods:
        from danemap.simulate._task import task_subject

        entry["task"] = task_subject(out, sub, row, site, atlas, idx, seed, eff)
    log.debug("simulated %s", sub)
    return entry, func_shared


def simulate_cohort(
    out_dir: str | os.PathLike[str],
    n_subjects: int = 24,
    n_sites: int = 2,
    seed: int = 0,
    resolution: int = 3,
    anat_resolution: int = 2,
    modalities: Sequence[str] = ("anat", "func", "pet"),
    n_volumes: int = 120,
    tr: float = 2.0,
    effects: SimulationEffects | None = None,
    site_effects: bool = True,
    dynamic_pet: bool = False,
    verbose: bool = False,
    anat_base: str = "mni152",
    anat_realistic: bool | None = None,
    overwrite: bool = False,
    n_jobs: int = 1,
) -> Path:
    """Write a seeded BIDS cohort with planted group and site effects.

    Parameters
    ----------
    out_dir : path-like
        Dataset root; created if missing. A non-empty folder is refused, unless it holds a
        previous simulation (``ground_truth.json``) and ``overwrite`` is true: that
        simulation is then removed first, so no participant of it is left behind.
    n_subjects : int
        Number of participants (>= 2); groups ADHD/TD are balanced within each site.
    n_sites : int
        Number of sites (1..n_subjects).
    seed : int
        Master seed: the same seed gives byte-identical TSV/JSON and identical images.
    resolution : {2, 3}
        Grid of the functional and PET images (MNI152, the atlas grid), in mm.
    anat_resolution : {2, 3}
        Grid of the T1w and its warped labels, in mm (finer than ``resolution`` so that
        planted volume changes of small nuclei are realised in the label voxel counts).
    modalities : sequence of {"anat", "func", "pet", "task"}
        What to simulate.
    n_volumes : int
        BOLD volumes per run.
    tr : float
        BOLD repetition time in seconds.
    effects : SimulationEffects or None
        Planted effects and noise levels (defaults if None).
    site_effects : bool
        If false, every site has identity scales and zero shifts, except the explicit
        multiplicative scales of ``effects.site_scale`` when given.
    dynamic_pet : bool
        Also write a 4D dynamic [18F]FE-PE2I PET series from the SRTM.
    verbose : bool
        Show a progress bar.
    anat_base : {"mni152", "colin27"}
        Base brain of the T1w: the MNI152 2009 template (the registration target of the
        raw-T1w path) or the real Colin27 T1 of the Debian package ``mricron-data``.
    anat_realistic : bool or None
        Random head pose, bias field, Rician noise and site contrast (the T1w is then not
        in MNI space; labels in ``{sub}_dseg.nii.gz``). Default: true for Colin27, false
        for MNI152 (the legacy output).
    overwrite : bool
        Remove a previous simulation in ``out_dir`` (a folder holding ``ground_truth.json``)
        before writing. A non-empty folder without ``ground_truth.json`` is refused even
        then.
    n_jobs : int
        Participants simulated at once, in worker processes
        (:func:`danemap.engine.run_many`); the output is the same for any value.

    Returns
    -------
    pathlib.Path
        The dataset root.

    Raises
    ------
    InputError
        On an invalid argument (including an ``effects.site_scale`` whose length is not
        ``n_sites``, or ``n_jobs < 1``), a non-empty foreign ``out_dir``, or a previous
        simulation in ``out_dir`` without ``overwrite``.
    DanemapError
        When a participant fails in a worker process (``n_jobs > 1``); no
        ``ground_truth.json`` is written.
    """
    from danemap.atlas import load_atlas

    eff = SimulationEffects() if effects is None else effects
    if not isinstance(eff, SimulationEffects):
        raise InputError(
            f"effects: expected a SimulationEffects, found {type(eff).__name__}"
        )
    res = check_resolution(resolution)
    anat_res = check_resolution(anat_resolution)
    out, mods = _check_args(out_dir, n_subjects, n_sites, modalities, n_volumes, tr,
                            bool(overwrite))
    if int(n_jobs) < 1:
        raise InputError(f"n_jobs: expected an integer >= 1, found {n_jobs}")
    if eff.site_scale is not None and len(eff.site_scale) != n_sites:
        raise InputError(
            f"effects.site_scale: expected one factor per site ({n_sites}), found "
            f"{len(eff.site_scale)}: {list(eff.site_scale)}"
        )
    from danemap.simulate._anat import ANAT_BASES, COLIN27_BRAIN_PATH, COLIN27_PATH

    if anat_base not in ANAT_BASES:
        raise InputError(f"anat_base: expected one of {list(ANAT_BASES)}, found {anat_base!r}")
    if ("anat" in mods and anat_base == "colin27"
            and not (COLIN27_PATH.is_file() and COLIN27_BRAIN_PATH.is_file())):
        raise InputError(f"anat_base 'colin27': {COLIN27_PATH} is missing; install the Debian "
                         "package mricron-data (apt-get install mricron-data)")
    if _check_out_dir(out, bool(overwrite)):  # every argument checked: only now remove
        log.info("removing the previous simulation in %s (overwrite)", out)
        _remove_contents(out)
    out.mkdir(parents=True, exist_ok=True)
    atlas = load_atlas(res)
    anat_atlas = atlas if anat_res == res or "anat" not in mods else load_atlas(anat_res)
    rows, pheno = _participants(int(n_subjects), int(n_sites), int(seed))
    sites = _sites(int(n_sites), int(seed), eff, site_effects)

    write_json(out / "dataset_description.json", _description("danemap simulated cohort", False))
    write_bytes(out / "README", (
        b"Synthetic ADHD cohort written by danemap.simulate. Every planted effect and every\n"
        b"participant's true values are in ground_truth.json. Not real data.\n"))
    write_bytes(out / "participants.tsv", _tsv(rows).encode("utf-8"))
    write_json(out / "participants.json", PARTICIPANTS_JSON)
    if "func" in mods or "task" in mods:
        write_json(out / "derivatives" / "fmriprep" / "dataset_description.json",
                   _description("fMRIPrep-style derivatives (simulated)", True))
    if "anat" in mods:
        write_json(out / "derivatives" / "danemap-sim" / "dataset_description.json",
                   _description("danemap simulator: warped atlas labels", True))

    job = functools.partial(
        _simulate_participant, out=out, rows={r["participant_id"]: (i, r)
                                              for i, r in enumerate(rows)},
        sites=sites, mods=mods, atlas=atlas, anat_atlas=anat_atlas, seed=int(seed),
        n_volumes=int(n_volumes), tr=float(tr), res=res, anat_res=anat_res, eff=eff,
        dynamic_pet=bool(dynamic_pet), anat_base=anat_base, anat_realistic=anat_realistic)
    subs = [r["participant_id"] for r in rows]
    if int(n_jobs) <= 1:  # in this process: any error keeps its type and traceback
        results = [job(sub) for sub in progress(subs, "Simulating participants",
                                                verbose=verbose)]
    else:
        from danemap.engine import run_many

        outcomes = run_many(job, subs, n_jobs=int(n_jobs),
                            description="Simulating participants", verbose=verbose)
        failed = [o for o in outcomes if o.status != "ok"]
        if failed:  # the simulation fails whole: no ground_truth.json is written
            raise DanemapError(f"simulating {failed[0].item} failed: {failed[0].error}"
                               + (f" (and {len(failed) - 1} more)" if len(failed) > 1
                                  else ""))
        results = [o.result for o in outcomes]
    per: dict[str, Any] = {}
    mod_truth: dict[str, Any] = {}
    for sub, (entry, func_shared) in zip(subs, results, strict=True):
        if func_shared is not None:
            mod_truth.setdefault("func", func_shared)
        per[sub] = entry

    truth: dict[str, Any] = {
        "generator": {"name": "danemap.simulate", "version": __version__},
        "parameters": {
            "n_subjects": int(n_subjects), "n_sites": int(n_sites), "seed": int(seed),
            "resolution": res, "anat_resolution": anat_res, "modalities": list(mods),
            "n_volumes": int(n_volumes),
            "tr": float(tr), "site_effects": bool(site_effects), "dynamic_pet": bool(dynamic_pet),
            "space": SPACE, "anat_base": anat_base,
            "anat_realistic": (anat_base == "colin27") if anat_realistic is None
            else bool(anat_realistic),
        },
        "effects": eff.to_dict(),
        "phenotype": pheno,
        "sites": sites,
    }
    if "func" in mods:
        truth["functional"] = _func_summary(per, mod_truth["func"], eff)
    if "pet" in mods:
        from danemap.simulate._pet import pet_summary

        truth["pet"] = pet_summary(per, eff, atlas, dynamic_pet)
    if "anat" in mods:
        from danemap.simulate._anat import anat_summary

        truth["structural"] = anat_summary(per, eff)
    if "task" in mods:
        from danemap.simulate._task import TaskSimParams

        truth["task"] = {"task": "mid", "planted_d_nacc_gain_minus_neutral": TaskSimParams().d,
                         "definition": ("ADHD minus TD NAcc anticipation (gain - neutral) "
                                        "amplitude over its between-participant SD")}
    truth["participants"] = per
    write_bytes(out / "ground_truth.json", json_text(to_jsonable(truth)).encode("utf-8"))
    log.info("simulated cohort written to %s", out)
    return out


def _group_mean(per: dict[str, Any], fn: Any) -> dict[str, float | None]:
    out: dict[str, float | None] = {}
    for grp in ("TD", "ADHD"):
        vals = [fn(p) for p in per.values() if p["group"] == grp]
        vals = [v for v in vals if v is not None]
        out[grp] = float(np.mean(vals)) if vals else None
    return out


def _func_summary(per: dict[str, Any], shared: dict[str, Any],
                  eff: SimulationEffects) -> dict[str, Any]:
    nets = sorted(next(iter(per.values()))["func"]["networks"])
    shifts = {"frontostriatal": eff.fc_frontostriatal_z, "lc_pfc": eff.fc_lc_pfc_z}
    summary: dict[str, Any] = {}
    for net in nets:
        means = _group_mean(per, lambda p, n=net: p["func"]["networks"][n]["expected_score_z"])
        shift = shifts.get(net, 0.0)
        sd = eff.fc_subject_sd_z
        summary[net] = {
            "group_shift_latent_z": shift,
            "cohens_d_latent": shift / sd if sd > 0 else None,
            "expected_score_z_group_mean": means,
        }
    return {
        "regions": shared["regions"],
        "n_vox": shared["n_vox"],
        "model": ("latent region signals with correlation C (Cholesky of C on white sources, "
                  "one AR(1) filter); voxel = region signal + sqrt(noise_var) * filtered noise"),
        "expected_roi_corr_formula": "rho_ab = c_ab / sqrt((1 + noise_var/n_a)(1 + noise_var/n_b))",
        "expected_score": "mean over the network's edges of arctanh(rho_ab)",
        "valid_after": ("regressing the 24 motion parameters + white_matter + csf (with an "
                        "intercept) or any linear filter applied to every voxel; NOT after "
                        "global signal regression"),
        "cohens_d_note": ("d relative to the between-subject SD of the latent network shift; "
                          "the measured d is smaller because of estimation noise"),
        "noise_var": eff.fc_noise_var,
        "ar1": eff.fc_ar1,
        "networks": summary,
    }
