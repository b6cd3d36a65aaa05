"""The functional marker family: one fMRIPrep (or fallback) BOLD run per work item."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from danemap._utils.logging import get_logger
from danemap.markers.base import GROUP_ANALYSES, GroupTable, MarkerFamily, register
from danemap.markers.functional._compute import FunctionalResult, process_run
from danemap.markers.functional._group import collect_functional_group
from danemap.markers.functional._inputs import DEFAULT_SPACE, functional_runs
from danemap.markers.functional._outputs import write_run

if TYPE_CHECKING:
    from danemap.config import Config
    from danemap.io import SessionData

__all__ = ["FunctionalFamily"]

log = get_logger("markers.functional")

#: Group tables: (title, feature kind, analysed). Counts and QC tables are descriptions, and
#: raw ALFF / zALFF are written for reference: ALFF enters the statistics as mALFF
#: (scale-free, comparable across scanners).
_TABLES: dict[str, tuple[str, str, bool]] = {
    "networks": ("Network scores (mean within-network Fisher z)", "network", True),
    "malff": ("Regional mALFF (ALFF / the run's atlas-voxel mean)", "region", True),
    "falff": ("Regional fALFF", "region", True),
    "connectivity_corr": ("Connectivity edges (correlation, Fisher z)", "edge", True),
    "connectivity_partialcorr": ("Connectivity edges (partial correlation, Fisher z)", "edge",
                                 True),
    "connectivity_tangent": ("Connectivity edges (tangent space)", "edge", True),
    "alff": ("Regional ALFF (raw, BOLD units)", "region", False),
    "zalff": ("Regional zALFF", "region", False),
}

#: Edge tables get edge-level inference and no classification: the tangent reference is
#: fitted on every run, so a cross-validated classifier on it would see its test folds.
_EDGE_ANALYSES = ("harmonize", "glm", "permutation", "nbs")


@register
class FunctionalFamily(MarkerFamily):
    """Resting-state connectivity, network scores, ALFF and motion QC per BOLD run.

    Attributes
    ----------
    space : str
        Template space of the fMRIPrep outputs read (see :func:`functional_runs`).
    """

    name = "functional"
    config_section = "functional"
    modalities = ("func/bold",)
    space: ClassVar[str] = DEFAULT_SPACE

    def inputs(self, session: SessionData, config: Config) -> list[Any]:
        """Return ``(session, run)`` for every resting-state run with a usable BOLD.

        Runs of the task-fMRI family's task (``[task] task``, ``mid``) are left to it.
        """
        return [(session, run) for run in functional_runs(session, self.space)
                if run.preproc is not None and run.entities.get("task") != config.task.task]

    def describe_item(self, item: Any) -> str:
        """Name the run by its BOLD file."""
        _, run = item
        return str(run.preproc.path.name)

    def compute(self, item: Any, atlas: Any, config: Config) -> FunctionalResult:
        """Denoise the run and compute every functional marker."""
        session, run = item
        if run.fallback:
            log.warning("%s: %s", session.participant, run.fallback)
        return process_run(
            run.preproc.path, run.confounds.path if run.confounds else None, atlas,
            config=config.functional, mask=run.mask.path if run.mask else None,
            sidecar=run.preproc.metadata or None,
            max_bytes=config.run.max_nifti_gib * 2**30,
            sidecar_name=_tr_sidecar(run.preproc))

    def write(self, result: FunctionalResult, writer: Any, item: Any,
              atlas_name: str) -> list[Path]:
        """Write the run's time series, connectivity, networks, ALFF, QC and mean BOLD."""
        session, run = item
        ents = run.entities
        bold_ents = getattr(run.preproc, "entities", None) or {}
        fd, fd_source = _fd_series(run.confounds.path if run.confounds else None,
                                   int(result.qc.get("n_volumes") or 0))
        return write_run(result, writer, session.participant, session=session.session,
                         task=ents.get("task", "rest"), run=ents.get("run"), atlas=atlas_name,
                         space=bold_ents.get("space"), res=bold_ents.get("res"), fd=fd,
                         fd_source=fd_source)

    def qc_excluded(self, result: FunctionalResult) -> bool:
        """Tell whether motion QC flags the run for exclusion."""
        return bool(result.qc.get("exclude"))

    def missing_input_hint(self, sessions: Sequence[SessionData] = ()) -> str:
        """Say which functional inputs the family looks for, and what was found instead.

        When a session has raw ``func/*_bold`` images but no preprocessed BOLD (bids-examples
        ``ds001``), the hint says so: danemap reads fMRIPrep outputs, it does not
        preprocess raw BOLD.

        Parameters
        ----------
        sessions : sequence of SessionData, optional
            The participant's discovered sessions.

        Returns
        -------
        str
        """
        expected = ("expected fMRIPrep "
                    f"'*_space-{self.space}*_desc-preproc_bold.nii.gz' under "
                    "<bids_dir>/derivatives/fmriprep, or a 4D BOLD in MNI space with a "
                    "'*_desc-confounds_timeseries.tsv' beside it")
        raw = [run.bold.path.name for s in sessions for run in functional_runs(s, self.space)
               if run.bold is not None and run.preproc is None]
        if raw:
            shown = ", ".join(raw[:3]) + (f" and {len(raw) - 3} more" if len(raw) > 3 else "")
            return (f"no functional input: found {len(raw)} raw, unpreprocessed BOLD "
                    f"file(s) ({shown}) but no fMRIPrep output for them; danemap needs "
                    "fMRIPrep's preprocessed BOLD and confounds: run fMRIPrep first, then "
                    "point danemap at its output with --derivatives PATH or put it in "
                    "BIDS_DIR/derivatives/fmriprep (danemap reads its "
                    f"'*_space-{self.space}*_desc-preproc_bold.nii.gz' and "
                    "'*_desc-confounds_timeseries.tsv')")
        return f"no functional input; {expected}"

    def collect(self, out_root: Path, atlas_name: str, config: Config) -> list[GroupTable]:
        """Gather every run's outputs into the group tables (``out_root/group``)."""
        paths = collect_functional_group(out_root, out_root / "group",
                                         connectivity=config.functional.connectivity,
                                         atlas=atlas_name)
        tables = []
        for name, (title, kind, analysed) in _TABLES.items():
            if name not in paths:
                continue
            analyses = (_EDGE_ANALYSES if kind == "edge" else GROUP_ANALYSES) if analysed \
                else ()
            tables.append(GroupTable(name=name, path=paths[name], title=title, kind=kind,
                                     analyses=analyses, family=self.name))
        return tables


