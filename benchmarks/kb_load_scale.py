"""Is loading a knowledge base linear in the number of rules? (issue 22: 20,000 rules once loaded in quadratic time)

User rule folders of 2,500, 5,000, 10,000 and 20,000 rules (1,000 a file, each rule a context
clause on the learning rate, as tests/test_hostile_rules.py writes them) are loaded with
``load_knowledge_base(paths=[folder], use_env=False)``, interleaved, each size ``--repeats``
times; every load starts from an empty cache folder, so YAML parsing and rule compilation are
both timed (a warm cache only makes loading faster). Printed: the median time per size, the time
per 1,000 rules, and the exponent of a log-log fit (1.0 is linear; quadratic loading shows as 2).

    .venv/bin/python benchmarks/kb_load_scale.py [--repeats 3] [--sizes 2500,5000,10000,20000]
"""

from __future__ import annotations

import argparse
import math
import os
import shutil
import statistics
import sys
import tempfile
import textwrap
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.rule_files import HEAD, cause_rule  # noqa: E402


def write_rules(folder: Path, count: int, per_file: int = 1000) -> None:
    for first in range(0, count, per_file):
        head = HEAD if first == 0 else "apiVersion: diag/v1\nrules:\n"
        body = "".join(textwrap.indent(cause_rule(f"{{context: 'lr > {n}'}}", f"my.rule-{n}"), "  ")
                       for n in range(first, min(first + per_file, count)))
        (folder / f"r{first // per_file:03d}.yaml").write_text(head + body)


def load_seconds(folder: Path) -> float:
    from diag.engine.kb import load_knowledge_base

    cache = tempfile.mkdtemp(prefix="diag-kb-scale-cache-")
    os.environ["DIAG_CACHE_DIR"] = cache  # an empty cache: parse and compile every rule
    try:
        start = time.perf_counter()
        kb = load_knowledge_base(paths=[folder], use_env=False)
        seconds = time.perf_counter() - start
    finally:
        shutil.rmtree(cache, ignore_errors=True)
    assert len(kb.rules) >= int(folder.name), "rules went missing"
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--sizes", default="2500,5000,10000,20000")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    root = Path(tempfile.mkdtemp(prefix="diag-kb-scale-"))
    try:
        folders = {}
        for size in sizes:
            folders[size] = root / str(size)
            folders[size].mkdir()
            write_rules(folders[size], size)
        load_seconds(folders[sizes[0]])  # imports and first-use costs, untimed
        times: dict[int, list[float]] = {size: [] for size in sizes}
        for _ in range(args.repeats):
            for size in sizes:  # interleaved, so drifting load hits every size alike
                times[size].append(load_seconds(folders[size]))
    finally:
        shutil.rmtree(root, ignore_errors=True)
    medians = {size: statistics.median(t) for size, t in times.items()}
    for size in sizes:
        print(f"{size:>7,} rules: {medians[size]:7.2f} s   {medians[size] / size * 1000 * 1000:6.1f} ms per 1,000 rules")
    xs = [math.log(s) for s in sizes]
    ys = [math.log(medians[s]) for s in sizes]
    mx, my = statistics.fmean(xs), statistics.fmean(ys)
    slope = sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / sum((x - mx) ** 2 for x in xs)
    print(f"log-log exponent {slope:.2f} (1.0 linear, 2.0 quadratic); load average {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
