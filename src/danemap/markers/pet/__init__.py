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
from danemap.markers.pet._regions import (
    PET_REGIONS,
    REFERENCE_REGIONS,
    TRACERS,
    TracerDefaults,
    pet_region_set,
    reference_mask,
    tracer_defaults,
)
from danemap.markers.pet._static import quantify_static, rbv_image, static_measures

__all__ = [
    "PET_REGIONS",
    "REFERENCE_REGIONS",
    "TRACERS",
    "DynamicResult",
    "KineticFit",
    "Normalised",
    "PetFamily",
    "PetFrames",
    "PetInput",
    "PetResult",
    "TracerDefaults",
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
    "pet_region_set",
    "quantify_dynamic",
    "quantify_static",
    "rbv",
    "rbv_image",
    "read_timing",
    "reference_mask",
    "regional_tacs",
    "srtm",
    "static_measures",
    "tracer_defaults",
]
