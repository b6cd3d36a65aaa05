"""The DA/NE region and network tables (data, not logic).

Every region of the danemap atlas is one row of :data:`REGION_TABLE`; every
network is one row of :data:`NETWORK_TABLE`. Bilateral rows expand into a left
(``_L``) and a right (``_R``) region, in that order; midline rows give one region.
Region indices are ``1..N`` in expansion order.
"""

from __future__ import annotations

import difflib
import fnmatch
from collections.abc import Mapping, Sequence
from types import MappingProxyType
from typing import NamedTuple

from danemap.errors import InputError

__all__ = [
    "HEMISPHERES",
    "NETWORKS",
    "NETWORK_TABLE",
    "REGION_TABLE",
    "SYSTEMS",
    "RegionSpec",
    "expand_regions",
    "network_edges",
    "resolve_source_labels",
]

#: Allowed values of the ``system`` column.
SYSTEMS = ("DA", "NE", "both", "reference", "other")
#: Allowed values of the ``hemisphere`` column.
HEMISPHERES = ("L", "R", "midline")

_PFC = ("DLPFC", "VLPFC", "OFC", "mPFC", "ACC")

# name, laterality ("LR" = one region per hemisphere, "midline"), system, group,
# AAL3 source labels (for "LR" rows without the _L/_R suffix, which is appended per
# hemisphere; shell-style wildcards select every matching AAL3 name).
REGION_TABLE: tuple[tuple[str, str, str, str, tuple[str, ...]], ...] = (
    ("DLPFC", "LR", "both", "PFC", ("Frontal_Sup_2", "Frontal_Mid_2")),
    ("VLPFC", "LR", "both", "PFC", ("Frontal_Inf_Oper", "Frontal_Inf_Tri", "Frontal_Inf_Orb_2")),
    ("OFC", "LR", "both", "PFC", ("OFCmed", "OFCant", "OFCpost", "OFClat", "Rectus")),
    ("mPFC", "LR", "both", "PFC", ("Frontal_Sup_Medial", "Frontal_Med_Orb")),
    ("ACC", "LR", "both", "PFC", ("ACC_sub", "ACC_pre", "ACC_sup")),
    ("Caudate", "LR", "DA", "striatum", ("Caudate",)),
    ("Putamen", "LR", "DA", "striatum", ("Putamen",)),
    ("NAcc", "LR", "DA", "striatum", ("N_Acc",)),
    ("Pallidum", "LR", "DA", "pallidum", ("Pallidum",)),
    ("Thalamus", "LR", "both", "thalamus", ("Thal_*",)),
    ("VTA", "LR", "DA", "midbrain", ("VTA",)),
    ("SNc", "LR", "DA", "midbrain", ("SN_pc",)),
    ("LC", "LR", "NE", "brainstem", ("LC",)),
    ("Cerebellum", "LR", "NE", "cerebellum", ("Cerebellum_*",)),
    ("Vermis", "midline", "NE", "cerebellum", ("Vermis_*",)),
    ("Occipital", "LR", "reference", "occipital",
     ("Calcarine", "Cuneus", "Lingual", "Occipital_Sup", "Occipital_Mid", "Occipital_Inf")),
)

# network, sources, targets: ipsilateral pairs (a_L, b_L) and (a_R, b_R) for every
# a in sources and b in targets; all left pairs first, then all right pairs.
NETWORK_TABLE: tuple[tuple[str, tuple[str, ...], tuple[str, ...]], ...] = (
    ("frontostriatal", _PFC, ("Caudate", "Putamen", "NAcc")),
    ("lc_pfc", ("LC",), _PFC),
    ("mesolimbic", ("VTA",), ("NAcc", "mPFC", "OFC")),
    ("nigrostriatal", ("SNc",), ("Caudate", "Putamen")),
)


class RegionSpec(NamedTuple):
    """One expanded region of :data:`REGION_TABLE`."""

    name: str
    hemisphere: str
    system: str
    group: str
    sources: tuple[str, ...]


