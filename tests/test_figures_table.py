"""The README's table of performance goals is the one benchmarks/figures.py makes from the kept figures.

Nothing here measures anything (speed is a benchmark, not a test): these tests protect the plumbing
between the benchmark scripts, their kept figures and the README, so that the table cannot drift
from what the scripts measured, and a goal is marked met only when its figure is within it.
"""

from __future__ import annotations

import ast
import importlib.util
import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BENCHMARKS = ROOT / "benchmarks"


def _load(name: str):
    sys.path.insert(0, str(BENCHMARKS))
    try:
        spec = importlib.util.spec_from_file_location(f"_bench_{name}", BENCHMARKS / f"{name}.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = module  # dataclasses look their module up there
        spec.loader.exec_module(module)
        return module
    finally:
        sys.path.remove(str(BENCHMARKS))


figures = _load("figures")
bench_results = _load("bench_results")


def _published_names(script: Path) -> set[str]:
    """The names a benchmark script passes to ``publish(...)``, read from its source."""
    names = set()
    for node in ast.walk(ast.parse(script.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "publish" and node.args:
            names.add(node.args[0].value)
    return names


def _all_met_figures() -> dict[str, dict]:
    """A results set in which every goal is met, for tests that spoil one figure."""
    figures_by_run = {
        "cli_start": {"wall_s": 0.25, "cpu_s": 0.24, "python_s": 0.02},
        "flax_default": {f"{m}_{v}_{c}": 1.005 for m in ("mlp", "cnn") for v in ("default", "all-norms")
                         for c in ("wall", "cpu")},
        "flax_full": {"cnn_full_cpu": 1.05, "cnn_full_wall": 1.06},
        "torch_overhead": {"mlp_default": 1.01, "cnn_default": 1.02, "mlp_everything": 1.1, "cnn_everything": 1.1},
        "trace_load": {"cpu_ratio": 1.2, "wall_ratio": 1.25, "peak_ratio": 1.03},
        "engine": {"cpu_s": 0.2, "wall_s": 0.22},
        "tui_latency": {"key_p95_ms": 50.0, "record_p95_ms": 120.0},
        "gradcheck": {"1e5_cold_cpu_ratio": 5.5, "1e5_cold_wall_ratio": 5.0, "1e5_cached_cpu_ratio": 14.0},
    }
    return {run: {"run": run, "benchmark": run, "figures": f, "load_average": [0.5, 1.0], "cpus": 2,
                  "finished": "2026-12-07 14:00:00"} for run, f in figures_by_run.items()}


def _met_column(table: str) -> list[str]:
    rows = [line for line in table.splitlines() if line.startswith("| ") and not line.startswith("| figure")]
    return [row.split(" | ")[3] for row in rows]


def test_every_benchmark_script_publishes_under_the_name_figures_reads():
    for bench in figures.BENCHES:
        script = BENCHMARKS / bench.argv[0]
        assert script.exists(), script
        assert bench.publishes in _published_names(script), f"{script.name} publishes no {bench.publishes!r}"


def test_every_row_reads_a_benchmark_that_runs():
    names = {bench.name for bench in figures.BENCHES}
    assert {row.benchmark for row in figures.ROWS} <= names


def test_goals_within_their_figures_are_marked_met():
    assert _met_column(figures.render_table(_all_met_figures())) == ["yes"] * len(figures.ROWS)


@pytest.mark.parametrize("run, figure, value", [
    ("cli_start", "wall_s", 0.31),
    ("flax_default", "cnn_all-norms_cpu", 1.04),
    ("torch_overhead", "mlp_default", 1.031),
    ("trace_load", "peak_ratio", 1.2),
    ("gradcheck", "1e5_cold_cpu_ratio", 4.7),
])
def test_a_figure_outside_its_goal_marks_that_row_and_only_that_row_not_met(run, figure, value):
    results = _all_met_figures()
    results[run]["figures"][figure] = value
    met = _met_column(figures.render_table(results))
    missed = [row.figure for row, mark in zip(figures.ROWS, met) if mark != "yes"]
    assert len(missed) == 1 and all(mark == "**no**" for mark in met if mark != "yes")
    assert figures.ROWS[met.index("**no**")].benchmark == run


def test_a_benchmark_not_measured_or_missing_a_figure_is_said_so_not_guessed():
    results = _all_met_figures()
    del results["engine"]
    del results["tui_latency"]["figures"]["key_p95_ms"]
    table = figures.render_table(results)
    assert "| rule engine, full knowledge base, 100,000 steps x 64 layers | <= 0.25 s | not measured |" in table
    assert "figure 'key_p95_ms' not published" in table


def test_publish_writes_one_line_only_when_figures_py_asks(tmp_path, monkeypatch):
    out = tmp_path / "results.jsonl"
    monkeypatch.delenv(bench_results.RESULTS_ENV, raising=False)
    bench_results.publish("engine", cpu_s=0.2)
    assert not out.exists()
    monkeypatch.setenv(bench_results.RESULTS_ENV, str(out))
    bench_results.publish("engine", cpu_s=0.2, wall_s=0.3)
    bench_results.publish("engine", cpu_s=0.1, wall_s=0.2)
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert [line["figures"] for line in lines] == [{"cpu_s": 0.2, "wall_s": 0.3}, {"cpu_s": 0.1, "wall_s": 0.2}]
    assert figures.read_results(out)["engine"]["figures"] == {"cpu_s": 0.1, "wall_s": 0.2}  # the last one counts


def test_rewriting_the_readme_replaces_only_the_generated_block_and_is_idempotent():
    text = f"# title\n\nbefore\n\n{figures.BEGIN}\nold table\n{figures.END}\n\nafter\n"
    once = figures.replace_block(text, "new table")
    assert once == f"# title\n\nbefore\n\n{figures.BEGIN}\nnew table\n{figures.END}\n\nafter\n"
    assert figures.replace_block(once, "new table") == once
    with pytest.raises(SystemExit, match="no generated block"):
        figures.replace_block("# a README without the markers\n", "new table")


def test_the_readme_table_is_the_one_the_kept_figures_give():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    table = figures.render_table(figures.read_results(figures.KEPT))
    assert figures.replace_block(readme, table) == readme, (
        "README.md's performance table differs from benchmarks/figures.jsonl: "
        "run python benchmarks/figures.py --table-only --write-readme")
