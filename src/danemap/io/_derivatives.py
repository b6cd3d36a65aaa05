"""BIDS-derivatives writer: atomic writes, canonical names, provenance.

Every file is written to a temporary file in the destination folder, flushed,
``fsync``-ed and moved into place with ``os.replace``, so a reader (or a resumed
run) never sees a half-written file; on failure the temporary file is removed
and any previous version of the file is left intact.

A participant's folder is atomic too (:meth:`DerivativesWriter.staged`): its files are
written under ``OUT/danemap/.partial/sub-<label>`` and the folder is renamed to
``OUT/danemap/sub-<label>`` only once the participant is complete, so no reader (a group
collector, a participant report, a resumed run) ever sees a partial participant.
"""

from __future__ import annotations

import contextlib
import functools
import json
import math
import os
import shutil
import tempfile
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO, Literal, TextIO, overload

from danemap.errors import InputError
from danemap.io._participants import closest, validate_label

if TYPE_CHECKING:
    import pandas as pd

    from danemap.config import Config

__all__ = [
    "ENTITY_ORDER",
    "PARTIAL",
    "DerivativesWriter",
    "atomic_open",
    "atomic_write_bytes",
    "atomic_write_text",
    "check_output_not_in_input",
    "read_tsv",
    "table_sidecar",
    "write_json",
    "write_table",
]

#: Canonical order of the entities in derivative file names.
ENTITY_ORDER = ("sub", "ses", "task", "acq", "trc", "rec", "run", "space", "res", "atlas",
                "desc")
BIDS_VERSION = "1.9.0"

#: Folder of ``OUT/danemap`` where participants are written before they are complete
#: (hidden: no ``sub-*`` pattern of a reader matches it).
PARTIAL = ".partial"

#: Cells per block of rows when a table is written (each cell is formatted as a Python
#: string first, about 100 bytes: a few MiB per block, whatever the size of the table).
WRITE_CELLS = 1 << 15


@functools.lru_cache(maxsize=1)
def _umask() -> int:
    """Return the process umask, read once (setting it briefly is not thread-safe)."""
    mask = os.umask(0)
    os.umask(mask)
    return mask


@overload
def atomic_open(path: str | os.PathLike[str],
                mode: Literal["w"] = "w") -> contextlib.AbstractContextManager[TextIO]: ...


@overload
def atomic_open(path: str | os.PathLike[str],
                mode: Literal["wb"]) -> contextlib.AbstractContextManager[BinaryIO]: ...


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike[str], mode: str = "w") -> Iterator[Any]:
    r"""Open a file for writing that appears at ``path`` only once complete.

    The content goes to a temporary file in the destination folder; on leaving the
    ``with`` block it is flushed, ``fsync``-ed and moved into place with ``os.replace``
    (an atomic rename, the folder being the same). If the block raises, the temporary
    file is removed and any previous version of ``path`` is left intact. Large content
    can thus be streamed (e.g. ``DataFrame.to_csv(fh)``) without building it in memory.

    Parameters
    ----------
    path : str or os.PathLike
        Destination; missing parent folders are created.
    mode : {"w", "wb"}
        Text (UTF-8, line endings written as given, not translated) or binary.

    Yields
    ------
    file object
        The open temporary file.

    Raises
    ------
    InputError
        If ``mode`` is not ``"w"`` or ``"wb"``.

    Examples
    --------
    >>> with atomic_open(tmp / "table.tsv") as fh:  # doctest: +SKIP
    ...     df.to_csv(fh, sep="\t", index=False)
    """
    if mode not in ("w", "wb"):
        raise InputError(f"atomic_open: mode must be 'w' or 'wb', found {mode!r}")
    dest = Path(path)
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".tmp")
    text = mode == "w"
    try:
        with os.fdopen(fd, mode, encoding="utf-8" if text else None,
                       newline="" if text else None) as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, dest)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    _fsync_dir(dest.parent)


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically (see :func:`atomic_open`).

    Parameters
    ----------
    path : str or os.PathLike
        Destination; missing parent folders are created.
    data : bytes
        The content.

    Returns
    -------
    Path
        The destination path.
    """
    with atomic_open(path, "wb") as fh:
        fh.write(data)
    return Path(path)


def _fsync_dir(folder: Path) -> None:
    """Persist the rename (best effort; not supported on every platform)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        with contextlib.suppress(OSError):
            os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write_text(path: str | os.PathLike[str], text: str) -> Path:
    """Write UTF-8 ``text`` to ``path`` atomically (see :func:`atomic_open`).

    Parameters
    ----------
    path : str or os.PathLike
        Destination; missing parent folders are created.
    text : str
        The content (written as-is; line endings are not translated).

    Returns
    -------
    Path
        The destination path.
    """
    with atomic_open(path, "w") as fh:
        fh.write(text)
    return Path(path)


