"""On a terminal, ask what the command line did not say: which run, and which metric is the loss.

A folder of several runs and a log whose metric names diag does not know are the two places an
import cannot decide alone. In a script or CI the answer is a flag (``--run NAME``, ``--map
NAME=FIELD``) and a missing one is a clear error or an honest "not checked"; on a terminal the
command asks once instead, then prints the flags that would have said it, so the next run needs no
questions. The caller decides when asking is allowed (``diag.cli.import_cmd.interactive``: a TTY
on both ends, not CI, no ``--no-input``); this module only asks.
"""

from __future__ import annotations

import shlex
import sys
from typing import TextIO

from diag.adapters.importers.discover import Detected, pick_run
from diag.adapters.importers.names import NameMap

# Fields worth a question when a log does not fill them, and how the question names them.
ASKED_FIELDS = (("loss", "the training loss"), ("eval.val.loss", "the validation loss"))
# Built-in patterns that only keep a name as a plain metric: a name they catch is "unmapped".
_CATCH_ALL = {"*", "train_*", "train/*"}
_MAX_LISTED = 30
_TRIES = 3


def unmapped_names(names: NameMap, metric_names) -> list[str]:
    """The log's names that only the built-in catch-all patterns kept (as ``metrics.NAME``)."""
    found = []
    for name in metric_names:
        rank = names.rank(name)
        pattern = names.patterns[rank] if rank < len(names.patterns) else None
        if pattern is None or (pattern.text in _CATCH_ALL and pattern.origin.endswith("(built in)")):
            found.append(name)
    return found


def ask_run(found: Detected, stdin: TextIO = sys.stdin, out: TextIO = sys.stderr) -> str | None:
    """The run the user picks from ``found.runs`` (a number or a name); None when they give none."""
    runs = found.runs
    print(f"{found.path} holds {len(runs)} runs:", file=out)
    for number, ref in enumerate(runs[:_MAX_LISTED], 1):
        print(f"  {number:>3}. {ref.name}  ({ref.source})", file=out)
    if len(runs) > _MAX_LISTED:
        print(f"  ... and {len(runs) - _MAX_LISTED} more (type a name)", file=out)
    for _ in range(_TRIES):
        answer = _ask(f"which run? [1-{len(runs)} or a name, Enter: none] ", stdin, out)
        if not answer:
            return None
        if answer.isdigit() and 1 <= int(answer) <= len(runs):
            chosen = runs[int(answer) - 1].name
        else:
            try:
                chosen = pick_run(found, answer).name
            except Exception:  # noqa: BLE001 - a DiagInputError: not a run of this log; ask again
                print(f"  {answer!r} is not one of the runs", file=out)
                continue
        print(f"diag: run {chosen} (next time: --run {_quoted(chosen)})", file=out)
        return chosen
    return None


def ask_names(log, names: NameMap, stdin: TextIO = sys.stdin, out: TextIO = sys.stderr) -> NameMap:
    """``names`` plus the user's answers for the fields in ``ASKED_FIELDS`` the log does not fill.

    Args:
      log: the run's ``ScalarLog`` (its metric names).
      names: the mapping the command would use.

    Returns:
      ``names`` itself when nothing was asked or answered, else a new ``NameMap`` with the answers
      in front (as ``--map`` entries would be).
    """
    filled = {names.field_for(name) for name in log.series}
    candidates = unmapped_names(names, log.series)
    answers: list[str] = []
    for field, words in ASKED_FIELDS:
        if field in filled or not candidates:
            continue
        print(f"{log.path}: no metric diag knows as {words} ({field}). Metrics it does not know:", file=out)
        shown = candidates[:_MAX_LISTED]
        for number, name in enumerate(shown, 1):
            print(f"  {number:>3}. {name}", file=out)
        span = "1" if len(shown) == 1 else f"1-{len(shown)}"
        choice = _ask_number(f"which one is {words}? [{span}, Enter: none] ", len(shown), stdin, out)
        if choice is None:
            continue
        name = shown[choice - 1]
        answers.append(f"{name}={field}")
        candidates.remove(name)
    if not answers:
        return names
    flags = " ".join(f"--map {_quoted(entry)}" for entry in answers)
    print(f"diag: next time, skip these questions with: {flags}", file=out)
    return NameMap.load(extra=[*answers, *_user_entries(names)], files=())


def _user_entries(names: NameMap) -> list[str]:
    """The ``--map``/``--names`` entries already in ``names`` (kept behind the answers)."""
    return [f"{p.text}={p.target}" for p in names.patterns if not p.origin.endswith("(built in)")]


def _ask(question: str, stdin: TextIO, out: TextIO) -> str:
    print(question, end="", file=out, flush=True)
    line = stdin.readline()
    if not line:  # end of input: no answer
        print(file=out)
    return line.strip()


def _ask_number(question: str, top: int, stdin: TextIO, out: TextIO) -> int | None:
    for _ in range(_TRIES):
        answer = _ask(question, stdin, out)
        if not answer:
            return None
        if answer.isdigit() and 1 <= int(answer) <= top:
            return int(answer)
        print(f"  type a number from 1 to {top}, or Enter for none", file=out)
    return None


def _quoted(text: str) -> str:
    return shlex.quote(text)


__all__ = ["ASKED_FIELDS", "ask_names", "ask_run", "unmapped_names"]
