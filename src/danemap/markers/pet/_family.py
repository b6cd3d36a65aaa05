"""The PET/SPECT marker family: one image (static or dynamic) per work item."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from danemap._utils.logging import get_logger
from danemap.markers.base import GROUP_ANALYSES, GroupTable, MarkerFamily, register
from danemap.markers.pet._inputs import PetInput, pet_inputs

if TYPE_CHECKING:
    from danemap.config import Config
    from danemap.io import SessionData

__all__ = ["PetFamily", "PetResult"]

log = get_logger("markers.pet")

_COLUMN_DOCS: dict[str, dict[str, Any]] = {
    "region": {"Description": "Region (atlas region, a PET sub-region such as the anterior "
                              "putamen, or a ratio's regions)"},
    "hemisphere": {"Description": "Hemisphere", "Levels": {
        "L": "left", "R": "right", "midline": "midline", "bilateral": "both hemispheres"}},
    "measure": {"Description": "What the value is", "Levels": {
        "SBR": "specific binding ratio, target / reference - 1",
        "SUVR": "standardised uptake value ratio, target / reference",
        "PC_ratio": "putamen / caudate SBR ratio",
        "asymmetry_index": "100 |L - R| / ((L + R) / 2)",
        "BPND": "non-displaceable binding potential (reference-tissue model)",
        "R1": "relative delivery K1 / K1' (reference-tissue model)"}},
    "value": {"Description": "The value of the measure"},
    "method": {"Description": "How it was obtained: 'uncorrected', 'gtm' (geometric "
                              "transfer matrix PVC, Rousset 1998), 'rbv' (region-based voxel-"
                              "wise PVC, Thomas 2011), or the kinetic model ('srtm', 'mrtm2', "
                              "'logan')"},
    "reference": {"Description": "Reference region"},
    "pvc": {"Description": "Whether the value is partial-volume corrected"},
}


@dataclass
class PetResult:
    """The markers of one PET/SPECT image.

    Attributes
    ----------
    table : pandas.DataFrame
        ``region, hemisphere, measure, value, method, reference, pvc``.
    measure : str
        The primary measure (``"SBR"`` for a static image, ``"BPND"`` for a dynamic one).
    mni : nibabel.Nifti1Image
        The (mean) image in MNI space, for the QC figure.
    labels : nibabel.Nifti1Image
        The atlas on the image's MNI grid (the QC figure's outlines).
    tacs : pandas.DataFrame or None
        Regional TACs of a dynamic series.
    fits : pandas.DataFrame or None
        The fitted model TACs of a dynamic series (``<region>__<model>`` columns;
        :func:`~danemap.markers.pet._dynamic.fitted_curves`).
    maps : dict
        Voxel-wise maps (``bpnd``, ``r1``; the RBV-corrected image) as nibabel images.
    meta : dict
        Sidecar metadata: tracer, normalisation route and QC, reference, PSF, models.
    """

    table: pd.DataFrame
    measure: str
    mni: Any
    labels: Any
    tacs: pd.DataFrame | None = None
    maps: dict[str, Any] = field(default_factory=dict)
    fits: pd.DataFrame | None = None
    meta: dict[str, Any] = field(default_factory=dict)


@register
class PetFamily(MarkerFamily):
    """DAT/NET binding: SBR/SUVR with PVC for static images, BP_ND maps for dynamic ones."""

    name = "pet"
    config_section = "pet"
    modalities = ("pet/pet",)

    def inputs(self, session: SessionData, config: Config) -> list[Any]:
        """Return every PET/SPECT image of the session, its timing validated."""
        return pet_inputs(session, max_bytes=config.run.max_nifti_gib * 2**30)

    def describe_item(self, item: PetInput) -> str:
        """Name the image by its file."""
        return item.path.name

    def compute(self, item: PetInput, atlas: Any, config: Config) -> PetResult:
        """Normalise the image to MNI and quantify it."""
        from danemap.io import load_nifti
        from danemap.markers.pet import _regions
        from danemap.markers.pet._normalise import normalise_to_mni
        from danemap.markers.structural._family import _work_root

        cfg = config.pet
        img = load_nifti(item.path, expect_ndim=(3, 4),
                         max_bytes=config.run.max_nifti_gib * 2**30)
        defaults = _regions.tracer_defaults(item.tracer)
        reference = cfg.reference_region or defaults.reference
        norm = normalise_to_mni(
            img, name=item.path.name, atlas=atlas, setting=cfg.space,
            durations=item.frames.duration_s if item.frames is not None else None,
            t1w_to_mni=_t1w_transforms(item.session, config),
            template=cfg.template or None, tracer_family=defaults.target,
            work_dir=_work_root(config))
        mni = norm.img
        meta: dict[str, Any] = {
            "TracerName": item.tracer, "Normalisation": {"Route": norm.route, **norm.qc},
            "Reference": reference, "TracerDefaults": defaults.describe(),
        }
        if item.frames is None:
            data = np.asarray(mni.dataobj, dtype=np.float64)
            data = data[..., 0] if data.ndim == 4 else data
            import nibabel as nib

            mni3 = nib.Nifti1Image(data, mni.affine)
            fwhm = cfg.fwhm_mm or defaults.fwhm_mm
            pvc = cfg.pvc
            if pvc != "none" and not fwhm > 0:
                log.warning("%s: no PSF FWHM is known for tracer %r, so no partial-volume "
                            "correction; set [pet] fwhm_mm", item.path.name, item.tracer)
                pvc = "none"
            table, maps = _static(mni3, atlas, item.tracer, reference, pvc, fwhm)
            meta["PSF_FWHM_mm"] = fwhm
            meta["PVC"] = pvc
            return PetResult(table, "SBR", mni3, atlas.resample_to(mni3).img, maps=maps,
                             meta=meta)
        from danemap.markers.pet._dynamic import quantify_dynamic
        from danemap.markers.pet._normalise import _mean_image

        on_grid = atlas.resample_to(mni)
        ref_mask = _regions.reference_mask(on_grid, reference)
        res = quantify_dynamic(mni, on_grid, item.frames, reference=ref_mask,
                               reference_name=reference, high_binding=defaults.high_binding,
                               models=cfg.models, map_model=cfg.map_model)
        import nibabel as nib

        maps = {k: nib.Nifti1Image(v.astype(np.float32), mni.affine)
                for k, v in res.maps.items()}
        meta.update(Models=list(cfg.models), MapModel=cfg.map_model, k2_ref_per_min=res.k2_ref,
                    t_star_min=res.t_star)
        mean = nib.Nifti1Image(_mean_image(np.asarray(mni.dataobj, dtype=np.float32),
                                           item.frames.duration_s), mni.affine)
        return PetResult(res.table, "BPND", mean, on_grid.img, tacs=res.tacs, maps=maps,
                         meta=meta, fits=res.fits)

    def write(self, result: PetResult, writer: Any, item: PetInput,
              atlas_name: str) -> list[Path]:
        """Write the regional table, the maps, the TACs and the QC figure."""
        from danemap.io import write_nifti
        from danemap.markers.structural._qc import write_qc_figure

        session = item.session
        sub = session.participant
        # every entity that tells two images of a session apart (tracer, acq, rec, run)
        ents = {"ses": session.session, "trc": _trc(item),
                **{k: item.file.entities.get(k) for k in ("acq", "rec", "run")}}
        desc = "sbr" if result.measure == "SBR" else "bpnd"
        path = writer.path(sub, "pet", "stats", ".tsv", **ents, atlas=atlas_name, desc=desc)
        docs = {k: v for k, v in _COLUMN_DOCS.items() if k in result.table.columns}
        docs["_metadata"] = {**result.meta, "Sources": [str(item.path)]}
        written = [writer.write_tsv(result.table, path, sidecar=docs)]
        for name, img in result.maps.items():
            out = writer.path(sub, "pet", "pet", ".nii.gz", **ents,
                              space="MNI152NLin2009cAsym", desc=name)
            written.append(write_nifti(img, out))
            writer.write_json(out.with_name(out.name.replace(".nii.gz", ".json")), {
                "Description": f"Voxel-wise {name} ({result.meta.get('MapModel', name)})",
                "Sources": [str(item.path)], "Reference": result.meta.get("Reference")})
        if result.tacs is not None:
            tac = writer.path(sub, "pet", "tacs", ".tsv", **ents, atlas=atlas_name)
            written.append(writer.write_tsv(result.tacs, tac, sidecar={
                "frame_start_min": {"Description": "Frame start after injection",
                                    "Units": "min"},
                "frame_end_min": {"Description": "Frame end after injection", "Units": "min"},
                "_metadata": {"Description": "Frame-mean activity per atlas region (image "
                                             "units), and of the reference region"}}))
        if result.fits is not None:
            written.append(_write_fits(result.fits, result.meta, writer, sub, ents,
                                       atlas_name, item))
        fig = writer.path(sub, "figures", "pet", ".png", **ents, atlas=atlas_name,
                          desc="qc")
        write_qc_figure(result.mni, result.labels, fig)
        written.append(fig)
        return written

    def missing_input_hint(self, sessions: Sequence[SessionData] = ()) -> str:
        """Say which PET inputs the family looks for."""
        return ("no PET/SPECT input; expected pet/sub-XX_trc-<tracer>_pet.nii.gz with a "
                "_pet.json (TracerName; FrameTimesStart/FrameDuration for a dynamic series)")

    def collect(self, out_root: Path, atlas_name: str, config: Config) -> list[GroupTable]:
        """Write ``group/pet.tsv`` (one row per participant; one table per tracer)."""
        from danemap.markers.pet._group import collect_pet

        tables = []
        for name, (path, title) in collect_pet(out_root, out_root / "group", atlas_name,
                                               pvc=config.pet.pvc,
                                               model=config.pet.map_model).items():
            tables.append(GroupTable(name=name, path=path, title=title, kind="region",
                                     analyses=GROUP_ANALYSES, family=self.name,
                                     moderator="med_status"))
        return tables



def _write_fits(fits: pd.DataFrame, meta: dict[str, Any], writer: Any, sub: str,
                ents: dict[str, Any], atlas_name: str, item: PetInput) -> Path:
    """Write the fitted model TACs beside the TACs (``..._desc-fits_tacs.tsv``)."""
    path = writer.path(sub, "pet", "tacs", ".tsv", **ents, atlas=atlas_name, desc="fits")
    models = sorted({c.rsplit("__", 1)[1] for c in fits.columns if "__" in c})
    sidecar: dict[str, Any] = {
        "frame_start_min": {"Description": "Frame start after injection", "Units": "min"},
        "frame_end_min": {"Description": "Frame end after injection", "Units": "min"},
        "frame_mid_min": {"Description": "Frame mid-time, (start + end) / 2", "Units": "min"},
        "_metadata": {
            "Description": "Fitted frame-mean model TACs of the regional kinetic fits, one "
                           "<region>__<model> column per region and model, in the image "
                           "units of the TACs (the _tacs.tsv beside this file). SRTM: "
                           "R1 C_R + (k2 - R1 k2a) C_R conv exp(-k2a t) (Gunn et al. 1997); "
                           "MRTM2: the same one-tissue curve from its R1, k2 and k2a. "
                           "Logan has no model TAC. Regions without a finite fit are absent.",
            "Units": "image units (as the TACs)", "Models": models,
            "Reference": meta.get("Reference"),
            "k2_ref_per_min": meta.get("k2_ref_per_min"),
            "Sources": [str(item.path)]}}
    for col in fits.columns:
        if "__" in col:
            region, model = col.rsplit("__", 1)
            sidecar[col] = {"Description": f"Fitted {model.upper()} frame-mean TAC of {region}",
                            "Units": "image units (as the TACs)"}
    return Path(writer.write_tsv(fits, path, sidecar=sidecar))


def _trc(item: PetInput) -> str:
    import re

    return item.file.entities.get("trc") or re.sub(r"[^A-Za-z0-9]", "", item.tracer) or "unknown"


def _t1w_transforms(session: SessionData, config: Config) -> tuple[Any, list[str]] | None:
    """Return the T1w and its cached T1w -> MNI transforms (None: none computed)."""
    from danemap.markers.structural._family import cached_t1w_transforms

    return cached_t1w_transforms(session, config)


def _static(img: Any, atlas: Any, tracer: str, reference: str, pvc: str,
            fwhm_mm: float) -> tuple[pd.DataFrame, dict[str, Any]]:
    from danemap.markers.pet._static import quantify_static, rbv_image

    table = quantify_static(img, atlas, tracer=tracer, reference=reference,
                            pvc=None if pvc == "none" else pvc, fwhm_mm=fwhm_mm)
    maps = {}
    if pvc == "rbv":  # the voxel-wise corrected image, whose region means are the rbv rows
        maps["rbv"] = rbv_image(img, atlas, fwhm_mm=fwhm_mm, tracer=tracer,
                                reference=reference)
    return table, maps
