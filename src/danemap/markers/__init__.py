"""danemap.markers: imaging markers per participant, one marker family per modality.

Every family implements :class:`danemap.markers.base.MarkerFamily` and registers itself;
the BIDS-App workflow loops over :func:`danemap.markers.base.families`. Built:
``danemap.markers.functional`` (resting-state BOLD to denoised region time series,
correlation / partial correlation / tangent connectivity, network scores, ALFF/fALFF/mALFF/
zALFF and motion QC).
"""

from __future__ import annotations

from danemap.markers.base import GroupTable, MarkerFamily, families, get_family, register
from danemap.markers.functional import (
    ALFF_BAND,
    FunctionalFamily,
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
    "FunctionalFamily",
    "FunctionalResult",
    "GroupTable",
    "MarkerFamily",
    "bipartite_edges",
    "collect_functional_group",
    "families",
    "get_family",
    "process_run",
    "process_timeseries",
    "register",
    "resolve_tr",
    "write_run",
]
