"""Score diagnoses against the planted faults: top-1/top-3 accuracy, false alarms, recall, confusion.

A scenario's *expected* cause is the fault planted in it (``healthy`` for none). A diagnosis
answers with ranked causes and their buckets (likely/possible/weak):

* top-1: the first-ranked cause is the planted one;
* top-3: the planted cause is among the first three;
* false alarm: a healthy run with any cause at "likely";
* per-cause recall: top-1 hits of that cause / its scenarios;
* confusion: planted cause -> what was ranked first (``-`` for nothing);
* false alarms per framework (Flax and PyTorch separately);
* reliability: for bands of certainty, how often a cause reported in that band is the planted
  one (on a healthy run every reported cause is wrong). A cause at "likely" (>= 0.6) should be
  right at least 90% of the time.
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
    framework: str = "flax"
    certainty: dict[str, float] = field(default_factory=dict)  # cause id -> certainty, for ranked ones

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
    false_alarm_by_framework: dict[str, list[int]] = field(default_factory=dict)  # framework -> [alarms, healthy]
    reliability: list[dict] = field(default_factory=list)


BANDS = ((0.2, 0.3), (0.3, 0.45), (0.45, 0.6), (0.6, 0.8), (0.8, 1.01))


def reliability(outcomes: list[Outcome]) -> list[dict]:
    """Per certainty band: causes reported in it, how many were the planted cause, the share."""
    rows = []
    for lo, hi in BANDS:
        reported = right = 0
        for o in outcomes:
            if o.error:
                continue
            for cause, cf in o.certainty.items():
                if lo <= cf < hi:
                    reported += 1
                    right += cause == o.expected
        rows.append({"band": f"{lo:.2f}-{min(hi, 1.0):.2f}", "low": lo, "reported": reported, "right": right,
                     "share": right / reported if reported else None})
    return rows


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
    for fw in sorted({o.framework for o in healthy}):
        mine = [o for o in healthy if o.framework == fw]
        result.false_alarm_by_framework[fw] = [sum(bool(o.likely) for o in mine), len(mine)]
    result.reliability = reliability(outcomes)
    return result


def render_reliability(rows: list[dict]) -> list[str]:
    lines = ["reliability (causes reported in a certainty band that were the planted one):"]
    for r in rows:
        share = f"{r['share']:6.1%}" if r["share"] is not None else "     -"
        lines.append(f"  {r['band']}   {r['right']:4d} / {r['reported']:<4d} {share}")
    likely = [r for r in rows if r["low"] >= 0.6]
    n, k = sum(r["reported"] for r in likely), sum(r["right"] for r in likely)
    if n:
        lines.append(f"  >= 0.60      {k:4d} / {n:<4d} {k / n:6.1%}   (goal >= 90%)")
    return lines


def render_text(s: Score) -> str:
    lines = [
        f"scenarios: {s.faulty} with a planted fault, {s.healthy} healthy",
        f"top-1 accuracy   {s.top1:6.1%}   (goal >= 90%)",
        f"top-3 accuracy   {s.top3:6.1%}   (goal >= 98%)",
        f"false alarms     {s.false_alarm_rate:6.1%}   (healthy runs with a 'likely' cause; goal <= 5%)",
        "false alarms by framework: " + (", ".join(f"{fw} {a}/{n}" for fw, (a, n) in s.false_alarm_by_framework.items())
                                         or "-"),
        "",
        "per-cause recall (top-1):",
    ]
    for cause, value in s.recall.items():
        lines.append(f"  {cause:<28} {value:6.1%}")
    lines += ["", "confusion (planted -> ranked first):"]
    for planted, row in s.confusion.items():
        cells = ", ".join(f"{k} x{v}" for k, v in sorted(row.items(), key=lambda kv: (-kv[1], kv[0])))
        lines.append(f"  {planted:<28} {cells}")
    lines += [""] + render_reliability(s.reliability)
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
