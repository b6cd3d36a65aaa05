"""Group statistics on any feature table: harmonisation, GLM, effect sizes, inference.

Public names are loaded lazily (on first access), so ``import danemap.stats`` does not
import scipy, pandas or scikit-learn. The classification entry point is
``danemap.stats.classify.classify`` (not re-exported: its name is that of its module).
"""

from __future__ import annotations

import importlib
from typing import Any

__all__ = [
    "ANALYSES",
    "COMBAT_METHODS",
    "DEFAULT_SUBNETWORKS",
    "RESULT_COLUMNS",
    "STRUCTURES",
    "ComBat",
    "CovariateEncoder",
    "FeatureBuilder",
    "GLMResult",
    "GroupDesign",
    "NBSResult",
    "NestedLogistic",
    "NormativeModel",
    "PermutationResult",
    "case_control",
    "combat_params",
    "compare_to_reference",
    "effect_sizes_from_t",
    "fdr_bh",
    "fit_glm",
    "load_classifier",
    "load_reference",
    "map_feature",
    "nbs",
    "normative_scores",
    "partial_correlation",
    "permutation_test",
    "predict",
    "run_stats",
    "save_classifier",
    "site_meta_analysis",
    "standardize_within_site",
    "symptom_association",
]

_WHERE = {
    "ANALYSES": "pipeline",
    "COMBAT_METHODS": "combat",
    "ComBat": "combat",
    "CovariateEncoder": "_design",
    "DEFAULT_SUBNETWORKS": "multiple",
    "FeatureBuilder": "classify",
    "GLMResult": "glm",
    "GroupDesign": "_design",
    "NBSResult": "multiple",
    "NestedLogistic": "classify",
    "NormativeModel": "normative",
    "PermutationResult": "multiple",
    "RESULT_COLUMNS": "glm",
    "STRUCTURES": "reference",
    "case_control": "glm",
    "combat_params": "combat",
    "compare_to_reference": "reference",
    "effect_sizes_from_t": "glm",
    "fdr_bh": "multiple",
    "fit_glm": "glm",
    "load_classifier": "classify",
    "load_reference": "reference",
    "map_feature": "reference",
    "nbs": "multiple",
    "normative_scores": "normative",
    "partial_correlation": "symptoms",
    "permutation_test": "multiple",
    "predict": "classify",
    "run_stats": "pipeline",
    "save_classifier": "classify",
    "site_meta_analysis": "meta",
    "standardize_within_site": "symptoms",
    "symptom_association": "symptoms",
}


def __getattr__(name: str) -> Any:
    if name in _WHERE:
        value = getattr(importlib.import_module(f"{__name__}.{_WHERE[name]}"), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
