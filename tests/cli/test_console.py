"""The console of the command line: one line per message on stderr, levels, help, flags."""

from __future__ import annotations

import argparse
import importlib.util
import logging
import re
import subprocess
import sys
import textwrap
import types
import warnings
from pathlib import Path

import pytest

from danemap._utils.logging import SUMMARY, cli_logging, get_logger
from danemap.cli import SUBCOMMANDS, build_bids_app_parser, build_parser, main
from danemap.errors import DanemapWarning, InputError

#: A console line: ISO-8601 UTC time, level, message.
LINE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ (DEBUG|INFO|SUMMARY|WARNING|ERROR) \S")


def _stats_cohort(tmp_path):
    spec = importlib.util.spec_from_file_location(
        "_stats_pipeline_tests_console",
        Path(__file__).parents[1] / "stats" / "test_pipeline.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod.write_cohort(tmp_path)


def _fake_command(monkeypatch, body):
    """Register ``danemap fake``: ``body(args)`` runs inside the CLI."""

    def add_arguments(parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--fail", action="store_true", help="raise an InputError")

    def run(args, config):
        body(args)
        if args.fail:
            raise InputError("fake.tsv: column 'x': expected a number, found 'y'")
        print("the-output")
        return 0

    module = types.SimpleNamespace(add_arguments=add_arguments, run=run)
    monkeypatch.setitem(SUBCOMMANDS, "fake", "fake")
    monkeypatch.setattr("danemap.cli._subcommand_module", lambda command: module)


def _chatty(args):
    log = get_logger("fake")
    log.debug("a debug line")
    log.info("an info line")
    log.log(SUMMARY, "a summary line")
    warnings.warn("sub-04: a danemap warning", DanemapWarning, stacklevel=1)
    log.warning("a logged warning")


# ----------------------------------------------------------------- one line per message

def test_an_error_prints_once_on_stderr_with_a_utc_time(tmp_path, capsys):
    missing = tmp_path / "none.tsv"
    rc = main(["stats", "glm", "--features", str(missing), "--participants", str(missing),
               "--out", str(tmp_path / "o")])
    assert rc == 2
    cap = capsys.readouterr()
    assert cap.out == ""
    lines = cap.err.splitlines()
    assert len(lines) == 1, cap.err
    assert LINE.match(lines[0]) and " ERROR " in lines[0] and "none.tsv" in lines[0]
    assert "danemap: error:" not in cap.err


@pytest.mark.filterwarnings("always")  # the suite turns them into errors
def test_default_level_shows_summary_warnings_and_errors_once_each(monkeypatch, capsys):
    _fake_command(monkeypatch, _chatty)
    assert main(["fake", "--fail"]) == 2
    cap = capsys.readouterr()
    assert cap.out == ""  # failed before its output
    lines = cap.err.splitlines()
    assert all(LINE.match(line) for line in lines), cap.err
    assert [line.split(" ", 2)[1] for line in lines] == ["SUMMARY", "WARNING", "WARNING",
                                                         "ERROR"]
    assert lines[1].endswith("WARNING sub-04: a danemap warning")
    # the raw Python warning (file:line and the source line) is not printed as well
    assert cap.err.count("a danemap warning") == 1 and "warnings.warn" not in cap.err
    assert "DanemapWarning" not in cap.err and "danemap: error:" not in cap.err
    assert cap.err.count("expected a number") == 1


@pytest.mark.filterwarnings("always")  # the suite turns them into errors
@pytest.mark.parametrize(("flags", "levels"), [
    ([], ["SUMMARY", "WARNING", "WARNING"]),
    (["-q"], ["WARNING", "WARNING"]),
    (["-v"], ["INFO", "SUMMARY", "WARNING", "WARNING"]),
    (["-vv"], ["DEBUG", "INFO", "SUMMARY", "WARNING", "WARNING"]),
    (["-vv", "--quiet"], ["WARNING", "WARNING"]),
])
def test_verbosity_flags(monkeypatch, capsys, flags, levels):
    _fake_command(monkeypatch, _chatty)
    assert main(["fake", *flags]) == 0
    cap = capsys.readouterr()
    assert cap.out == "the-output\n"  # stdout: only the command's output
    assert [line.split(" ", 2)[1] for line in cap.err.splitlines()] == levels


@pytest.mark.filterwarnings("always")  # the suite turns them into errors
def test_library_warnings_are_one_line_and_deprecations_only_at_debug(monkeypatch, capsys):
    def body(args):
        warnings.warn("overflow in exp", RuntimeWarning, stacklevel=1)
        warnings.warn("old API", FutureWarning, stacklevel=1)

    _fake_command(monkeypatch, body)
    assert main(["fake"]) == 0
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and LINE.match(err[0])
    assert "WARNING overflow in exp (RuntimeWarning, test_console.py:" in err[0]
    assert main(["fake", "-vv"]) == 0
    err = capsys.readouterr().err
    assert re.search(r"Z DEBUG old API \(FutureWarning, test_console\.py:\d+\)", err)


def test_a_traceback_reaches_the_console_only_at_debug(monkeypatch, capsys):
    def body(args):
        try:
            raise ValueError("inner detail")
        except ValueError:
            get_logger("fake").error("sub-02: failed", exc_info=True)

    _fake_command(monkeypatch, body)
    assert main(["fake"]) == 0
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1 and "Traceback" not in err
    assert main(["fake", "-vv"]) == 0
    assert "Traceback" in capsys.readouterr().err


@pytest.mark.filterwarnings("always")  # the suite turns them into errors
def test_the_cli_leaves_logging_and_warnings_as_it_found_them(monkeypatch, capsys):
    logger = get_logger()
    before = (list(logger.handlers), logger.level, logger.propagate, warnings.showwarning)
    _fake_command(monkeypatch, _chatty)
    main(["fake", "-v"])
    main(["fake", "--fail"])
    assert (list(logger.handlers), logger.level, logger.propagate,
            warnings.showwarning) == before
    with cli_logging(0) as log:
        assert log is logger and logger.propagate is False
        assert warnings.showwarning is not before[3]
    assert warnings.showwarning is before[3]


def test_bids_app_error_is_printed_once_and_kept_in_the_run_log(tmp_path, capsys):
    bids = tmp_path / "bids"
    (bids / "sub-01" / "func").mkdir(parents=True)
    (bids / "dataset_description.json").write_text('{"Name": "x", "BIDSVersion": "1.9.0"}')
    out = tmp_path / "out"
    rc = main([str(bids), str(out), "participant", "--participant-label", "77"])
    assert rc == 2
    cap = capsys.readouterr()
    errors = [line for line in cap.err.splitlines() if " ERROR " in line]
    assert len(errors) == 1 and "sub-77" in errors[0] and LINE.match(errors[0])
    assert "danemap: error:" not in cap.err and cap.out == ""
    log = next((out / "danemap" / "logs").glob("participant-*.log")).read_text()
    assert "ERROR" in log and "sub-77" in log


def test_subprocess_streams_stdout_clean_stderr_one_line_per_message(tmp_path):
    script = textwrap.dedent("""
        import sys, types, warnings
        import danemap.cli as cli
        from danemap.errors import DanemapWarning
        def add_arguments(parser):
            pass
        def run(args, config):
            warnings.warn("sub-04: too few volumes", DanemapWarning)
            print("result.tsv")
            return 0
        module = types.SimpleNamespace(add_arguments=add_arguments, run=run)
        cli.SUBCOMMANDS["fake"] = "fake"
        cli._subcommand_module = lambda command: module
        sys.exit(cli.main(["fake"]))
    """)
    res = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         timeout=120, check=False)
    assert res.returncode == 0, res.stderr
    assert res.stdout == "result.tsv\n"
    lines = res.stderr.splitlines()
    assert len(lines) == 1 and LINE.match(lines[0]), res.stderr
    assert lines[0].endswith("WARNING sub-04: too few volumes")
    # an error through the real entry point: once, on stderr
    res = subprocess.run([sys.executable, "-m", "danemap.cli", "stats", "glm", "--features",
                          str(tmp_path / "f.tsv"), "--participants", str(tmp_path / "p.tsv"),
                          "--out", str(tmp_path / "o")], capture_output=True, text=True,
                         timeout=120, check=False)
    assert res.returncode == 2 and res.stdout == ""
    lines = res.stderr.splitlines()
    assert len(lines) == 1 and LINE.match(lines[0]) and " ERROR " in lines[0], res.stderr


# ------------------------------------------------------------------------ help, flags

def _parsers():
    yield "danemap", build_bids_app_parser()
    for command in ("simulate", "demo", "atlas", "stats", "slurm", "report"):
        parser = build_parser(command)
        yield f"danemap {command}", parser
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for name, sub in action.choices.items():
                    yield f"danemap {command} {name}", sub


def test_every_option_has_help_and_shows_its_default():
    missing = []
    for name, parser in _parsers():
        formatter = parser._get_formatter()
        for action in parser._actions:
            if isinstance(action, argparse._HelpAction | argparse._VersionAction |
                          argparse._SubParsersAction) or not action.option_strings:
                continue
            text = formatter._get_help_string(action) if action.help else ""
            if not text:
                missing.append(f"{name} {action.option_strings[0]}: no help")
            elif (action.nargs != 0 and not action.required
                  and "default" not in text.lower()):
                missing.append(f"{name} {action.option_strings[0]}: no default")
    assert not missing, "\n".join(missing)


def test_help_shows_defaults_and_exit_codes(capsys):
    assert main(["--help"]) == 0
    out = " ".join(capsys.readouterr().out.split())
    assert "--session-label" in out and "sessions to process" in out
    assert "--denoise-strategy {simple,scrubbing,compcor,custom} confound strategy" in out
    assert "(default: simple)" in out and "default: 0.5)" in out  # from the config
    assert "exit codes: 0 success 1 partial" in out and "2 usage or input error" in out
    for argv in (["stats", "glm", "--help"], ["simulate", "--help"], ["demo", "--help"]):
        assert main(argv) == 0
        out = " ".join(capsys.readouterr().out.split())
        assert "exit codes: 0 success" in out, argv
    assert main(["simulate", "--help"]) == 0
    assert "(default: 24)" in capsys.readouterr().out


def test_markers_choices_are_the_registry():
    from danemap.markers.base import BUILTIN_FAMILIES

    action = next(a for a in build_bids_app_parser()._actions if a.dest == "markers")
    assert list(action.choices) == list(BUILTIN_FAMILIES) and "task" in action.choices


def test_new_flags_reach_the_configuration(tmp_path, monkeypatch):
    seen = {}

    def fake_run(bids_dir, output_dir, config, verbose=True):
        seen["config"] = config
        return 0

    monkeypatch.setattr("danemap.pipeline.run_participant", fake_run)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "bids").mkdir()
    rc = main(["bids", "out", "participant", "--repetition-time", "2.5",
               "--allow-missing-confounds", "--derivatives", "fmriprep",
               "--derivatives", str(tmp_path / "other"), "--dask-scheduler",
               "tcp://127.0.0.1:8786", "--memory-limit", "3.5", "--markers", "task",
               "--session-label", "1"])
    assert rc == 0
    cfg = seen["config"]
    assert cfg.functional.repetition_time == 2.5
    assert cfg.functional.allow_missing_confounds is True
    assert cfg.run.derivatives == [str((tmp_path / "fmriprep").resolve()),
                                   str((tmp_path / "other").resolve())]
    assert cfg.run.backend == "dask" and cfg.run.dask_address == "tcp://127.0.0.1:8786"
    assert cfg.run.memory_limit_gib == 3.5 and cfg.run.markers == ["task"]
    # not given: the configuration's values stay
    rc = main(["bids", "out", "participant"])
    cfg = seen["config"]
    assert rc == 0 and cfg.functional.repetition_time == 0.0
    assert cfg.functional.allow_missing_confounds is False and cfg.run.derivatives == []
    assert cfg.run.backend == "local" and cfg.run.memory_limit_gib == 0.0


