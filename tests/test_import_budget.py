"""`diag explain` of a JSONL trace imports only what explaining it needs.

Start time is mostly imports, and one stray import (scipy through a helper, the TUI through a
convenience re-export) costs more than the whole diagnosis of a small trace. The modules each
command loads are read from ``python -X importtime`` of a real run (with a warm cache, as a user's
second run), and the heavy or unrelated ones are refused by name. Timing lives in
benchmarks/cli_start.py; this test only names modules, so it cannot flake on a busy machine.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "examples" / "healthy.jsonl"

# Frameworks, the TUI and its plotting, and libraries a JSONL trace never needs.
NEVER_FOR_EXPLAIN = {
    "jax", "jaxlib", "flax", "optax", "torch", "keras", "tensorflow", "textual", "textual_plotext", "plotext", "rich",
    "scipy", "pandas", "matplotlib", "tensorboard", "mlflow", "dask", "distributed", "lightning", "transformers",
    "optuna", "sqlite3",
    "importlib.metadata",  # pydantic's plugin loader imports it; explain looks up no plugins
    "importlib.resources", "importlib.readers",  # the built-in rules are found through their package's __init__
    "difflib", "tempfile",  # did-you-mean suggestions and cache writes: a clean warm start needs neither
    "yaml",  # rule files come from the cache on a second run
    "numpy.ma", "numpy.f2py", "numpy.testing",  # pulled in by np.median and scipy
    "diag.engine.conditions.models",  # clause models: built only for a clause the quick check cannot pass
    "diag.tui", "diag.adapters", "diag.gradcheck", "diag.preflight", "diag.sweep", "diag.demo", "diag.guard",
}
# argparse's terminal width: measured only where help is printed (``--help`` does import it).
NOT_WITHOUT_HELP = {"shutil"}
# The other commands' modules: a command line that names its command builds only that one's parser.
OTHER_COMMANDS = {f"diag.cli.{name}_cmd" for name in
                  ("summary", "sweep", "rules", "demo", "tui", "gradcheck", "preflight", "schema")}
# `diag --help` and `diag --version` parse no trace and load no rule.
NEVER_FOR_HELP = NEVER_FOR_EXPLAIN | {"numpy", "pydantic", "rule_engine", "orjson", "diag.engine", "diag.trace"}


def imported(args: list[str], cache: Path) -> set[str]:
    """Every module the command imports (names and their parent packages), from -X importtime."""
    env = {**os.environ, "DIAG_CACHE_DIR": str(cache)}
    env.pop("PYTHONPROFILEIMPORTTIME", None)
    command = [sys.executable, "-X", "importtime", "-m", "diag", *args]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    names = set()
    for line in done.stderr.splitlines():
        if line.startswith("import time:") and line.count("|") == 2:
            name = line.rsplit("|", 1)[1].strip()
            parts = name.split(".")
            names |= {".".join(parts[: i + 1]) for i in range(len(parts))}
    assert "diag" in names or "diag.cli" in names, done.stderr[-2000:]  # the output was read
    return names


def test_explain_of_a_jsonl_trace_imports_nothing_it_does_not_need(tmp_path):
    imported(["explain", str(EXAMPLE)], tmp_path)  # the first run fills the cache
    loaded = imported(["explain", str(EXAMPLE)], tmp_path)
    assert {"numpy", "pydantic", "rule_engine", "diag.engine.kb"} <= loaded  # it did explain
    assert sorted(loaded & (NEVER_FOR_EXPLAIN | NOT_WITHOUT_HELP | OTHER_COMMANDS)) == []


def test_help_imports_no_engine_and_no_numpy(tmp_path):
    for args in (["--help"], ["--version"], ["explain", "--help"]):
        assert sorted(imported(args, tmp_path) & NEVER_FOR_HELP) == [], args
    assert OTHER_COMMANDS <= imported(["--help"], tmp_path)  # the command modules are seen when imported
