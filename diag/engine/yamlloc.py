"""Safe YAML loading that remembers where every key and item came from.

Rule files are data: ``yaml.SafeLoader`` constructs only plain scalars, lists and mappings, so a
``!!python/object`` tag is an error, never an object. Mappings come back as ``LocDict`` and lists
as ``LocList``; both carry the ``(line, col)`` (1-based) of themselves and of each key/item, so a
problem found later (an unknown signal, a misspelled fact) is reported as ``file:line:col``.

Example:
  >>> doc = load_yaml_text("rules:\\n  - id: a\\n    cf: 2\\n", "x.yaml")
  >>> doc["rules"][0].key_pos("cf")
  (3, 5)
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from typing import Any, Iterable

import yaml


@dataclass(frozen=True)
class RuleProblem:
    """A problem in a rule file, at a place a user can jump to."""

    path: str
    line: int
    col: int
    message: str
    rule_id: str | None = None
    severity: str = "error"

    def __str__(self) -> str:
        place = f"{self.path}:{self.line}:{self.col}" if self.line else self.path
        tag = "" if self.severity == "error" else f"{self.severity}: "
        return f"{place}: {tag}{self.message}"


class RuleFileError(Exception):
    """A rule file (or several) cannot be used; carries every problem found."""

    def __init__(self, problems: list[RuleProblem]):
        self.problems = problems
        super().__init__("\n".join(str(p) for p in problems))


class LocDict(dict):
    """A mapping from YAML with positions: ``pos`` of itself, ``key_pos(k)`` and ``value_pos(k)``."""

    pos: tuple[int, int] = (0, 0)

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.keys_at: dict[Any, tuple[int, int]] = {}
        self.values_at: dict[Any, tuple[int, int]] = {}

    def key_pos(self, key) -> tuple[int, int]:
        return self.keys_at.get(key, self.pos)

    def value_pos(self, key) -> tuple[int, int]:
        return self.values_at.get(key, self.key_pos(key))


class LocList(list):
    """A list from YAML with positions of itself and of each item."""

    pos: tuple[int, int] = (0, 0)

    def __init__(self, *args):
        super().__init__(*args)
        self.items_at: list[tuple[int, int]] = []

    def item_pos(self, index: int) -> tuple[int, int]:
        return self.items_at[index] if 0 <= index < len(self.items_at) else self.pos


def _mark(node) -> tuple[int, int]:
    return node.start_mark.line + 1, node.start_mark.column + 1


class _Loader(yaml.SafeLoader):
    """SafeLoader building LocDict/LocList; duplicate keys are errors (a silent overwrite hides a rule)."""

    def construct_mapping(self, node, deep=False):
        if not isinstance(node, yaml.MappingNode):
            raise yaml.constructor.ConstructorError(None, None, "expected a mapping", node.start_mark)
        self.flatten_mapping(node)
        result = LocDict()
        result.pos = _mark(node)
        for key_node, value_node in node.value:
            key = self.construct_object(key_node, deep=True)
            if key in result:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key {key!r}", key_node.start_mark
                )
            result[key] = self.construct_object(value_node, deep=True)
            result.keys_at[key] = _mark(key_node)
            result.values_at[key] = _mark(value_node)
        return result

    def construct_sequence(self, node, deep=False):
        result = LocList(self.construct_object(child, deep=True) for child in node.value)
        result.pos = _mark(node)
        result.items_at = [_mark(child) for child in node.value]
        return result


_Loader.add_constructor("tag:yaml.org,2002:map", _Loader.construct_mapping)
_Loader.add_constructor("tag:yaml.org,2002:seq", _Loader.construct_sequence)


def load_yaml_text(text: str, path: str = "<string>") -> Any:
    """Parse YAML text safely; raise ``RuleFileError`` with ``path:line:col`` on any problem."""
    try:
        return yaml.load(text, Loader=_Loader)  # noqa: S506 - _Loader is a SafeLoader subclass
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        line, col = (mark.line + 1, mark.column + 1) if mark else (0, 0)
        problem = e.problem or str(e)
        if "could not determine a constructor" in problem or "!!python" in problem or "python/" in problem:
            problem = (
                f"{problem.strip()}: rule files are data; YAML tags that build Python objects "
                "(!!python/...) are not allowed"
            )
        raise RuleFileError([RuleProblem(path, line, col, problem)]) from None
    except yaml.YAMLError as e:
        raise RuleFileError([RuleProblem(path, 0, 0, f"not valid YAML: {e}")]) from None


def load_yaml_file(path: str) -> Any:
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except OSError as e:
        raise RuleFileError([RuleProblem(str(path), 0, 0, f"cannot read: {e.strerror}")]) from None
    return load_yaml_text(text, str(path))


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    """`` (did you mean 'x'?)`` for the closest choice, or an empty string."""
    close = difflib.get_close_matches(str(word), sorted(set(choices)), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""
