"""Benchmark: danemap functional markers vs nilearn, side by side in one run.

Generates N subjects of 2 mm MNI BOLD (.nii.gz, 200 volumes, float32, zeros outside the
MNI brain mask, region signals + noise) with a 24-motion + WM/CSF fMRIPrep confounds TSV,
then times per subject:

* floor (decompress only): the file read and decompressed by isal in 8 MiB blocks, nothing
  kept (the least any reader of this file can do)
* floor (nibabel): ``np.asanyarray(nib.load(p).dataobj)`` (zlib gzip)
* floor (isal): ``danemap.io.load_nifti(p)`` (isal gzip, the fastest full read)
* danemap: ``process_run`` (confounds, streaming extraction of all 31 atlas regions,
  denoising, correlation + partial correlation, network scores, ALFF/fALFF, QC)
* nilearn: ``NiftiLabelsMasker(strategy="mean")`` with the same cleaning, then
  ``ConnectivityMeasure`` (correlation and partial correlation, EmpiricalCovariance)

Usage: ``python benchmarks/bench_functional.py [--subjects 5] [--repeats 1]``
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
import warnings
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd


def _write_gz(path: Path, data: np.ndarray, affine: np.ndarray, tr: float) -> None:
    from isal import igzip

    img = nib.Nifti1Image(data[..., :1], affine)
    hdr = img.header
    hdr.set_data_shape(data.shape)
    hdr.set_xyzt_units("mm", "sec")
    hdr["pixdim"][4] = tr
    hdr.set_data_dtype(np.float32)
    hdr["vox_offset"] = 352
    with igzip.open(path, "wb", compresslevel=1) as f:
        f.write(hdr.binaryblock)
        f.write(b"\x00" * 4)
        for t in range(data.shape[3]):
            f.write(np.asfortranarray(data[..., t]).tobytes(order="F"))


def _decompress(path: Path) -> None:
    """Read and decompress the whole file through isal in 8 MiB blocks, keeping nothing."""
    from isal import igzip_threaded

    buf = bytearray(8 << 20)
    with open(path, "rb") as raw, igzip_threaded.open(raw, "rb", threads=1) as f:
        while f.readinto(buf):
            pass


def make_subject(d: Path, i: int, atlas, mask: np.ndarray, n_t: int = 200, tr: float = 2.0):
    rng = np.random.default_rng(i)
    lab = np.asarray(atlas.img.dataobj)
    shape = lab.shape
    motion = np.cumsum(rng.normal(0, 0.02, (n_t, 6)), axis=0)
    cols: dict[str, np.ndarray] = {}
    names = ["trans_x", "trans_y", "trans_z", "rot_x", "rot_y", "rot_z"]
    for k, n in enumerate(names):
        x = motion[:, k]
        dx = np.r_[np.nan, np.diff(x)]
        cols[n], cols[n + "_derivative1"] = x, dx
        cols[n + "_power2"], cols[n + "_derivative1_power2"] = x**2, dx**2
    cols["csf"] = rng.normal(size=n_t)
    cols["white_matter"] = rng.normal(size=n_t)
    fd = np.abs(rng.normal(0.12, 0.05, n_t))
    cols["framewise_displacement"] = np.r_[np.nan, fd[1:]]
    conf = pd.DataFrame(cols)
    data = np.zeros((*shape, n_t), dtype=np.float32, order="F")
    inside = mask.astype(bool)
    n_in = int(inside.sum())
    latent = rng.normal(size=(n_t, int(lab.max()) + 1)).astype(np.float32)
    lab_in = lab[inside]
    for t in range(n_t):
        vol = np.zeros(shape, dtype=np.float32)
        vol[inside] = 1000 + 10 * rng.standard_normal(n_in, dtype=np.float32) \
            + 5 * latent[t, lab_in] * (lab_in > 0)
        data[..., t] = vol
    stem = f"sub-{i:02d}_task-rest"
    bold = d / f"{stem}_space-MNI152NLin2009cAsym_res-2_desc-preproc_bold.nii.gz"
    _write_gz(bold, data, atlas.img.affine, tr)
    conf_path = d / f"{stem}_desc-confounds_timeseries.tsv"
    conf.to_csv(conf_path, sep="\t", index=False, na_rep="n/a")
    return bold, conf_path


def _time(fn) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--subjects", type=int, default=5)
    ap.add_argument("--repeats", type=int, default=1)
    args = ap.parse_args()

    from nilearn.connectome import ConnectivityMeasure
    from nilearn.datasets import load_mni152_brain_mask
    from nilearn.maskers import NiftiLabelsMasker
    from sklearn.covariance import EmpiricalCovariance

    from danemap.atlas import load_atlas
    from danemap.config import FunctionalConfig
    from danemap.io import load_nifti
    from danemap.markers import process_run
    from danemap.markers.functional._confounds import read_confounds, select_confounds

    warnings.simplefilter("ignore")
    atlas = load_atlas(resolution=2)
    mask_img = load_mni152_brain_mask(resolution=2)
    mask = np.asarray(mask_img.dataobj)
    if mask.shape != atlas.shape:
        import nibabel.processing as nproc

        mask = np.asarray(nproc.resample_from_to(mask_img, atlas.img, order=0).dataobj)
    cfg = FunctionalConfig(strategy="simple")
    n_regions = int((~atlas.regions["empty"]).sum())
    print(f"atlas: {len(atlas.regions)} regions ({n_regions} non-empty) at 2 mm, "
          f"{int((np.asarray(atlas.img.dataobj) > 0).sum())} atlas voxels")

    with tempfile.TemporaryDirectory(prefix="bench_func_") as tmp:
        d = Path(tmp)
        t0 = time.perf_counter()
        subjects = [make_subject(d, i, atlas, mask) for i in range(args.subjects)]
        size = np.mean([b.stat().st_size for b, _ in subjects]) / 2**20
        print(f"generated {args.subjects} subjects (91x109x91x200 float32, "
              f"{size:.0f} MiB .nii.gz each) in {time.perf_counter() - t0:.1f} s")

        times: dict[str, list[float]] = {k: [] for k in (
            "floor_decompress", "floor_nibabel", "floor_isal", "danemap", "nilearn")}
        max_dev = 0.0
        for _ in range(args.repeats):
            for bold, conf_path in subjects:
                times["floor_decompress"].append(_time(lambda b=bold: _decompress(b)))
                times["floor_nibabel"].append(
                    _time(lambda b=bold: np.asanyarray(nib.load(b).dataobj)))
                times["floor_isal"].append(_time(lambda b=bold: load_nifti(b)))
                res = {}
                times["danemap"].append(_time(lambda b=bold, c=conf_path, out=res: out.update(
                    r=process_run(b, c, atlas, cfg))))

                def _nilearn(b=bold, c=conf_path, out=res):
                    sel = select_confounds(read_confounds(c), cfg, None, str(c))
                    masker = NiftiLabelsMasker(atlas.img, strategy="mean", standardize=None,
                                               detrend=True, high_pass=cfg.high_pass,
                                               low_pass=cfg.low_pass, t_r=2.0)
                    ts = masker.fit_transform(str(b), confounds=sel.confounds,
                                              sample_mask=sel.sample_mask)
                    for kind in ("correlation", "partial correlation"):
                        ConnectivityMeasure(kind=kind, cov_estimator=EmpiricalCovariance()
                                            ).fit_transform([ts])
                    out["ref"] = ts

                times["nilearn"].append(_time(_nilearn))
                ours = res["r"].timeseries.dropna(axis=1, how="all").to_numpy()
                ref = res["ref"]
                max_dev = max(max_dev, float(np.abs(ours - ref).max() / np.abs(ref).max()))

    med = {k: statistics.median(v) for k, v in times.items()}
    spread = {k: (min(v), max(v)) for k, v in times.items()}
    print()
    print(f"{'step':<16}{'median s/subject':>18}{'min':>8}{'max':>8}")
    for k in times:
        print(f"{k:<16}{med[k]:>18.3f}{spread[k][0]:>8.3f}{spread[k][1]:>8.3f}")
    print()
    print(f"speed-up danemap vs nilearn      : {med['nilearn'] / med['danemap']:.2f}x "
          "(target >= 3x)")
    print(f"danemap / floor (isal read)      : {med['danemap'] / med['floor_isal']:.2f}x "
          "(target <= 1.5x)")
    print(f"danemap / floor (decompress only): {med['danemap'] / med['floor_decompress']:.2f}x "
          "(the strictest floor: no array is built)")
    print(f"danemap / floor (nibabel read)   : {med['danemap'] / med['floor_nibabel']:.2f}x")
    print(f"max relative deviation of ROI time series vs nilearn: {max_dev:.2e}")


if __name__ == "__main__":
    main()
