"""PET/SPECT markers: SUVR/SBR, P/C ratio, asymmetry, partial-volume correction, kinetics.

Static images (DaTscan SPECT) give SBR/SUVR per striatal region with GTM (or RBV)
partial-volume correction beside the uncorrected values; dynamic series give BP_ND by
SRTM (basis functions), MRTM2 and the Logan reference plot, and a voxel-wise map. Images
are brought to MNI space first (:mod:`danemap.markers.pet._normalise`).
"""

from danemap.markers.pet._dynamic import DynamicResult, quantify_dynamic, regional_tacs
from danemap.markers.pet._family import PetFamily, PetResult
from danemap.markers.pet._group import collect_pet
from danemap.markers.pet._inputs import PetFrames, PetInput, pet_inputs, read_timing
from danemap.markers.pet._kinetics import (
    KineticFit,
    estimate_k2_ref,
    logan_ref,
    mrtm,
    mrtm2,
    parametric_map,
    srtm,
)
from danemap.markers.pet._normalise import Normalised, in_mni, normalise_to_mni
from danemap.markers.pet._pvc import gtm, rbv

__all__ = [
    "DynamicResult",
    "KineticFit",
    "Normalised",
    "PetFamily",
    "PetFrames",
    "PetInput",
    "PetResult",
    "collect_pet",
    "estimate_k2_ref",
    "gtm",
    "in_mni",
    "logan_ref",
    "mrtm",
    "mrtm2",
    "normalise_to_mni",
    "parametric_map",
    "pet_inputs",
    "quantify_dynamic",
    "rbv",
    "read_timing",
    "regional_tacs",
    "srtm",
]
