"""What a record that fails validation is told: pydantic's errors in a trace reader's words."""

from __future__ import annotations

from pydantic import ValidationError

from diag.errors import Problem
from diag.trace.limits import excerpt
from diag.trace.records import RECORD_KINDS


def validation_problems(error: ValidationError, raw: dict, source: str, number: int,
                        where: str | None) -> list[Problem]:
    """A problem per field pydantic refused (the first five), each naming the field and what was wrong."""
    problems = []
    for err in error.errors(include_url=False)[:5]:
        loc = [str(part) for part in err["loc"]]
        if loc and loc[0] == raw.get("kind"):
            loc = loc[1:]  # pydantic puts the union tag first
        if loc and loc[0] == raw.get("event"):
            loc = loc[1:]
        name = ".".join(loc) or "kind"
        if where:
            name = f"{where}.{name}"
        if len(name) > 80 or not name.isprintable():  # a field name is the file's text too
            name = excerpt(name, 80)
        problems.append(Problem(source, f"{_explain_error(err, raw)}; record skipped", line=number, field=name))
    return problems


def _explain_error(err: dict, raw: dict) -> str:
    kind = err["type"]
    if kind in ("union_tag_invalid", "union_tag_not_found"):
        tag = "event" if raw.get("kind") == "event" else "kind"
        allowed = err.get("ctx", {}).get("expected_tags") or (", ".join(RECORD_KINDS) if tag == "kind" else "")
        got = raw.get(tag)
        if got is None:
            return (f"missing '{tag}' (a trace record says what it is: 'kind' is one of {allowed})" if tag == "kind"
                    else f"missing '{tag}'; expected one of {allowed}")
        return f"unknown {tag} {excerpt(got)}; expected one of {allowed}"
    if kind == "extra_forbidden":
        return "unknown field (check its spelling against `diag schema`)"
    if kind == "missing":
        return "required field is missing"
    return f"{err['msg']} (got {short_repr(err.get('input'))})"


def short_repr(value, limit: int = 60) -> str:
    """A bounded, escaped excerpt of a value for a message (never the whole of a huge value)."""
    if isinstance(value, Exception):
        value = str(value)[:limit]
    return excerpt(value, limit)

