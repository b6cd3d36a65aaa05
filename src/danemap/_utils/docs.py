"""Recurring parameter docs, written once and filled into docstrings (as nilearn's ``fill_doc``).

A docstring names a fragment as ``%(name)s`` on a line of its own, at the indentation
of its parameters; :func:`fill_doc` replaces it with :data:`docdict` ``[name]``, every
line after the first indented like the docstring, so ``help()`` and numpydoc see the
full text. Only ``%(name)s`` placeholders are touched: a literal ``%`` stays as it is.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any, TypeVar

__all__ = ["docdict", "fill_doc"]

F = TypeVar("F", bound=Callable[..., Any])

#: Parameter docs shared by several functions: name -> numpydoc text (the first line
#: ``name : type``, the description indented by four spaces).
docdict: dict[str, str] = {
    "design": """design : GroupDesign or None
    The study design (:class:`danemap.stats.GroupDesign`): the group column with its case
    and control labels, the covariates, the site and the ICV column; default
    ``GroupDesign()``.""",
}

_PLACEHOLDER = re.compile(r"%\((\w+)\)s")


def _indent(doc: str) -> str:
    lines = [ln for ln in doc.splitlines()[1:] if ln.strip()]
    return min((ln[: len(ln) - len(ln.lstrip())] for ln in lines), key=len, default="")


def fill_doc(func: F) -> F:
    """Fill the ``%(name)s`` fragments of a function's docstring from :data:`docdict`.

    Parameters
    ----------
    func : callable
        A function (or class) whose docstring uses ``%(name)s`` placeholders.

    Returns
    -------
    callable
        ``func``, its ``__doc__`` filled.

    Raises
    ------
    KeyError
        If the docstring names a fragment that :data:`docdict` lacks (a programming error,
        raised when the module is imported).
    """
    doc = func.__doc__
    if not doc:
        return func
    indent = _indent(doc)

    def fill(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in docdict:
            raise KeyError(f"fill_doc: {func.__qualname__} uses the unknown docstring fragment "
                           f"{name!r}; known: {sorted(docdict)}")
        return docdict[name].replace("\n", "\n" + indent)

    func.__doc__ = _PLACEHOLDER.sub(fill, doc)
    return func
