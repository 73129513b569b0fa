"""The runs of a trace file: a run recorded again to the same path appends a second header.

Each header that follows records starts a new run. ``find_runs`` searches a file for them before
it is read; ``RunWatch`` applies the same definition line by line while a file is read once.
"""

from __future__ import annotations

from pathlib import Path

from diag.errors import Problem
from diag.trace.limits import MAX_LINE_BYTES
from diag.trace.parse import loads

ALL_RUNS = 0  # ``run=ALL_RUNS``: read every run of a file as one (what read_records does)


class SeveralRuns(Exception):
    """A one-pass reading met a second run (it reads the file again, runs first)."""


class RunWatch:
    """``find_runs``' definition of a run's first line, applied line by line during a reading.

    A line starts a run when it is a header (at most ``MAX_LINE_BYTES``, holds the bytes
    ``"header"``, parses to an object whose kind is ``"header"``) and a record line (any other
    line that is not blank) came since the last header or the top.

    Args:
      stop: raise ``SeveralRuns`` at the second run's first line.
      restart: called at each run's first line after the first, before the line is fed.
    """

    def __init__(self, stop: bool = False, restart=None):
        self.starts = [1]
        self.pending = False  # a record line since the last header (or the top)
        self.stop = stop
        self.restart = restart

    def header(self, number: int, line: bytes, raw) -> bool:
        """Note a parsed line; True when it is a header by find_runs' definition."""
        if type(raw) is dict and raw.get("kind") == "header" and b'"header"' in line:
            if self.pending:
                if self.stop:
                    raise SeveralRuns
                self.starts.append(number)
                if self.restart is not None:
                    self.restart()
            self.pending = False
            return True
        self.pending = True
        return False


def find_runs(path: Path) -> list[int]:
    """The first line of each run in a JSONL file: line 1, then each header that follows records.

    A header right after another header (or at the top) does not start a run: only records do.
    Only lines holding the bytes ``"header"`` are looked at (found with ``bytes.find``, so the
    rest of the file is never split into lines) and parsed; between two of them, any byte that is
    not whitespace is a record. This costs about one ``memchr`` pass over the file.
    """
    starts = [1]
    pending = False  # a record line since the last header (or the top)
    line_base = 0  # lines before ``buffer``
    rest = b""
    with open(path, "rb") as handle:
        while True:
            chunk = handle.read(1 << 20)
            buffer = rest + chunk
            end = buffer.rfind(b"\n") + 1 if chunk else len(buffer)  # complete lines (all of it at the end)
            rest = buffer[end:] if chunk else b""
            done = 0  # bytes of ``buffer`` accounted for
            counted = 0  # newlines counted in buffer[:done]
            at = buffer.find(b'"header"', 0, end)
            while at != -1:
                start = buffer.rfind(b"\n", 0, at) + 1
                stop = buffer.find(b"\n", at, end)
                stop = end if stop == -1 else stop
                if buffer[done:start].strip():
                    pending = True
                counted += buffer.count(b"\n", done, start)
                line = buffer[start:stop]
                if len(line) <= MAX_LINE_BYTES and _is_header(line):
                    if pending:
                        starts.append(line_base + counted + 1)
                        pending = False
                else:
                    pending = True
                done = min(stop + 1, end)
                counted += 1 if stop < end else 0
                at = buffer.find(b'"header"', done, end) if done < end else -1
            if buffer[done:end].strip():
                pending = True
            line_base += counted + buffer.count(b"\n", done, end)
            if not chunk:
                break
    return starts


def _is_header(line: bytes) -> bool:
    try:
        raw = loads(line)
    except ValueError:
        return False
    return isinstance(raw, dict) and raw.get("kind") == "header"


def runs_warning(path: Path, starts: list[int], chosen: int) -> Problem:
    first = starts[chosen - 1]
    last = starts[chosen] - 1 if chosen < len(starts) else None
    span = f"lines {first}-{last}" if last else f"from line {first}"
    which = "the last" if chosen == len(starts) else f"run {chosen}"
    return Problem(
        str(path), f"the file holds {len(starts)} runs (starting at lines {', '.join(map(str, starts))}): a run was "
        f"recorded again to the same path; read {which}, {span} (--run N reads another)", severity="warning")
