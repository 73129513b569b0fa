"""Diagnosis benchmark: train every scenario of scenarios.yaml for real, diagnose it, score diag.

Each scenario is a small real training run (Flax NNX or PyTorch) recorded by diag's adapter, with
one planted fault (or none: ``healthy``). The trace is diagnosed by ``diag.engine.diagnose`` and
the answers are scored by ``score.py``: top-1/top-3 accuracy, false alarms on healthy runs,
per-cause recall, a confusion table; misses come with what their trace showed.

Usage (from the repository root):

    .venv/bin/python benchmarks/diagnosis/run.py --jobs 2                # everything (~100 runs)
    .venv/bin/python benchmarks/diagnosis/run.py --only dead_relu        # one cause (id glob/substring)
    .venv/bin/python benchmarks/diagnosis/run.py --subset ci --format json
    .venv/bin/python benchmarks/diagnosis/run.py --keep-traces           # keep .runs/*.jsonl
    .venv/bin/python benchmarks/diagnosis/run.py --reuse                 # re-diagnose kept traces, no training

Exit status: 0 when every scenario trained and was diagnosed, 1 when one failed to run, 2 for a
bad scenario file or option.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import score as S  # noqa: E402
from diagbench import spec as SP  # noqa: E402

RUNS = HERE / ".runs"


def _worker_init() -> None:
    # Two cores shared by everyone: one thread per worker process for XLA and torch.
    os.environ.setdefault("JAX_PLATFORMS", "cpu")
    os.environ["XLA_FLAGS"] = os.environ.get("XLA_FLAGS", "") + " --xla_cpu_multi_thread_eigen=false"
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    sys.path.insert(0, str(HERE))


def _run(sc: dict, runs: str, reuse: bool, kb_dir: str | None = None) -> dict:
    _worker_init()
    from diagbench.execute import run_one

    path = Path(runs) / SP.trace_name(sc)
    return run_one(sc, path, reuse_key=SP.cache_key(sc) if reuse else None, kb_dir=kb_dir)


def run_all(scenarios: list[dict], *, jobs: int = 1, runs: Path = RUNS, reuse: bool = False, keep: bool = False,
            progress=None, kb_dir: str | None = None) -> list[dict]:
    """Train and diagnose ``scenarios`` (in ``jobs`` processes); results in scenario order."""
    runs.mkdir(parents=True, exist_ok=True)
    results: dict[str, dict] = {}
    if jobs <= 1:
        _worker_init()
        for sc in scenarios:
            results[sc["id"]] = r = _run(sc, str(runs), reuse or keep, kb_dir)
            if progress:
                progress(r)
    else:
        import multiprocessing as mp

        with ProcessPoolExecutor(max_workers=jobs, mp_context=mp.get_context("spawn"),
                                 initializer=_worker_init) as pool:
            futures = {pool.submit(_run, sc, str(runs), reuse or keep, kb_dir): sc for sc in scenarios}
            for fut in as_completed(futures):
                sc = futures[fut]
                try:
                    r = fut.result()
                except Exception as e:  # the worker died (segfault, out of memory)
                    r = {"scenario": sc["id"], "expected": sc["expect"], "ranked": [], "error": f"worker: {e}"}
                results[sc["id"]] = r
                if progress:
                    progress(r)
    if not (keep or reuse):
        for sc in scenarios:
            for suffix in ("", ".key"):
                p = runs / (SP.trace_name(sc) + suffix)
                if p.exists():
                    p.unlink()
    return [results[sc["id"]] for sc in scenarios]


def outcomes(results: list[dict]) -> list[S.Outcome]:
    return [S.Outcome(scenario=r["scenario"], expected=r["expected"], ranked=[c["id"] for c in r.get("ranked", [])],
                      likely=[c["id"] for c in r.get("ranked", []) if c.get("bucket") == "likely"],
                      error=r.get("error"), framework=r.get("framework", "flax"),
                      certainty={c["id"]: c["certainty"] for c in r.get("ranked", [])}) for r in results]


def miss_report(results: list[dict]) -> str:
    """For each miss and false alarm: what diag answered and what the trace showed."""
    lines = []
    for r in results:
        ranked = r.get("ranked", [])
        first = ranked[0]["id"] if ranked else "-"
        alarm = r["expected"] == S.HEALTHY and any(c.get("bucket") == "likely" for c in ranked)
        miss = r["expected"] != S.HEALTHY and first != r["expected"]
        if not (miss or alarm) or r.get("error"):
            continue
        answer = ", ".join(f"{c['id']} {c['certainty']:.2f} {c['bucket']}" for c in ranked[:3]) or "nothing"
        lines.append(f"- {r['scenario']} (expected {r['expected']}): diag said {answer}")
        lines.append(f"    trace: {json.dumps(r.get('summary', {}), separators=(', ', ': '))}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--scenarios", default=str(SP.DEFAULT_PATH), help="scenario file (YAML)")
    ap.add_argument("--only", help="comma-separated id globs/substrings or cause ids")
    ap.add_argument("--subset", choices=["ci", "all"], default="all")
    ap.add_argument("--format", choices=["text", "json"], default="text")
    ap.add_argument("--jobs", type=int, default=1, help="worker processes (default 1)")
    ap.add_argument("--keep-traces", action="store_true", help=f"keep traces in {RUNS}")
    ap.add_argument("--reuse", action="store_true", help="diagnose kept traces whose scenario is unchanged")
    ap.add_argument("--runs", default=str(RUNS), help="folder for traces")
    ap.add_argument("--quiet", action="store_true", help="no per-scenario progress on stderr")
    ap.add_argument("--kb", help="diagnose with the rules of this folder instead of the built-in knowledge base")
    args = ap.parse_args(argv)
    try:
        scenarios = SP.select(SP.load(args.scenarios), args.only, args.subset)
    except (SP.SpecError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if not scenarios:
        print("error: no scenario matches", file=sys.stderr)
        return 2
    t0 = time.perf_counter()
    done = [0]

    def progress(r):
        done[0] += 1
        if not args.quiet:
            first = r["ranked"][0]["id"] if r.get("ranked") else "-"
            mark = "ERROR " + r["error"] if r.get("error") else ("ok" if first == r["expected"] or (
                r["expected"] == "healthy" and first == "-") else f"got {first}")
            print(f"[{done[0]}/{len(scenarios)}] {r['scenario']:<48} {r.get('seconds', 0):5.1f}s  {mark}",
                  file=sys.stderr, flush=True)

    results = run_all(scenarios, jobs=args.jobs, runs=Path(args.runs), reuse=args.reuse, keep=args.keep_traces,
                      progress=progress, kb_dir=args.kb)
    scored = S.score(outcomes(results))
    elapsed = time.perf_counter() - t0
    if args.format == "json":
        doc = json.loads(S.render_json(scored))
        doc["seconds"] = round(elapsed, 1)
        doc["results"] = results
        print(json.dumps(doc, indent=2, sort_keys=True))
    else:
        print(S.render_text(scored), end="")
        report = miss_report(results)
        if report:
            print("\nwhat the traces of misses and false alarms showed:\n" + report)
        print(f"\n{len(results)} scenarios in {elapsed:.0f} s with {args.jobs} job(s)")
    return 1 if scored.errors else 0


if __name__ == "__main__":
    sys.exit(main())
