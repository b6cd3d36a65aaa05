"""Participant reports and the report command, on a synthesised output tree.

Planted truth: the tree's censored volumes, FD threshold, normative z-scores and an input
whose SHA-256 is published (FIPS 180-2: "abc"); the percentile is checked against scipy.
"""

import hashlib
import re

import pytest

from danemap.cli import main
from danemap.errors import DanemapError, InputError
from danemap.report._figures import nice_limit, nice_ticks
from danemap.report.participant import write_participant_report, write_participant_reports

# http outside the SVG namespace; data: URIs hold no URL
_URL = re.compile(r"https?://(?!www\.w3\.org/2000/svg)", re.I)


def _sections(html):
    return dict(re.findall(r'<h2 id="([^"]+)">(.*?)</h2>', html))


def test_participant_report_sections_and_planted_values(output_tree, tree):
    PLANTED = tree["planted"]
    path = write_participant_report(output_tree, "01")
    assert path == output_tree / "sub-01.html"
    html = path.read_text()
    heads = _sections(html)
    for anchor in ("header", "qc", "qc-t1w", "qc-fd", "qc-pet", "structural", "functional",
                   "pet", "task", "normative"):
        assert anchor in heads, anchor
    # the published SHA-256 of "abc" (FIPS 180-2), computed here by hashlib too
    assert PLANTED["abc_sha256"] == hashlib.sha256(b"abc").hexdigest()
    assert PLANTED["abc_sha256"] in html
    assert "not found when the report was written" in html  # the T1w source is gone
    assert "configuration hash c0ffee42" in html
    n, cens = PLANTED["n_volumes"], PLANTED["censored"]
    assert f"{len(cens)} of {n} volume(s) censored or dropped" in html
    # images: T1w QC, BOLD mean, FD trace, PET QC, matrix, SBR bars, TACs, fits, normative z
    assert html.count('<img src="data:image/png;base64,') == 9
    assert "status-pass" in heads["qc"]
    assert "SMALL REFERENCE" in html and "research measurement, not a diagnosis" in html
    assert "pet: failed: normative model: 2 controls are too few" in html
    assert "NAcc_L" in html.split('id="task"')[1]


def test_percentile_against_scipy(output_tree):
    from scipy.stats import norm

    from danemap.report.participant import _percentile

    for z in (-2.5, -1.0, 0.0, 0.3, 1.0, 1.96):
        assert _percentile(z) == pytest.approx(100 * norm.cdf(z), rel=1e-12, abs=1e-12)


def test_missing_and_failed_sections_say_why(output_tree):
    html2 = write_participant_report(output_tree, "sub-02").read_text()
    heads = _sections(html2)
    for anchor in ("structural", "pet", "task"):
        assert "status-missing" in heads[anchor], anchor
    assert "status-flag" in heads["qc"] and "excluded by motion QC" in html2
    assert "No FD trace" in html2
    html3 = write_participant_report(output_tree, "sub-03").read_text()  # failed, no folder
    assert "status-failed" in _sections(html3)["header"]
    assert "FAILED: no usable input" in html3
    with pytest.raises(InputError, match="no folder sub-99"):
        write_participant_report(output_tree, "99")
    with pytest.raises(InputError, match="not a participant label"):
        write_participant_report(output_tree, "../etc")


def test_escaping_and_no_external_url(output_tree, tree):
    SCRIPT, IMG = tree["script"], tree["img"]
    for path in write_participant_reports(output_tree):
        html = path.read_text()
        assert SCRIPT not in html and IMG not in html
        assert "<script" not in html.lower() and "onerror=" not in html.replace(
            "onerror=alert", "")  # only escaped forms remain
        assert not _URL.search(html), _URL.search(html)
    html = (output_tree / "sub-01.html").read_text()
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "&quot;&gt;&lt;img src=x onerror=alert(2)&gt;" in html


def test_unreadable_output_is_a_failed_section(tmp_path, tree):
    root = tree["build"](tmp_path)
    (root / "sub-01" / "func" / "sub-01_task-rest_desc-qc_motion.json").write_text("{oops")
    html = write_participant_report(root, "sub-01").read_text()
    assert "status-failed" in _sections(html)["qc"]
    assert "could not be drawn" in html


def test_reports_in_worker_processes_match_and_one_failure_spares_the_others(
        tmp_path, tree, monkeypatch):
    import re

    import danemap.report.participant as participant

    root = tree["build"](tmp_path)
    stamp = re.compile(r"Report generated [0-9-]+ [0-9:]+ UTC")

    def pages():
        return {p.name: stamp.sub("", p.read_text()) for p in sorted(root.glob("sub-*.html"))}

    one = write_participant_reports(root)
    first = pages()
    two = write_participant_reports(root, n_jobs=2)
    assert two == one and pages() == first and len(first) == 3
    for p in one:
        p.unlink()
    real = participant.write_participant_report

    def broken(r, sub):
        if sub.endswith("02"):
            raise InputError("sub-02: a broken output")
        return real(r, sub)

    monkeypatch.setattr(participant, "write_participant_report", broken)
    with pytest.raises(DanemapError, match="reports failed for sub-02: sub-02: a broken"):
        write_participant_reports(root)
    assert sorted(p.name for p in root.glob("sub-*.html")) == ["sub-01.html", "sub-03.html"]


