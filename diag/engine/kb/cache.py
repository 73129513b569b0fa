"""The knowledge-base cache: rule files parsed once, not on every ``diag explain``.

Reading YAML (with the position of every key) was the largest part of loading the knowledge
base. The cache keeps, for each rule file's exact text (its SHA-256), the parsed document, and
whether that file compiled without a problem last time. What it holds is what the YAML loader
returns, positions included, and nothing more: a cached document goes through the same schema
validation and clause compiling as a freshly parsed one, so a cache file can do nothing a rule
file could not do. A file that compiled cleanly before has its expressions parsed on first use
(``diag.engine.expressions.compile_on_first_use``); text checks still run at once.

Keys and invalidation: an entry is found only by the SHA-256 of the file's text (an edited file
is a miss; a copied one a hit), and the whole cache is dropped when diag's engine code or the
installed rule-engine changes (the size and time of their files, and diag's version, are stamped in it). The cache is one JSON
file in the user cache folder (``diag.engine.user_cache``: JSON only, owner-checked, size-bounded,
written atomically); a corrupt, truncated, foreign or unreadable file is a miss, and a read-only
folder means the cache is not written. Neither prints anything.

Example:
  >>> from diag.engine.yamlloc import load_yaml_text
  >>> doc = load_yaml_text("rules:\\n  - {id: a, cf: .5}\\n")
  >>> back = decode(encode(doc))
  >>> back == doc, back["rules"][0].key_pos("cf")
  (True, (2, 13))
"""

from __future__ import annotations

import hashlib
import math
import os
from pathlib import Path

from diag.engine import user_cache
from diag.engine.yamlloc import LocDict, LocList

CACHE_FILE = "knowledge_base.json"
FORMAT = 2  # 2: positions flat in each entry
MAX_ENTRIES = 2000  # rule files kept (the built-in knowledge base has about 60)
_INT64 = 2**63
_PLAIN = frozenset((str, int, float, bool, type(None)))  # what json.loads gives and decode returns unchanged


class Uncacheable(ValueError):
    """A document holds a value JSON cannot carry exactly (a date, bytes, a set, a huge integer)."""


def encode(node):
    """A parsed YAML document as JSON values, positions included.

    Mappings become ``{"m": [line, col], "i": [[key, key_line, key_col, value_line, value_col, value],
    ...]}``, lists ``{"l": [line, col], "i": [[line, col, value], ...]}``, non-finite floats
    ``{"f": "nan"}``. Positions are flat in each entry, not lists of their own: ~8000 fewer lists for
    JSON to build and ``decode`` to check on every explain.
    """
    if isinstance(node, LocDict):
        return {"m": list(node.pos), "i": [[encode(k), *node.key_pos(k), *node.value_pos(k), encode(v)]
                                           for k, v in node.items()]}
    if isinstance(node, LocList):
        return {"l": list(node.pos), "i": [[*node.item_pos(i), encode(v)] for i, v in enumerate(node)]}
    if node is None or isinstance(node, (bool, str)):
        return node
    if isinstance(node, int):
        if not -_INT64 <= node < _INT64:
            raise Uncacheable("integer out of int64 range")
        return node
    if isinstance(node, float):
        return node if math.isfinite(node) else {"f": repr(node)}
    raise Uncacheable(f"a {type(node).__name__} value")


def _pos(value) -> tuple[int, int]:
    if (type(value) is not list or len(value) != 2 or type(value[0]) is not int or type(value[1]) is not int):
        raise ValueError("bad position")
    return value[0], value[1]


