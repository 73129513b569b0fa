"""`diag explain` as a user runs it: the whole process, from the shell's fork to its exit.

Each side is a fresh ``python -m diag explain TRACE`` (interpreter start, imports, knowledge base,
trace load, diagnosis, printing), run ``--rounds`` times interleaved with its baselines so that a
busy machine slows every side alike; the medians and their ratios are printed.

Sides (one round runs each once, in this order, the next round in the reverse order):

* ``python -c pass``: the interpreter alone, the floor no Python tool goes below;
* ``explain (this tree)``: the working tree as it is now, with a warm knowledge-base cache;
* ``explain (REV)`` with ``--against REV``: the same command from a commit (``git archive``), e.g.
  ``--against main`` or ``--against HEAD~3``, for a before/after of a change.

The knowledge-base cache lives in a temporary folder (``DIAG_CACHE_DIR``), filled by one untimed
run before the rounds. The first run after a rule file changed (an empty cache) is timed apart:
``--cold`` rounds, each with a new empty cache folder.

Both trees are run from copies laid out as an installed package (``diag/``, with the knowledge
base, adapters and TUI inside it), so neither side pays for the editable install's import hooks.

``--instructions`` also counts the instructions one run of each side executes, under valgrind's
callgrind with a fixed hash seed (about 15 s a side). On a shared two-core machine the medians of
one run drift by 10% from one minute to the next, and an A/B of a change that executes the same
instructions read 0.92x in one run and 1.13x in another; the count repeats to within 0.1%, so it
judges a change of a few percent in the work done (not in cache or memory effects).

    python benchmarks/cli_start.py                          # 7 rounds, this tree vs python -c pass
    python benchmarks/cli_start.py --against main --cold 3  # and a commit, and the cold first run
    python benchmarks/cli_start.py --against main --instructions
"""

from __future__ import annotations

import argparse
import os
import re
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench_results import publish

ROOT = Path(__file__).resolve().parent.parent
# Where pyproject.toml's package-dir puts the folders outside diag/.
INSTALLED_INSIDE = {"knowledge_base": "knowledge_base", "adapters": "adapters", "tui": "tui"}


def lay_out(source: Path, target: Path) -> Path:
    """Copy ``source``'s diag/ (and the folders installed inside it) to ``target``/diag; return ``target``."""
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    shutil.copytree(source / "diag", target / "diag", ignore=ignore)
    for folder, name in INSTALLED_INSIDE.items():
        if (source / folder).is_dir():
            shutil.copytree(source / folder, target / "diag" / name, ignore=ignore)
    return target


