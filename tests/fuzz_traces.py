"""Mutations of real recorded traces, and the property every mutated trace must keep.

Shared by the property-based test (``tests/test_fuzz_traces.py``, hypothesis drives the choices)
and the long run (``benchmarks/fuzz_traces.py``, seeded ``random.Random``). Each mutation takes the
bytes of a real trace from ``tests/traces/`` and a ``random.Random`` and returns new bytes:

byte flips, truncation, line duplication, type swaps, deep nesting, huge numbers, odd unicode
(lone surrogates, NUL and control characters, invalid UTF-8, right-to-left marks), and headers
of another schema version.

The property (``check``): reading, summarizing and diagnosing the mutated file raises nothing but
``DiagInputError`` (the documented "bad input" error, exit 2), every rendered output encodes as
UTF-8, and every intact line (byte-identical to a valid line of the original) is kept.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from pathlib import Path

TRACES = Path(__file__).parent / "traces"
# Real traces from real (small) training runs; the first lines keep each case fast.
SOURCES = ("healthy", "lr_too_high", "nan_in_input", "overfitting", "leakage", "fp16_overflow", "bad_gradient")
LINES_PER_SOURCE = 40


def source_lines(name: str) -> list[bytes]:
    return (TRACES / f"{name}.jsonl").read_bytes().split(b"\n")[:LINES_PER_SOURCE]


def _pick_line(lines: list[bytes], rng: random.Random) -> int:
    return rng.randrange(len(lines))


def _edit_value(lines: list[bytes], rng: random.Random, make) -> list[bytes]:
    """Replace one value somewhere in one record (object member or array item) with ``make(old)``."""
    index = _pick_line(lines, rng)
    try:
        record = json.loads(lines[index])
    except ValueError:
        return lines
    containers = []

    def walk(node):
        if isinstance(node, dict):
            containers.append(node)
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            containers.append(node)
            for value in node:
                walk(value)

    walk(record)
    container = rng.choice(containers)
    if isinstance(container, dict) and container:
        key = rng.choice(list(container))
        container[key] = make(container[key], rng)
    elif isinstance(container, list) and container:
        at = rng.randrange(len(container))
        container[at] = make(container[at], rng)
    text = _dumps(record)
    return lines[:index] + [text] + lines[index + 1:]


def _dumps(value) -> bytes:
    # ensure_ascii=False keeps odd characters raw; surrogates need the escaped form.
    try:
        return json.dumps(value, ensure_ascii=False, allow_nan=True).encode("utf-8")
    except UnicodeEncodeError:
        return json.dumps(value, ensure_ascii=True, allow_nan=True).encode("ascii")


# ---------------------------------------------------------------------- mutations


def byte_flips(data: bytes, rng: random.Random) -> bytes:
    out = bytearray(data)
    for _ in range(rng.randint(1, 8)):
        at = rng.randrange(len(out))
        out[at] ^= 1 << rng.randrange(8)
    return bytes(out)


def truncation(data: bytes, rng: random.Random) -> bytes:
    return data[: rng.randrange(len(data) + 1)]


def line_duplication(data: bytes, rng: random.Random) -> bytes:
    lines = data.split(b"\n")
    for _ in range(rng.randint(1, 4)):
        lines.insert(rng.randrange(len(lines) + 1), lines[_pick_line(lines, rng)])
    return b"\n".join(lines)


_SWAPS = ("text", 1, -3, 2.5, True, None, [], {}, [1, "a"], {"x": 1}, 2**63, -(2**63) - 1)


def type_swap(data: bytes, rng: random.Random) -> bytes:
    return b"\n".join(_edit_value(data.split(b"\n"), rng, lambda old, r: r.choice(_SWAPS)))


def deep_nesting(data: bytes, rng: random.Random) -> bytes:
    depth = rng.choice((64, 600, 5_000, 100_000))
    opener, closer = rng.choice(((b"[", b"]"), (b'{"a":', b"}")))
    nested = opener * depth + b"1" + closer * depth
    lines = data.split(b"\n")
    index = _pick_line(lines, rng)
    line = lines[index]
    colon = line.find(b":", rng.randrange(max(len(line), 1)))
    if colon < 0 or rng.random() < 0.3:
        lines.insert(index, b'{"kind":"step","step":7,"metrics":' + nested + b"}")
    else:  # replace the value after a colon, up to the next comma
        end = line.find(b",", colon)
        lines[index] = line[: colon + 1] + nested + (line[end:] if end > 0 else b"}")
    return b"\n".join(lines)


def huge_numbers(data: bytes, rng: random.Random) -> bytes:
    def make(old, r):
        return r.choice((10 ** r.choice((19, 20, 40, 400, 4000)), -(10 ** 30), 1e308, float("inf"),
                         float("nan"), 2**64, 9.999e-320))
    lines = data.split(b"\n")
    if rng.random() < 0.3:  # a literal beyond any float, written as text
        index = _pick_line(lines, rng)
        digits = b"9" * rng.choice((30, 5000))  # prefixed to the step number: still valid JSON
        lines[index] = lines[index].replace(b'"step":', b'"step":' + digits, 1)
        return b"\n".join(lines)
    return b"\n".join(_edit_value(lines, rng, make))


_ODD_TEXT = ("\ud800", "\udfff", "a\x00b", "\x1b[31m", "\u202eevil", "e\u0301\u0301\u0301", "\ufeff",
             "\U0001f600", "\u2028", "x" * 5000)


def odd_unicode(data: bytes, rng: random.Random) -> bytes:
    lines = data.split(b"\n")
    if rng.random() < 0.3:  # raw bytes that are not UTF-8 at all, inside a string
        index = _pick_line(lines, rng)
        quote = lines[index].find(b'"', rng.randrange(max(len(lines[index]), 1)))
        if quote >= 0:
            junk = rng.choice((b"\xff", b"\xc3", b"\xed\xa0\x80", b"\xf4\x90\x80\x80"))
            lines[index] = lines[index][: quote + 1] + junk + lines[index][quote + 1:]
        return b"\n".join(lines)

    def make(old, r):
        text = r.choice(_ODD_TEXT)
        return text if not isinstance(old, str) or r.random() < 0.5 else old + text
    if rng.random() < 0.3:  # an odd key
        index = _pick_line(lines, rng)
        try:
            record = json.loads(lines[index])
        except ValueError:
            return data
        if isinstance(record, dict):
            record[rng.choice(_ODD_TEXT)] = 1
            lines[index] = _dumps(record)
        return b"\n".join(lines)
    return b"\n".join(_edit_value(lines, rng, make))


def other_version(data: bytes, rng: random.Random) -> bytes:
    """A header of another schema version anywhere in the file (a second run, or a foreign file)."""
    lines = data.split(b"\n")
    header = json.loads(lines[0])
    header["schema"] = rng.choice(("diag.trace/1.1", "diag.trace/1.10", "diag.trace/2", "diag.trace/0.9",
                                   "other.format/1", "diag.trace/", "diag.trace/x", 1))
    header["run_id"] = "second"
    # After the first line: a file that starts with another format's header is not a diag trace.
    lines.insert(rng.randrange(1, len(lines) + 1), _dumps(header))
    return b"\n".join(lines)


MUTATIONS = {f.__name__: f for f in (byte_flips, truncation, line_duplication, type_swap, deep_nesting,
                                     huge_numbers, odd_unicode, other_version)}


def mutate(name: str, data: bytes, rng: random.Random, rounds: int = 1) -> bytes:
    for _ in range(rounds):
        data = MUTATIONS[name](data, rng) if data else data
    return data


# ---------------------------------------------------------------------- the property


@dataclass
class Outcome:
    """What one case did: ``refused`` (DiagInputError), the records kept, the intact lines lost."""

    refused: str | None
    kept: int
    intact: int
    lost: list[int]


def intact_lines(original: list[bytes], mutated: bytes) -> list[int]:
    """1-based numbers of the mutated file's lines that are byte-identical to a valid original line."""
    valid = {line for line in original if line.strip()}
    return [number for number, line in enumerate(mutated.split(b"\n"), 1) if line in valid]