@pytest.mark.parametrize("flags", [["--repetition-time", "0"], ["--repetition-time", "x"],
                                   ["--memory-limit", "-1"], ["--n-jobs", "0"],
                                   ["--markers", "eeg"]])
def test_bad_flag_values_are_usage_errors(tmp_path, capsys, flags):
    assert main([str(tmp_path / "b"), str(tmp_path / "o"), "participant", *flags]) == 2
    assert "error: argument" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


# ------------------------------------------------------------- stats sub-commands

def test_each_stats_command_accepts_only_the_options_it_uses(capsys):
    base = ["--features", "f.tsv", "--participants", "p.tsv", "--out", "o"]
    parser = build_parser("stats")
    args = parser.parse_args(["permutation", *base, "--n-permutations", "10"])
    assert args.n_permutations == 10
    assert main(["stats", "glm", *base, "--n-permutations", "10"]) == 2
    err = capsys.readouterr().err
    assert "--n-permutations applies only to 'all', 'permutation', 'nbs'" in err
    assert main(["stats", "predict", *base, "--covariates", "age"]) == 2
    assert "'stats predict' does not use it" in capsys.readouterr().err
    assert main(["stats", "glm", *base, "--bogus"]) == 2
    assert "unrecognized arguments: --bogus" in capsys.readouterr().err
    # the common options also after ANALYSIS, where users type them
    args = parser.parse_args(["glm", *base, "-vv", "--config", "c.toml"])
    assert args.verbose == 2 and args.config == "c.toml" and args.quiet is False
    args = parser.parse_args(["-v", "--config", "d.toml", "glm", *base])
    assert args.verbose == 1 and args.config == "d.toml"


