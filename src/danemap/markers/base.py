"""The marker-family interface and its registry.

A *marker family* measures one modality's markers (functional connectivity, structural
volumes, PET binding, task contrasts). The BIDS-App workflow (:mod:`danemap.pipeline`)
knows no family by name: it loops over the registered ones, as nibabel's ``load`` loops over
image classes and nilearn's ``BaseMasker`` leaves only ``transform_single_imgs`` to its
subclasses. A family is one module that subclasses :class:`MarkerFamily` and decorates the
class with :func:`register`:

* ``inputs(session, config)``: the work items of one participant's discovered data (runs, images);
* ``compute(item, atlas, config)``: the markers of one item (a result object);
* ``write(result, writer, item, atlas_name)``: its per-participant derivatives (the written
  paths, named with ``atlas-<atlas_name>``);
* ``collect(out_root, atlas, config)``: its group tables, each a :class:`GroupTable` that
  knows its name, title, feature kind and the group analyses that apply to it.

``modalities`` names the BIDS ``datatype/suffix`` pairs the family consumes (``"func/bold"``):
data a dataset has that no registered family consumes is reported, never skipped silently.
``config_section`` names the family's section of :class:`danemap.config.Config`.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

from danemap.errors import InputError

if TYPE_CHECKING:
    from danemap.config import Config
    from danemap.io import SessionData

__all__ = ["GROUP_ANALYSES", "GroupTable", "MarkerFamily", "families", "get_family",
           "register"]

#: The families that ship with danemap, in the order they run.
BUILTIN_FAMILIES = ("functional", "structural", "pet", "task")

#: The analyses of :func:`danemap.stats.pipeline.run_stats` a region or network table gets.
GROUP_ANALYSES = ("harmonize", "glm", "permutation", "symptoms", "normative", "classify")


@dataclass(frozen=True)
class GroupTable:
    """A group feature table a family wrote, and how the statistics treat it.

    Attributes
    ----------
    name : str
        Short name (``"networks"``), also the folder of its statistics
        (``group/stats/<name>``).
    path : pathlib.Path
        The TSV (``participant_id`` plus one column per feature).
    title : str
        Title of its report sections.
    kind : str
        What a feature is: ``"region"``, ``"network"`` or ``"edge"`` (``A__B`` columns).
    analyses : tuple of str
        The group analyses that apply; empty for a table written only for reference
        (raw ALFF, counts).
    family : str
        Name of the family that wrote it.
    icv : str
        The column holding each participant's intracranial volume (a volume table's
        ``ICV``): the statistics take it as the ICV covariate, not as a feature. Empty:
        none.
    moderator : str
        A ``participants.tsv`` column whose levels moderate the case-control effect
        (``med_status`` for DAT binding): when the column exists and ``[stats.glm]
        moderator`` is not set, the GLM adds the effect of each level's cases against all
        controls. Empty: none.
    """

    name: str
    path: Path
    title: str
    kind: str
    analyses: tuple[str, ...]
    family: str = ""
    icv: str = ""
    moderator: str = ""

    @property
    def analysed(self) -> bool:
        """Whether the statistics run on this table."""
        return bool(self.analyses)


class MarkerFamily(ABC):
    """One modality's markers behind the interface the workflow loops over.

    Subclasses set the class attributes and implement the four steps; see the module
    docstring. Instances hold no state between participants.

    Attributes
    ----------
    name : str
        Family name (``"functional"``).
    config_section : str
        Section of the configuration the family reads (``"functional"``).
    modalities : tuple of str
        BIDS ``datatype/suffix`` pairs the family consumes (``"func/bold"``).
    """

    name: ClassVar[str] = ""
    config_section: ClassVar[str] = ""
    modalities: ClassVar[tuple[str, ...]] = ()

    @abstractmethod
    def inputs(self, session: SessionData, config: Config) -> list[Any]:
        """Return the work items of one participant's session (empty: nothing to do).

        ``config`` is the effective configuration: a family whose settings choose among
        inputs (``[structural] inputs``) reads them here.
        """

    @abstractmethod
    def compute(self, item: Any, atlas: Any, config: Config) -> Any:
        """Compute the markers of one work item."""

    @abstractmethod
    def write(self, result: Any, writer: Any, item: Any, atlas_name: str) -> list[Path]:
        """Write one result's per-participant derivatives; return the paths written."""

    @abstractmethod
    def collect(self, out_root: Path, atlas_name: str, config: Config) -> list[GroupTable]:
        """Gather the per-participant outputs under ``out_root`` into group tables."""

    def qc_excluded(self, result: Any) -> bool:
        """Tell whether quality control flags a result for exclusion (default: never)."""
        return False

    def describe_item(self, item: Any) -> str:
        """Name a work item in messages (default: ``str(item)``)."""
        return str(item)

    def missing_input_hint(self, sessions: Sequence[SessionData] = ()) -> str:
        """Say what input the family looks for, for the 'nothing to compute' error.

        Parameters
        ----------
        sessions : sequence of SessionData, optional
            The participant's discovered sessions, so that the hint can name what was
            found instead (e.g. raw BOLD without fMRIPrep output); empty: unknown.

        Returns
        -------
        str
        """
        return f"no input for the {self.name} markers"


F = TypeVar("F", bound=type[MarkerFamily])

_REGISTRY: dict[str, type[MarkerFamily]] = {}


def register(cls: F) -> F:
    """Register a :class:`MarkerFamily` subclass (a class decorator).

    Parameters
    ----------
    cls : type
        The family class; its ``name`` must be set and unique.

    Returns
    -------
    type
        ``cls`` unchanged.

    Raises
    ------
    InputError
        If ``cls`` is not a MarkerFamily, has no name, or its name is taken by another
        class.
    """
    if not (isinstance(cls, type) and issubclass(cls, MarkerFamily)) or not cls.name:
        raise InputError(f"register: expected a named MarkerFamily subclass, found {cls!r}")
    other = _REGISTRY.get(cls.name)
    if other is not None and other is not cls and other.__qualname__ != cls.__qualname__:
        raise InputError(f"register: a marker family named {cls.name!r} is already "
                         f"registered ({other.__module__}.{other.__qualname__})")
    _REGISTRY[cls.name] = cls
    return cls


def _load_builtin() -> None:
    """Import the families that ship with danemap (each registers itself)."""
    import importlib

    # in this order: the PET family reuses the structural family's T1w -> MNI transforms
    for module in BUILTIN_FAMILIES:
        importlib.import_module(f"danemap.markers.{module}")


def families(names: Sequence[str] | None = None) -> list[MarkerFamily]:
    """Return instances of the registered families, in registration order.

    Parameters
    ----------
    names : sequence of str or None
        Only these families (every registered one when None).

    Returns
    -------
    list of MarkerFamily

    Raises
    ------
    InputError
        If a requested name is not registered.
    """
    _load_builtin()
    if names is None:
        return [cls() for cls in _REGISTRY.values()]
    unknown = [n for n in names if n not in _REGISTRY]
    if unknown:
        raise InputError(f"marker families: unknown {unknown}; registered are "
                         f"{list(_REGISTRY)}")
    # the registry's order, whatever the order asked: PET needs the structural transforms
    return [cls() for n, cls in _REGISTRY.items() if n in names]


def get_family(name: str) -> MarkerFamily:
    """Return an instance of the registered family ``name``.

    Parameters
    ----------
    name : str
        Family name.

    Returns
    -------
    MarkerFamily
    """
    return families([name])[0]
