"""Write a throttled SLURM array for the participant level and a group job after it.

``OUT/danemap/slurm/`` receives:

- ``participants.txt``: one label per line, line ``i`` for array task ``i``;
- ``danemap_array.sbatch``: ``--array=1-N%K``, each task runs the participant level for
  its one participant (finished participants are skipped on resubmission: the
  participant level resumes from its completion markers);
- ``danemap_group.sbatch``: the group level;
- ``submit.sh``: submits the array, then the group job with
  ``--dependency=afterany:<array job>`` (by default), so that the group level runs once
  every task has ended, on the participants that succeeded, even when some failed
  (``afterok`` would never start it then). ``--group-dependency afterok`` runs it only
  when every task succeeded.

Paths are quoted for bash (:func:`shlex.quote`) and, in ``#SBATCH`` lines, for sbatch's
own parser (double quotes with backslash escapes; ``%`` doubled).
"""

from __future__ import annotations

import re
import shlex
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from danemap.errors import ConfigError

__all__ = ["DEPENDENCIES", "SlurmScripts", "write_slurm_array"]

#: Dependency types the group job may have on the array.
DEPENDENCIES = ("afterany", "afterok")

_TIME = re.compile(r"\d+(-\d{1,2})?(:\d{1,2}){0,2}")
_MEM = re.compile(r"\d+[KMGT]?")
_NAME = re.compile(r"[A-Za-z0-9_.,+-]+")


@dataclass(frozen=True)
class SlurmScripts:
    """The files :func:`write_slurm_array` wrote.

    Attributes
    ----------
    array, group, submit, participants : pathlib.Path
        The array script, the group script, ``submit.sh`` and ``participants.txt``.
    n_tasks : int
        Array tasks (participants).
    """

    array: Path
    group: Path
    submit: Path
    participants: Path
    n_tasks: int


def _sbatch_quote(value: str) -> str:
    """Quote ``value`` for an ``#SBATCH`` line (sbatch reads double quotes, backslash escapes)."""
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _pattern_path(path: Path) -> str:
    """``path`` as a literal in an sbatch file-name pattern (``%`` is doubled)."""
    return str(path).replace("%", "%%")


def _check(name: str, value: str, pattern: re.Pattern[str], expected: str) -> str:
    if not pattern.fullmatch(value):
        raise ConfigError(f"slurm: {name}: expected {expected}, found {value!r}")
    return value


def _header(job_name: str, time: str, mem: str, cpus: int, partition: str | None,
            account: str | None, output: str) -> list[str]:
    lines = ["#!/bin/bash",
             f"#SBATCH --job-name={job_name}",
             f"#SBATCH --time={time}",
             f"#SBATCH --mem={mem}",
             f"#SBATCH --cpus-per-task={cpus}",
             f"#SBATCH --output={output}"]
    if partition:
        lines.append(f"#SBATCH --partition={partition}")
    if account:
        lines.append(f"#SBATCH --account={account}")
    return lines


