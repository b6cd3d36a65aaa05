"""Structural MRI markers: regional volumes and ICV.

From FreeSurfer/FastSurfer ``aseg.stats``, SynthSeg volume CSVs, a ``*_dseg`` label image
with a FreeSurfer lookup table, or a raw T1w processed with ANTsPy.
"""

from danemap.markers.structural._family import (
    ICV_REGION,
    StructuralFamily,
    StructuralResult,
    cached_t1w_transforms,
    volume_table,
)
from danemap.markers.structural._group import ENIGMA_COLUMNS, collect_volumes
from danemap.markers.structural._inputs import INPUT_KINDS, StructuralInput, structural_inputs
from danemap.markers.structural._lut import ASEG_LUT, ENIGMA_FREESURFER, ENIGMA_SYNTHSEG
from danemap.markers.structural._readers import (
    read_aseg_stats,
    read_dseg,
    read_lut,
    read_synthseg_table,
    read_synthseg_volumes,
    read_volumes,
)
from danemap.markers.structural._volumes import VOLUME_COLUMNS, VolumeSet

__all__ = [
    "ASEG_LUT",
    "ENIGMA_COLUMNS",
    "ENIGMA_FREESURFER",
    "ENIGMA_SYNTHSEG",
    "ICV_REGION",
    "INPUT_KINDS",
    "VOLUME_COLUMNS",
    "StructuralFamily",
    "StructuralInput",
    "StructuralResult",
    "VolumeSet",
    "cached_t1w_transforms",
    "collect_volumes",
    "read_aseg_stats",
    "read_dseg",
    "read_lut",
    "read_synthseg_table",
    "read_synthseg_volumes",
    "read_volumes",
    "structural_inputs",
    "volume_table",
]
