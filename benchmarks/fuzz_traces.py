"""The long fuzz run: >= 10,000 mutated real traces through the reader, summary and diagnosis.

The same mutations and property as ``tests/test_fuzz_traces.py`` (``tests/fuzz_traces.py``), driven
by a seeded ``random.Random`` instead of hypothesis, round-robin over the mutations and the real
traces of ``tests/traces/``. Prints, per mutation, the cases run, refused as bad input (exit 2),
crashed (any other exception: a bug), and those that lost an intact line, then the totals.

    python benchmarks/fuzz_traces.py                    # 10,000 cases
    python benchmarks/fuzz_traces.py --cases 800 --seed 7
    python benchmarks/fuzz_traces.py --diagnose-every 10   # diagnosis (10x the reading) on every 10th

Exit status 1 when any case crashed or lost an intact line.
"""

from __future__ import annotations

import argparse
import collections
import random
import sys
import tempfile
import time
import traceback
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # for tests.fuzz_traces

from tests.fuzz_traces import MUTATIONS, SOURCES, check, mutate, source_lines  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=10_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--diagnose-every", type=int, default=1, metavar="K",
                        help="diagnose every K-th case (all are read and summarized; default 1)")
    parser.add_argument("--progress", type=int, default=0, metavar="N", help="print a line every N cases")
    args = parser.parse_args()

    from diag.engine.api import builtin_knowledge_base

    kb = builtin_knowledge_base(use_env=False)
    originals = {name: source_lines(name) for name in SOURCES}
    names = sorted(MUTATIONS)
    stats = {name: collections.Counter() for name in names}
    crashes: dict[str, tuple[str, str]] = {}
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "mutated.jsonl"
        for case in range(args.cases):
            mutation, source = names[case % len(names)], SOURCES[(case // len(names)) % len(SOURCES)]
            rng = random.Random(args.seed * 1_000_003 + case)
            path.write_bytes(mutate(mutation, b"\n".join(originals[source]), rng, rng.randint(1, 3)))
            counts = stats[mutation]
            counts["cases"] += 1
            try:
                outcome = check(path, originals[source], kb, diagnose_it=case % args.diagnose_every == 0)
            except AssertionError as e:
                counts["lost" if "intact" in str(e) else "violations"] += 1
                crashes.setdefault(f"property: {str(e)[:120]}", (mutation, f"case {case}"))
                continue
            except Exception as e:  # noqa: BLE001 - every other exception is a finding
                counts["crashed"] += 1
                site = traceback.extract_tb(e.__traceback__)[-1]
                crashes.setdefault(f"{type(e).__name__} at {Path(site.filename).name}:{site.lineno}",
                                   (mutation, f"case {case}: {str(e)[:120]}"))
                continue
            counts["refused" if outcome.refused else "read"] += 1
            if args.progress and (case + 1) % args.progress == 0:
                done = sum(c["cases"] for c in stats.values())
                bad = sum(c["crashed"] + c["violations"] + c["lost"] for c in stats.values())
                print(f"{done:,} cases, {bad} findings, {time.perf_counter() - started:.0f} s", flush=True)
            counts["lost"] += bool(outcome.lost)
            counts["intact lines"] += outcome.intact
    elapsed = time.perf_counter() - started
    columns = ("cases", "read", "refused", "crashed", "violations", "lost", "intact lines")
    print(f"{'mutation':18}" + "".join(f"{c:>14}" for c in columns))
    total = collections.Counter()
    for name in names:
        total.update(stats[name])
        print(f"{name:18}" + "".join(f"{stats[name][c]:>14,}" for c in columns))
    print(f"{'total':18}" + "".join(f"{total[c]:>14,}" for c in columns))
    print(f"\n{args.cases:,} cases in {elapsed:.0f} s ({args.cases / elapsed:.1f} cases/s), seed {args.seed}, "
          f"{len(range(0, args.cases, args.diagnose_every)):,} of them diagnosed")
    for cause, (mutation, where) in crashes.items():
        print(f"  {cause}  [{mutation}, {where}]")
    return 1 if total["crashed"] or total["lost"] or total["violations"] else 0


if __name__ == "__main__":
    sys.exit(main())
