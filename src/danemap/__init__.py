"""danemap: DopAmine / NorEpinephrine MAPping of ADHD imaging markers.

A research tool, not a diagnostic device. Subpackages are imported lazily so
that ``import danemap`` stays fast.
"""

from __future__ import annotations

from danemap._version import __version__
from danemap.errors import DanemapError, InputError

__all__ = ["DanemapError", "InputError", "__version__"]
