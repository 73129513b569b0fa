"""Small parsers shared by the clause kinds: positions, allowed keys, ``fn(arg=N)`` calls,
``within:`` bounds, ``ramp:`` pairs, ``as:`` names, and the names a ``when:`` tree binds.
"""

from __future__ import annotations

import re

from diag.engine.conditions.clause import ClauseError
from diag.engine.facts import CONTEXT_TYPES, FACT_TYPE
from diag.engine.yamlloc import LocDict, did_you_mean


def node_pos(node, key=None) -> tuple[int, int]:
    if isinstance(node, LocDict):
        return node.value_pos(key) if key is not None else node.pos
    return getattr(node, "pos", (0, 0))


def parse_fn_call(text: str, pos) -> tuple[str, dict]:
    m = re.fullmatch(r"\s*([a-z_0-9]+)\s*(?:\((.*)\))?\s*", str(text))
    if not m:
        raise ClauseError(f"signal fn {text!r} is not 'name' or 'name(arg=value, ...)'", pos)
    name, inner = m.group(1), m.group(2)
    args: dict = {}
    if inner and inner.strip():
        for part in inner.split(","):
            km = re.fullmatch(r"\s*([a-z_]+)\s*=\s*(-?[0-9.eE+]+)\s*", part)
            if not km:
                raise ClauseError(f"signal fn argument {part.strip()!r} is not name=number", pos)
            args[km.group(1)] = float(km.group(2))
    return name, args


def check_keys(node: LocDict, allowed, what: str) -> None:
    for key in node:
        if key not in allowed:
            raise ClauseError(f"unknown key {key!r} in {what}{did_you_mean(key, allowed)}", node.key_pos(key))


def parse_within_bound(value, pos):
    if value is None:
        return None
    if isinstance(value, str) and value.strip().endswith("%"):
        try:
            return ("pct", float(value.strip()[:-1]) / 100.0)
        except ValueError:
            raise ClauseError(f"within bound {value!r} is not a number of steps or a percentage", pos) from None
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return ("step", float(value))
    raise ClauseError(f"within bound {value!r} is not a number of steps or a percentage like '50%'", pos)


def parse_ramp(value, pos) -> tuple[float, float]:
    if (not isinstance(value, list) or len(value) != 2
            or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value) or value[0] == value[1]):
        raise ClauseError("ramp takes two different numbers [lo, hi]", pos)
    return float(value[0]), float(value[1])


RESERVED = ("true", "false", "inf", "nan", "null", "and", "in", "or", "not", "for", "if", "else")


def check_bound_name(node) -> None:
    for holder in (node, *(node[k] for k in ("signal", "record") if isinstance(node.get(k), dict))):
        name = holder.get("as")
        if name is None:
            continue
        where = holder.key_pos("as") if isinstance(holder, LocDict) else (0, 0)
        if not isinstance(name, str) or not re.fullmatch(r"[a-z][a-z0-9_]*", name):
            raise ClauseError(f"as: {name!r} must be a lowercase name like 'spike'", where)
        if name in RESERVED or name in CONTEXT_TYPES:
            raise ClauseError(f"as: {name!r} is a reserved word or a context name; pick another name", where)


def expression_types(bound_names) -> dict:
    types = dict(CONTEXT_TYPES)
    for name in bound_names:
        types[name] = FACT_TYPE
    return types


def bound_names_of(when) -> set[str]:
    """Every ``as:`` name in a raw ``when`` tree, plus the default names ``signal``/``record``."""
    names: set[str] = set()

    def visit(node):
        if isinstance(node, dict):
            if isinstance(node.get("as"), str):
                names.add(node["as"])
            for key in ("signal", "record"):
                if isinstance(node.get(key), dict) and isinstance(node[key].get("as"), str):
                    names.add(node[key]["as"])
                if key in node:
                    names.add(key)
            for key in ("all", "any"):
                if isinstance(node.get(key), list):
                    for child in node[key]:
                        visit(child)
            if "not" in node:
                visit(node["not"])

    visit(when)
    return names