def decode(value, depth: int = 0):
    """The document ``encode`` made; ValueError for anything it could not have made."""
    if depth > 64:
        raise ValueError("too deep")
    if value is None or isinstance(value, (bool, str, int, float)):
        return value
    if type(value) is not dict or len(value) != 2 and "f" not in value:
        raise ValueError("bad node")
    if "f" in value:
        text = value["f"]
        if len(value) != 1 or text not in ("nan", "inf", "-inf"):
            raise ValueError("bad float")
        return float(text)
    items = value.get("i")
    if type(items) is not list:
        raise ValueError("bad items")
    if "m" in value:
        node = LocDict()
        node.pos = _pos(value["m"])
        keys_at, values_at = node.keys_at, node.values_at
        for item in items:
            if type(item) is not list or len(item) != 6:
                raise ValueError("bad entry")
            key, key_line, key_col, value_line, value_col, raw = item
            if (type(key_line) is not int or type(key_col) is not int or type(value_line) is not int
                    or type(value_col) is not int):
                raise ValueError("bad position")
            # Most nodes are strings and numbers: taken as they are, without a call (~7000 per explain).
            key = key if type(key) in _PLAIN else decode(key, depth + 1)
            if isinstance(key, (LocDict, LocList)) or key in node:
                raise ValueError("bad key")
            node[key] = raw if type(raw) in _PLAIN else decode(raw, depth + 1)
            keys_at[key] = (key_line, key_col)
            values_at[key] = (value_line, value_col)
        return node
    if "l" in value:
        values, positions = [], []
        for item in items:
            if type(item) is not list or len(item) != 3:
                raise ValueError("bad list item")
            line, col, raw = item
            if type(line) is not int or type(col) is not int:
                raise ValueError("bad position")
            values.append(raw if type(raw) in _PLAIN else decode(raw, depth + 1))
            positions.append((line, col))
        node = LocList(values)
        node.pos = _pos(value["l"])
        node.items_at = positions
        return node
    raise ValueError("bad node")


def _code_stamp() -> str:
    """diag's version, the size and time of the files that read, check and compile rules, and the
    rule-engine they compile expressions with (an upgrade may refuse what compiled before)."""
    import diag
    from diag.engine.parser_tables import source_stamp

    engine = Path(__file__).resolve().parent.parent
    digest = hashlib.sha256(f"{FORMAT}\0{diag.__version__}\0{source_stamp()}".encode())
    for folder in (engine, engine / "conditions", engine / "kb"):
        try:
            names = sorted(os.listdir(folder))
        except OSError:
            continue
        for name in names:
            if name.endswith(".py"):
                try:
                    info = os.stat(folder / name)
                except OSError:
                    continue
                digest.update(f"{folder.name}/{name}\0{info.st_size}\0{info.st_mtime_ns}\0".encode())
    return digest.hexdigest()


def text_key(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


class DocumentCache:
    """Parsed rule files by the hash of their text, read once and written back when it grew."""

    def __init__(self):
        self._stamp = _code_stamp()
        self._entries: dict = {}
        self._dirty = False
        raw = user_cache.read_json(CACHE_FILE)
        if (isinstance(raw, dict) and raw.get("format") == FORMAT and raw.get("code") == self._stamp
                and isinstance(raw.get("entries"), dict)):
            self._entries = raw["entries"]

    def get(self, text: str):
        """``(document, compiled_cleanly)`` for this exact text, or None."""
        entry = self._entries.get(text_key(text))
        if type(entry) is not dict or type(entry.get("clean")) is not bool:
            return None
        try:
            return decode(entry.get("doc")), entry["clean"]
        except (ValueError, TypeError, RecursionError):
            return None

    def put(self, text: str, doc, clean: bool) -> None:
        try:
            encoded = encode(doc)
        except (Uncacheable, RecursionError):
            return
        key = text_key(text)
        self._entries.pop(key, None)
        self._entries[key] = {"doc": encoded, "clean": clean}
        while len(self._entries) > MAX_ENTRIES:
            self._entries.pop(next(iter(self._entries)))
        self._dirty = True

    def save(self) -> None:
        if self._dirty:
            user_cache.write_json(CACHE_FILE, {"format": FORMAT, "code": self._stamp, "entries": self._entries})
            self._dirty = False
