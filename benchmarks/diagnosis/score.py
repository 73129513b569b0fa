"""Score diagnoses against the planted faults: top-1/top-3 accuracy, false alarms, recall, confusion.

A scenario's *expected* cause is the fault planted in it (``healthy`` for none). A diagnosis
answers with ranked causes and their buckets (likely/possible/weak):

* top-1: the first-ranked cause is the planted one;
* top-3: the planted cause is among the first three;
* false alarm: a healthy run with any cause at "likely";
* per-cause recall: top-1 hits of that cause / its scenarios;
* confusion: planted cause -> what was ranked first (``-`` for nothing).
"""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from dataclasses import asdict, dataclass, field

HEALTHY = "healthy"


@dataclass
class Outcome:
    """What diag said about one scenario."""

    scenario: str
    expected: str
    ranked: list[str]  # cause ids, best first (not suppressed)
    likely: list[str]  # cause ids at "likely"
    error: str | None = None  # the scenario failed to train or to diagnose

    @property
    def first(self) -> str:
        return self.ranked[0] if self.ranked else "-"


@dataclass
class Score:
    faulty: int = 0
    healthy: int = 0
    top1: float = 0.0
    top3: float = 0.0
    false_alarm_rate: float = 0.0
    false_alarms: list[str] = field(default_factory=list)
    misses: list[dict] = field(default_factory=list)
    errors: list[dict] = field(default_factory=list)
    recall: dict[str, float] = field(default_factory=dict)
    confusion: dict[str, dict[str, int]] = field(default_factory=dict)


def score(outcomes: list[Outcome]) -> Score:
    result = Score()
    faulty = [o for o in outcomes if o.expected != HEALTHY]
    healthy = [o for o in outcomes if o.expected == HEALTHY]
    result.faulty, result.healthy = len(faulty), len(healthy)
    hits1 = [o for o in faulty if o.first == o.expected]
    hits3 = [o for o in faulty if o.expected in o.ranked[:3]]
    result.top1 = len(hits1) / len(faulty) if faulty else 0.0
    result.top3 = len(hits3) / len(faulty) if faulty else 0.0
    alarms = [o for o in healthy if o.likely]
    result.false_alarm_rate = len(alarms) / len(healthy) if healthy else 0.0
    result.false_alarms = [f"{o.scenario}: {', '.join(o.likely)}" for o in alarms]
    by_cause: dict[str, list[Outcome]] = defaultdict(list)
    for o in faulty:
        by_cause[o.expected].append(o)
    result.recall = {c: sum(o.first == c for o in os_) / len(os_) for c, os_ in sorted(by_cause.items())}
    confusion: dict[str, Counter] = defaultdict(Counter)
    for o in outcomes:
        confusion[o.expected][o.first] += 1
    result.confusion = {k: dict(v) for k, v in sorted(confusion.items())}
    result.misses = [{"scenario": o.scenario, "expected": o.expected, "ranked": o.ranked[:3]}
                     for o in faulty if o.first != o.expected]
    result.errors = [{"scenario": o.scenario, "error": o.error} for o in outcomes if o.error]
    return result


def render_text(s: Score) -> str:
    lines = [
        f"scenarios: {s.faulty} with a planted fault, {s.healthy} healthy",
        f"top-1 accuracy   {s.top1:6.1%}   (goal >= 90%)",
        f"top-3 accuracy   {s.top3:6.1%}   (goal >= 98%)",
        f"false alarms     {s.false_alarm_rate:6.1%}   (healthy runs with a 'likely' cause; goal <= 5%)",
        "",
        "per-cause recall (top-1):",
    ]
    for cause, value in s.recall.items():
        lines.append(f"  {cause:<28} {value:6.1%}")
    lines += ["", "confusion (planted -> ranked first):"]
    for planted, row in s.confusion.items():
        cells = ", ".join(f"{k} x{v}" for k, v in sorted(row.items(), key=lambda kv: (-kv[1], kv[0])))
        lines.append(f"  {planted:<28} {cells}")
    if s.misses:
        lines += ["", "misses:"]
        lines += [f"  {m['scenario']}: expected {m['expected']}, got {m['ranked'] or '-'}" for m in s.misses]
    if s.false_alarms:
        lines += ["", "false alarms:"] + [f"  {a}" for a in s.false_alarms]
    if s.errors:
        lines += ["", "errors:"] + [f"  {e['scenario']}: {e['error']}" for e in s.errors]
    return "\n".join(lines) + "\n"


def render_json(s: Score) -> str:
    return json.dumps(asdict(s), indent=2, sort_keys=True) + "\n"
