"""danemap.markers: imaging markers per participant (functional; structural and PET to come).

``danemap.markers.functional`` turns resting-state BOLD (or precomputed ROI time series)
into denoised region time series, correlation / partial correlation / tangent
connectivity, network scores, ALFF/fALFF and motion QC.
"""

from __future__ import annotations

from danemap.markers.functional import (
    ALFF_BAND,
    FunctionalResult,
    bipartite_edges,
    collect_functional_group,
    process_run,
    process_timeseries,
    resolve_tr,
    write_run,
)

__all__ = [
    "ALFF_BAND",
    "FunctionalResult",
    "bipartite_edges",
    "collect_functional_group",
    "process_run",
    "process_timeseries",
    "resolve_tr",
    "write_run",
]