def check(path: Path, original: list[bytes], kb, *, diagnose_it: bool = True) -> Outcome:
    """Read, summarize and diagnose ``path``; raise AssertionError where the property breaks.

    ``diagnose_it=False`` stops after the summary (the long run diagnoses a share of its cases:
    the diagnosis costs ten times the reading).
    """
    from diag.engine.api import diagnose
    from diag.engine.render import render_text
    from diag.errors import DiagInputError
    from diag.summary import render_text as render_summary
    from diag.summary import summarize
    from diag.trace import load_trace
    from diag.trace.reader import read_records

    intact = intact_lines(original, path.read_bytes())
    try:
        result = read_records(path)
    except DiagInputError as e:
        message = str(e)
        assert len(message) < 2_000, f"an error message of {len(message)} characters"
        assert not intact, f"refused a file with {len(intact)} intact lines: {message[:300]}"
        return Outcome(refused=message, kept=0, intact=0, lost=[])
    lost = sorted(set(intact) - set(result.lines))
    for problem in result.problems:
        assert len(str(problem)) < 2_000, f"a problem message of {len(str(problem))} characters"
    trace = None
    for run in (None, 1):  # the last run, else the first
        try:
            trace = load_trace(path, run=run)
            break
        except DiagInputError as e:
            # A run may be refused only when it holds nothing to diagnose (a header alone, or
            # only lines that are not records); the records of the file were checked above.
            message = str(e)
            assert len(message) < 2_000, f"an error message of {len(message)} characters"
            assert "holds a header but no" in message or "runs in this file" in message, message[:300]
    if trace is None:
        return Outcome(refused=message, kept=len(result.records), intact=len(intact), lost=lost)
    summary = summarize(trace)
    summary.model_dump_json(by_alias=True, indent=2).encode("utf-8")
    render_summary(summary).encode("utf-8")
    if not diagnose_it:
        return Outcome(refused=None, kept=len(result.records), intact=len(intact), lost=lost)
    diagnosis = diagnose(trace, kb=kb)
    diagnosis.to_json().encode("utf-8")
    render_text(diagnosis, trace_arg=str(path)).encode("utf-8")
    return Outcome(refused=None, kept=len(result.records), intact=len(intact), lost=lost)
