"""Execution back-ends for the participant step.

Local processes, a Dask cluster, or a throttled SLURM array.

The engine knows nothing about modalities: it runs a picklable function once per
item (participant), isolates failures, resumes finished work, and shows progress.
"""

from __future__ import annotations

from danemap.engine._run import Outcome, blas_threads, run_many, usable_cores
from danemap.engine._slurm import SlurmScripts, write_slurm_array

__all__ = ["Outcome", "SlurmScripts", "blas_threads", "run_many", "usable_cores",
           "write_slurm_array"]
