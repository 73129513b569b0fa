"""One JSON value of a trace, parsed: orjson first, the standard library for what orjson refuses.

Other writers emit the bare tokens NaN and Infinity, which orjson does not read. ``loads`` raises
ValueError for anything unreadable, never a RecursionError or Python's huge-integer error.
"""

from __future__ import annotations

import json

import orjson

from diag.trace.limits import MAX_DEPTH, has_surrogates, replace_surrogates


def loads(text: bytes):
    """Parse one JSON value; also accepts the bare NaN/Infinity tokens other writers emit.

    Raises ValueError (never RecursionError or a huge-integer error) for anything unreadable; a
    lone surrogate in a string becomes U+FFFD.
    """
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError as e:
        if "depth limit" in str(e) or "recursion" in str(e):
            raise ValueError(f"the value nests too deeply (a record nests at most {MAX_DEPTH} levels)") from None
    try:
        value = json.loads(text, parse_int=_integer)
    except RecursionError:
        raise ValueError(f"the value nests too deeply (a record nests at most {MAX_DEPTH} levels)") from None
    return replace_surrogates(value) if has_surrogates(value) else value


def _integer(digits: str) -> int:
    if len(digits.lstrip("-")) > 19:  # past int64: refused before Python's digit-limit error
        raise ValueError(f"integer of {len(digits)} digits is out of range")
    return int(digits)
