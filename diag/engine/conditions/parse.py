"""Compiling a clause mapping of a rule file into a ``Clause`` (at load time, with positions).

Example:
  >>> clause = compile_clause({"signal": {"series": "loss", "fn": "non_finite"}}, "x.yaml", set())
  >>> clause.kind, clause.series
  ('signal', 'loss')
"""

from __future__ import annotations

from typing import Any

from diag.engine.conditions.clause import CLAUSE_KINDS, MODIFIERS, Clause, ClauseError
from diag.engine.conditions.quick_check import first_error, located
from diag.engine.conditions.signal_syntax import compile_signal
from diag.engine.conditions.syntax import check_bound_name, check_keys, expression_types, node_pos, parse_ramp
from diag.engine.expressions import ExpressionError, compile_expression
from diag.engine.facts import CONTEXT_TYPES, FACT_TYPE, RECORD_TYPES
from diag.engine.yamlloc import LocDict, did_you_mean


def compile_clause(node: Any, path: str, bound_names: set[str], *, depth: int = 0) -> Clause:
    """Compile one clause mapping (``bound_names`` are all ``as:`` names of the rule).

    Raises:
      ClauseError: with the position of the offending key or value.
    """
    if depth > 12:
        raise ClauseError("condition nests deeper than 12 levels", node_pos(node))
    if not isinstance(node, dict):
        raise ClauseError(f"a clause is a mapping like {{signal: ...}} or {{fact: ...}}, not {node!r}", node_pos(node))
    kinds = [k for k in node if k in CLAUSE_KINDS]
    unknown = [k for k in node if k not in CLAUSE_KINDS and k not in MODIFIERS]
    if unknown:
        key = unknown[0]
        pos = node.key_pos(key) if isinstance(node, LocDict) else (0, 0)
        raise ClauseError(f"unknown clause key {key!r}{did_you_mean(key, CLAUSE_KINDS + MODIFIERS)}", pos)
    if len(kinds) != 1:
        raise ClauseError(f"a clause needs exactly one of {', '.join(CLAUSE_KINDS)}; found {kinds or 'none'}",
                          node_pos(node))
    kind = kinds[0]
    body = node[kind]
    check_bound_name(node)
    pos = node.key_pos(kind) if isinstance(node, LocDict) else (0, 0)
    types = expression_types(bound_names)
    clause = Clause(kind=kind, text="", pos=pos, as_=node.get("as"))

    def expr(text, where_pos):
        try:
            return compile_expression(text, types)
        except ExpressionError as e:
            raise ClauseError(str(e), where_pos) from None

    if kind in ("all", "any"):
        if not isinstance(body, list) or not body:
            raise ClauseError(f"{kind}: takes a non-empty list of clauses", pos)
        clause.children = [compile_clause(child, path, bound_names, depth=depth + 1) for child in body]
        clause.text = f"{kind} of {len(body)}"
    elif kind == "not":
        clause.children = [compile_clause(body, path, bound_names, depth=depth + 1)]
        clause.text = f"not ({clause.children[0].text})"
    elif kind in ("context", "expr"):
        if not isinstance(body, str):
            what = "list" if isinstance(body, list) else "mapping" if isinstance(body, dict) else type(body).__name__
            raise ClauseError(f"{kind}: takes an expression (a string such as 'lr > 0.1'), not a {what}",
                              node_pos(node, kind))
        clause.expression = expr(body, node_pos(node, kind))
        clause.text = str(body)
    elif kind in ("fact", "absent"):
        if not isinstance(body, str):
            raise ClauseError(f"{kind}: takes a fact id", pos)
        modifiers = {key: node[key] for key in ("as", "before", "after", "where") if key in node}
        refused = first_error("fact", {"fact_id": body, **modifiers})
        if refused is not None:
            raise ClauseError(f"{kind} {refused[1]}", located(node, refused[0]))
        clause.fact_id = body
        clause.before, clause.after = node.get("before"), node.get("after")
        for key in ("before", "after"):
            ref = node.get(key)
            if ref is not None and ref not in bound_names:
                raise ClauseError(f"{key}: {ref!r} is not a name bound with as:{did_you_mean(ref, bound_names)}",
                                  node_pos(node, key))
        if "where" in node:
            clause.where = expr(node["where"], node_pos(node, "where"))
        clause.text = f"{kind} {body}" + (f" before {clause.before}" if clause.before else "") + (
            f" after {clause.after}" if clause.after else "")
    elif kind == "record":
        if not isinstance(body, dict):
            raise ClauseError("record: takes a mapping {kind: data|check|eval|event, where: '...'}", pos)
        check_keys(body, ("kind", "where", "as", "ramp", "ramp_of"), "record")
        refused = first_error("record", body)
        if refused is not None and refused[0][0] not in ("kind", "ramp"):  # those two are checked below
            raise ClauseError(f"record {refused[1]}", located(body, refused[0]))
        record_kind = body.get("kind")
        if record_kind not in RECORD_TYPES:
            raise ClauseError(f"record kind {record_kind!r} is not one of {', '.join(RECORD_TYPES)}"
                              f"{did_you_mean(record_kind, RECORD_TYPES)}", node_pos(body, "kind"))
        clause.record_kind = record_kind
        clause.as_ = clause.as_ or body.get("as")
        rtypes = {**CONTEXT_TYPES, **RECORD_TYPES[record_kind]}
        for name in bound_names:
            rtypes[name] = FACT_TYPE
        if "where" in body:
            try:
                clause.expression = compile_expression(body["where"], rtypes)
            except ExpressionError as e:
                raise ClauseError(str(e), node_pos(body, "where")) from None
        ramp_of = body.get("ramp_of", node.get("ramp_of"))
        ramp = body.get("ramp", node.get("ramp"))
        if ramp is not None:
            clause.ramp = parse_ramp(ramp, node_pos(body, "ramp"))
            if ramp_of not in RECORD_TYPES[record_kind]:
                raise ClauseError(f"ramp_of must name a {record_kind} attribute"
                                  f"{did_you_mean(ramp_of, RECORD_TYPES[record_kind])}", node_pos(body, "ramp"))
            clause.ramp_of = ramp_of
        clause.text = f"record {record_kind}" + (f" where {body['where']}" if "where" in body else "")
    elif kind == "signal":
        compile_signal(clause, body, pos)
        if node.get("ramp") is not None:
            clause.ramp = parse_ramp(node["ramp"], node_pos(node, "ramp"))
    return clause