def expand_regions(
    table: Sequence[tuple[str, str, str, str, tuple[str, ...]]] = REGION_TABLE,
) -> list[RegionSpec]:
    """Expand a bilateral region table into one :class:`RegionSpec` per region.

    Parameters
    ----------
    table : sequence of tuple
        Rows ``(name, laterality, system, group, sources)`` as in :data:`REGION_TABLE`.

    Returns
    -------
    list of RegionSpec
        Left before right for ``"LR"`` rows; region index ``i + 1`` for item ``i``.
    """
    out: list[RegionSpec] = []
    for name, laterality, system, group, sources in table:
        if laterality == "LR":
            for hemi in ("L", "R"):
                srcs = tuple(f"{s}_{hemi}" for s in sources)
                out.append(RegionSpec(f"{name}_{hemi}", hemi, system, group, srcs))
        elif laterality == "midline":
            out.append(RegionSpec(name, "midline", system, group, tuple(sources)))
        else:
            raise InputError(
                f"region table: row {name!r} has laterality {laterality!r}; "
                "expected 'LR' or 'midline'"
            )
    return out


def resolve_source_labels(
    spec: RegionSpec, label_names: Mapping[int, str], present: set[int]
) -> list[int]:
    """Map the source names of one region to label values present in the image.

    Parameters
    ----------
    spec : RegionSpec
        The region (its ``sources`` may hold shell-style wildcards).
    label_names : mapping of int to str
        Label value -> name, as listed in the atlas' text file (may list retired labels).
    present : set of int
        Label values that actually occur in the image.

    Returns
    -------
    list of int
        Sorted label values.

    Raises
    ------
    InputError
        If a source name matches no listed label, or only labels absent from the image
        (a retired label), so that a region never silently ends up empty.
    """
    by_name = {n: v for v, n in label_names.items()}
    values: set[int] = set()
    for src in spec.sources:
        matched = [v for n, v in by_name.items() if fnmatch.fnmatchcase(n, src)]
        if not matched:
            close = difflib.get_close_matches(src, list(by_name), n=3)
            hint = f"; closest: {', '.join(close)}" if close else ""
            raise InputError(
                f"region {spec.name!r}: source label {src!r} is not listed in the atlas "
                f"label table{hint}"
            )
        missing = sorted(v for v in matched if v not in present)
        if missing:
            names = ", ".join(f"{label_names[v]} ({v})" for v in missing)
            raise InputError(
                f"region {spec.name!r}: source label {src!r} maps to value(s) {names} "
                "that do not occur in the label image (retired labels); expected labels "
                "present in the image"
            )
        values.update(matched)
    return sorted(values)


def _build_networks() -> dict[str, tuple[tuple[str, str], ...]]:
    nets: dict[str, tuple[tuple[str, str], ...]] = {}
    for net, sources, targets in NETWORK_TABLE:
        nets[net] = tuple(
            (f"{a}_{hemi}", f"{b}_{hemi}")
            for hemi in ("L", "R")
            for a in sources
            for b in targets
        )
    return nets


#: Network name -> ipsilateral region-name pairs (read-only).
NETWORKS: Mapping[str, tuple[tuple[str, str], ...]] = MappingProxyType(_build_networks())


def network_edges(
    names: Sequence[str], networks: Mapping[str, Sequence[tuple[str, str]]] | None = None
) -> dict[str, list[tuple[int, int]]]:
    """Translate network region-name pairs into index pairs into ``names``.

    Parameters
    ----------
    names : sequence of str
        Region names in the order of a matrix' rows (e.g. ``Atlas.names``).
    networks : mapping of str to sequence of (str, str), optional
        Network name -> region-name pairs; default :data:`NETWORKS`.

    Returns
    -------
    dict of str to list of (int, int)
        Network name -> 0-based positions ``(i, j)`` into ``names``.

    Raises
    ------
    InputError
        If a pair names a region that is not in ``names`` (closest names suggested),
        or ``names`` holds duplicates.
    """
    if networks is None:
        networks = NETWORKS
    names = list(names)
    pos = {n: i for i, n in enumerate(names)}
    if len(pos) != len(names):
        dup = sorted({n for n in names if names.count(n) > 1})
        raise InputError(f"network_edges: 'names' must be unique; duplicated: {dup}")
    out: dict[str, list[tuple[int, int]]] = {}
    for net, pairs in networks.items():
        edges = []
        for a, b in pairs:
            for n in (a, b):
                if n not in pos:
                    close = difflib.get_close_matches(n, names, n=3)
                    hint = f"; closest: {', '.join(close)}" if close else ""
                    raise InputError(
                        f"network {net!r}: region {n!r} is not among the {len(names)} "
                        f"region names{hint}"
                    )
            edges.append((pos[a], pos[b]))
        out[net] = edges
    return out
