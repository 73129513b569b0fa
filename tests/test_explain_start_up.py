"""`diag explain` starts without collector passes, gives an in-process caller its collector back, and
ends without the interpreter's teardown only when nothing is registered to run at exit.

The start (imports, the knowledge base) builds tens of thousands of objects that all live; the
cyclic collector is paused for it and what it built is frozen (diag/cli/start_up.py). Each probe
runs in a fresh interpreter and records every collection: one that runs once numpy (explain's
first import) is loading but before anything is frozen ran during the start.
"""

from __future__ import annotations

import gc
import os
import subprocess
import sys
from pathlib import Path

from diag.cli.start_up import collector_paused

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "examples" / "healthy.jsonl"

# Every collection during a command: was it during the start? (the callback is set once diag.cli is loaded)
RECORD = """
import contextlib, gc, io, sys
import diag.cli
during_start = []
gc.callbacks.append(lambda phase, info: phase == "start" and during_start.append(
    "numpy" in sys.modules and gc.get_freeze_count() == 0))
"""
IN_PROCESS = RECORD + f"""
with contextlib.redirect_stdout(io.StringIO()) as out:
    code = diag.cli.main(["explain", {str(EXAMPLE)!r}])
print(code, len(during_start), sum(during_start), gc.isenabled(), gc.get_freeze_count(),
      out.getvalue().count("\\n") > 3)
"""
AS_THE_PROGRAM = RECORD + f"""
import atexit
atexit.register(print)  # something to run at exit: the program then exits as usual, through SystemExit
sys.argv = ["diag", "explain", {str(EXAMPLE)!r}]
with contextlib.redirect_stdout(io.StringIO()):
    try:
        diag.cli.run()
    except SystemExit as e:
        code = e.code
print(code, len(during_start), sum(during_start), gc.isenabled(), gc.get_freeze_count() > 0)
"""


def _probe(code: str, tmp_path: Path) -> list[str]:
    env = {**os.environ, "DIAG_CACHE_DIR": str(tmp_path / "cache")}
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout.split()


def test_no_collection_runs_during_the_start_and_a_caller_gets_its_collector_back(tmp_path):
    for _ in range(2):  # the first run fills the knowledge-base cache, the second reads it
        code, collections, in_start, enabled, frozen, printed = _probe(IN_PROCESS, tmp_path)
        assert (code, in_start, enabled, frozen, printed) == ("0", "0", "True", "0", "True")
        assert int(collections) > 0  # the collector ran again for the trace and the diagnosis


def test_the_program_leaves_the_start_frozen_for_its_exit(tmp_path):
    _probe(IN_PROCESS, tmp_path)  # fills the cache
    code, collections, in_start, enabled, still_frozen = _probe(AS_THE_PROGRAM, tmp_path)
    assert (code, in_start, enabled, still_frozen) == ("0", "0", "True", "True")
    assert int(collections) > 0


def test_a_collector_the_caller_turned_off_or_froze_is_left_as_it_was():
    gc.disable()
    try:
        with collector_paused() as started:
            started()
            assert not gc.isenabled() and gc.get_freeze_count() == 0
    finally:
        gc.enable()
    keep = [object() for _ in range(3)]  # noqa: F841  (something of the caller's to freeze)
    gc.freeze()
    try:
        with collector_paused() as started:
            assert gc.isenabled()
            started()
        assert gc.get_freeze_count() > 0 and gc.isenabled()  # theirs is still frozen
    finally:
        gc.unfreeze()


def test_an_error_in_the_start_resumes_the_collector():
    try:
        with collector_paused():
            assert not gc.isenabled()
            raise KeyError("a bad rule file")
    except KeyError:
        pass
    assert gc.isenabled() and gc.get_freeze_count() == 0


# The program as a user runs it, with an object whose finalizer reports the interpreter's teardown.
PROGRAM = """
import os, sys
class Teardown:
    def __del__(self, write=os.write):  # os itself may be cleared by then
        write(2, b"[teardown]")
witness = Teardown()
{extra}
from diag.cli import run
sys.argv = ["diag", *sys.argv[1:]]
run()
"""
AT_EXIT = "import atexit; atexit.register(lambda: os.write(2, b'[atexit]'))"


def _program(tmp_path: Path, *args: str, extra: str = "") -> subprocess.CompletedProcess:
    env = {**os.environ, "DIAG_CACHE_DIR": str(tmp_path / "cache")}
    return subprocess.run([sys.executable, "-c", PROGRAM.format(extra=extra), *args], env=env, capture_output=True,
                          text=True, timeout=300)


def test_explain_skips_the_teardown_with_its_output_and_exit_code_intact(tmp_path, capsys):
    import diag.cli

    assert diag.cli.main(["explain", str(EXAMPLE)]) == 0
    expected = capsys.readouterr().out
    done = _program(tmp_path, "explain", str(EXAMPLE))
    assert (done.returncode, done.stdout, done.stderr) == (0, expected, "")  # no "[teardown]": it was skipped
    bad = _program(tmp_path, "explain", str(tmp_path / "missing.jsonl"))
    assert bad.returncode == 2 and "no such file" in bad.stderr and bad.stderr.endswith("\n")


def test_the_teardown_runs_when_something_is_registered_for_it_or_the_command_did_not_allow_it(tmp_path):
    done = _program(tmp_path, "explain", str(EXAMPLE), extra=AT_EXIT)
    assert done.returncode == 0 and done.stderr == "[atexit][teardown]" and done.stdout.startswith("diag: ")
    other = _program(tmp_path, "rules", "list")  # a command that did not allow it
    assert other.returncode == 0 and other.stderr == "[teardown]"
