"""The built-in FreeSurfer lookup table of the ``aseg`` structures, and the ENIGMA names.

The label numbers and names are those of ``FreeSurferColorLUT.txt`` (FreeSurfer 7) for
the structures ``mri_segstats`` reports in ``stats/aseg.stats`` (and SynthSeg segments),
written out by hand. FreeSurfer 7 renamed ``Left-Thalamus-Proper`` (label 10) to
``Left-Thalamus``; both names map to the ENIGMA thalamus.
"""

from __future__ import annotations

from types import MappingProxyType

__all__ = ["ASEG_LUT", "ENIGMA_FREESURFER", "ENIGMA_SYNTHSEG", "enigma_name", "hemisphere"]

#: Label number -> FreeSurfer structure name of the aseg segmentation (FreeSurfer 7
#: names), as in ``FreeSurferColorLUT.txt``. Label 0 (``Unknown``) is background.
ASEG_LUT: MappingProxyType[int, str] = MappingProxyType({
    0: "Unknown",
    2: "Left-Cerebral-White-Matter",
    3: "Left-Cerebral-Cortex",
    4: "Left-Lateral-Ventricle",
    5: "Left-Inf-Lat-Vent",
    7: "Left-Cerebellum-White-Matter",
    8: "Left-Cerebellum-Cortex",
    10: "Left-Thalamus",
    11: "Left-Caudate",
    12: "Left-Putamen",
    13: "Left-Pallidum",
    14: "3rd-Ventricle",
    15: "4th-Ventricle",
    16: "Brain-Stem",
    17: "Left-Hippocampus",
    18: "Left-Amygdala",
    24: "CSF",
    26: "Left-Accumbens-area",
    28: "Left-VentralDC",
    30: "Left-vessel",
    31: "Left-choroid-plexus",
    41: "Right-Cerebral-White-Matter",
    42: "Right-Cerebral-Cortex",
    43: "Right-Lateral-Ventricle",
    44: "Right-Inf-Lat-Vent",
    46: "Right-Cerebellum-White-Matter",
    47: "Right-Cerebellum-Cortex",
    49: "Right-Thalamus",
    50: "Right-Caudate",
    51: "Right-Putamen",
    52: "Right-Pallidum",
    53: "Right-Hippocampus",
    54: "Right-Amygdala",
    58: "Right-Accumbens-area",
    60: "Right-VentralDC",
    62: "Right-vessel",
    63: "Right-choroid-plexus",
    72: "5th-Ventricle",
    77: "WM-hypointensities",
    78: "Left-WM-hypointensities",
    79: "Right-WM-hypointensities",
    80: "non-WM-hypointensities",
    81: "Left-non-WM-hypointensities",
    82: "Right-non-WM-hypointensities",
    85: "Optic-Chiasm",
    251: "CC_Posterior",
    252: "CC_Mid_Posterior",
    253: "CC_Central",
    254: "CC_Mid_Anterior",
    255: "CC_Anterior",
})

_ENIGMA_STRUCTURES = (
    ("Accumbens-area", "accumbens area", "accumb"),
    ("Amygdala", "amygdala", "amyg"),
    ("Caudate", "caudate", "caud"),
    ("Hippocampus", "hippocampus", "hippo"),
    ("Pallidum", "pallidum", "pal"),
    ("Putamen", "putamen", "put"),
    ("Thalamus", "thalamus", "thal"),
)

#: FreeSurfer structure name -> ENIGMA-ADHD subcortical structure name (Hoogman et al.
#: 2017), for the seven ENIGMA structures; FreeSurfer 6's ``*-Thalamus-Proper`` included.
ENIGMA_FREESURFER: MappingProxyType[str, str] = MappingProxyType({
    **{f"{side}-{fs}": f"{side[0]}{en}" for fs, _, en in _ENIGMA_STRUCTURES
       for side in ("Left", "Right")},
    "Left-Thalamus-Proper": "Lthal",
    "Right-Thalamus-Proper": "Rthal",
})

#: SynthSeg volume-CSV column name -> ENIGMA-ADHD structure name (``left caudate`` ->
#: ``Lcaud``); ``left thalamus proper`` is accepted for older name lists.
ENIGMA_SYNTHSEG: MappingProxyType[str, str] = MappingProxyType({
    **{f"{side.lower()} {ss}": f"{side[0]}{en}" for _, ss, en in _ENIGMA_STRUCTURES
       for side in ("Left", "Right")},
    "left thalamus proper": "Lthal",
    "right thalamus proper": "Rthal",
})

_LEFT = ("left-", "left ", "left_", "ctx-lh-", "ctx_lh_", "wm-lh-", "wm_lh_", "lh-", "lh_",
         "lh.")
_RIGHT = ("right-", "right ", "right_", "ctx-rh-", "ctx_rh_", "wm-rh-", "wm_rh_", "rh-",
          "rh_", "rh.")


def hemisphere(name: str) -> str:
    """Return the hemisphere of a FreeSurfer- or SynthSeg-style structure name.

    Parameters
    ----------
    name : str
        ``Left-Caudate``, ``ctx-rh-bankssts``, ``left putamen``, ``Brain-Stem``...

    Returns
    -------
    str
        ``"L"`` or ``"R"`` from a left/right (``lh``/``rh``) prefix, else ``"midline"``.
    """
    low = name.lower()
    if low.startswith(_LEFT):
        return "L"
    if low.startswith(_RIGHT):
        return "R"
    return "midline"


def enigma_name(name: str) -> str:
    """Return the ENIGMA-ADHD name of a FreeSurfer or SynthSeg structure, or ``""``.

    Parameters
    ----------
    name : str
        A FreeSurfer structure name (``Left-Caudate``) or a SynthSeg column name
        (``left caudate``); matched exactly (SynthSeg names case-insensitively).

    Returns
    -------
    str
        ``Lcaud`` and so on for the seven ENIGMA structures, else an empty string.
    """
    return ENIGMA_FREESURFER.get(name) or ENIGMA_SYNTHSEG.get(name.strip().lower(), "")
