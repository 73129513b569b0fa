"""``sweep(root)``: discover every run under a folder, diagnose them in parallel, compare the fleet."""

from __future__ import annotations

import os
from collections import Counter
from dataclasses import dataclass, field
from typing import Callable, Iterable, Literal, Optional

from pydantic import BaseModel, ConfigDict, Field

from diag.errors import DiagInputError, Problem
from diag.sweep.cohort import CauseGroup, Separation, cause_groups, separating_settings
from diag.sweep.discover import discover_runs
from diag.sweep.outcome import RunOutcome

SWEEP_SCHEMA = "diag.sweep/1"
STATUS_ORDER = ("likely", "possible", "weak", "healthy", "unreadable")


class SweepReport(BaseModel):
    """A sweep's result: one row per run, groups by top cause, settings that separate failed runs.

    ``diag sweep --format json`` prints this model; ``runs`` is sorted by path, so the report of
    one fleet is the same whether it was diagnosed here or on a Dask cluster.
    """

    model_config = ConfigDict(extra="forbid", populate_by_name=True, ser_json_inf_nan="strings")

    schema_version: Literal["diag.sweep/1"] = Field(default=SWEEP_SCHEMA, alias="schema")
    root: str
    runs: list[RunOutcome]
    groups: list[CauseGroup]
    separating: list[Separation]

    def counts(self) -> dict[str, int]:
        """Runs per status, in ``STATUS_ORDER``, statuses with no run left out."""
        found = Counter(row.status for row in self.runs)
        return {status: found[status] for status in STATUS_ORDER if found[status]}

    def to_json(self, indent: int | None = 2) -> str:
        return self.model_dump_json(by_alias=True, indent=indent)


@dataclass
class SweepStats:
    """How the rows were obtained (not part of the report: it differs between two identical sweeps)."""

    runs: int = 0
    cached: int = 0
    diagnosed: int = 0
    cache_warnings: list[str] = field(default_factory=list)


def sweep(root: str | os.PathLike, *, jobs: int | None = None, scheduler: str | None = None,
          rule_dirs: Iterable[str] = (), use_env: bool = True, use_cache: bool = True,
          cache_dir: str | os.PathLike | None = None, on_start: Optional[Callable[[int], None]] = None,
          on_progress: Optional[Callable[[int], None]] = None,
          stats: SweepStats | None = None) -> SweepReport:
    """Diagnose every run under ``root`` and compare failed runs with healthy ones.

    Args:
      root: a folder of runs (searched recursively) or one run.
      jobs: local worker processes (default: the CPU count); ignored with ``scheduler``.
      scheduler: ``tcp://HOST:PORT`` of a running Dask scheduler to diagnose on instead.
      rule_dirs: user rule folders (``DIAG_RULES_PATH`` adds more unless ``use_env=False``).
      use_cache: reuse rows of runs diagnosed before with the same rules (``diag.sweep.cache``).
      cache_dir: the cache's folder (default ``$DIAG_CACHE_DIR`` or the user cache folder).
      on_start: called with the number of runs to diagnose (those not cached), before any is.
      on_progress: called with the number of runs just diagnosed, as batches finish.
      stats: filled with how many rows came from the cache (and why it could not be used).

    Returns:
      A ``SweepReport``; paths are shown under ``root`` as it was given.

    Raises:
      DiagInputError: ``root`` does not exist, cannot be listed or holds no run; a rule file is
        broken; the Dask scheduler cannot be reached.
    """
    from diag.engine.kb import user_rule_dirs
    from diag.sweep.cache import ResultCache, default_cache_dir, diagnosis_fingerprint
    from diag.sweep.execute import map_locally, map_on_dask

    stats = stats if stats is not None else SweepStats()
    root_text = os.fspath(root)
    absolute_root = os.path.abspath(root_text)
    runs = discover_runs(absolute_root)
    if not runs:
        raise DiagInputError(Problem(root_text, "no runs found (no .jsonl trace, shard folder or readable log)"),
                             hint="pass the folder your runs were written to")
    rule_dirs = tuple(os.path.abspath(d) for d in user_rule_dirs(rule_dirs, use_env=use_env))
    stats.runs = len(runs)

    cache = None
    keys: dict[str, str] = {}
    rows: dict[str, RunOutcome] = {}
    if use_cache:
        cache = ResultCache(cache_dir or default_cache_dir(), diagnosis_fingerprint(rule_dirs),
                            warn=stats.cache_warnings.append)
        if cache.usable:
            for run in runs:
                key = cache.run_key(run)
                if key is not None:
                    keys[run.label] = key
            by_key = {key: run for run in runs if (key := keys.get(run.label))}
            for row in cache.get_many(by_key).values():
                rows[row.path] = row
    todo = [run for run in runs if run.label not in rows]
    stats.cached = len(rows)
    stats.diagnosed = len(todo)
    if todo:  # every row cached: the rules (whose bytes are in the cache key) need not be parsed
        try:
            _check_rules(rule_dirs)
        except DiagInputError:
            if cache is not None:
                cache.close()
            raise

    def take(batch: list[RunOutcome]) -> None:
        for row in batch:
            rows[row.path] = row
        if cache is not None:
            cache.put_many([(keys[row.path], row) for row in batch
                            if row.path in keys and not row._transient])
        if on_progress is not None:
            on_progress(len(batch))

    def started() -> None:
        if on_start is not None:
            on_start(len(todo))

    try:
        if todo and scheduler:
            map_on_dask(todo, rule_dirs, scheduler, take, started)
        elif todo:
            map_locally(todo, rule_dirs, jobs or os.cpu_count() or 1, take, started)
    finally:
        if cache is not None:
            cache.close()
    ordered = [_shown_under(rows[run.label], absolute_root, root_text) for run in runs]
    return SweepReport(root=root_text, runs=ordered, groups=cause_groups(ordered),
                       separating=separating_settings(ordered))


def _check_rules(rule_dirs: tuple[str, ...]) -> None:
    """Load the knowledge base once here, so a broken rule stops the sweep before it starts."""
    from diag.engine.yamlloc import RuleFileError
    from diag.sweep.outcome import _knowledge_base

    try:
        _knowledge_base(rule_dirs)
    except RuleFileError as e:
        raise DiagInputError(Problem("", "the knowledge base has errors:\n" + str(e)),
                             hint="fix the rule files above") from None


def _shown_under(row: RunOutcome, absolute_root: str, root_text: str) -> RunOutcome:
    relative = os.path.relpath(row.path, absolute_root)
    shown = root_text if relative == "." else os.path.join(root_text, relative)
    return row.model_copy(update={"path": shown})


__all__ = ["STATUS_ORDER", "SWEEP_SCHEMA", "SweepReport", "SweepStats", "sweep"]
