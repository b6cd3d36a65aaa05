"""The functional marker family: resting-state BOLD to connectivity, networks and ALFF.

``process_run`` turns one BOLD run (or ``process_timeseries`` precomputed ROI time series)
into denoised region time series, correlation / partial correlation connectivity, network
scores, ALFF/fALFF/mALFF/zALFF and motion QC (:mod:`._compute`); ``write_run`` writes them
as BIDS derivatives (:mod:`._outputs`); ``collect_functional_group`` gathers every run into
the group tables, tangent connectivity included (:mod:`._group`). ``functional_runs``
pairs a session's raw BOLD runs with their fMRIPrep outputs (:class:`FuncRun`, with the
fallbacks, :mod:`._inputs`). :class:`FunctionalFamily` (:mod:`._family`) puts them behind the
:class:`danemap.markers.base.MarkerFamily` interface and registers itself on import.
"""

from __future__ import annotations

from danemap.markers.functional._compute import (
    ALFF_BAND,
    FunctionalResult,
    bipartite_edges,
    process_run,
    process_timeseries,
    resolve_tr,
)
from danemap.markers.functional._family import FunctionalFamily
from danemap.markers.functional._group import collect_functional_group
from danemap.markers.functional._inputs import DEFAULT_SPACE, FuncRun, functional_runs
from danemap.markers.functional._outputs import write_run

__all__ = [
    "ALFF_BAND",
    "DEFAULT_SPACE",
    "FuncRun",
    "FunctionalFamily",
    "FunctionalResult",
    "bipartite_edges",
    "collect_functional_group",
    "functional_runs",
    "process_run",
    "process_timeseries",
    "resolve_tr",
    "write_run",
]
