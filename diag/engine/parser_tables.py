"""Import rule-engine without rebuilding its parser: its LALR tables, kept in the user cache.

rule-engine parses expressions with PLY, and builds PLY's LALR tables from its grammar each time
it is imported (``rule_engine.engine.rule`` creates a parser at class definition, with table
writing off). That was most of ``diag explain``'s time on a small trace. PLY reads prebuilt tables
from a ``parsetab`` module when one whose grammar signature matches is importable, so the tables
built on the first run are kept as JSON in the user cache (``diag.engine.user_cache``) and handed
to PLY, on later runs, as an in-memory module: no Python file is written or imported.

The tables are data that decide how expressions parse, so they are checked before PLY sees them:
the rule-engine installation they were built from (its path, and the size and time of its parser
files), every state and production index in range, production callbacks named only
``p_*`` (PLY binds them by name to the parser's own grammar methods). PLY then compares the
grammar signature itself and rebuilds, as without a cache, when rule-engine's grammar changed;
the rebuilt tables replace the cached ones.
"""

from __future__ import annotations

import importlib.util
import os
import re
import sys
import types

TABLES_FILE = "rule_engine_parser.json"
_PARSETAB = "rule_engine.parser.parsetab"  # the module PLY looks for (package of the parser + "parsetab")
_CALLBACK = re.compile(r"p_[A-Za-z0-9_]{1,100}")

tables_from_cache = False
"""Whether this process's rule-engine parser runs on cached tables (set by ``import_rule_engine``)."""


def import_rule_engine():
    """``import rule_engine``, with its parser tables from the cache when they are there and sound."""
    if "rule_engine" in sys.modules:
        return sys.modules["rule_engine"]
    from diag.engine import user_cache

    tables = _valid_tables(user_cache.read_json(TABLES_FILE))
    if tables is not None:
        sys.modules[_PARSETAB] = _as_module(tables)
    try:
        import rule_engine
    finally:
        sys.modules.pop(_PARSETAB, None)
    global tables_from_cache
    tables_from_cache = tables is not None and rule_engine.Rule.parser._parser.action is tables["action"]
    if not tables_from_cache:
        _save_tables(rule_engine)  # built from the grammar this time: keep them for the next run
    return rule_engine


def source_stamp() -> list | None:
    """Where rule-engine is installed and the size and time of its parser's files, without importing it.

    Tables are used only by the rule-engine (and PLY) they were built with: an upgrade changes the
    stamp, so PLY never sees tables of another version (it would print a warning and rebuild).
    """
    try:
        spec = importlib.util.find_spec("rule_engine")
        root = os.path.dirname(spec.origin)
        stamp = [root]
        for part in ("_vendor/ply/yacc.py", "parser/__init__.py", "parser/base.py"):
            info = os.stat(os.path.join(root, part))
            stamp.append([part, info.st_size, info.st_mtime_ns])
        return stamp
    except (ImportError, AttributeError, TypeError, ValueError, OSError):
        return None


def _as_module(tables: dict) -> types.ModuleType:
    module = types.ModuleType(_PARSETAB)
    module._tabversion = tables["tabversion"]
    module._lr_method = "LALR"
    module._lr_signature = tables["signature"]
    module._lr_action = tables["action"]
    module._lr_goto = tables["goto"]
    module._lr_productions = tables["productions"]
    return module


def _valid_tables(raw) -> dict | None:
    """The tables in PLY's in-memory form, or None when anything about them is off."""
    if not isinstance(raw, dict) or raw.get("method") != "LALR" or raw.get("source") != source_stamp():
        return None
    signature, tabversion = raw.get("signature"), raw.get("tabversion")
    action, goto, productions = raw.get("action"), raw.get("goto"), raw.get("productions")
    if not (isinstance(signature, str) and isinstance(tabversion, str) and isinstance(action, dict)
            and isinstance(goto, dict) and isinstance(productions, list) and productions):
        return None
    states = len(action)
    out_productions = []
    for p in productions:
        if not (isinstance(p, list) and len(p) == 6 and isinstance(p[0], str) and isinstance(p[1], str)
                and type(p[2]) is int and 0 <= p[2] <= 64 and (p[3] is None or (isinstance(p[3], str)
                                                                               and _CALLBACK.fullmatch(p[3])))
                and (p[4] is None or isinstance(p[4], str)) and (p[5] is None or type(p[5]) is int)):
            return None
        out_productions.append(tuple(p))

    def table(raw_table: dict, is_action: bool) -> dict | None:
        out = {}
        for key, row in raw_table.items():
            if not (key.isdigit() and int(key) < states and isinstance(row, dict)):
                return None
            for symbol, target in row.items():
                if target is None and is_action:  # PLY's mark for an error entry (a resolved conflict)
                    continue
                if type(target) is not int:
                    return None
                if target > 0 and target >= states:
                    return None
                if target < 0 and (not is_action or -target >= len(productions)):
                    return None
            out[int(key)] = row
        return out

    action_table, goto_table = table(action, True), table(goto, False)
    if action_table is None or goto_table is None or set(action_table) != set(range(states)):
        return None
    return {"tabversion": tabversion, "signature": signature, "action": action_table, "goto": goto_table,
            "productions": out_productions}


def _save_tables(rule_engine) -> None:
    """Write the tables rule-engine's parser was just built with (skipped quietly when anything fails)."""
    try:
        from rule_engine._vendor.ply import yacc

        parser = rule_engine.Rule.parser
        pdict = {name: getattr(parser, name) for name in dir(parser)}
        pdict.setdefault("__file__", sys.modules[pdict["__module__"]].__file__)
        reflect = yacc.ParserReflect(pdict, log=yacc.NullLogger())
        reflect.get_all()
        lr = parser._parser
        productions = [[str(p), p.name, p.len, p.func, None, None] for p in lr.productions]
        source = source_stamp()
        if source is None:
            return
        tables = {"method": "LALR", "source": source, "tabversion": yacc.__tabversion__, "signature": reflect.signature(),
                  "action": {str(k): v for k, v in lr.action.items()},
                  "goto": {str(k): v for k, v in lr.goto.items()}, "productions": productions}
    except Exception:  # noqa: BLE001 - rule-engine's internals moved: run without the cache
        return
    from diag.engine import user_cache

    user_cache.write_json(TABLES_FILE, tables)
