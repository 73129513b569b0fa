"""Schema errors of a rule file as ``file:line:col: message``, located in the YAML it was read from."""

from __future__ import annotations

from pydantic import BaseModel, ValidationError

from diag.engine.kb.schema import RuleFile
from diag.engine.yamlloc import LocDict, LocList, RuleProblem, did_you_mean


def locate(doc, loc: tuple) -> tuple[int, int]:
    node, pos = doc, getattr(doc, "pos", (1, 1))
    for part in loc:
        if isinstance(node, LocDict) and part in node:
            pos = node.value_pos(part) if not isinstance(node[part], (LocDict, LocList)) else node[part].pos
            if isinstance(node[part], (LocDict, LocList)):
                pos = node.key_pos(part)
            node = node[part]
        elif isinstance(node, LocList) and isinstance(part, int) and part < len(node):
            pos = node.item_pos(part)
            node = node[part]
        else:
            break
    return pos


def key_position(doc, loc: tuple) -> tuple[int, int]:
    parent = doc
    for part in loc[:-1]:
        try:
            parent = parent[part]
        except (KeyError, IndexError, TypeError):
            return locate(doc, loc)
    if isinstance(parent, LocDict):
        return parent.key_pos(loc[-1])
    return locate(doc, loc)


def schema_problems(doc, error: ValidationError, path: str) -> list[RuleProblem]:
    problems = []
    for err in error.errors():
        loc = tuple(err["loc"])
        where = ".".join(str(p) for p in loc)
        if err["type"] == "extra_forbidden":
            line, col = key_position(doc, loc)
            model = model_at(loc[:-1])
            hint = did_you_mean(loc[-1], model.model_fields) if model else ""
            message = f"unknown field {loc[-1]!r}{hint}"
        elif err["type"] == "missing":
            line, col = locate(doc, loc[:-1])
            message = f"missing required field {loc[-1]!r}" + (f" in {'.'.join(map(str, loc[:-1]))}" if loc[:-1] else "")
        else:
            line, col = locate(doc, loc)
            message = f"{where}: {err['msg']}"
            if err["type"] == "literal_error":
                message += f" (got {err.get('input')!r})"
        rule_id = rule_id_at(doc, loc)
        problems.append(RuleProblem(path, line, col, message, rule_id))
    return problems


def model_at(loc: tuple):
    model = RuleFile
    for part in loc:
        if isinstance(part, int):
            continue
        info = model.model_fields.get(part)
        if info is None:
            return None
        annotation = info.annotation
        inner = getattr(annotation, "__args__", None)
        candidate = inner[0] if inner else annotation
        if isinstance(candidate, type) and issubclass(candidate, BaseModel):
            model = candidate
        else:
            return None
    return model


def rule_id_at(doc, loc) -> str | None:
    if len(loc) >= 2 and loc[0] in ("rules", "causes") and isinstance(loc[1], int):
        try:
            return doc[loc[0]][loc[1]].get("id")
        except (KeyError, IndexError, AttributeError, TypeError):
            return None
    return None
