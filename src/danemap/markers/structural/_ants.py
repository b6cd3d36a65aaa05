"""The raw-T1w structural path: regional volumes from a BIDS ``anat/*_T1w.nii[.gz]`` by ANTsPy.

Steps (each logged with its time at INFO level):

1. **Header check** before any voxel is read: a 3-D image, voxel sizes between
   :data:`MIN_VOXEL_MM` and :data:`MAX_VOXEL_MM`, a field of view of at least
   :data:`MIN_FOV_MM` along every axis (else :class:`~danemap.errors.InputError`).
2. **N4** bias-field correction (``ants.n4_bias_field_correction``).
3. **Registration** T1w -> MNI152 (the 2009 template shipped inside nilearn,
   ``nilearn/datasets/data/mni_icbm152_t1_tal_nlin_sym_09a_converted.nii.gz``, read from the
   package folder: nothing is downloaded): an affine stage (Mattes MI, regular sampling)
   from a centre-of-mass start, then SyN (local cross-correlation, radius 1 voxel, in both
   modes), both with the metric restricted to the template brain mask dilated by
   :data:`FIXED_MASK_DILATE_MM` (so the scalp of a raw T1w does not drive the fit). The
   schedule is :data:`FULL` or :data:`QUICK`.
4. **Brain extraction**: the template brain mask (nilearn's definition: template / max >
   0.2, holes filled, plus the atlas regions) pulled back into native space by the inverse
   transform (linear interpolation; the mask is the fraction >= 0.5).
5. **Tissue segmentation**: Atropos, 3 classes (CSF, GM, WM), **k-means initialisation**
   (``--use-random-seed 0``: Atropos' internal generator gets its constant seed, so the
   k-means start and the MRF visiting order are the same every run), MRF smoothing 0.1,
   within the brain mask.
6. **Atlas to native space**: the inverse transform maps every native voxel centre to MNI
   coordinates (three coordinate images warped with linear interpolation, exact for a
   linear function), and the DA/NE atlas is evaluated there, through its drawing space
   (next section).

Atlas space
-----------
AAL3, and so the built-in DA/NE atlas, was drawn on one brain, Colin27 (the MNI single
subject), not on the MNI152 2009 template that the T1w is registered to. Evaluated directly
on the template grid its regions miss the template's (and so the participant's) anatomy:
on Colin27 itself the recovered caudate, putamen, accumbens and DLPFC volumes were off by
-12 % to +9 % per region. As templateflow does between template spaces, the atlas is
therefore reached through a fixed template-to-template transform: Colin27 (``ch2.nii.gz``
of the Debian package mricron-data) is registered to the template once per machine with
the :data:`FULL` schedule (about 2.5 minutes), the map (template voxel -> Colin27 world
mm) is cached in :func:`cache_dir`, and every native voxel goes native -> template ->
Colin27 -> atlas. ``atlas_space`` chooses: ``"colin27"`` (that path; an error when
mricron-data is missing), ``"mni152"`` (the atlas read on the template grid directly, for
an atlas drawn on MNI152), or ``"auto"`` (``"colin27"`` for an AAL3-derived atlas when
mricron-data is installed, else ``"mni152"`` with a warning). The space used is recorded
in the provenance of every volume table.

Volumes
-------
``volume_mm3`` (the primary value) is the volume of the atlas region warped into the
native brain: the sum over native voxels of the **linearly interpolated** region indicator
(trilinear weights of the 8 surrounding atlas voxels that belong to the region) times the
native voxel volume. Unlike counting nearest-neighbour labels it follows sub-voxel boundary
moves, so it is unbiased at 2 mm. It is *not* FreeSurfer's volume (the AAL caudate drawn on
Colin27 is about 7.7 cm3, FreeSurfer's adult caudate about 3.3 cm3), hence
``like_freesurfer=False``. ``gm_volume_mm3`` (extra column) is the probability-weighted grey
matter volume: the sum of GM posterior x interpolated indicator x voxel volume. ICV is the
(fractional) volume of the native brain mask, which contains the CSF class of the
segmentation (brain mask = GM + WM + CSF).

Determinism
-----------
Registration uses a fixed ``--random-seed`` (``seed``; Atropos gets it through
``ANTS_RANDOM_SEED``) and a fixed thread count
(``ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS``; ITK reads it once per process, so it must be set
before the first ANTs call: :func:`segment_t1w` sets it to 1 when it is unset). With one
thread and the fixed seed the same input gives identical output (tested). With 2 threads
ITK's multithreaded metric sums are order dependent: measured run-to-run differences of
up to about 0.3 % in regional volumes, for about 1.5x speed.

Work folder
-----------
Intermediate files go to a fresh ``danemap-ants-*`` folder (under ``work_dir`` or the
system temporary folder), removed on success (unless ``keep_work``) and kept on failure,
with its path logged.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from danemap._utils.logging import get_logger
from danemap.errors import InputError

__all__ = ["ATLAS_SPACES", "FULL", "QUICK", "Schedule", "T1wResult", "cache_dir",
           "colin27_map", "resolve_atlas_space", "segment_t1w"]

log = get_logger("structural.ants")

MIN_VOXEL_MM = 0.3
MAX_VOXEL_MM = 4.0
MIN_FOV_MM = 90.0
FIXED_MASK_DILATE_MM = 6.0
DEFAULT_SEED = 20240611
DEFAULT_THREADS = 1

#: QC bounds: outside them the volume rows get the named ``qc`` flag.
QC_BOUNDS = {
    # Pearson r of the warped T1w and the template in the template brain; measured 0.82-0.89
    # on Colin27-based simulations (a real brain with scalp), 0.96-0.98 on MNI152-based ones
    "registration_corr": (0.75, 1.0),
    "icv_mm3": (800e3, 2200e3),
    "gm_wm_contrast": (1.05, 10.0),  # mean WM / mean GM intensity (N4-corrected)
    "brain_fraction_gm": (0.25, 0.70),
}
QC_FLAGS = {
    "registration_corr": "low_registration_similarity",
    "icv_mm3": "icv_out_of_range",
    "gm_wm_contrast": "low_gm_wm_contrast",
    "brain_fraction_gm": "gm_fraction_out_of_range",
}

_TEMPLATE = "mni_icbm152_t1_tal_nlin_sym_09a_converted.nii.gz"

#: ``atlas_space`` settings (see "Atlas space" in the module notes).
ATLAS_SPACES = ("auto", "colin27", "mni152")
#: Bumped whenever the cached Colin27 map changes meaning.
_MAP_VERSION = 1


@dataclass(frozen=True)
class Schedule:
    """Registration and segmentation settings of one mode.

    Attributes
    ----------
    template_mm : float
        Grid of the registration target (the 1 mm template resampled when > 1).
    aff_iterations, aff_shrink, aff_sigmas : tuple of int
        Affine stage: iterations, shrink factors and smoothing sigmas (voxels) per level.
    syn_iterations : tuple of int
        SyN iterations per level; the shrink factors are ``2**k`` down to 1 (ANTsPy).
    n4_shrink : int
        N4 shrink factor.
    n4_iterations : tuple of int
        N4 iterations per fitting level.
    atropos_iterations : int
        Atropos EM iterations.
    syn_metric : str
        SyN similarity metric (``"mattes"`` or ``"CC"``).
    syn_sampling : int
        Mattes histogram bins, or the CC radius in voxels.
    grad_step, flow_sigma : float
        SyN gradient step and update-field smoothing (voxels).
    """

    template_mm: float
    aff_iterations: tuple[int, ...]
    aff_shrink: tuple[int, ...]
    aff_sigmas: tuple[int, ...]
    syn_iterations: tuple[int, ...]
    n4_shrink: int
    n4_iterations: tuple[int, ...]
    atropos_iterations: int
    syn_metric: str = "mattes"
    syn_sampling: int = 32
    grad_step: float = 0.2
    flow_sigma: float = 3.0


#: Full mode: SyN with a local cross-correlation metric of radius 1 voxel (a 6 mm window at
#: 2 mm) and an update-field smoothing of 2 voxels. The CC radius sets how much of a planted
#: local volume change the registration follows (``bench_structural.py --tracking``, the
#: same participant with and without a -10 % striatal change, Colin27 base, seed 5):
#: radius 4: 0.53, radius 2: 0.69, radius 1: 0.81 (seed 7: 0.83), in half the time of
#: radius 2. Registering the planted copy to the unchanged one (the same brain) follows
#: 0.94, so most of the loss comes with registering to a different brain (the template).
#: Tried at radius 1 and not taken: flow sigma 1.5 (0.80) or 3 (0.79), 20 finest-level
#: iterations (0.82, 1.6x the time), a 1 mm registration grid (0.65, 4x the time).
FULL = Schedule(template_mm=2.0, aff_iterations=(500, 250, 100), aff_shrink=(4, 2, 1),
                aff_sigmas=(2, 1, 0), syn_iterations=(40, 20, 10), n4_shrink=4,
                n4_iterations=(50, 50, 30), atropos_iterations=5, syn_metric="CC",
                syn_sampling=1, flow_sigma=2.0)
#: Quick mode: the full mode's SyN metric (CC radius 1) with a coarser affine (to 4 mm),
#: fewer iterations and a coarser N4 (shrink 6). It follows 0.76 of a planted change
#: (``bench_structural.py --tracking``) and recovered a planted -5.9 % striatal group
#: difference as -3.8 %, as full mode does (4 + 4, ``--validate colin27 --n 8``). The
#: earlier quick mode, SyN with Mattes MI (62-80 s per 1 mm subject; now a median 86 s,
#: 84-101 s), followed 0.60 and gave a 2 + 2 group difference back with the wrong sign.
#: Its finest SyN level is what buys the tracking: 2 iterations there follow 0.67, none
#: 0.56.
QUICK = Schedule(template_mm=2.0, aff_iterations=(200, 100), aff_shrink=(4, 2),
                 aff_sigmas=(2, 1), syn_iterations=(40, 20, 5), n4_shrink=6,
                 n4_iterations=(30, 20, 10), atropos_iterations=3, syn_metric="CC",
                 syn_sampling=1, flow_sigma=2.0)


@dataclass
class T1wResult:
    """Everything :func:`segment_t1w` produced for one T1w.

    Attributes
    ----------
    volumes : VolumeSet
        Method ``"ants-atlas"``: ``volume_mm3`` (warped-region volume), extra column
        ``gm_volume_mm3`` (GM-posterior-weighted), ICV from the brain mask.
    labels_img : nibabel.Nifti1Image
        The atlas labels in native space (nearest label at each native voxel; for display,
        the volumes use the interpolated indicators).
    brain_mask_img : nibabel.Nifti1Image
        Native brain mask (uint8).
    tissue_img : nibabel.Nifti1Image
        Native tissue posteriors, 4-D (x, y, z, 3): CSF, GM, WM.
    t1w_n4_img : nibabel.Nifti1Image
        The bias-corrected T1w.
    transforms : dict
        ``{"forward": [...], "inverse": [...]}`` paths of the T1w -> MNI transforms (ANTs
        order for ``ants.apply_transforms``) in ``transform_dir``; empty when no
        ``transform_dir`` was given (the work folder is removed).
    timings : dict
        Seconds per step.
    qc : dict
        QC metrics (``registration_corr``, ``icv_mm3``, ``gm_wm_contrast``,
        ``brain_fraction_gm``) and ``flags`` (the names of those out of :data:`QC_BOUNDS`).
    """

    volumes: Any
    labels_img: Any
    brain_mask_img: Any
    tissue_img: Any
    t1w_n4_img: Any
    transforms: dict[str, list[Path]] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)
    qc: dict[str, Any] = field(default_factory=dict)


def _ants() -> Any:
    from danemap._utils.optional import import_optional

    # ITK reads its thread count once per process: fix it before ANTs starts (see the
    # module notes on determinism)
    os.environ.setdefault("ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS", str(DEFAULT_THREADS))
    return import_optional("ants", extra="ants", package="antspyx",
                           purpose="the raw-T1w structural path")


def _template_path() -> Path:
    from danemap._utils.optional import find_optional

    for folder in find_optional("nilearn", purpose="the MNI152 template"):
        p = folder / "datasets" / "data" / _TEMPLATE
        if p.is_file():
            return p
    raise InputError(f"nilearn's packaged MNI152 template {_TEMPLATE} is missing from its "
                     "datasets/data folder; reinstall nilearn")


def check_t1w_header(t1w: Any) -> tuple[Any, str]:
    """Validate a T1w before loading it; return the (loaded) image and its name.

    Parameters
    ----------
    t1w : path-like or nibabel image
        The T1w.

    Returns
    -------
    img : nibabel.Nifti1Image
        The image (loaded through :func:`danemap.io.load_nifti` for a path).
    name : str
        The file name (or ``"<in-memory image>"``).

    Raises
    ------
    InputError
        A 4-D image, a voxel size outside [:data:`MIN_VOXEL_MM`, :data:`MAX_VOXEL_MM`] or a
        field of view under :data:`MIN_FOV_MM` along an axis.
    """
    from danemap.io import load_nifti, load_nifti_header

    if isinstance(t1w, str | os.PathLike):
        name = str(t1w)
        hdr = load_nifti_header(t1w, expect_ndim=3)
        shape = tuple(int(s) for s in hdr.get_data_shape())
        zooms = tuple(float(z) for z in hdr.get_zooms())
    else:
        name = "<in-memory image>"
        shape = tuple(int(s) for s in t1w.shape)
        zooms = tuple(float(z) for z in t1w.header.get_zooms())
        if len(shape) == 4 and shape[3] == 1:
            shape = shape[:3]
        if len(shape) != 3:
            raise InputError(f"{name}: dim: expected a 3-D T1w, found shape {shape}")
    sp = zooms[:3]
    for k, z in enumerate(sp):
        if not MIN_VOXEL_MM <= z <= MAX_VOXEL_MM:
            raise InputError(
                f"{name}: pixdim[{k + 1}]: expected a voxel size between {MIN_VOXEL_MM} and "
                f"{MAX_VOXEL_MM} mm for a T1w, found {z:g} (voxel sizes {sp})")
    fov = [s * z for s, z in zip(shape[:3], sp, strict=True)]
    for k, f in enumerate(fov):
        if f < MIN_FOV_MM:
            raise InputError(
                f"{name}: dim[{k + 1}] x pixdim[{k + 1}]: expected a field of view of at least "
                f"{MIN_FOV_MM:g} mm along every axis (a whole head), found "
                f"{shape[k]} x {sp[k]:g} = {f:g} mm")
    img = load_nifti(t1w, expect_ndim=3) if isinstance(t1w, str | os.PathLike) else t1w
    return img, name


@contextmanager
def _work_folder(work_dir: Any, keep: bool) -> Iterator[Path]:
    parent = None if work_dir is None else Path(os.fspath(work_dir))
    if parent is not None:
        parent.mkdir(parents=True, exist_ok=True)
    path = Path(tempfile.mkdtemp(prefix="danemap-ants-", dir=parent))
    try:
        yield path
    except BaseException:
        log.error("raw-T1w path failed; intermediate files kept in %s", path)
        raise
    if keep:
        log.info("intermediate files kept in %s", path)
    else:
        shutil.rmtree(path, ignore_errors=True)


@contextmanager
def _seeded(ants: Any, seed: int) -> Iterator[None]:
    # antsRegistration takes --random-seed from ants.config; Atropos (and ITK's random
    # generators in ANTs tools) read ANTS_RANDOM_SEED
    old = ants.config._random_seed
    old_env = os.environ.get("ANTS_RANDOM_SEED")
    ants.config._random_seed = int(seed)
    os.environ["ANTS_RANDOM_SEED"] = str(int(seed))
    try:
        yield
    finally:
        ants.config._random_seed = old
        if old_env is None:
            os.environ.pop("ANTS_RANDOM_SEED", None)
        else:
            os.environ["ANTS_RANDOM_SEED"] = old_env


class _Timer:
    def __init__(self) -> None:
        self.timings: dict[str, float] = {}

    @contextmanager
    def step(self, name: str) -> Iterator[None]:
        t0 = time.perf_counter()
        log.info("raw T1w: %s ...", name)
        yield
        dt = time.perf_counter() - t0
        self.timings[name] = dt
        log.info("raw T1w: %s done in %.1f s", name, dt)


def _ras_affine(img: Any) -> np.ndarray:
    """RAS voxel-to-world affine of an ANTs image (ANTs stores LPS)."""
    d = np.asarray(img.direction) * np.asarray(img.spacing)[None, :]
    aff = np.eye(4)
    aff[:3, :3] = d
    aff[:3, 3] = img.origin
    flip = np.diag([-1.0, -1.0, 1.0, 1.0])
    return flip @ aff


def _n4(ants: Any, img: Any, sched: Schedule) -> Any:
    return ants.n4_bias_field_correction(
        img, shrink_factor=sched.n4_shrink,
        convergence={"iters": list(sched.n4_iterations), "tol": 1e-7})


def _load_template(ants: Any, sched: Schedule, atlas_labels: np.ndarray | None = None,
                   atlas_affine: np.ndarray | None = None) -> tuple[Any, Any]:
    tpl = ants.image_read(str(_template_path()))
    if sched.template_mm != 1.0:
        tpl = ants.resample_image(tpl, (sched.template_mm,) * 3, use_voxels=False,
                                  interp_type=0)
    arr = tpl.numpy()
    from scipy import ndimage

    # nilearn's brain mask (template / max > 0.2) with its holes (ventricles) filled
    inside = ndimage.binary_fill_holes(arr / arr.max() > 0.2)
    if atlas_labels is None or atlas_affine is None:
        return tpl, tpl.new_image_like(inside.astype(np.float32))
    # atlas regions are intracranial by definition: add those outside the threshold
    m = np.linalg.solve(atlas_affine, _ras_affine(tpl))  # template voxel -> atlas voxel
    lab = ndimage.affine_transform((atlas_labels > 0).astype(np.float32), m[:3, :3],
                                   offset=m[:3, 3], output_shape=tuple(tpl.shape), order=0)
    mask = tpl.new_image_like((inside | (lab > 0)).astype(np.float32))
    return tpl, mask


def _register(ants: Any, moving: Any, tpl: Any, tpl_mask: Any, sched: Schedule,
              work: Path) -> dict[str, Any]:
    r = max(1, round(FIXED_MASK_DILATE_MM / float(tpl.spacing[0])))
    fixed_mask = ants.iMath(tpl_mask, "MD", r)
    aff = ants.registration(
        tpl, moving, type_of_transform="Affine", mask=fixed_mask, mask_all_stages=True,
        aff_metric="mattes", aff_sampling=32, aff_random_sampling_rate=0.25,
        aff_iterations=sched.aff_iterations, aff_shrink_factors=sched.aff_shrink,
        aff_smoothing_sigmas=sched.aff_sigmas, outprefix=str(work / "aff_"))
    syn = ants.registration(
        tpl, moving, type_of_transform="SyNOnly", initial_transform=aff["fwdtransforms"],
        mask=fixed_mask, mask_all_stages=True, syn_metric=sched.syn_metric,
        syn_sampling=sched.syn_sampling,
        reg_iterations=sched.syn_iterations, grad_step=sched.grad_step,
        flow_sigma=sched.flow_sigma, total_sigma=0,
        outprefix=str(work / "syn_"))
    return syn


def cache_dir() -> Path:
    """Folder of danemap's per-machine cache (the Colin27 atlas-space map).

    ``DANEMAP_CACHE_DIR`` when set, else ``$XDG_CACHE_HOME/danemap``, else
    ``~/.cache/danemap``. Removing it is safe: what is missing is computed again.

    Returns
    -------
    Path
        The folder (not created).
    """
    env = os.environ.get("DANEMAP_CACHE_DIR")
    if env:
        return Path(env)
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "danemap"


def resolve_atlas_space(atlas: Any, setting: str = "auto") -> str:
    """Return the space an atlas is read in: ``"colin27"`` or ``"mni152"`` (module notes).

    Parameters
    ----------
    atlas : Atlas
        The atlas (its ``source_labels`` say whether it is made of AAL3 labels).
    setting : {"auto", "colin27", "mni152"}
        ``[structural] atlas_space``.

    Returns
    -------
    str
        ``"colin27"`` or ``"mni152"``.

    Raises
    ------
    InputError
        An unknown setting, or ``"colin27"`` without ``ch2.nii.gz`` (mricron-data).
    """
    import warnings

    from danemap.atlas._aal3 import COLIN27_T1, drawn_on_colin27
    from danemap.errors import DanemapWarning

    if setting not in ATLAS_SPACES:
        raise InputError(f"[structural] atlas_space: expected one of {list(ATLAS_SPACES)}, "
                         f"found {setting!r}")
    if setting == "mni152":
        return setting
    if COLIN27_T1.is_file():
        return "colin27" if setting == "colin27" or drawn_on_colin27(atlas.regions) \
            else "mni152"
    if setting == "colin27":
        raise InputError(f"[structural] atlas_space 'colin27': {COLIN27_T1} is missing; "
                         "install the Debian package mricron-data (apt-get install "
                         "mricron-data), or set atlas_space = 'mni152'")
    if drawn_on_colin27(atlas.regions):
        warnings.warn(f"{COLIN27_T1} is missing (Debian package mricron-data): the AAL3 "
                      "atlas, drawn on Colin27, is read on the MNI152 template directly; "
                      "measured on Colin27 this misplaces regional volumes by up to 12 % "
                      "per region (see danemap.markers.structural._ants)", DanemapWarning,
                      stacklevel=2)
    return "mni152"


def colin27_map(seed: int = DEFAULT_SEED) -> np.ndarray:
    """Return the cached Colin27 atlas-space map, computing it first when missing.

    Parameters
    ----------
    seed : int
        Registration seed (that of :func:`segment_t1w`).

    Returns
    -------
    numpy.ndarray
        Colin27 world coordinates (mm, RAS), shape (3, *template shape), of every voxel of
        the 2 mm registration template; ``-1e4`` outside Colin27's field of view.
    """
    ants = _ants()
    tpl, _ = _load_template(ants, FULL)
    with tempfile.TemporaryDirectory(prefix="danemap-colin27-") as tmp, _seeded(ants, seed):
        return _colin27_map(ants, tpl, Path(tmp), seed)


def _colin27_map(ants: Any, tpl: Any, work: Path, seed: int) -> np.ndarray:
    """Colin27 world coordinates (mm, RAS; shape (3, *tpl.shape)) of every template voxel.

    Computed by :func:`_compute_colin27_map` once, then cached in :func:`cache_dir` under a
    key of both images' SHA-256, the schedule, the grid, the ANTs version, the ITK thread
    count and the seed; written atomically, under a lock, so that parallel workers compute
    it once. A cache folder that cannot be created, locked or written (a read-only home,
    a file system without ``flock``) is warned about, and the map is computed for this
    call only.
    """
    import fcntl
    import hashlib

    from danemap._utils.hashing import file_sha256
    from danemap.atlas._aal3 import COLIN27_T1

    key = hashlib.sha256(repr((
        _MAP_VERSION, file_sha256(COLIN27_T1), file_sha256(_template_path()), FULL,
        tuple(float(v) for v in tpl.spacing), tuple(int(v) for v in tpl.shape),
        FIXED_MASK_DILATE_MM, getattr(ants, "__version__", ""),
        os.environ.get("ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS"),
        int(seed))).encode()).hexdigest()[:16]
    folder = cache_dir()
    path = folder / f"colin27-to-mni152_{key}.npy"
    unusable = ("cache folder %s is unusable (%s): the Colin27 atlas-space map is computed "
                "for this run only; set DANEMAP_CACHE_DIR to a writable folder")
    try:
        folder.mkdir(parents=True, exist_ok=True)
        lock = open(folder / f".{path.name}.lock", "w")  # closed by the with below
        fcntl.flock(lock, fcntl.LOCK_EX)
    except OSError as exc:
        log.warning(unusable, folder, exc)
        return _compute_colin27_map(ants, tpl, work)
    with lock:
        if path.is_file():
            log.debug("Colin27 atlas-space map from the cache: %s", path)
            return np.load(path)
        log.info("computing the Colin27 -> MNI152 atlas-space map once for this machine "
                 "(about 2.5 minutes); it is cached in %s", path)
        world = _compute_colin27_map(ants, tpl, work)
        tmp = folder / f".{path.name}.{os.getpid()}.tmp.npy"
        try:
            np.save(tmp, world)
            os.replace(tmp, path)
        except OSError as exc:
            tmp.unlink(missing_ok=True)
            log.warning(unusable, folder, exc)
        return world


def _compute_colin27_map(ants: Any, tpl: Any, work: Path) -> np.ndarray:
    """Register Colin27 to the template (:data:`FULL`); return the map of :func:`_colin27_map`.

    The whole head is registered, with the template brain mask dilated as for a T1w, in
    ``work/colin27`` (never over the participant's own transforms). Template voxels whose
    position falls outside Colin27's field of view hold ``-1e4``.
    """
    from danemap.atlas._aal3 import COLIN27_T1

    t0 = time.perf_counter()
    colin = ants.image_read(str(COLIN27_T1))
    _, tpl_mask = _load_template(ants, FULL)
    sub = work / "colin27"
    sub.mkdir(exist_ok=True)
    reg = _register(ants, colin, tpl, tpl_mask, FULL, sub)
    idx = np.indices(tuple(colin.shape), dtype=np.float32)
    vox = np.stack([ants.apply_transforms(
        tpl, colin.new_image_like(idx[k]), transformlist=reg["fwdtransforms"],
        interpolator="linear", defaultvalue=-1e4).numpy() for k in range(3)])
    outside = np.any(vox <= -1e3, axis=0)
    ras = _ras_affine(colin)
    world = np.einsum("ij,j...->i...", ras[:3, :3], vox) + ras[:3, 3, None, None, None]
    world[:, outside] = -1e4
    log.info("Colin27 atlas-space map computed in %.0f s", time.perf_counter() - t0)
    return np.asarray(world, dtype=np.float32)


def _native_points(ants: Any, native: Any, tpl: Any, inverse: list[str]) -> np.ndarray:
    """Template voxel coordinates (3, *native.shape) of every native voxel centre."""
    # The template grid's voxel indices as three images, pulled back with linear
    # interpolation (exact for a linear function); outside the template's field of view the
    # value is -1e4 (outside every region).
    idx = np.indices(tuple(tpl.shape), dtype=np.float32)
    out = np.empty((3, *native.shape), dtype=np.float32)
    for k in range(3):
        w = ants.apply_transforms(native, tpl.new_image_like(idx[k]), transformlist=inverse,
                                  whichtoinvert=[True, False], interpolator="linear",
                                  defaultvalue=-1e4)
        out[k] = w.numpy()
    return out


def _atlas_points(ants: Any, tpl: Any, pts_tpl: np.ndarray, atlas_affine: np.ndarray,
                  space: str, work: Path, seed: int) -> np.ndarray:
    """Atlas voxel coordinates (3, n) of points given in template voxel coordinates."""
    if space == "mni152":  # the atlas grid maps to the template grid by an affine (both MNI)
        m = np.linalg.solve(atlas_affine, _ras_affine(tpl))
        return np.asarray(m[:3, :3] @ pts_tpl + m[:3, 3:4])
    from scipy import ndimage

    world = _colin27_map(ants, tpl, work, seed)
    # a point next to the map's (-1e4) edge is left outside every region
    edge = ndimage.map_coordinates((world[0] > -1e3).astype(np.float32), pts_tpl, order=1,
                                   mode="constant", cval=0.0) < 1.0
    cw = np.stack([ndimage.map_coordinates(world[k], pts_tpl, order=1, mode="constant",
                                           cval=-1e4) for k in range(3)])
    m = np.linalg.inv(atlas_affine)
    out = np.asarray(m[:3, :3] @ cw + m[:3, 3:4])
    out[:, edge] = -1e4
    return out


def _trilinear(pts: np.ndarray, shape: tuple[int, ...]) -> Iterator[tuple[np.ndarray, np.ndarray,
                                                                          np.ndarray]]:
    """Yield (flat atlas index, weight, valid) for the 8 corners of each point (3, n)."""
    base = np.floor(pts).astype(np.int64)
    frac = (pts - base).astype(np.float64)
    dims = np.asarray(shape)[:, None]
    for corner in range(8):
        off = np.array([(corner >> a) & 1 for a in range(3)])[:, None]
        c = base + off
        valid = np.all((c >= 0) & (c < dims), axis=0)
        w = np.ones(pts.shape[1])
        for a in range(3):
            w *= frac[a] if off[a, 0] else 1.0 - frac[a]
        flat = np.ravel_multi_index(np.clip(c, 0, dims - 1), shape)
        yield flat, w, valid


def _region_sums(labels: np.ndarray, pts: np.ndarray, weights: list[np.ndarray],
                 nlab: int) -> list[np.ndarray]:
    """Per label, sum over points of (interpolated indicator x each weight array)."""
    from scipy import ndimage

    # Only points with a labelled corner add to a region: skip the others (most of a
    # head's voxels), which leaves every region's sum, and its order of terms, unchanged.
    near = ndimage.binary_dilation(labels > 0, np.ones((3, 3, 3), dtype=bool))
    base = np.floor(pts).astype(np.int64)
    dims = np.asarray(labels.shape)[:, None]
    inside = np.all((base >= -1) & (base < dims), axis=0)
    idx = np.flatnonzero(inside)
    keep = idx[near[tuple(np.clip(base[:, idx], 0, dims - 1))]]
    pts = pts[:, keep]
    weights = [w[keep] for w in weights]
    lab_flat = labels.ravel()
    sums = [np.zeros(nlab) for _ in weights]
    for flat, w, valid in _trilinear(pts, labels.shape):
        lab = np.where(valid, lab_flat[flat], 0)
        for s, extra in zip(sums, weights, strict=True):
            s += np.bincount(lab, weights=w * extra, minlength=nlab)[:nlab]
    return sums


def _interp(values: np.ndarray, pts: np.ndarray) -> np.ndarray:
    from scipy import ndimage

    return ndimage.map_coordinates(values, pts, order=1, mode="constant", cval=0.0)


def segment_t1w(t1w: Any, atlas: Any, *, quick: bool = False, work_dir: Any = None,
                keep_work: bool = False, transform_dir: Any = None, seed: int = DEFAULT_SEED,
                n_threads: int | None = None, atlas_space: str = "auto") -> T1wResult:
    """Regional volumes and ICV of a raw T1w by N4, registration to MNI152 and Atropos.

    Parameters
    ----------
    t1w : path-like or nibabel image
        The raw T1w (``anat/*_T1w.nii[.gz]``), any head pose.
    atlas : Atlas
        The DA/NE atlas in MNI152NLin2009cAsym space (:func:`danemap.atlas.load_atlas`).
    quick : bool
        Use :data:`QUICK` (coarser affine, fewer SyN iterations) instead of :data:`FULL`.
    work_dir : path-like or None
        Parent of the ``danemap-ants-*`` work folder (system temporary folder if None).
    keep_work : bool
        Keep the work folder after success (it is always kept after a failure).
    transform_dir : path-like or None
        Where to copy the T1w -> MNI transforms (``T1w_to_MNI_0GenericAffine.mat``,
        ``T1w_to_MNI_1Warp.nii.gz``, ``T1w_to_MNI_1InverseWarp.nii.gz``) for reuse, e.g. by
        a PET step.
    seed : int
        ANTs registration random seed (sampling); fixed for reproducible output.
    n_threads : int or None
        ITK threads; default ``ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS`` if set, else 1 (the
        deterministic setting). Effective only before the first ANTs call of the process
        (ITK reads it once).
    atlas_space : {"auto", "colin27", "mni152"}
        Where the atlas is read (module notes, "Atlas space"): through Colin27, where AAL3
        was drawn, or on the template grid directly.

    Returns
    -------
    T1wResult
        Volumes (``volume_mm3``: warped-region volume from linearly interpolated
        indicators; ``gm_volume_mm3``: GM-posterior-weighted), native images, transforms,
        timings and QC.

    Raises
    ------
    InputError
        A bad header (4-D, absurd voxel size, tiny field of view), an atlas without
        regions, or ``atlas_space="colin27"`` without mricron-data.
    DependencyError
        When ANTsPy (``antspyx``) is not installed.
    """
    import nibabel as nib
    import pandas as pd

    from danemap.markers.structural._volumes import VolumeSet

    img, name = check_t1w_header(t1w)
    space = resolve_atlas_space(atlas, atlas_space)
    if n_threads is not None:
        os.environ["ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS"] = str(int(n_threads))
    else:
        os.environ.setdefault("ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS", str(DEFAULT_THREADS))
    ants = _ants()
    sched = QUICK if quick else FULL
    timer = _Timer()
    labels = np.asarray(atlas.img.dataobj).astype(np.int32)
    atlas_aff = np.asarray(atlas.img.affine, dtype=float)
    regions = atlas.regions
    if labels.ndim != 3 or not np.any(labels > 0):
        raise InputError("atlas.img: expected a 3-D label image with regions, found none")
    with _work_folder(work_dir, keep_work) as work, _seeded(ants, seed):
        with timer.step("load"):
            data = np.asarray(img.dataobj, dtype=np.float32)
            if data.ndim == 4:
                data = data[..., 0]
            if not np.isfinite(data).all() or float(np.ptp(data)) == 0.0:
                raise InputError(f"{name}: data: expected finite, non-constant intensities")
            nimg = nib.Nifti1Image(np.clip(data, 0.0, None), img.affine)
            nib.save(nimg, work / "t1w.nii.gz")
            native = ants.image_read(str(work / "t1w.nii.gz"))
        with timer.step("N4 bias correction"):
            n4 = _n4(ants, native, sched)
        with timer.step("registration (affine + SyN) to MNI152"):
            tpl, tpl_mask = _load_template(ants, sched, labels, atlas_aff)
            reg = _register(ants, n4, tpl, tpl_mask, sched, work)
        fwd, inv = list(reg["fwdtransforms"]), list(reg["invtransforms"])
        log.debug("transforms: forward %s, inverse %s", fwd, inv)
        with timer.step("brain extraction and atlas to native space"):
            pts_tpl = _native_points(ants, n4, tpl, inv)
            frac = _interp(tpl_mask.numpy().astype(np.float64),
                           pts_tpl.reshape(3, -1)).reshape(n4.shape)
            mask = frac >= 0.5
            pts = _atlas_points(ants, tpl, pts_tpl.reshape(3, -1), atlas_aff, space, work,
                                seed)
        with timer.step("tissue segmentation (Atropos, k-means, 3 classes)"):
            mask_img = n4.new_image_like(mask.astype(np.float32))
            seg = ants.atropos(a=n4, x=mask_img, i="Kmeans[3]", m="[0.1,1x1x1]",
                               c=f"[{sched.atropos_iterations},0]", priorweight=0.0,
                               r=0)  # --use-random-seed 0: Atropos' constant seed
            probs = np.stack([p.numpy() for p in seg["probabilityimages"]], axis=-1)
        with timer.step("regional volumes"):
            zooms = np.asarray(n4.spacing, dtype=float)
            voxvol = float(np.prod(zooms))
            gm = probs[..., 1].ravel().astype(np.float64)
            nlab = int(labels.max()) + 1
            vol, gmv = _region_sums(labels, pts, [np.ones(gm.size), gm], nlab)
            vol *= voxvol
            gmv *= voxvol
            near = np.rint(pts).astype(np.int64)
            ok = np.all((near >= 0) & (near < np.asarray(labels.shape)[:, None]), axis=0)
            lab_native = np.zeros(near.shape[1], dtype=np.int16)
            lab_native[ok] = labels[tuple(near[:, ok])]
            lab_native = lab_native.reshape(n4.shape)
            icv = float(frac.sum() * voxvol)
            arr = n4.numpy()
            seg_lab = seg["segmentation"].numpy()
            mean_gm = float(arr[seg_lab == 2].mean()) if np.any(seg_lab == 2) else np.nan
            mean_wm = float(arr[seg_lab == 3].mean()) if np.any(seg_lab == 3) else np.nan
            warped = reg["warpedmovout"].numpy()
            inside = tpl_mask.numpy() > 0
            corr = float(np.corrcoef(warped[inside], tpl.numpy()[inside])[0, 1])
            qc: dict[str, Any] = {
                "registration_corr": corr,
                "icv_mm3": icv,
                "gm_wm_contrast": mean_wm / mean_gm if mean_gm > 0 else np.nan,
                "brain_fraction_gm": float(probs[..., 1][mask].sum() / max(mask.sum(), 1)),
            }
            flags = [QC_FLAGS[k] for k, (lo, hi) in QC_BOUNDS.items()
                     if not (np.isfinite(qc[k]) and lo <= qc[k] <= hi)]
            qc["flags"] = flags
            rows = []
            for idx, rname, hemi in zip(regions["index"], regions["name"],
                                        regions["hemisphere"], strict=True):
                v = float(vol[int(idx)]) if int(idx) < nlab else 0.0
                g = float(gmv[int(idx)]) if int(idx) < nlab else 0.0
                rf = list(flags) + ([] if v > 0 else ["empty_region"])
                rows.append({"region": str(rname), "hemisphere": str(hemi), "volume_mm3": v,
                             "method": "ants-atlas", "enigma": "", "qc": ";".join(rf),
                             "gm_volume_mm3": g})
            table = pd.DataFrame(rows)
        transforms: dict[str, list[Path]] = {}
        if transform_dir is not None:
            tdir = Path(os.fspath(transform_dir))
            tdir.mkdir(parents=True, exist_ok=True)
            rename: dict[str, Path] = {}
            for f in dict.fromkeys(fwd + inv):
                fp = Path(f)
                dest = tdir / ("T1w_to_MNI_" + fp.name.split("_", 1)[1])
                shutil.copyfile(fp, dest)
                rename[f] = dest
            transforms = {"forward": [rename[f] for f in fwd],
                          "inverse": [rename[f] for f in inv]}
        affine_n = _ras_affine(n4)
        result = T1wResult(
            volumes=VolumeSet(
                table=table, icv_mm3=icv, icv_method="brain mask + CSF", method="ants-atlas",
                source=Path(name), like_freesurfer=False,
                provenance={"program": "ANTsPy", "version": getattr(ants, "__version__", ""),
                            "mode": "quick" if quick else "full", "schedule": sched,
                            "seed": int(seed), "template": _TEMPLATE, "atlas_space": space,
                            "threads": os.environ.get("ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS"),
                            "atropos_init": "Kmeans[3]"}),
            labels_img=nib.Nifti1Image(lab_native, affine_n),
            brain_mask_img=nib.Nifti1Image(mask.astype(np.uint8), affine_n),
            tissue_img=nib.Nifti1Image(probs.astype(np.float32), affine_n),
            t1w_n4_img=nib.Nifti1Image(arr.astype(np.float32), affine_n),
            transforms=transforms, timings=timer.timings, qc=qc)
    log.info("raw T1w %s: ICV %.0f mm3, registration r %.3f, QC flags %s, %.1f s in all",
             name, icv, corr, flags or "none", sum(timer.timings.values()))
    return result