def _jsonable(obj: Any) -> Any:
    """Convert numpy scalars/arrays, paths and dataclasses; non-finite floats become ``null``."""
    import dataclasses

    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return _jsonable(dataclasses.asdict(obj))
    if isinstance(obj, Mapping):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, bool | int | str) or obj is None:
        return obj
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, os.PathLike):
        return os.fspath(obj)
    import numpy as np

    if isinstance(obj, np.ndarray):
        return _jsonable(obj.tolist())
    if isinstance(obj, np.bool_):
        return bool(obj)
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, np.floating):
        return _jsonable(float(obj))
    if isinstance(obj, set | frozenset):
        return [_jsonable(v) for v in sorted(obj, key=str)]
    raise InputError(f"cannot write a {type(obj).__name__} value to JSON: {obj!r}")


def write_json(path: str | os.PathLike[str], obj: Any) -> Path:
    """Serialise ``obj`` to indented JSON and write it atomically.

    numpy scalars and arrays are converted, NaN and infinities become ``null``
    (JSON has no NaN). The object is fully serialised before the file is touched.

    Parameters
    ----------
    path : str or os.PathLike
        Destination.
    obj : object
        A JSON-compatible object.

    Returns
    -------
    Path
        The destination path.

    Raises
    ------
    InputError
        If ``obj`` holds a value JSON cannot represent.
    """
    text = json.dumps(_jsonable(obj), indent=2, ensure_ascii=False, allow_nan=False) + "\n"
    return atomic_write_text(path, text)


