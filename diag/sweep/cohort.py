"""Cohort analysis of a sweep: runs grouped by top cause, and what separates failed runs from healthy ones.

*Failed* runs are those whose top cause is likely; *healthy* runs are those with no cause. Runs
with only a possible or weak cause, and unreadable ones, belong to neither side.

For each hyper-parameter the two sides' values are compared with a distance in [0, 1]:

* text, or a few numbers that recur (a categorical setting such as ``optimizer``, a grid of
  learning rates): the total-variation distance between the two sides' value frequencies (1: no
  value is shared, 0: the same mix);
* numbers that do not recur or take many values (a random search, seeds): the two-sample
  Kolmogorov-Smirnov statistic, the largest gap between the two sides' cumulative distributions
  (frequencies of values seen once would make any two sides look disjoint).

A run that lacks the setting counts as the value ``None``. A setting that is the same in every
run separates nothing, and a text value that differs in every run (a run name) is an identifier,
not a setting: both are left out.

References:
  Kolmogorov (1933), Smirnov (1948): the two-sample statistic used by ``scipy.stats.ks_2samp``.
"""

from __future__ import annotations

import bisect
import math
import statistics
from collections import Counter
from typing import Optional, Union

from pydantic import BaseModel, ConfigDict, Field

from diag.sweep.outcome import RunOutcome

Value = Union[bool, int, float, str, None]
_FEW_VALUES = 8  # at most this many distinct values: compare frequencies of each value


class CauseGroup(BaseModel):
    """Runs that share a top cause."""

    model_config = ConfigDict(extra="forbid")

    cause: str
    title: Optional[str] = None
    count: int
    likely: int = Field(description="How many of them have the cause as likely (the rest possible or weak).")
    runs: list[str]


class Separation(BaseModel):
    """A hyper-parameter whose values differ between failed and healthy runs."""

    model_config = ConfigDict(extra="forbid", ser_json_inf_nan="strings")

    name: str
    score: float = Field(description="Distance between the two sides' values, 0 (same) to 1 (disjoint).")
    measure: str = Field(description="'frequencies' (total variation) or 'distribution' (Kolmogorov-Smirnov).")
    failed: str = Field(description="The failed runs' values, in words: 'sgd (3), adam (1)' or a range.")
    healthy: str = Field(description="The healthy runs' values, in the same form.")
    failed_counts: Optional[dict[str, int]] = Field(
        default=None, description="For 'frequencies': value (as text) -> number of failed runs with it.")
    healthy_counts: Optional[dict[str, int]] = None


def cause_groups(rows: list[RunOutcome]) -> list[CauseGroup]:
    """Runs grouped by top cause, largest group first (then by cause id)."""
    by_cause: dict[str, list[RunOutcome]] = {}
    for row in rows:
        if row.top_cause:
            by_cause.setdefault(row.top_cause, []).append(row)
    groups = [CauseGroup(cause=cause, title=members[0].title, count=len(members),
                         likely=sum(1 for m in members if m.status == "likely"),
                         runs=sorted(m.path for m in members))
              for cause, members in by_cause.items()]
    return sorted(groups, key=lambda g: (-g.count, g.cause))


def separating_settings(rows: list[RunOutcome], limit: int | None = None) -> list[Separation]:
    """Hyper-parameters ordered by how much their values differ between failed and healthy runs.

    Args:
      rows: the sweep's rows.
      limit: keep at most this many (all when None).

    Returns:
      Settings with a non-zero distance, the most separating first (ties by name); empty when
      the sweep has no failed or no healthy run.
    """
    failed = [r.hyperparameters for r in rows if r.status == "likely"]
    healthy = [r.hyperparameters for r in rows if r.status == "healthy"]
    if not failed or not healthy:
        return []
    names = sorted({name for settings in failed + healthy for name in settings})
    found = []
    for name in names:
        failed_values = [settings.get(name) for settings in failed]
        healthy_values = [settings.get(name) for settings in healthy]
        separation = _separation(name, failed_values, healthy_values)
        if separation is not None:
            found.append(separation)
    found.sort(key=lambda s: (-s.score, s.name))
    return found[:limit] if limit is not None else found


def _separation(name: str, failed: list[Value], healthy: list[Value]) -> Separation | None:
    everything = failed + healthy
    distinct = set(map(_key, everything))
    if len(distinct) < 2:
        return None
    texts = [v for v in everything if isinstance(v, str)]
    if texts and len(set(texts)) == len(everything) and len(everything) > 2:
        return None  # a name or id that differs in every run
    numbers = all(_is_number(v) for v in everything)
    repeats = len(distinct) < len(everything)
    if not numbers or (repeats and len(distinct) <= _FEW_VALUES):
        score, measure = _total_variation(failed, healthy), "frequencies"
    else:
        score, measure = _kolmogorov_smirnov([float(v) for v in failed], [float(v) for v in healthy]), "distribution"
    if score <= 0:
        return None
    if measure == "frequencies":
        failed_counts, healthy_counts = _counts(failed), _counts(healthy)
        return Separation(name=name, score=round(score, 4), measure=measure,
                          failed=_in_words(failed_counts), healthy=_in_words(healthy_counts),
                          failed_counts=failed_counts, healthy_counts=healthy_counts)
    return Separation(name=name, score=round(score, 4), measure=measure,
                      failed=_spread(failed), healthy=_spread(healthy))


def _is_number(value: Value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _key(value: Value):
    # 1 and 1.0 are one learning rate; True and 1 are not one setting
    return (type(value).__name__, value) if isinstance(value, (bool, str)) or value is None else ("num", float(value))


def _total_variation(failed: list[Value], healthy: list[Value]) -> float:
    f, h = Counter(map(_key, failed)), Counter(map(_key, healthy))
    return 0.5 * sum(abs(f[k] / len(failed) - h[k] / len(healthy)) for k in set(f) | set(h))


def _kolmogorov_smirnov(failed: list[float], healthy: list[float]) -> float:
    points = sorted(set(failed) | set(healthy))
    f, h = sorted(failed), sorted(healthy)
    return max(abs(bisect.bisect_right(f, x) / len(f) - bisect.bisect_right(h, x) / len(h)) for x in points)


def _text(value: Value) -> str:
    if value is None:
        return "(not set)"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def _counts(values: list[Value]) -> dict[str, int]:
    counts = Counter(_text(v) for v in values)
    return dict(sorted(counts.items(), key=lambda item: (-item[1], item[0])))


def _in_words(counts: dict[str, int]) -> str:
    return ", ".join(f"{value} ({count})" for value, count in counts.items())


def _spread(values: list[Value]) -> str:
    numbers = sorted(float(v) for v in values)
    return (f"{_text(numbers[0])} to {_text(numbers[-1])}, median {_text(statistics.median(numbers))} "
            f"({len(numbers)} runs)")


__all__ = ["CauseGroup", "Separation", "cause_groups", "separating_settings"]
