"""Map ``diagnose_run`` over runs: in this process, in a local process pool, or on a Dask cluster.

Runs travel in batches (a small trace diagnoses in tens of milliseconds, about what one task's
round trip costs), so a sweep of ten thousand runs is a few hundred tasks. Rows come back in any
order; the sweep sorts them by path, so the table never depends on where a run was diagnosed.
"""

from __future__ import annotations

import math
import multiprocessing
import sys
from concurrent.futures import ProcessPoolExecutor, as_completed
from typing import Callable

from diag.errors import DiagInputError, Problem
from diag.sweep.discover import RunRef
from diag.sweep.outcome import RunOutcome, _knowledge_base, diagnose_run

_TASKS_PER_WORKER = 8  # enough tasks to even out slow runs, few enough that overhead stays small
_MAX_BATCH = 64


def diagnose_batch(runs: list[RunRef], rule_dirs: tuple[str, ...] = ()) -> list[RunOutcome]:
    """Diagnose a batch of runs (one task of a pool or of a Dask cluster)."""
    return [diagnose_run(run, rule_dirs) for run in runs]


def batches_of(runs: list[RunRef], workers: int) -> list[list[RunRef]]:
    """Split runs into about ``_TASKS_PER_WORKER`` batches per worker, at most ``_MAX_BATCH`` runs each."""
    if not runs:
        return []
    size = max(1, min(_MAX_BATCH, math.ceil(len(runs) / (max(1, workers) * _TASKS_PER_WORKER))))
    return [runs[i:i + size] for i in range(0, len(runs), size)]


def map_locally(runs: list[RunRef], rule_dirs: tuple[str, ...], jobs: int,
                on_batch: Callable[[list[RunOutcome]], None], on_start: Callable[[], None] = lambda: None) -> None:
    """Diagnose ``runs`` on this machine with ``jobs`` processes; each finished batch goes to ``on_batch``.

    ``jobs == 1`` runs in this process. Otherwise worker processes are forked where the platform
    allows it, after the knowledge base is loaded here, so no worker parses the rules again.
    ``on_start`` is called once the workers exist (a progress bar's thread must not be forked).
    """
    _knowledge_base(tuple(rule_dirs))  # parse once, before any worker exists
    batches = batches_of(runs, jobs)
    if jobs <= 1 or len(batches) <= 1:
        on_start()
        for batch in batches:
            on_batch(diagnose_batch(batch, rule_dirs))
        return
    method = "fork" if sys.platform.startswith("linux") else None
    with ProcessPoolExecutor(max_workers=min(jobs, len(batches)),
                             mp_context=multiprocessing.get_context(method)) as pool:
        futures = {pool.submit(diagnose_batch, batch, rule_dirs): batch for batch in batches}
        on_start()
        for future in as_completed(futures):
            on_batch(_rows_of(future, futures[future], "a worker process"))


def map_on_dask(runs: list[RunRef], rule_dirs: tuple[str, ...], scheduler: str,
                on_batch: Callable[[list[RunOutcome]], None], on_start: Callable[[], None] = lambda: None) -> None:
    """Diagnose ``runs`` on the Dask cluster at ``scheduler`` (``tcp://HOST:PORT``).

    The workers must see the runs at the same paths as this machine (a shared file system) and
    have diag installed; the rule folders are passed by path, so they must be shared too.

    Raises:
      DiagInputError: dask.distributed is not installed, or the scheduler cannot be reached.
    """
    try:
        from distributed import Client, as_completed as dask_completed
    except ImportError:
        raise DiagInputError(Problem("", "--scheduler needs dask.distributed, which is not installed"),
                             hint="pip install 'diag[dask]'") from None
    try:
        client = Client(scheduler, timeout="30s", set_as_default=False)
    except (OSError, TimeoutError, ValueError) as e:
        raise DiagInputError(Problem("", f"cannot reach the Dask scheduler at {scheduler} ({e})"),
                             hint="start one (see the README's sweep section) and pass its tcp://HOST:PORT") from None
    with client:
        workers = max(1, sum(client.nthreads().values()))
        batches = batches_of(runs, workers)
        futures = client.map(diagnose_batch, batches, rule_dirs=tuple(rule_dirs), pure=False)
        batch_of = {future.key: batch for future, batch in zip(futures, batches)}
        on_start()
        for future in dask_completed(futures, loop=client.loop):
            on_batch(_rows_of(future, batch_of[future.key], "a Dask worker"))


def _rows_of(future, batch: list[RunRef], where: str) -> list[RunOutcome]:
    """The batch's rows; a worker that died makes each of its runs a row with the reason."""
    try:
        return future.result()
    except Exception as e:  # noqa: BLE001 - a lost worker costs its batch's rows, not the sweep
        reason = f"{where} failed while diagnosing this run's batch ({type(e).__name__}: {e})"
        rows = [RunOutcome(path=run.label, kind=run.kind, status="unreadable", reason=reason) for run in batch]
        for row in rows:
            row._transient = True
        return rows


__all__ = ["batches_of", "diagnose_batch", "map_locally", "map_on_dask"]