def _fd_series(confounds: Path | None, n_volumes: int) -> tuple[Any, str | None]:
    """Return the run's framewise displacement from its confounds file (None: none).

    The file was read and checked by the computation already; a table without a
    ``framewise_displacement`` column, or with another row count, gives None.
    """
    if confounds is None:
        return None, None
    from danemap.markers.functional._confounds import read_confounds

    table = read_confounds(confounds)
    if "framewise_displacement" not in table.columns or (n_volumes and
                                                         len(table) != n_volumes):
        return None, None
    return table["framewise_displacement"].to_numpy(dtype=float), str(confounds)


def _tr_sidecar(bold: Any) -> str | None:
    """Name the JSON file that sets a BOLD's ``RepetitionTime`` (nearest first).

    Discovery merges the BIDS inheritance chain of sidecars into ``metadata``; this finds
    the file the merged value came from, so that a TR disagreement names it.
    """
    sidecars = list(getattr(bold, "sidecars", []) or [])
    if not sidecars:
        return None
    from danemap.io import read_json

    for path in reversed(sidecars):
        try:
            meta = read_json(path, "BOLD sidecar")
        except (OSError, ValueError):
            continue
        if isinstance(meta, dict) and "RepetitionTime" in meta:
            return str(path)
    return " + ".join(str(p) for p in sidecars)
