"""Write a throttled SLURM array job that runs the participant level, one task each."""

from __future__ import annotations

import shlex
import sys
from collections.abc import Sequence
from pathlib import Path

from danemap.errors import ConfigError

__all__ = ["write_slurm_array"]


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
    config_file: str | Path | None = None,
    executable: str | None = None,
) -> Path:
    """Write ``OUT/danemap/slurm/{participants.txt, danemap_array.sbatch}``.

    Each array task runs ``danemap BIDS OUT participant --participant-label <one>``;
    ``%max_parallel`` throttles how many run at once. Finished participants are skipped on
    resubmission because the participant level resumes from its completion markers.

    Parameters
    ----------
    bids_dir, output_dir : path-like
        As for the BIDS App.
    participants : sequence of str
        Participant labels (``sub-`` prefix optional), one array task each.
    max_parallel : int
        Array throttle (``--array=1-N%max_parallel``).
    time, mem, cpus, partition : str, str, int, str or None
        SLURM resources per task.
    config_file : path-like or None
        Passed to every task as ``--config``.
    executable : str or None
        The ``danemap`` command to call; default: this interpreter's ``-m danemap.cli``.

    Returns
    -------
    pathlib.Path
        The sbatch script; submit it with ``sbatch``.
    """
    from danemap.io import atomic_write_text, validate_label

    if not participants:
        raise ConfigError("slurm: no participants to submit")
    if max_parallel < 1 or cpus < 1:
        raise ConfigError(
            f"slurm: --max-parallel and --cpus must be >= 1, found {max_parallel}, {cpus}"
        )
    labels = [validate_label(p) for p in participants]
    bids_dir, output_dir = Path(bids_dir).resolve(), Path(output_dir).resolve()
    folder = output_dir / "danemap" / "slurm"
    folder.mkdir(parents=True, exist_ok=True)
    listing = folder / "participants.txt"
    atomic_write_text(listing, "\n".join(labels) + "\n")
    cmd = executable or f"{shlex.quote(sys.executable)} -m danemap.cli"
    extra = f" --config {shlex.quote(str(Path(config_file).resolve()))}" if config_file else ""
    lines = [
        "#!/bin/bash",
        "#SBATCH --job-name=danemap",
        f"#SBATCH --array=1-{len(labels)}%{max_parallel}",
        f"#SBATCH --time={time}",
        f"#SBATCH --mem={mem}",
        f"#SBATCH --cpus-per-task={cpus}",
        f"#SBATCH --output={folder}/logs/%A_%a.log",
    ]
    if partition:
        lines.append(f"#SBATCH --partition={partition}")
    lines += [
        "set -euo pipefail",
        f'label=$(sed -n "${{SLURM_ARRAY_TASK_ID}}p" {shlex.quote(str(listing))})',
        f"{cmd} {shlex.quote(str(bids_dir))} {shlex.quote(str(output_dir))} participant "
        f'--participant-label "$label" --n-jobs {cpus}{extra}',
        "",
    ]
    (folder / "logs").mkdir(exist_ok=True)
    script = folder / "danemap_array.sbatch"
    atomic_write_text(script, "\n".join(lines))
    return script
