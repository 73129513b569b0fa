"""What the reader accepts from a file it does not trust: sizes, nesting, numbers and text.

A trace may be damaged (a disk error, a bad copy, a writer bug) or hostile. Every limit here turns
what would have been a crash (a RecursionError, an int64 overflow, a message holding a megabyte
of repr, a lone surrogate that cannot be printed) into a skipped line with a reason, and the
reading goes on. The limits are far beyond what any recorder writes:

* a line holds at most ``MAX_LINE_BYTES`` (a 1,000-layer header is about 200 kB);
* values nest at most ``MAX_DEPTH`` levels (records nest 5);
* integer fields (steps, counts) lie within ``MAX_INTEGER`` (2**53: exact as a float, no int64
  overflow in sums), and no number in a line is an integer beyond int64;
* text is valid Unicode: a lone surrogate (``"\\ud800"``, legal JSON, unprintable) becomes U+FFFD.

Messages quote values through ``excerpt``: bounded, escaped, never recursive.

Example:
  >>> excerpt("x" * 500)[:12], len(excerpt("x" * 500)) < 80
  ("'xxxxxxxxxxx", True)
  >>> check_value({"kind": "eval", "step": 2**64})
  'integer at step is out of range (at most 9.01e+15 in magnitude)'
"""

from __future__ import annotations

import reprlib

MAX_LINE_BYTES = 16 << 20
MAX_DEPTH = 32
MAX_INTEGER = 2**53  # an integer field (a step, a count) of a validated record
MAX_RAW_INTEGER = 2**63 - 1  # any integer in a line (a float field may hold a large int)

_REPR = reprlib.Repr()
_REPR.maxlevel = 3
_REPR.maxstring = 48
_REPR.maxother = 48
_REPR.maxlong = 24
_REPR.maxlist = _REPR.maxtuple = _REPR.maxdict = _REPR.maxset = 4


def excerpt(value, limit: int = 72) -> str:
    """A short, escaped repr of any value (bounded in length and depth; control characters escaped)."""
    try:
        text = _REPR.repr(value)
    except (RecursionError, ValueError):  # ValueError: int too large for str()
        text = f"<{type(value).__name__}>"
    text = text.encode("ascii", "backslashreplace").decode("ascii")
    return text if len(text) <= limit else text[: limit - 3] + "..."


def check_value(value, max_integer: int = MAX_INTEGER) -> str | None:
    """Why a parsed JSON value is out of bounds (depth, integer range), or None when it is fine.

    Iterative, so a value nested a million levels deep costs no recursion.
    """
    stack = [(value, 1, "")]
    while stack:
        node, depth, where = stack.pop()
        if isinstance(node, dict):
            if depth > MAX_DEPTH:
                return f"value nests deeper than {MAX_DEPTH} levels{_at(where)}"
            stack.extend((v, depth + 1, f"{where}.{k}" if where else str(k)) for k, v in node.items())
        elif isinstance(node, list):
            if depth > MAX_DEPTH:
                return f"value nests deeper than {MAX_DEPTH} levels{_at(where)}"
            stack.extend((v, depth + 1, f"{where}[{i}]") for i, v in enumerate(node))
        elif type(node) is int and not -max_integer <= node <= max_integer:
            return f"integer{_at(where)} is out of range (at most {max_integer:.3g} in magnitude)"
    return None


def _at(where: str) -> str:
    return f" at {excerpt(where, 60)[1:-1]}" if where else ""


def has_surrogates(value) -> bool:
    """True when any string (key or value) holds a lone surrogate."""
    stack = [value]
    while stack:
        node = stack.pop()
        if isinstance(node, str):
            if _is_unpaired(node):
                return True
        elif isinstance(node, dict):
            stack.extend(node.keys())
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)
    return False


def replace_surrogates(value):
    """``value`` with every lone surrogate in its strings replaced by U+FFFD (iteratively rebuilt)."""
    if isinstance(value, str):
        return _clean(value)
    if isinstance(value, list):
        return [replace_surrogates(v) for v in value]
    if isinstance(value, dict):
        return {_clean(k) if isinstance(k, str) else k: replace_surrogates(v) for k, v in value.items()}
    return value


def _is_unpaired(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def _clean(text: str) -> str:
    if not _is_unpaired(text):
        return text
    return "".join("\ufffd" if 0xD800 <= ord(ch) <= 0xDFFF else ch for ch in text)


__all__ = ["MAX_DEPTH", "MAX_INTEGER", "MAX_RAW_INTEGER", "MAX_LINE_BYTES", "check_value", "excerpt", "has_surrogates",
           "replace_surrogates"]
