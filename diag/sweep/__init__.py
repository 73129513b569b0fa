"""Sweeps and fleets: diagnose every run under a folder, here or on a Dask cluster, and compare them.

``sweep(root)`` discovers the runs (``discover``), maps ``diagnose_run`` over them in a local
process pool or on Dask (``execute``), reuses rows of unchanged runs (``cache``), and groups the
rows by top cause and finds the settings that separate failed runs from healthy ones (``cohort``).
``report`` renders the result; ``diag sweep`` is its command line.
"""

from diag.sweep.cohort import CauseGroup, Separation, cause_groups, separating_settings
from diag.sweep.discover import RunRef, discover_runs
from diag.sweep.outcome import RunOutcome, diagnose_run
from diag.sweep.runner import SweepReport, SweepStats, sweep

__all__ = [
    "CauseGroup", "RunOutcome", "RunRef", "Separation", "SweepReport", "SweepStats", "cause_groups",
    "diagnose_run", "discover_runs", "separating_settings", "sweep",
]
