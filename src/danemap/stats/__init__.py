"""Group statistics on any feature table: harmonisation, GLM, effect sizes, inference.

Public names are loaded lazily (on first access), so ``import danemap.stats`` does not
import scipy, pandas or scikit-learn.
"""

from __future__ import annotations

import importlib
from typing import Any

__all__ = [
    "RESULT_COLUMNS",
    "ComBat",
    "CovariateEncoder",
    "GLMResult",
    "NBSResult",
    "PermutationResult",
    "case_control",
    "effect_sizes_from_t",
    "fdr_bh",
    "fit_glm",
    "nbs",
    "permutation_test",
]

_WHERE = {
    "ComBat": "combat",
    "CovariateEncoder": "_design",
    "GLMResult": "glm",
    "RESULT_COLUMNS": "glm",
    "case_control": "glm",
    "effect_sizes_from_t": "glm",
    "fit_glm": "glm",
    "NBSResult": "multiple",
    "PermutationResult": "multiple",
    "fdr_bh": "multiple",
    "nbs": "multiple",
    "permutation_test": "multiple",
}


def __getattr__(name: str) -> Any:
    if name in _WHERE:
        value = getattr(importlib.import_module(f"{__name__}.{_WHERE[name]}"), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
