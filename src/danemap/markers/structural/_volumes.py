"""The one result type of every structural input: regional volumes plus ICV.

Every reader (``aseg.stats``, SynthSeg CSV, ``dseg`` + lookup table) and the raw-T1w
ANTsPy path return a :class:`VolumeSet`, so the family writes, collects and compares
them the same way whatever produced them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from danemap.errors import InputError

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["RAW_T1W_CAUTION", "VOLUME_COLUMNS", "VolumeSet"]

#: Columns of :attr:`VolumeSet.table`, in order.
#:
#: ``region``: the structure's name in its source (``Left-Caudate`` for FreeSurfer-style
#: inputs, ``Caudate_L`` for the danemap atlas); ``hemisphere``: ``L``, ``R`` or
#: ``midline``; ``volume_mm3``; ``method``: what produced the row (see
#: :attr:`VolumeSet.method`); ``enigma``: the ENIGMA-ADHD structure name (``Lcaud``) for
#: FreeSurfer-style rows of the seven ENIGMA structures, else empty; ``qc``: ``;``-joined
#: QC flags, empty when none.
VOLUME_COLUMNS = ("region", "hemisphere", "volume_mm3", "method", "enigma", "qc")

#: What the validation of the raw-T1w path found, written into its sidecars.
RAW_T1W_CAUTION = (
    "Validation on simulated brains (Colin27 base, head pose, bias field, noise, planted "
    "regional changes; the atlas read through Colin27): per-participant median regional "
    "errors 0.9-1.8% in full mode and 0.8-2.5% in quick mode (8 participants), ICV within "
    "1.1%; but a planted -5.9% striatal group difference came back as -3.8% in both modes "
    "(4 + 4 participants; -5.0% as -2.0% in 2 + 2): the registration follows about 0.8 of "
    "a planted local volume change, and per-participant registration errors (SD about 2% "
    "in the striatum) are as large as the effects sought, so group differences in these "
    "volumes are shrunk towards 0 by a fifth to a third, and small-sample ones are "
    "unreliable. The atlas read on the MNI152 grid (atlas_space mni152) is worse. Prefer "
    "FreeSurfer, FastSurfer or SynthSeg inputs for group comparisons.")


@dataclass
class VolumeSet:
    """Regional volumes and ICV of one participant's session, from one method.

    Attributes
    ----------
    table : pandas.DataFrame
        One row per structure, columns :data:`VOLUME_COLUMNS`.
    icv_mm3 : float or None
        Intracranial volume in mm3 (``None`` when the input has none: SynthSeg 1).
    icv_method : str
        How the ICV was obtained (``"eTIV"``, ``"SynthSeg total intracranial"``,
        ``"brain mask + CSF"``), or ``""`` when there is none.
    method : str
        What produced the volumes: ``"freesurfer-aseg"``, ``"fastsurfer-aseg"``,
        ``"synthseg-1"``, ``"synthseg-2"``, ``"dseg-lut"`` or ``"ants-atlas"``.
    source : pathlib.Path
        The input file.
    like_freesurfer : bool
        Whether the volumes are FreeSurfer-style segmentations (comparable one to one with
        ENIGMA-ADHD), as opposed to an atlas warped into the brain.
    provenance : dict
        Free-form details (generating program and version, command line, settings).
    """

    table: pd.DataFrame
    icv_mm3: float | None
    icv_method: str
    method: str
    source: Path
    like_freesurfer: bool
    provenance: dict[str, object] = field(default_factory=dict)

    def __post_init__(self) -> None:
        missing = [c for c in VOLUME_COLUMNS if c not in self.table.columns]
        if missing:
            raise InputError(f"{self.source}: volume table lacks the columns {missing}")
        if self.icv_mm3 is not None and not self.icv_mm3 > 0:
            raise InputError(f"{self.source}: ICV: expected a positive volume in mm3, "
                             f"found {self.icv_mm3!r}")
