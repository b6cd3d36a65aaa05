"""The structural marker family: regional volumes and ICV, one volume set per session."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from danemap._utils.logging import get_logger
from danemap.markers.base import GROUP_ANALYSES, GroupTable, MarkerFamily, register
from danemap.markers.structural._inputs import StructuralInput, structural_inputs
from danemap.markers.structural._volumes import RAW_T1W_CAUTION, VOLUME_COLUMNS, VolumeSet

if TYPE_CHECKING:
    from danemap.config import Config
    from danemap.io import SessionData

__all__ = ["ICV_REGION", "StructuralFamily", "StructuralResult"]

log = get_logger("markers.structural")

#: The ``region`` of the ICV row of a per-participant volume table.
ICV_REGION = "ICV"


_COLUMN_DOCS: dict[str, dict[str, Any]] = {
    "region": {"Description": "Structure: its name in the input (FreeSurfer's "
                              "'Left-Caudate' for aseg.stats/SynthSeg/dseg inputs, the atlas "
                              "region 'Caudate_L' for the raw-T1w path), or ICV"},
    "hemisphere": {"Description": "Hemisphere", "Levels": {
        "L": "left", "R": "right", "midline": "midline or bilateral (ICV)"}},
    "volume_mm3": {"Description": "Volume: FreeSurfer's partial-volume corrected "
                                  "Volume_mm3, SynthSeg's soft volume, the dseg voxel count "
                                  "x voxel volume, or (raw T1w) the volume of the atlas "
                                  "region warped into the participant's brain",
                   "Units": "mm^3"},
    "method": {"Description": "What produced the row", "Levels": {
        "freesurfer-aseg": "FreeSurfer stats/aseg.stats",
        "fastsurfer-aseg": "FastSurfer stats/aseg.stats",
        "synthseg-1": "SynthSeg 1 volume CSV", "synthseg-2": "SynthSeg 2 volume CSV",
        "dseg-lut": "label image with a FreeSurfer lookup table (voxel counts)",
        "ants-atlas": "raw T1w: ANTsPy N4, registration to MNI152, Atropos, the danemap "
                      "atlas warped into native space (through Colin27, where AAL3 was "
                      "drawn, when the sidecar's Provenance.atlas_space is colin27)"}},
    "enigma": {"Description": "The ENIGMA-ADHD structure name (Hoogman et al. 2017) of a "
                              "FreeSurfer-style row, n/a otherwise (atlas regions are not the "
                              "same quantity as FreeSurfer's)"},
    "qc": {"Description": "Quality-control flags, ';'-separated; n/a when none"},
    "gm_volume_mm3": {"Description": "Raw T1w: grey-matter volume of the region, the sum of "
                                     "the Atropos GM posterior x voxel volume",
                      "Units": "mm^3"},
}


@dataclass
class StructuralResult:
    """The volumes of one session and, for the raw-T1w path, its images.

    Attributes
    ----------
    volumes : VolumeSet
        Regional volumes and ICV.
    t1w : object or None
        The raw-T1w path's :class:`~danemap.markers.structural._ants.T1wResult`
        (native-space atlas, transforms, QC), None for the other inputs.
    """

    volumes: VolumeSet
    t1w: Any = None


def volume_table(vs: VolumeSet) -> pd.DataFrame:
    """Return the per-participant table: the region rows, then the ICV row.

    Parameters
    ----------
    vs : VolumeSet
        One session's volumes.

    Returns
    -------
    pandas.DataFrame
        Columns :data:`VOLUME_COLUMNS` (plus the set's extra columns).
    """
    cols = [*VOLUME_COLUMNS, *(c for c in vs.table.columns if c not in VOLUME_COLUMNS)]
    table = vs.table.loc[:, cols].copy()
    table["qc"] = table["qc"].replace("", None)
    table["enigma"] = table["enigma"].replace("", None)
    icv: dict[str, Any] = {c: None for c in cols}
    icv.update(region=ICV_REGION, hemisphere="midline", volume_mm3=vs.icv_mm3,
               method=vs.icv_method or vs.method,
               qc=None if vs.icv_mm3 is not None else "icv_missing")
    return pd.concat([table, pd.DataFrame([icv], columns=cols)], ignore_index=True)


@register
class StructuralFamily(MarkerFamily):
    """Regional volumes and ICV from FreeSurfer/FastSurfer, SynthSeg, a dseg or a raw T1w."""

    name = "structural"
    config_section = "structural"
    modalities = ("anat/T1w",)

    def inputs(self, session: SessionData, config: Config) -> list[Any]:
        """Return the session's preferred structural input (see ``[structural] inputs``)."""
        return structural_inputs(session, config.structural.inputs)

    def describe_item(self, item: StructuralInput) -> str:
        """Name the input by its file."""
        return item.path.name

    def compute(self, item: StructuralInput, atlas: Any, config: Config) -> StructuralResult:
        """Read or compute the session's volumes."""
        if item.kind == "t1w":
            return self._from_t1w(item, atlas, config)
        from danemap.markers.structural import _readers

        if item.kind == "aseg":
            vs = _readers.read_aseg_stats(item.path)
        elif item.kind == "synthseg":
            vs = _readers.read_synthseg_volumes(item.path,
                                                participant_id=item.session.participant,
                                                session=item.session.session)
        else:
            vs = _readers.read_dseg(item.path, lut=config.structural.lut or None)
        return StructuralResult(vs)

    def _from_t1w(self, item: StructuralInput, atlas: Any, config: Config) -> StructuralResult:
        from danemap.io import write_json
        from danemap.markers.structural._ants import segment_t1w

        xfm = _transform_dir(item.session, config)
        res = segment_t1w(item.path, atlas, quick=config.structural.quick,
                          work_dir=_work_root(config), keep_work=config.structural.keep_work,
                          transform_dir=xfm, atlas_space=config.structural.atlas_space)
        # the PET family reuses the transforms (cached_t1w_transforms)
        write_json(xfm / "transforms.json", {
            "t1w": str(item.path), "forward": [str(p) for p in res.transforms["forward"]],
            "inverse": [str(p) for p in res.transforms["inverse"]]})
        return StructuralResult(res.volumes, res)

    def write(self, result: StructuralResult, writer: Any, item: StructuralInput,
              atlas_name: str) -> list[Path]:
        """Write the volume table (and, for a raw T1w, the native atlas, transforms, QC)."""
        session = item.session
        sub, ses = session.participant, session.session
        vs = result.volumes
        path = writer.path(sub, "anat", "stats", ".tsv", ses=ses, atlas=atlas_name,
                           desc="volumes")
        table = volume_table(vs)
        docs = {k: v for k, v in _COLUMN_DOCS.items() if k in table.columns}
        docs["_metadata"] = {
            "Method": vs.method,
            "LikeFreeSurfer": vs.like_freesurfer,
            "Sources": [str(vs.source)],
            "ICV": {"Value_mm3": vs.icv_mm3, "Method": vs.icv_method or None},
            "Provenance": vs.provenance,
            "Note": ("Volumes from an atlas warped into the brain (method ants-atlas) are "
                     "not the same quantity as FreeSurfer's segmentation volumes, and are "
                     "never compared with ENIGMA-ADHD"),
        }
        if not vs.like_freesurfer:
            docs["_metadata"]["Caution"] = RAW_T1W_CAUTION
        written = [writer.write_tsv(table, path, sidecar=docs)]
        if result.t1w is not None:
            written += _write_t1w_outputs(result.t1w, writer, sub, ses, atlas_name)
        return written

    def missing_input_hint(self, sessions: Sequence[SessionData] = ()) -> str:
        """Say which structural inputs the family looks for."""
        return ("no structural input; expected derivatives/{freesurfer,fastsurfer}/sub-XX/"
                "stats/aseg.stats, a SynthSeg volume CSV under derivatives/synthseg, a "
                "native-space '*_dseg.nii.gz' (fMRIPrep desc-aseg), or a raw anat/*_T1w.nii.gz")

    def collect(self, out_root: Path, atlas_name: str, config: Config) -> list[GroupTable]:
        """Write ``group/volumes.tsv`` (one row per participant, one column per region)."""
        from danemap.markers.structural._group import collect_volumes

        tables = []
        for name, (path, like_fs) in collect_volumes(out_root, out_root / "group",
                                                     atlas_name).items():
            title = ("Subcortical volumes (FreeSurfer-style, the ENIGMA-ADHD structures)"
                     if like_fs else "Regional volumes (the atlas warped into each T1w; "
                     "registration errors as large as the effects sought; see the sidecar)")
            analyses = (*GROUP_ANALYSES, "reference") if like_fs else GROUP_ANALYSES
            tables.append(GroupTable(name=name, path=path, title=title, kind="region",
                                     analyses=analyses, family=self.name, icv=ICV_REGION))
        return tables



def _work_root(config: Config) -> Path:
    import tempfile

    return Path(config.run.work_dir) if config.run.work_dir else Path(tempfile.gettempdir()) \
        / "danemap-work"


def _transform_dir(session: SessionData, config: Config) -> Path:
    ses = f"_{session.session}" if session.session else ""
    return _work_root(config) / "transforms" / f"{session.participant}{ses}"


def cached_t1w_transforms(session: SessionData, config: Config
                          ) -> tuple[Any, list[str]] | None:
    """Return the session's T1w and its T1w -> MNI transforms, if computed in this work folder.

    The raw-T1w path leaves them in ``<work>/transforms/sub-XX[_ses-YY]`` (and copies them
    into the derivatives), so the PET family registers PET to the T1w only.

    Parameters
    ----------
    session : SessionData
        The participant's session.
    config : Config
        The configuration (``[run] work_dir``).

    Returns
    -------
    (nibabel image, list of str) or None
        The T1w and the forward transforms (ANTs order); None when there are none.
    """
    from danemap.io import load_nifti, read_json

    record = _transform_dir(session, config) / "transforms.json"
    if not record.is_file():
        return None
    info = read_json(record, "transform record")
    paths = [str(p) for p in info.get("forward", [])]
    t1w = session.get_files("anat/T1w")
    # the work folder may be shared between datasets: only this session's own T1w counts
    if not t1w or Path(str(info.get("t1w", ""))).resolve() != t1w[0].path.resolve() \
            or not paths or not all(Path(p).is_file() for p in paths):
        return None
    return load_nifti(info["t1w"], expect_ndim=3), paths


def _write_t1w_outputs(res: Any, writer: Any, sub: str, ses: str | None,
                       atlas_name: str) -> list[Path]:
    """Write the native-space atlas, the T1w->MNI transforms and the QC figure of a T1w."""
    from danemap.io import atomic_write_bytes, write_nifti
    from danemap.markers.structural._qc import write_qc_figure

    out = [write_nifti(res.labels_img, writer.path(sub, "anat", "dseg", ".nii.gz", ses=ses,
                                                   space="T1w", atlas=atlas_name))]
    for src in res.transforms.get("forward", []):
        src = Path(src)
        kind = "warp" if src.name.endswith(".nii.gz") else "affine"
        ext = ".nii.gz" if kind == "warp" else src.suffix
        dest = writer.path(sub, "anat", "xfm", ext, ses=ses, desc=kind)
        dest = dest.with_name(dest.name.replace(
            "_desc-", "_from-T1w_to-MNI152NLin2009cAsym_mode-image_desc-"))
        dest.parent.mkdir(parents=True, exist_ok=True)
        out.append(atomic_write_bytes(dest, src.read_bytes()))
    fig = writer.path(sub, "figures", "T1w", ".png", ses=ses, atlas=atlas_name, desc="qc")
    write_qc_figure(res.t1w_n4_img, res.labels_img, fig)
    out.append(fig)
    return out
