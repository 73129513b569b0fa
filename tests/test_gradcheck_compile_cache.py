"""The opt-in compile cache: a second process loads the check's program instead of compiling it."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from diag.gradcheck.compile_cache import use_compile_cache

ROOT = Path(__file__).resolve().parents[1]

# A fresh process that checks the example target with the cache on, counting JAX's cache events.
CHILD = textwrap.dedent("""
    import json, sys
    import jax
    from jax import monitoring
    events = {"hits": 0, "misses": 0}
    def count(name, **_):
        if name == "/jax/compilation_cache/cache_hits":
            events["hits"] += 1
        elif name == "/jax/compilation_cache/cache_misses":
            events["misses"] += 1
    monitoring.register_event_listener(count)
    from diag.gradcheck import check_gradients, use_compile_cache
    sys.path.insert(0, "examples")
    from gradcheck_target import target
    used = use_compile_cache(sys.argv[1])
    fn, args = target()
    report = check_gradients(fn, *args)
    print(json.dumps({"passed": report.passed, "used": str(used), **events}))
""")


def _check_in_fresh_process(cache: Path) -> dict:
    out = subprocess.run([sys.executable, "-c", CHILD, str(cache)], cwd=ROOT, capture_output=True,
                         text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_a_second_process_loads_the_compiled_check_from_the_cache(tmp_path):
    cache = tmp_path / "xla"
    first = _check_in_fresh_process(cache)
    assert first["passed"] and first["used"] == str(cache)
    assert first["hits"] == 0 and first["misses"] >= 1  # compiled, then written
    assert any(cache.iterdir()), "nothing was written to the cache folder"
    second = _check_in_fresh_process(cache)
    assert second["passed"]
    # The check's program came from disk. (Small helper programs that compiled under the cache's
    # minimum time were not written, so the second process may still miss on those.)
    assert second["hits"] >= 1 and second["misses"] < first["misses"], (first, second)


def test_an_unwritable_cache_folder_warns_and_the_check_runs_without_it(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    with pytest.warns(UserWarning, match="compile cache not used"):
        assert use_compile_cache(blocker / "xla") is None
    # "and the check runs without it": a check in this process still checks and passes.
    import jax
    import jax.numpy as jnp

    from diag.gradcheck import check_gradients

    assert jax.config.jax_compilation_cache_dir != str(blocker / "xla")
    report = check_gradients(lambda p, x: jnp.sum(jnp.tanh(x @ p["w"])), {"w": jnp.ones((3, 2))}, jnp.ones((4, 3)))
    assert report.passed and [r.name for r in report.results] == ["w"], report.format()


def test_gradcheck_cli_fills_the_named_cache_folder(tmp_path):
    cache = tmp_path / "cli-cache"
    out = subprocess.run([sys.executable, "-m", "diag", "gradcheck", "examples/gradcheck_target.py:target",
                          "--compile-cache", str(cache)], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    assert any(cache.iterdir())
