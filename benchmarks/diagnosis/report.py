"""Every set of the diagnosis benchmark in one table, and one reliability table over all of them.

Reads the ``--format json`` output of ``run.py`` for each set (the scenario file gives each run's
framework) and prints, held-out sets first: runs, top-1, top-3, false alarms per framework; then
how often a cause reported at each certainty band was the planted one, over all sets together.

Usage (from the repository root; the JSON files come from ``run.py --format json``)::

    .venv/bin/python benchmarks/diagnosis/report.py \\
        set4=benchmarks/diagnosis/heldout/set4.yaml:/tmp/set4.json \\
        calibration=benchmarks/diagnosis/scenarios.yaml:/tmp/scenarios.json
    .venv/bin/python benchmarks/diagnosis/report.py --markdown ...   # the README's table
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import run as R  # noqa: E402
import score as S  # noqa: E402
from diagbench import spec as SP  # noqa: E402


def load_set(scenarios: str, results: str) -> list[S.Outcome]:
    frameworks = {sc["id"]: sc.get("framework", "flax") for sc in SP.load(scenarios)}
    doc = json.loads(Path(results).read_text())
    rows = doc["results"]
    for r in rows:
        r.setdefault("framework", frameworks.get(r["scenario"], "flax"))
    return R.outcomes(rows)


def _alarms(s: S.Score) -> str:
    return ", ".join(f"{fw} {a}/{n}" for fw, (a, n) in s.false_alarm_by_framework.items()) or "-"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("sets", nargs="+", help="NAME=SCENARIOS.yaml:RESULTS.json, held-out sets first")
    ap.add_argument("--markdown", action="store_true", help="a Markdown table")
    args = ap.parse_args(argv)
    everything: list[S.Outcome] = []
    rows = []
    for item in args.sets:
        name, _, paths = item.partition("=")
        scenarios, _, results = paths.partition(":")
        outcomes = load_set(scenarios, results)
        everything += outcomes
        s = S.score(outcomes)
        rows.append((name, s))
    if args.markdown:
        print("| set | runs (faulty + healthy) | top-1 | top-3 | false alarms (Flax, PyTorch) |")
        print("|---|---|---|---|---|")
        for name, s in rows:
            print(f"| {name} | {s.faulty} + {s.healthy} | {s.top1:.1%} | {s.top3:.1%} | {_alarms(s)} |")
    else:
        print(f"{'set':<14} {'faulty':>6} {'healthy':>7} {'top-1':>7} {'top-3':>7}  false alarms")
        for name, s in rows:
            print(f"{name:<14} {s.faulty:6d} {s.healthy:7d} {s.top1:7.1%} {s.top3:7.1%}  {_alarms(s)}")
    total = S.score(everything)
    print()
    print("\n".join(S.render_reliability(total.reliability)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