def read_json(path: str | os.PathLike[str], what: str = "JSON file") -> dict[str, Any]:
    """Read a JSON object, turning every failure into an :class:`InputError`.

    Parameters
    ----------
    path : str or os.PathLike
        The file (UTF-8, a BOM is tolerated).
    what : str
        What the file is, for messages (e.g. ``"networks file"``).

    Returns
    -------
    dict
        The parsed object.

    Raises
    ------
    InputError
        If the file is missing, unreadable, not valid JSON, or not a JSON object.
    """
    p = Path(path)
    if not p.is_file():
        raise InputError(f"{what} {p} does not exist")
    try:
        obj = json.loads(p.read_text(encoding="utf-8-sig"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(f"{what} {p}: not a readable JSON file, not valid JSON ({exc})") from exc
    if not isinstance(obj, dict):
        raise InputError(f"{what} {p}: expected a JSON object, found {type(obj).__name__}")
    return obj


def check_output_not_in_input(
    bids_dir: str | os.PathLike[str],
    output_dir: str | os.PathLike[str],
    allow_derivatives: bool = False,
) -> None:
    """Refuse an output folder that is, or lies inside, the input BIDS dataset.

    Symbolic links are resolved first. ``<bids_dir>/derivatives/...`` is inside the input
    too and is refused by default (the input dataset is never written to); pass
    ``allow_derivatives=True`` to accept the BIDS convention, as fMRIPrep does.

    Parameters
    ----------
    bids_dir : str or os.PathLike
        The input dataset.
    output_dir : str or os.PathLike
        The requested output folder.
    allow_derivatives : bool
        Allow ``output_dir`` under ``<bids_dir>/derivatives``.

    Raises
    ------
    InputError
        If ``output_dir`` is ``bids_dir`` or inside it.
    """
    bids = Path(bids_dir).resolve()
    out = Path(output_dir).resolve()
    if out != bids and bids not in out.parents:
        return
    derivs = bids / "derivatives"
    if allow_derivatives and (out == derivs or derivs in out.parents):
        return
    raise InputError(f"output_dir {output_dir} (resolved: {out}) is inside the input BIDS "
                     f"dataset {bids}; danemap never writes into its input. Choose a folder "
                     f"outside it, e.g. {bids.parent / (bids.name + '-danemap')}")


def read_tsv(path: str | os.PathLike[str]) -> pd.DataFrame:
    """Read a BIDS TSV with ``n/a`` (and empty cells) as missing values.

    Parameters
    ----------
    path : str or os.PathLike
        A tab-separated file with a header row.

    Returns
    -------
    pandas.DataFrame

    Raises
    ------
    InputError
        If the file is missing or not a readable table.
    """
    import pandas as pd

    p = Path(path)
    try:
        return pd.read_csv(p, sep="\t", keep_default_na=False, na_values=["n/a", ""],
                           encoding="utf-8-sig")
    except FileNotFoundError as exc:
        raise InputError(f"{p}: file not found") from exc
    except (OSError, UnicodeDecodeError, pd.errors.ParserError,
            pd.errors.EmptyDataError) as exc:
        raise InputError(f"{p}: cannot be read as a tab-separated table ({exc})") from exc


def write_table(
    df: pd.DataFrame,
    path: str | os.PathLike[str],
    sidecar: Mapping[str, Any] | None = None,
    *,
    float_format: str | None = None,
    index: bool = False,
    block_cells: int = WRITE_CELLS,
) -> Path:
    """Write a table as a BIDS TSV (``n/a`` for missing) with its JSON sidecar.

    This is danemap's one TSV writer: participant derivatives, group tables and
    statistics tables all go through it. The sidecar is serialised first (as
    :func:`write_json`: numpy values converted, NaN and infinities as ``null``), so a
    value JSON cannot hold fails before any file is touched; it is then written, and the
    TSV last, each atomically (:func:`atomic_open`), so a TSV on disk always has its
    sidecar. The TSV is streamed in blocks of rows, so a large table is never held as
    one string. Lines end in a line feed on every platform; the index is not written
    unless ``index=True``.

    Parameters
    ----------
    df : pandas.DataFrame
        The table.
    path : str or os.PathLike
        Destination ``.tsv`` file; the sidecar is the same path with ``.json``.
    sidecar : mapping or None
        The sidecar's content, written as given (build a BIDS column sidecar with
        :func:`table_sidecar`). ``None`` writes no sidecar.
    float_format : str or None
        ``None`` (the default) writes every float as the shortest text that reads back
        as the same number (Python's ``repr``); a printf format such as ``"%.10g"``
        rounds instead.
    index : bool
        Also write the index (as the first column).
    block_cells : int
        Cells per block of rows written at once (bounds the memory used).

    Returns
    -------
    Path
        The TSV path.

    Raises
    ------
    InputError
        If ``path`` does not end in ``.tsv`` or the sidecar holds a value JSON cannot
        represent.

    Examples
    --------
    >>> write_table(df, out / "effects.tsv", {"Description": "Group effects"},
    ...             float_format="%.10g")  # doctest: +SKIP
    """
    dest = Path(path)
    if dest.suffix != ".tsv":
        raise InputError(f"write_table: path must end in .tsv, found {dest.name}")
    table = df.reset_index() if index else df
    if sidecar is not None:
        text = json.dumps(_jsonable(sidecar), indent=2, ensure_ascii=False,
                          allow_nan=False) + "\n"
        atomic_write_text(dest.with_suffix(".json"), text)
    with atomic_open(dest) as fh:
        table.to_csv(fh, sep="\t", index=False, na_rep="n/a", float_format=float_format,
                     lineterminator="\n", chunksize=max(1, block_cells // max(1, table.shape[1])))
    return dest


def table_sidecar(
    columns: Iterable[object],
    descriptions: Mapping[str, str | Mapping[str, Any]] | None = None,
    metadata: Mapping[str, Any] | None = None,
    *,
    where: str = "table",
) -> dict[str, Any]:
    """Build a BIDS tabular sidecar: one entry per column, then the table's metadata.

    Parameters
    ----------
    columns : iterable
        The table's columns, in order.
    descriptions : mapping or None
        Column name -> description: a string (becomes ``{"Description": ...}``) or a
        mapping with ``Description``, ``Units``, ``Levels``... Columns not described get
        a placeholder description.
    metadata : mapping or None
        Entries that describe the whole table, placed after the columns.
    where : str
        The table, for messages (e.g. its file name).

    Returns
    -------
    dict
        The sidecar content for :func:`write_table`.

    Raises
    ------
    InputError
        If ``descriptions`` names a column that is not in the table (the closest column
        is suggested).
    """
    names = [str(c) for c in columns]
    given = dict(descriptions or {})
    unknown = [k for k in given if k not in names]
    if unknown:
        hints = [f"'{k}'" + (f" (did you mean '{h[0]}'?)" if (h := closest(k, names, 1))
                             else "") for k in unknown]
        raise InputError(f"{where}: sidecar describes columns not in the table: "
                         f"{', '.join(hints)}")
    side: dict[str, Any] = {}
    for col in names:
        entry = given.get(col)
        if entry is None:
            entry = {"Description": f"{col} (no description provided)"}
        elif isinstance(entry, str):
            entry = {"Description": entry}
        side[col] = dict(entry)
    side.update(metadata or {})
    return side


def _source_entry(src: str | os.PathLike[str] | Mapping[str, Any]) -> dict[str, Any]:
    if isinstance(src, Mapping):
        return dict(src)
    text = os.fspath(src)
    if "://" in text or text.startswith(("doi:", "bids:")):
        return {"URL": text}
    return {"URL": Path(text).resolve().as_uri()}


class DerivativesWriter:
    """Write danemap outputs as a BIDS-derivatives dataset under ``output_dir/danemap``.

    On creation, writes ``dataset_description.json`` (with ``GeneratedBy`` and
    ``SourceDatasets``) and, when a configuration is given, ``config.toml``.

    Parameters
    ----------
    output_dir : str or os.PathLike
        The output folder; outputs go to ``output_dir/danemap``.
    config : danemap.config.Config or None
        The effective configuration; written as ``config.toml`` and the hash of its
        result-changing settings (:meth:`Config.results_sha256`) recorded as
        ``GeneratedBy[0].ConfigHash``.
    source_datasets : iterable or None
        Source datasets: URLs, paths (converted to ``file://`` URLs) or
        ``{"URL": ..., "DOI": ..., "Version": ...}`` mappings. Default: ``bids_dir``.
    bids_dir : str, os.PathLike or None
        The input dataset; ``output_dir`` inside it is refused.
    describe : bool
        Write ``dataset_description.json`` and ``config.toml`` now. Workers of one run pass
        False so that the level's own description is not rewritten by each of them.

    Attributes
    ----------
    root : Path
        ``output_dir/danemap``.

    Examples
    --------
    A participant's files become visible together, once all are written:

    >>> writer = DerivativesWriter(out, describe=False)  # doctest: +SKIP
    >>> with writer.staged("01"):  # doctest: +SKIP
    ...     writer.write_tsv(df, writer.path("01", "func", "stats", ".tsv"))
    """

    def __init__(
        self,
        output_dir: str | os.PathLike[str],
        config: Config | None = None,
        source_datasets: Iterable[str | os.PathLike[str] | Mapping[str, Any]] | None = None,
        bids_dir: str | os.PathLike[str] | None = None,
        describe: bool = True,
    ) -> None:
        if bids_dir is not None:
            check_output_not_in_input(bids_dir, output_dir)
        self.output_dir = Path(output_dir)
        self.root = self.output_dir / "danemap"
        self.config = config
        self._staged: set[str] = set()
        sources: list[str | os.PathLike[str] | Mapping[str, Any]]
        if source_datasets is None:
            sources = [bids_dir] if bids_dir is not None else []
        elif isinstance(source_datasets, str | os.PathLike | Mapping):
            sources = [source_datasets]
        else:
            sources = list(source_datasets)
        self.source_datasets = [_source_entry(s) for s in sources]
        try:
            self.root.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise InputError(f"output_dir {self.output_dir}: cannot create {self.root} "
                             f"({exc.strerror or exc})") from exc
        if describe:
            self.write_json(self.root / "dataset_description.json", self.dataset_description())
            if config is not None:
                atomic_write_text(self.root / "config.toml", config.to_toml())

    def dataset_description(self) -> dict[str, Any]:
        """Return the content of ``dataset_description.json``.

        Returns
        -------
        dict
        """
        from danemap._version import __version__

        generated: dict[str, Any] = {"Name": "danemap", "Version": __version__}
        if self.config is not None:
            generated["ConfigHash"] = self.config.results_sha256()
        desc: dict[str, Any] = {
            "Name": "danemap: dopamine/norepinephrine imaging markers",
            "BIDSVersion": BIDS_VERSION,
            "DatasetType": "derivative",
            "GeneratedBy": [generated],
        }
        if self.source_datasets:
            desc["SourceDatasets"] = self.source_datasets
        return desc

    def path(self, subject: str | None, datatype: str, suffix: str, extension: str,
             **entities: str | int | None) -> Path:
        """Build a BIDS-derivative path under :attr:`root`.

        Parameters
        ----------
        subject : str or None
            ``"01"`` or ``"sub-01"``; ``None`` for dataset-level outputs
            (``root/<datatype>/<entities>_<suffix><extension>``).
        datatype : str
            ``anat``, ``func``, ``pet``, ``figures``, ``group``...
        suffix : str
            e.g. ``connectivity``, ``stats``, ``timeseries``.
        extension : str
            e.g. ``.tsv``, ``.json``, ``.nii.gz``.
        **entities : str, int or None
            ``ses``, ``task``, ``acq``, ``trc``, ``rec``, ``run``, ``space``,
            ``res``, ``atlas``, ``desc`` (``None`` values are skipped). They are
            placed in that canonical order whatever the argument order.

        Returns
        -------
        Path
            e.g. ``OUT/danemap/sub-01/func/``
            ``sub-01_task-rest_atlas-danemap_desc-corr_connectivity.tsv``; under
            ``OUT/danemap/.partial/sub-01`` while the participant is :meth:`staged`.

        Raises
        ------
        InputError
            If an entity is unknown or a label, datatype, suffix or extension is invalid.
        """
        parts: list[str] = []
        folder = self.root
        if subject is not None:
            sub = validate_label(subject, "participant")
            parts.append(f"sub-{sub}")
            folder = (self.staging_dir(sub) if sub in self._staged
                      else self.participant_dir(sub))
            ses = entities.get("ses")
            if ses is not None:
                folder = folder / f"ses-{validate_label(ses, 'ses')}"
        for key in entities:
            if key not in ENTITY_ORDER or key == "sub":
                hint = closest(key, ENTITY_ORDER, n=1)
                raise InputError(f"unknown entity '{key}' for a derivative file name"
                                 + (f"; did you mean '{hint[0]}'?" if hint else "")
                                 + f"; valid: {', '.join(ENTITY_ORDER[1:])}")
        for key in ENTITY_ORDER[1:]:
            value = entities.get(key)
            if value is not None:
                parts.append(f"{key}-{validate_label(value, key)}")
        validate_label(datatype, "datatype")
        validate_label(suffix, "suffix")
        exts = extension.split(".")
        if not extension.startswith(".") or not all(e.isalnum() for e in exts[1:]):
            raise InputError(f"extension must look like '.tsv' or '.nii.gz', "
                             f"found {extension!r}")
        parts.append(suffix)
        return folder / datatype / ("_".join(parts) + extension)

    def participant_dir(self, subject: str) -> Path:
        """Return the visible folder of a participant, ``root/sub-<label>``.

        Parameters
        ----------
        subject : str
            ``"01"`` or ``"sub-01"``.

        Returns
        -------
        Path

        Raises
        ------
        InputError
            If the label is not a valid BIDS label.
        """
        return self.root / f"sub-{validate_label(subject, 'participant')}"

    def staging_dir(self, subject: str) -> Path:
        """Return the folder a participant is written to before promotion.

        Parameters
        ----------
        subject : str
            ``"01"`` or ``"sub-01"``.

        Returns
        -------
        Path
            ``root/.partial/sub-<label>``.

        Raises
        ------
        InputError
            If the label is not a valid BIDS label.
        """
        return self.root / PARTIAL / f"sub-{validate_label(subject, 'participant')}"

    @contextlib.contextmanager
    def staged(self, subject: str) -> Iterator[Path]:
        """Write a participant's files out of sight; show them only when all are written.

        Inside the block, :meth:`path` puts the participant's files under
        :meth:`staging_dir` (a stale staging folder of a killed run is cleared first, see
        :meth:`recover`). When the block completes, :meth:`promote` moves the folder into
        place; when it raises (or is interrupted), the staging folder is removed and the
        participant's previous outputs, if any, are left as they were.

        Parameters
        ----------
        subject : str
            ``"01"`` or ``"sub-01"``.

        Yields
        ------
        Path
            The staging folder.

        Raises
        ------
        InputError
            If the label is invalid or the participant is already staged.
        """
        sub = validate_label(subject, "participant")
        if sub in self._staged:
            raise InputError(f"participant sub-{sub} is already being written (staged)")
        self.recover(sub)
        stage = self.staging_dir(sub)
        for _ in range(100):  # another process may remove an empty .partial meanwhile
            try:
                stage.mkdir(parents=True, exist_ok=True)
                break
            except FileNotFoundError:
                continue
        self._staged.add(sub)
        try:
            yield stage
        except BaseException:
            self._staged.discard(sub)
            self.discard(sub)
            raise
        self._staged.discard(sub)
        self.promote(sub)

    def final_path(self, path: str | os.PathLike[str]) -> Path:
        """Map a path under a staging folder to where it is after promotion.

        Parameters
        ----------
        path : str or os.PathLike
            A path given by :meth:`path` while staged (other paths are returned as given).

        Returns
        -------
        Path
        """
        p = Path(path)
        partial = self.root / PARTIAL
        try:
            rel = p.relative_to(partial)
        except ValueError:
            return p
        return self.root / rel

    def promote(self, subject: str) -> Path:
        """Move a complete staging folder into place as ``root/sub-<label>``.

        Outputs of an earlier run that the new one did not rewrite (another marker family,
        another atlas) are kept: they are hard-linked (or copied) into the staging folder
        first, so the new folder is whole before it is shown. The old folder is then
        renamed aside, the new one renamed into place and the old one removed: a reader
        sees either the old participant or the new one, never a mixture. A run killed
        between the two renames is repaired by :meth:`recover` (the old folder returns).

        Parameters
        ----------
        subject : str
            ``"01"`` or ``"sub-01"``.

        Returns
        -------
        Path
            The participant's folder.

        Raises
        ------
        InputError
            If the label is invalid or there is nothing staged for the participant.
        """
        stage, final = self.staging_dir(subject), self.participant_dir(subject)
        if not stage.is_dir() or not any(stage.iterdir()):
            raise InputError(f"promote {final.name}: nothing staged in {stage}")
        if final.is_dir():
            _merge_missing(final, stage)
            old = stage.with_name(stage.name + ".old")
            if old.exists():
                shutil.rmtree(old)
            os.rename(final, old)
            os.rename(stage, final)
            _fsync_dir(self.root)
            shutil.rmtree(old)
        else:
            os.rename(stage, final)
            _fsync_dir(self.root)
        with contextlib.suppress(OSError):  # only when empty: others may be staging
            (self.root / PARTIAL).rmdir()
        return final

    def discard(self, subject: str) -> None:
        """Remove a participant's staging folder (its visible outputs are untouched).

        Parameters
        ----------
        subject : str
            ``"01"`` or ``"sub-01"``.
        """
        stage = self.staging_dir(subject)
        if stage.exists():
            shutil.rmtree(stage, ignore_errors=True)
        with contextlib.suppress(OSError):
            (self.root / PARTIAL).rmdir()

    def recover(self, subject: str) -> bool:
        """Clean what a killed run left of a participant in ``root/.partial``.

        A staging folder is removed (it was never complete, or was not promoted); an old
        folder renamed aside during :meth:`promote` comes back as ``sub-<label>`` when
        the new one never took its place, and is removed otherwise.

        Parameters
        ----------
        subject : str
            ``"01"`` or ``"sub-01"``.

        Returns
        -------
        bool
            Whether anything was left to clean.
        """
        stage, final = self.staging_dir(subject), self.participant_dir(subject)
        old = stage.with_name(stage.name + ".old")
        found = False
        if old.is_dir():
            found = True
            if final.exists():
                shutil.rmtree(old)
            else:
                os.rename(old, final)
                _fsync_dir(self.root)
        if stage.exists():
            found = True
            shutil.rmtree(stage)
        with contextlib.suppress(OSError):
            (self.root / PARTIAL).rmdir()
        return found

    def write_json(self, path: str | os.PathLike[str], obj: Any) -> Path:
        """Write ``obj`` as JSON atomically (see :func:`write_json`).

        Parameters
        ----------
        path : str or os.PathLike
            Destination.
        obj : object
            JSON-compatible content.

        Returns
        -------
        Path
        """
        return write_json(path, obj)

    def write_tsv(self, df: pd.DataFrame, path: str | os.PathLike[str],
                  sidecar: Mapping[str, Any] | None = None, index: bool = False) -> Path:
        """Write a table as BIDS TSV (``n/a`` for missing) with a JSON sidecar.

        A use of :func:`write_table` with a :func:`table_sidecar`: floats are written
        with the shortest text that round-trips exactly.

        Parameters
        ----------
        df : pandas.DataFrame
            The table.
        path : str or os.PathLike
            Destination ``.tsv`` file (usually from :meth:`path`).
        sidecar : mapping or None
            Column name -> ``{"Description": ..., "Units": ...}`` (other keys such
            as ``Levels`` are kept). Columns not described get a placeholder
            description; keys that are not columns are refused. Non-column
            metadata may be given under the key ``"_metadata"`` (merged at the top
            level of the sidecar).
        index : bool
            Also write the index (as the first column).

        Returns
        -------
        Path
            The TSV path; the sidecar is the same path with ``.json``.

        Raises
        ------
        InputError
            If ``path`` does not end in ``.tsv`` or the sidecar names unknown columns.
        """
        dest = Path(path)
        if dest.suffix != ".tsv":
            raise InputError(f"write_tsv: path must end in .tsv, found {dest.name}")
        table = df.reset_index() if index else df
        given = dict(sidecar or {})
        extra = given.pop("_metadata", {})
        side = table_sidecar(table.columns, given, extra, where=f"write_tsv {dest.name}")
        return write_table(table, dest, side)


def _merge_missing(old: Path, new: Path) -> None:
    """Link (or copy) into ``new`` every file of ``old`` that ``new`` does not have.

    Temporary files of an interrupted atomic write (``.name.*.tmp``) are not carried over.
    """
    for src in sorted(old.rglob("*")):
        if src.is_dir() or (src.name.startswith(".") and src.name.endswith(".tmp")):
            continue
        dest = new / src.relative_to(old)
        if dest.exists() or dest.is_symlink():
            continue
        dest.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.link(src, dest, follow_symlinks=False)
        except OSError:
            shutil.copy2(src, dest, follow_symlinks=False)
