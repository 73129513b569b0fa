"""Safe YAML loading that remembers where every key and item came from.

Rule files are data: ``yaml.SafeLoader`` constructs only plain scalars, lists and mappings, so a
``!!python/object`` tag is an error, never an object. A rule folder may come from anyone, so the
reading is bounded too: only regular files (not a FIFO, a device or a link to one) of at most
``MAX_RULE_FILE_BYTES`` are read, the text must be UTF-8, and YAML aliases (``*name``) are refused,
which rules out alias bombs (a few lines that expand to billions of nodes). Mappings come back as ``LocDict`` and lists
as ``LocList``; both carry the ``(line, col)`` (1-based) of themselves and of each key/item, so a
problem found later (an unknown signal, a misspelled fact) is reported as ``file:line:col``.

Example:
  >>> doc = load_yaml_text("rules:\\n  - id: a\\n    cf: 2\\n", "x.yaml")
  >>> doc["rules"][0].key_pos("cf")
  (3, 5)
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from typing import Any, Iterable

MAX_RULE_FILE_BYTES = 1 << 20  # the largest built-in rule or test file is under 10 kB


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


_LOADER = None


def _loader():
    """The position-keeping SafeLoader (built on first use: PyYAML is imported only to parse)."""
    global _LOADER
    if _LOADER is not None:
        return _LOADER
    import yaml

    class _Loader(yaml.SafeLoader):
        """SafeLoader building LocDict/LocList; duplicate keys are errors (a silent overwrite hides a rule).

        Aliases are refused where they are read: an alias shares a node, and nested aliases make a
        few lines expand into billions of values (the "billion laughs"); a rule file never needs one.
        """

        def compose_node(self, parent, index):
            if self.check_event(yaml.events.AliasEvent):
                event = self.peek_event()
                raise yaml.composer.ComposerError(
                    None, None, f"YAML alias *{event.anchor} is not allowed in rule files (write the value out)",
                    event.start_mark)
            return super().compose_node(parent, index)

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
    _LOADER = _Loader
    return _Loader


def load_yaml_text(text: str, path: str = "<string>") -> Any:
    """Parse YAML text safely; raise ``RuleFileError`` with ``path:line:col`` on any problem."""
    loader = _loader()
    import yaml

    try:
        return yaml.load(text, Loader=loader)  # noqa: S506 - a SafeLoader subclass
    except yaml.reader.ReaderError as e:
        # A character YAML does not allow (NUL, most control characters): say where it is.
        line, col = line_col(text, e.position)
        raise RuleFileError([RuleProblem(path, line, col, f"character {e.character!r} is not allowed in YAML "
                                         "(control characters and NUL cannot appear in a rule file)")]) from None
    except RecursionError:
        raise RuleFileError([RuleProblem(path, 1, 1, "the YAML nests too deeply to read")]) from None
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        line, col = (mark.line + 1, mark.column + 1) if mark else (0, 0)
        problem = e.problem or str(e)
        if "could not determine a constructor" in problem or "!!python" in problem or "python/" in problem:
            problem = (
                f"{problem.strip()}: rule files are data; YAML tags that build Python objects "
                "(!!python/...) are not allowed"
            )
        raise RuleFileError([RuleProblem(path, line, col, problem[:300])]) from None
    except yaml.YAMLError as e:
        raise RuleFileError([RuleProblem(path, 1, 1, f"not valid YAML: {str(e)[:300]}")]) from None


def line_col(text: str | bytes, offset: int) -> tuple[int, int]:
    """1-based line and column of ``offset`` in ``text``."""
    offset = max(0, min(offset, len(text)))
    newline = "\n" if isinstance(text, str) else b"\n"
    start = text.rfind(newline, 0, offset) + 1
    return text.count(newline, 0, offset) + 1, offset - start + 1


def read_rule_text(path: str) -> str:
    """The text of a rule file, read only if it is a regular file of at most ``MAX_RULE_FILE_BYTES``.

    Raises:
      RuleFileError: not a regular file (a folder, a FIFO, a device or a link to one), too large,
        unreadable, or not UTF-8 (with the line and column of the first bad byte).
    """
    path = str(path)
    try:
        # O_NONBLOCK: opening a FIFO must not wait for a writer; the fstat below then refuses it.
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    except OSError as e:
        what = "is a folder, not a rule file" if isinstance(e, IsADirectoryError) else f"cannot read: {e.strerror}"
        raise RuleFileError([RuleProblem(path, 0, 0, what)]) from None
    try:
        info = os.fstat(fd)
        if stat.S_ISDIR(info.st_mode):
            raise RuleFileError([RuleProblem(path, 0, 0, "is a folder, not a rule file")])
        if not stat.S_ISREG(info.st_mode):
            raise RuleFileError([RuleProblem(path, 0, 0, "is not a regular file (a FIFO, a socket or a device); "
                                             "rule files must be regular files")])
        if info.st_size > MAX_RULE_FILE_BYTES:
            raise RuleFileError([RuleProblem(path, 0, 0, f"is {info.st_size:,} bytes; a rule file may be at most "
                                             f"{MAX_RULE_FILE_BYTES:,} bytes")])
        with os.fdopen(fd, "rb", closefd=False) as handle:
            data = handle.read(MAX_RULE_FILE_BYTES + 1)
    except OSError as e:
        raise RuleFileError([RuleProblem(path, 0, 0, f"cannot read: {e.strerror}")]) from None
    finally:
        os.close(fd)
    if len(data) > MAX_RULE_FILE_BYTES:  # it grew while we read it
        raise RuleFileError([RuleProblem(path, 0, 0, f"is over {MAX_RULE_FILE_BYTES:,} bytes")])
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        line, col = line_col(data, e.start)
        raise RuleFileError([RuleProblem(path, line, col, f"byte {data[e.start:e.start + 1]!r} is not UTF-8; "
                                         "rule files are UTF-8 text")]) from None


def load_yaml_file(path: str) -> Any:
    """Parse a rule or test file (see ``read_rule_text`` for what is refused before parsing)."""
    return load_yaml_text(read_rule_text(path), str(path))


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    """`` (did you mean 'x'?)`` for the closest choice, or an empty string."""
    import difflib  # only for a mistake: a clean start does not import it (with heapq, ~1 ms)

    close = difflib.get_close_matches(str(word), sorted(set(choices)), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""
