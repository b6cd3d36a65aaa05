"""The one error hierarchy of danemap.

Every error danemap raises on purpose derives from :class:`DanemapError`, and
subclasses the matching builtin so that callers can catch either.
"""

from __future__ import annotations

__all__ = [
    "ConfigError",
    "DanemapError",
    "DanemapWarning",
    "DependencyError",
    "InputError",
    "NotFittedError",
]


class DanemapError(Exception):
    """Base class of every error raised by danemap."""


class InputError(DanemapError, ValueError):
    """An input file, table or argument is malformed.

    The message names the file (or parameter), the field, what was expected
    and what was found.
    """


class ConfigError(DanemapError, ValueError):
    """A configuration value (TOML file, CLI flag, environment) is invalid."""


class DependencyError(DanemapError, ImportError):
    """An optional dependency is missing; the message says which extra to install."""


class NotFittedError(DanemapError, ValueError, AttributeError):
    """An estimator was used before ``fit``."""


class DanemapWarning(UserWarning):
    """Warnings danemap issues about data quality (small regions, dropped volumes...)."""