def write_slurm_array(
    bids_dir: str | Path,
    output_dir: str | Path,
    participants: Sequence[str],
    *,
    max_parallel: int = 20,
    time: str = "02:00:00",
    mem: str = "8G",
    cpus: int = 1,
    partition: str | None = None,
    account: str | None = None,
    group_time: str = "04:00:00",
    group_mem: str = "16G",
    group_cpus: int = 1,
    group_dependency: str = "afterany",
    config_file: str | Path | None = None,
    executable: str | None = None,
) -> SlurmScripts:
    """Write the participant array, the group job and ``submit.sh`` to ``OUT/danemap/slurm``.

    Each array task runs ``danemap BIDS OUT participant --participant-label <one>``;
    ``%max_parallel`` throttles how many run at once. ``submit.sh`` submits the array and
    then the group level, dependent on it (see the module's description).

    Parameters
    ----------
    bids_dir, output_dir : path-like
        As for the BIDS App.
    participants : sequence of str
        Participant labels (``sub-`` prefix optional), one array task each.
    max_parallel : int
        Array throttle (``--array=1-N%max_parallel``).
    time, mem, cpus : str, str, int
        SLURM resources per array task (``--time``, ``--mem``, ``--cpus-per-task``).
    partition, account : str or None
        ``--partition`` and ``--account`` of both jobs.
    group_time, group_mem, group_cpus : str, str, int
        Resources of the group job.
    group_dependency : {"afterany", "afterok"}
        ``afterany``: the group level runs once every task has ended, on the participants
        that succeeded; ``afterok``: only if every task succeeded.
    config_file : path-like or None
        Passed to every task and the group job as ``--config``.
    executable : str or None
        The ``danemap`` command to call; default: this interpreter's ``-m danemap.cli``.

    Returns
    -------
    SlurmScripts
        The files written; run ``bash submit.sh`` to submit both jobs.

    Raises
    ------
    ConfigError
        For no participants, a throttle or CPU count below 1, a malformed time, memory,
        partition or account, or an unknown dependency type.
    """
    from danemap.io import atomic_write_text, validate_label

    if not participants:
        raise ConfigError("slurm: no participants to submit")
    for option, count in (("--max-parallel", max_parallel), ("--cpus", cpus),
                          ("--group-cpus", group_cpus)):
        if count < 1:
            raise ConfigError(f"slurm: {option}: expected an integer >= 1, found {count}")
    if group_dependency not in DEPENDENCIES:
        raise ConfigError(f"slurm: --group-dependency: expected one of {DEPENDENCIES}, "
                          f"found {group_dependency!r}")
    when = "[DAYS-]HH:MM:SS (or MM, MM:SS, DAYS-HH...)"
    _check("--time", time, _TIME, when)
    _check("--group-time", group_time, _TIME, when)
    _check("--mem", mem, _MEM, "an amount such as 8G or 4000M")
    _check("--group-mem", group_mem, _MEM, "an amount such as 16G or 4000M")
    for name, value in (("--partition", partition), ("--account", account)):
        if value is not None:
            _check(name, value, _NAME, "a SLURM name (letters, digits, _ . , + -)")
    labels = [validate_label(p) for p in participants]
    bids_dir, output_dir = Path(bids_dir).resolve(), Path(output_dir).resolve()
    folder = output_dir / "danemap" / "slurm"
    logs = folder / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    listing = folder / "participants.txt"
    atomic_write_text(listing, "\n".join(labels) + "\n")
    cmd = executable or f"{shlex.quote(sys.executable)} -m danemap.cli"
    q = shlex.quote
    extra = f" --config {q(str(Path(config_file).resolve()))}" if config_file else ""
    paths = f"{q(str(bids_dir))} {q(str(output_dir))}"
    threads = ('export OMP_NUM_THREADS="${SLURM_CPUS_PER_TASK:-1}" '
               'OPENBLAS_NUM_THREADS="${SLURM_CPUS_PER_TASK:-1}" '
               'MKL_NUM_THREADS="${SLURM_CPUS_PER_TASK:-1}"')

    array = _header("danemap", time, mem, cpus, partition, account,
                    _sbatch_quote(_pattern_path(logs) + "/participant-%A_%a.log"))
    array.insert(2, f"#SBATCH --array=1-{len(labels)}%{max_parallel}")
    array += [
        "set -euo pipefail",
        threads,
        f'label=$(sed -n "${{SLURM_ARRAY_TASK_ID}}p" {q(str(listing))})',
        'if [ -z "$label" ]; then',
        f'  echo "danemap: no participant on line $SLURM_ARRAY_TASK_ID of "{q(str(listing))} >&2',
        "  exit 2",
        "fi",
        f'{cmd} {paths} participant --participant-label "$label" --n-jobs 1{extra}',
        "",
    ]
    group = _header("danemap_group", group_time, group_mem, group_cpus, partition, account,
                    _sbatch_quote(_pattern_path(logs) + "/group-%j.log"))
    group += ["set -euo pipefail", threads, f"{cmd} {paths} group{extra}", ""]

    array_path, group_path = folder / "danemap_array.sbatch", folder / "danemap_group.sbatch"
    submit_path = folder / "submit.sh"
    submit = [
        "#!/bin/bash",
        "# Submit the participant array, then the group level once it has ended.",
        f"# {group_dependency}: " + (
            "the group level runs when every task has ended, whatever its exit status, on "
            "the participants that succeeded" if group_dependency == "afterany" else
            "the group level runs only when every task succeeded"),
        "set -euo pipefail",
        f"array=$(sbatch --parsable {q(str(array_path))})",
        'array=${array%%;*}  # --parsable prints JOBID[;CLUSTER]',
        f'group=$(sbatch --parsable --dependency={group_dependency}:"$array" '
        f"{q(str(group_path))})",
        'group=${group%%;*}',
        f'echo "submitted the participant array $array ({len(labels)} tasks, at most '
        f'{max_parallel} at once) and the group job $group ({group_dependency}:$array)"',
        "",
    ]
    atomic_write_text(array_path, "\n".join(array))
    atomic_write_text(group_path, "\n".join(group))
    atomic_write_text(submit_path, "\n".join(submit))
    for path in (array_path, group_path, submit_path):
        path.chmod(0o755)
    return SlurmScripts(array_path, group_path, submit_path, listing, len(labels))
