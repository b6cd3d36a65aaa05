"""Events validation, trial-type mapping, contrast parsing: errors name file, row, field."""

from __future__ import annotations

from pathlib import Path

import pytest

from danemap.config import TaskConfig
from danemap.errors import InputError
from danemap.markers.task import parse_conditions, parse_contrasts, read_events

MAPPING = parse_conditions(TaskConfig().conditions)
IGNORE = TaskConfig().ignore


def _write(tmp_path: Path, rows: list[str], name: str = "sub-01_task-mid_events.tsv") -> Path:
    p = tmp_path / name
    p.write_text("onset\tduration\ttrial_type\n" + "".join(r + "\n" for r in rows))
    return p


def test_valid_events_are_mapped(tmp_path: Path) -> None:
    p = _write(tmp_path, ["2\t2\tgain_anticipation", "6.5\t0.2\ttarget", "7\t2\tgain_hit",
                          "12\t2\tLgPun", "20\t0\tneutral_miss"])
    ev = read_events(p, 100, 2.0, MAPPING, IGNORE)
    assert ev["trial_type"].tolist() == ["gain", "hit", "loss", "outcome_other"]
    assert ev["source_trial_type"].tolist()[0] == "gain_anticipation"


def test_onset_beyond_run(tmp_path: Path) -> None:
    p = _write(tmp_path, ["2\t2\tgain", "250\t2\tloss"])
    with pytest.raises(InputError, match=r"events\.tsv: row 2 \(line 3\), field 'onset'.*"
                                         r"inside the run.*200 s.*found 250"):
        read_events(p, 100, 2.0, MAPPING, IGNORE)
    p = _write(tmp_path, ["-1\t2\tgain"])
    with pytest.raises(InputError, match=r"row 1 \(line 2\), field 'onset'"):
        read_events(p, 100, 2.0, MAPPING, IGNORE)


def test_unknown_trial_type(tmp_path: Path) -> None:
    p = _write(tmp_path, ["2\t2\tgain", "8\t2\tgian_cue"])
    with pytest.raises(InputError, match=r"row 2 \(line 3\), field 'trial_type'.*unknown "
                                         r"trial type 'gian_cue'.*did you mean 'gain_cue'"):
        read_events(p, 100, 2.0, MAPPING, IGNORE)


def test_missing_events_file(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="events file not found"):
        read_events(tmp_path / "sub-01_task-mid_events.tsv", 100, 2.0, MAPPING)


@pytest.mark.parametrize(("row", "match"), [
    ("2\t-1\tgain", r"row 1 \(line 2\), field 'duration'.*>= 0, found -1"),
    ("n/a\t2\tgain", r"field 'onset'.*finite number"),
    ("2\tn/a\tgain", r"field 'duration'.*finite number"),
    ("2\t2\tn/a", r"field 'trial_type'.*missing value"),
])
def test_bad_values(tmp_path: Path, row: str, match: str) -> None:
    with pytest.raises(InputError, match=match):
        read_events(_write(tmp_path, [row]), 100, 2.0, MAPPING)


def test_missing_column(tmp_path: Path) -> None:
    p = tmp_path / "e_events.tsv"
    p.write_text("onset\ttrial_type\n1\tgain\n")
    with pytest.raises(InputError, match=r"missing \['duration'\]"):
        read_events(p, 100, 2.0, MAPPING)


def test_contrast_parsing() -> None:
    c = parse_contrasts(["a=gain - neutral", "b=0.5*gain + 0.5 * loss - neutral"],
                        ["gain", "loss", "neutral"])
    assert c == {"a": {"gain": 1.0, "neutral": -1.0},
                 "b": {"gain": 0.5, "loss": 0.5, "neutral": -1.0}}
    with pytest.raises(InputError, match=r"unknown condition 'gian'.*did you mean 'gain'"):
        parse_contrasts(["a=gian - neutral"], ["gain", "neutral"])
    with pytest.raises(InputError, match="only zero weights"):
        parse_contrasts(["a=gain - gain"])
    with pytest.raises(InputError, match="cannot parse"):
        parse_contrasts(["a=gain neutral"])
    with pytest.raises(InputError, match="expected 'trial_type=condition'"):
        parse_conditions(["gain"])
    with pytest.raises(InputError, match="mapped to both"):
        parse_conditions(["x=gain", "x=loss"])