def test_report_command_rebuilds_every_report(tmp_path, capsys, tree):
    root = tree["build"](tmp_path)
    (root / "group" / "stats" / "networks" / "effects.tsv").write_text(
        "feature\tterm\td\td_ci_low\td_ci_high\tp\np_fdr\n")
    assert main(["report", str(root.parent)]) == 0
    printed = capsys.readouterr().out.split()
    assert printed == [str(root / f"sub-0{k}.html") for k in (1, 2, 3)] + [
        str(root / "group" / "group_report.html")]
    assert main(["report", str(root), "--participant-label", "02", "--skip-group"]) == 0
    assert capsys.readouterr().out.split() == [str(root / "sub-02.html")]
    assert main(["report", str(tmp_path / "nothing")]) == 2


def test_nice_ticks_are_round():
    assert nice_ticks(-1.09, 2.18) == [-2.0, -1.0, 0.0, 1.0, 2.0, 3.0]
    assert nice_ticks(0, 7.3, 5) == [0.0, 2.0, 4.0, 6.0, 8.0]
    assert nice_ticks(0.1, 0.3, 2) == [0.1, 0.2, 0.3]  # no 0.30000000000000004
    # the odd forest ticks: a limit of 2.18 now gives -3..3 in steps of 1
    assert nice_limit(2.18) == (3.0, [-3.0, -2.0, -1.0, 0.0, 1.0, 2.0, 3.0])
    assert nice_limit(1.09) == (1.5, [-1.5, -1.0, -0.5, 0.0, 0.5, 1.0, 1.5])
    assert nice_limit(0.5) == (0.5, [-0.5, -0.25, 0.0, 0.25, 0.5])
    assert nice_limit(4.2)[0] == 5.0 and nice_limit(float("nan"))[0] == 1.0
    with pytest.raises(ValueError, match="finite"):
        nice_ticks(0, float("nan"))


def test_forest_ticks_at_round_values():
    from danemap.report import forest_plot_svg

    svg = forest_plot_svg(["a", "b"], [0.3, -0.2], [-0.5, -1.09], [0.99, 0.4])
    ticks = re.findall(r'text-anchor="middle">([-0-9.]+)</text>', svg)
    assert ticks == ["-1.5", "-1", "-0.5", "0", "0.5", "1", "1.5"]


def test_bold_mean_with_atlas_contours(output_tree):
    html = write_participant_report(output_tree, "01").read_text()
    heads = _sections(html)
    assert "qc-bold" in heads
    block = html.split('id="qc-bold"')[1].split("<h2")[0]
    assert block.count("<img") == 1 and "fMRIPrep&#x27;s reference image" in block
    assert "from the input" in block  # the tree has no written mean BOLD: the fallback
    fd_block = html.split('id="qc-fd"')[1].split("<h2")[0]
    assert "FD series from the input sub-01_task-rest_desc-confounds_timeseries.tsv" in fd_block
    assert "danemap atlas" in block
    # sub-02's run has no time series: the section says why instead of drawing nothing
    html2 = write_participant_report(output_tree, "02").read_text()
    block2 = html2.split('id="qc-bold"')[1].split("<h2")[0]
    assert "<img" not in block2 and "no time series TSV" in block2