def test_stats_options_table_matches_the_parsers():
    from danemap.stats._cli import COMMANDS, USES

    parser = build_parser("stats")
    subs = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    for command in COMMANDS:
        dests = {a.dest for a in subs.choices[command]._actions if a.option_strings} - {
            "help", "verbose", "quiet", "config"}
        assert dests == {d for d, users in USES.items() if command in users}, command
    assert "n_permutations" not in {a.dest for a in subs.choices["glm"]._actions}
    assert "meta_method" not in {a.dest for a in subs.choices["classify"]._actions}


def test_stats_success_prints_its_files_and_a_summary(tmp_path, capsys):
    fp, pp, _ = _stats_cohort(tmp_path)
    out = tmp_path / "glm"
    assert main(["stats", "glm", "--features", str(fp), "--participants", str(pp),
                 "--out", str(out), "--harmonize", "none", "-q"]) == 0
    cap = capsys.readouterr()
    assert cap.err == ""  # -q: no summary
    paths = [Path(p) for p in cap.out.splitlines()]
    assert paths and all(p.is_file() and p.parent == out for p in paths)
    assert out / "summary.json" in paths and out / "effects.tsv" in paths
    assert main(["stats", "glm", "--features", str(fp), "--participants", str(pp),
                 "--out", str(out), "--harmonize", "none"]) == 0
    cap = capsys.readouterr()
    lines = cap.err.splitlines()
    summary = [line for line in lines if " SUMMARY " in line]
    assert len(summary) == 1 and LINE.match(summary[0])
    assert "stats glm: " in summary[0] and "90 participants (45 ADHD, 45 TD)" in summary[0]
    assert f"files in {out}" in summary[0]
    assert logging.getLevelName(SUMMARY) == "SUMMARY"