def archive(rev: str, target: Path) -> Path:
    """The files of commit ``rev`` in ``target`` (via git archive: the repository is not touched)."""
    target.mkdir(parents=True)
    data = subprocess.run(["git", "-C", str(ROOT), "archive", rev], check=True, capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", str(target)], input=data, check=True)
    return target


def _children_cpu() -> float:
    # getrusage, not os.times: os.times counts in clock ticks (10 ms), too coarse for a 10 ms change.
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def timed(command: list[str], env: dict, cwd: Path) -> tuple[float, float]:
    """Wall seconds and CPU seconds (user + system, children) of one run; a failed run stops the benchmark."""
    before = _children_cpu()
    t0 = time.perf_counter()
    done = subprocess.run(command, env=env, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    wall = time.perf_counter() - t0
    after = _children_cpu()
    if done.returncode not in (0, 1):
        sys.exit(f"{' '.join(command)} exited {done.returncode}:\n{done.stderr.decode(errors='replace')}")
    return wall, after - before


def instructions(command: list[str], env: dict, cwd: Path) -> int | None:
    """Instructions one run executes, counted by callgrind (None when valgrind is not installed);
    a run that fails, or that callgrind did not count, stops the benchmark."""
    valgrind = shutil.which("valgrind")
    if valgrind is None:
        return None
    done = subprocess.run([valgrind, "--tool=callgrind", "--callgrind-out-file=/dev/null", *command],
                          env={**env, "PYTHONHASHSEED": "0"}, cwd=cwd, stdout=subprocess.DEVNULL,
                          stderr=subprocess.PIPE, text=True)
    counted = re.search(r"Collected\s*:\s*(\d+)", done.stderr)
    if done.returncode not in (0, 1) or counted is None:
        sys.exit(f"valgrind {' '.join(command)} exited {done.returncode}:\n{done.stderr[-2000:]}")
    return int(counted.group(1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trace", default=str(ROOT / "examples" / "healthy.jsonl"))
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--against", metavar="REV", help="also time the command at this commit")
    parser.add_argument("--cold", type=int, default=0, metavar="N",
                        help="also time N first runs with an empty knowledge-base cache")
    parser.add_argument("--instructions", action="store_true",
                        help="also count each explain side's instructions with valgrind (callgrind)")
    args = parser.parse_args()
    trace = str(Path(args.trace).resolve())

    with tempfile.TemporaryDirectory(prefix="diag-cli-start-") as tmp:
        tmp = Path(tmp)
        base_env = {k: v for k, v in os.environ.items() if not k.startswith(("DIAG_", "PYTHON"))}
        base_env["XDG_CACHE_HOME"] = str(tmp / "xdg")  # never the user's own cache
        explain = [sys.executable, "-m", "diag", "explain", trace]
        sides: list[tuple[str, list[str], dict]] = [("python -c pass", [sys.executable, "-c", "pass"], base_env)]
        here = lay_out(ROOT, tmp / "this")
        sides.append(("explain (this tree)", explain,
                      {**base_env, "PYTHONPATH": str(here), "DIAG_CACHE_DIR": str(tmp / "cache")}))
        if args.against:
            rev = lay_out(archive(args.against, tmp / "rev-src"), tmp / "rev")
            sides.append((f"explain ({args.against})", explain,
                          {**base_env, "PYTHONPATH": str(rev), "DIAG_CACHE_DIR": str(tmp / "cache-rev")}))
        for _, command, env in sides:  # untimed: byte-compiles the copies, fills the caches
            timed(command, env, tmp)

        walls: dict[str, list[float]] = {name: [] for name, _, _ in sides}
        cpus: dict[str, list[float]] = {name: [] for name, _, _ in sides}
        for round_ in range(args.rounds):
            # Every other round in the reverse order, so that neither side always runs right after
            # the same other side.
            for name, command, env in (sides if round_ % 2 == 0 else sides[::-1]):
                wall, cpu = timed(command, env, tmp)
                walls[name].append(wall)
                cpus[name].append(cpu)
        counts = {name: instructions(command, env, tmp) for name, command, env in sides[1:]} if args.instructions else {}
        cold_walls = []
        for i in range(args.cold):
            env = {**sides[1][2], "DIAG_CACHE_DIR": str(tmp / f"cold-{i}")}
            cold_walls.append(timed(explain, env, tmp)[0])

    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"{Path(trace).name}, {args.rounds} rounds interleaved, {os.cpu_count()} CPUs, "
          f"load average {load:.2f} at the end")
    floor = statistics.median(walls["python -c pass"])
    for name, _, _ in sides:
        wall, cpu = statistics.median(walls[name]), statistics.median(cpus[name])
        print(f"  {name:28s} median {wall:6.3f} s wall ({cpu:6.3f} s CPU)  {wall / floor:5.1f}x python -c pass")
    if args.against:
        now, then = statistics.median(walls["explain (this tree)"]), statistics.median(walls[f"explain ({args.against})"])
        cpu_now, cpu_then = (statistics.median(cpus[f"explain ({side})"]) for side in ("this tree", args.against))
        print(f"  this tree / {args.against}: {now / then:.2f}x wall, {cpu_now / cpu_then:.2f}x CPU")
    if counts:
        if None in counts.values():
            print("  instructions: not counted (valgrind is not installed)")
        else:
            for name, count in counts.items():
                print(f"  {name:28s} {count / 1e6:8.1f} M instructions (callgrind, PYTHONHASHSEED=0)")
            if args.against:
                ratio = counts["explain (this tree)"] / counts[f"explain ({args.against})"]
                print(f"  this tree / {args.against}: {ratio:.3f}x instructions")
    if cold_walls:
        print(f"  first run after a rule change (empty cache), median of {len(cold_walls)}: "
              f"{statistics.median(cold_walls):.3f} s")
    now = statistics.median(walls["explain (this tree)"])
    print(f"goal <= 0.3 s: {'met' if now <= 0.3 else 'MISSED'} ({now:.3f} s)")
    publish("cli_start", wall_s=now, cpu_s=statistics.median(cpus["explain (this tree)"]), python_s=floor)


if __name__ == "__main__":
    main()