def test_bold_mean_image_from_the_series(tmp_path, tree):
    import numpy as np

    _boldref = tree["boldref"]
    from danemap.report.participant import BOLD_MEAN_VOLUMES, bold_mean_image

    bold = tmp_path / "sub-01_task-rest_desc-preproc_bold.nii.gz"
    _boldref(bold, volumes=2 * BOLD_MEAN_VOLUMES + 1)  # volumes scaled 0.9 ... 1.1
    img, how = bold_mean_image(bold)
    assert img.shape == (61, 73, 61)
    n = 2 * BOLD_MEAN_VOLUMES + 1
    k = len(range(0, n, -(-n // BOLD_MEAN_VOLUMES)))  # evenly spaced, at most the cap
    assert k <= BOLD_MEAN_VOLUMES and f"{k} of the {n} volumes" in how
    data = np.asarray(img.dataobj)
    import nibabel as nib

    full = np.asarray(nib.load(bold).dataobj).mean(axis=3)
    # evenly spaced volumes of a linear ramp, first and last included: the same mean
    np.testing.assert_allclose(data, full, rtol=1e-5)
    (tmp_path / "bad_desc-preproc_bold.nii.gz").write_bytes(b"not an image")
    with pytest.raises(InputError, match="expected a readable BOLD image"):
        bold_mean_image(tmp_path / "bad_desc-preproc_bold.nii.gz")


def test_dynamic_pet_draws_the_fitted_curves_over_the_tacs(output_tree, tmp_path, tree):
    html = write_participant_report(output_tree, "01").read_text()
    pet = html.split('id="pet"')[1].split('id="task"')[0]
    assert "time-activity curves" in pet and "not written" not in pet
    assert 'alt="kinetic model fits over the time-activity curves' in pet
    assert pet.count("<img") == 3  # the bar chart, the TACs, the fits
    assert "SRTM" in pet and "MRTM2" in pet and "Putamen_L" in pet
    # outputs without the fits file: the TACs alone, and the missing file named
    root = tree["build"](tmp_path)
    (root / "sub-01" / "pet" / "sub-01_trc-FPCIT_atlas-danemap_desc-fits_tacs.tsv").unlink()
    pet = write_participant_report(root, "01").read_text().split('id="pet"')[1].split(
        'id="task"')[0]
    assert pet.count("<img") == 2 and "desc-fits_tacs.tsv is missing" in pet


def test_bold_mean_is_drawn_from_the_outputs_after_the_input_is_deleted(tmp_path, capsys,
                                                                      tree):
    import shutil

    root = tree["build"](tmp_path)
    func = root / "sub-01" / "func"
    tree["boldref"](func / "sub-01_task-rest_space-MNI152NLin2009cAsym_res-2_desc-mean_bold"
                           ".nii.gz")
    fd = [float("nan")] + [0.1] * 39
    fd[20] = 0.9
    (func / "sub-01_task-rest_desc-fd_timeseries.tsv").write_text(
        "volume\tframewise_displacement\n"
        + "".join(f"{k}\t{'n/a' if k == 0 else v}\n" for k, v in enumerate(fd)))
    # another run's mean is not this run's
    tree["boldref"](func / "sub-01_task-rest_run-2_space-MNI152NLin2009cAsym_desc-mean_bold"
                           ".nii.gz")
    shutil.rmtree(tmp_path / "bids")
    assert main(["report", str(root.parent)]) == 0
    capsys.readouterr()
    html = (root / "sub-01.html").read_text()
    block = html.split('id="qc-bold"')[1].split("<h2")[0]
    assert block.count("<img") == 1
    assert ("the mean BOLD among the outputs (sub-01_task-rest_space-MNI152NLin2009cAsym_res-2"
            "_desc-mean_bold.nii.gz)") in block
    fd_block = html.split('id="qc-fd"')[1].split("<h2")[0]
    assert fd_block.count("<img") == 1 and "No FD trace" not in fd_block
    assert "FD series from the outputs (sub-01_task-rest_desc-fd_timeseries.tsv)" in fd_block
    # without the written mean, the deleted input leaves no image, and the page says why
    for p in func.glob("*_desc-mean_bold.nii.gz"):
        p.unlink()
    assert main(["report", str(root.parent), "--skip-group"]) == 0
    block = (root / "sub-01.html").read_text().split('id="qc-bold"')[1].split("<h2")[0]
    assert "<img" not in block and "is no longer readable" in block
    assert "desc-mean_bold.nii.gz" in block
    (func / "sub-01_task-rest_desc-fd_timeseries.tsv").unlink()
    assert main(["report", str(root.parent), "--skip-group"]) == 0
    fd_block = (root / "sub-01.html").read_text().split('id="qc-fd"')[1].split("<h2")[0]
    assert "No FD trace: the outputs have no sub-01_task-rest_desc-fd_timeseries.tsv" in fd_block


def test_an_exclusion_is_worded_by_its_qc_reason(tmp_path, tree):
    import json

    root = tree["build"](tmp_path)
    motion = root / "sub-02" / "func" / "sub-02_task-rest_desc-qc_motion.json"
    qc = json.loads(motion.read_text())
    qc.update(qc_reason="no confounds", exclude=True, exclusion_reasons=[
        "no confounds: sub-02_task-rest_desc-confounds_timeseries.tsv not found"])
    motion.write_text(json.dumps(qc))
    qc_block = write_participant_report(root, "02").read_text().split('id="qc"')[1].split(
        "<h2")[0]
    assert "excluded: no confounds file" in qc_block
    assert "confounds_timeseries.tsv not found" in qc_block
    assert "motion QC:" not in qc_block
    qc.update(qc_reason="motion", exclusion_reasons=["mean FD 0.90 mm > 0.5 mm"])
    motion.write_text(json.dumps(qc))
    qc_block = write_participant_report(root, "02").read_text().split('id="qc"')[1].split(
        "<h2")[0]
    assert "excluded by motion QC: mean FD 0.90 mm" in qc_block
