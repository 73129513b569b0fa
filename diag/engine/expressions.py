"""The safe expression layer: rule-engine expressions and evidence templates.

Conditions (``context:``, ``expr:``, a record's ``where:``) and the ``{{ slots }}`` of evidence
templates are `rule-engine <https://zeroSteiner.github.io/rule-engine/>`_ expressions: a typed,
sandboxed language with comparisons, arithmetic, boolean logic and a few ``$`` built-ins. They are
compiled once, at load, against the symbols a rule can see, so a misspelled name or attribute is a
load error with a suggestion. Nothing here calls ``eval``, ``exec`` or ``str.format``.

Extra limits on top of rule-engine's own: expressions are short, shallow, free of dunder names,
may not raise to huge literal powers (which would stall the decimal arithmetic), and may not use
the regular-expression operators (``=~``, ``=~~``, ``!~``, ``!~~``): rule-engine runs them with
Python's backtracking ``re``, where a pattern such as ``(a+)+$`` takes exponential time (and
rule-engine folds a literal comparison at compile time, so it would hang the load itself).
``"text" in field`` tests for a substring instead.

Why regular expressions stay refused rather than run on a linear-time engine (issue 22): every
pattern the knowledge base has needed is a list of substrings (``"size mismatch" in message or
...``), which ``in`` matches in linear time; rule-engine's regex operators are bound to Python's
``re``, so a linear-time engine (RE2 through ``google-re2``) would mean a native dependency and a
patched rule-engine, and a timeout-free static check of a backtracking pattern cannot be made
exact (it would refuse safe patterns and pass unsafe ones). A rule that needs more than
substrings is a case for a new signal or record attribute in code, with a test.

Example:
  >>> expr = compile_expression('lr > 0.1 and precision == "fp16"', {"lr": FLOAT, "precision": STRING})
  >>> evaluate(expr, {"lr": 0.3, "precision": "fp16"})
  True
"""

from __future__ import annotations

import contextlib
import contextvars
import decimal
import math
import re
import sys
import threading
import warnings
from dataclasses import dataclass

from diag.engine.parser_tables import import_rule_engine

rule_engine = import_rule_engine()
DataType = rule_engine.DataType

FLOAT = DataType.FLOAT
STRING = DataType.STRING
BOOLEAN = DataType.BOOLEAN
STRINGS = DataType.ARRAY(DataType.STRING)

MAX_EXPRESSION_LENGTH = 400
MAX_NESTING = 16
MAX_EXPONENT = 64


class ExpressionError(ValueError):
    """An expression a rule file may not use, with the reason and (when known) a suggestion."""


def _nesting(text: str) -> int:
    depth = deepest = 0
    for ch in text:
        if ch in "([{":
            depth += 1
            deepest = max(deepest, depth)
        elif ch in ")]}":
            depth -= 1
    return deepest


_POWER = re.compile(r"\*\*\s*\(?\s*(-?[0-9.eE+]+)")


def _outside_strings(text: str) -> str:
    """``text`` with the inside of every quoted string blanked (operators are found only outside)."""
    out, quote, escaped = [], None, False
    for ch in text:
        if quote is None:
            out.append(ch)
            if ch in "'\"":
                quote = ch
        elif escaped:
            escaped = False
            out.append(" ")
        elif ch == "\\":
            escaped = True
            out.append(" ")
        elif ch == quote:
            quote = None
            out.append(ch)
        else:
            out.append(" ")
    return "".join(out)


def check_expression_text(text: str) -> None:
    """Reject expressions that rule-engine would accept but that have no place in a rule file."""
    if not isinstance(text, str) or not text.strip():
        raise ExpressionError("expression is empty")
    if len(text) > MAX_EXPRESSION_LENGTH:
        raise ExpressionError(f"expression is {len(text)} characters long; the limit is {MAX_EXPRESSION_LENGTH}")
    if "\x00" in text:
        raise ExpressionError("expression holds a NUL character")
    bare = _outside_strings(text)
    if "=~" in bare or "!~" in bare:
        raise ExpressionError("regular-expression operators (=~, !~) are not allowed in rule files: a pattern can "
                              "take exponential time; use == or '\"part\" in field' for a substring")
    if _nesting(text) > MAX_NESTING:
        raise ExpressionError(f"expression nests deeper than {MAX_NESTING} levels")
    if "__" in text:
        raise ExpressionError("names with double underscores are not allowed (rule files cannot reach Python internals)")
    for match in _POWER.finditer(text):
        try:
            exponent = abs(float(match.group(1)))
        except ValueError:
            continue
        if exponent > MAX_EXPONENT:
            raise ExpressionError(f"exponent {match.group(1)} is too large (at most {MAX_EXPONENT})")


class Expression:
    """A compiled expression and the top-level symbols it reads.

    Compiled at once by ``compile_expression``; inside ``compile_on_first_use()`` (rule files that
    the knowledge-base cache has seen compile cleanly before) only the text checks run at once and
    rule-engine parses the expression when it is first evaluated. A knowledge base names a few
    hundred expressions and a run evaluates a few dozen of them.
    """

    __slots__ = ("text", "_types", "_rule", "_symbols")

    def __init__(self, text: str, types: dict | None = None, rule=None, symbols: frozenset[str] | None = None):
        self.text = text
        self._types = types
        self._rule = rule
        self._symbols = symbols

    def _compile(self) -> None:
        try:
            compiled = _compile_now(self.text, self._types or {})
        except ExpressionError as e:  # only when the cache's verdict was wrong: an error of this rule
            raise EvaluationFailed(str(e)) from None
        self._rule, self._symbols, self._types = compiled._rule, compiled._symbols, None

    @property
    def rule(self):
        if self._rule is None:
            self._compile()
        return self._rule

    @property
    def symbols(self) -> frozenset[str]:
        if self._symbols is None:
            self._compile()
        return self._symbols

    def __repr__(self) -> str:
        return f"Expression({self.text!r})"


_ON_FIRST_USE = contextvars.ContextVar("diag_compile_on_first_use", default=False)


@contextlib.contextmanager
def compile_on_first_use():
    """Within this block, ``compile_expression`` checks the text and defers rule-engine's parse."""
    token = _ON_FIRST_USE.set(True)
    try:
        yield
    finally:
        _ON_FIRST_USE.reset(token)


def compile_expression(text: str, types: dict) -> Expression:
    """Compile ``text`` against ``types`` (symbol -> rule-engine DataType).

    Raises:
      ExpressionError: on unsafe text, syntax errors, unknown symbols or attributes (with a
        suggestion), or type errors. Inside ``compile_on_first_use()`` only unsafe text raises here.
    """
    if _ON_FIRST_USE.get():
        check_expression_text(text)
        return Expression(text, dict(types))
    return _compile_now(text, types)


# One rule-engine Context for every expression: creating one sets up all of rule-engine's built-ins
# (and a local time zone), which costs more than parsing a short expression. Its type resolver is
# switched to the expression's own symbol types for each parse, under a lock; rule-engine asks for
# symbol types only while it parses (the AST keeps what it was told), never while it evaluates.
_PARSING = threading.Lock()
_CONTEXT = None
_RESOLVERS: dict[tuple, tuple] = {}


class _TypesOfThisParse:
    """The shared Context's type resolver: the symbol types of the expression being parsed."""

    resolve = None

    def __call__(self, name: str):
        return self.resolve(name)


_TYPES = _TypesOfThisParse()


def _context_for(types: dict):
    """The shared Context, resolving ``types`` (call with ``_PARSING`` held)."""
    global _CONTEXT
    key = tuple(sorted((name, id(kind)) for name, kind in types.items()))
    entry = _RESOLVERS.get(key)
    if entry is None:
        kept = dict(types)  # held with the resolver, so the ids in the key stay these objects'
        entry = _RESOLVERS[key] = (rule_engine.type_resolver_from_dict(kept), kept)
    if _CONTEXT is None:
        _CONTEXT = rule_engine.Context(type_resolver=_TYPES, mapping_attribute_lookup=False,
                                       decimal_context=decimal.Context(prec=28, Emax=10_000, Emin=-10_000))
    _TYPES.resolve = entry[0]
    return _CONTEXT


# Parsed expressions by text, with the types their symbols had: a knowledge base repeats a text in
# several rules (``task == "classification"`` in four), each with its own symbol table, and a parse
# depends on nothing but the text and the types of the symbols it reads (rule-engine resolves no
# other name). A text met again, with the same type object for each symbol the first parse read,
# shares that parse (16 of the 72 an explain of a small trace makes).
# rule-engine's symbols also name what no table holds (``$abs``, a comprehension's variable): those
# are matched as absent. Bounded, for a process that reloads edited rule files again and again.
_PARSED: dict[str, list[tuple[dict, Expression]]] = {}
_PARSED_TEXTS_KEPT = 4096
_ABSENT = object()


def _compile_now(text: str, types: dict) -> Expression:
    for seen_types, parsed in _PARSED.get(text, ()):
        if all(types.get(name, _ABSENT) is seen_types[name] for name in parsed._symbols):
            return Expression(text, rule=parsed._rule, symbols=parsed._symbols)
    parsed = _parse(text, types)
    if len(_PARSED) >= _PARSED_TEXTS_KEPT:
        _PARSED.clear()
    _PARSED.setdefault(text, []).append(({name: types.get(name, _ABSENT) for name in parsed._symbols}, parsed))
    return parsed


def _parse(text: str, types: dict) -> Expression:
    check_expression_text(text)
    try:
        with _PARSING, warnings.catch_warnings():
            warnings.simplefilter("ignore")
            context = _context_for(types)
            context.symbols = set()
            rule = rule_engine.Rule(text, context=context)
            symbols = frozenset(context.symbols)
    except rule_engine.errors.SymbolResolutionError as e:
        hint = f" (did you mean {e.suggestion!r}?)" if getattr(e, "suggestion", None) else ""
        raise ExpressionError(f"unknown name {e.symbol_name!r} in {text!r}{hint}") from None
    except (rule_engine.errors.AttributeResolutionError, rule_engine.errors.ObjectAttributeError) as e:
        name = getattr(e, "attribute_name", None) or (e.args[0] if e.args else "?")
        hint = f" (did you mean {e.suggestion!r}?)" if getattr(e, "suggestion", None) else ""
        raise ExpressionError(f"unknown attribute {name!r} in {text!r}{hint}") from None
    except rule_engine.errors.RuleSyntaxError as e:
        token = getattr(e, "token", None)
        where = f" near {token.value!r}" if token is not None else ""
        raise ExpressionError(f"syntax error{where} in {text!r}") from None
    except rule_engine.errors.EngineError as e:
        raise ExpressionError(f"{type(e).__name__}: {getattr(e, 'message', e)} in {text!r}") from None
    except RecursionError:
        raise ExpressionError(f"expression nests too deeply: {text[:40]!r}...") from None
    return Expression(text, rule=rule, symbols=symbols)


def to_python(value):
    """rule-engine results (Decimal, tuples) as plain Python values."""
    if isinstance(value, decimal.Decimal):
        if value.is_nan():
            return math.nan
        return float(value)
    if isinstance(value, (tuple, list)):
        return [to_python(v) for v in value]
    return value


def evaluate(expression: Expression, values: dict):
    """Evaluate a compiled expression on plain values; errors raise ``EvaluationFailed``."""
    rule = expression.rule  # parsed (on first use) before the suggestions are turned off
    token = _EVALUATING.set(True)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return to_python(rule.evaluate(values))
    except (rule_engine.errors.EngineError, ArithmeticError, TypeError, ValueError, OverflowError) as e:
        raise EvaluationFailed(f"{expression.text!r}: {getattr(e, 'message', None) or e}") from None
    finally:
        _EVALUATING.reset(token)


# rule-engine works out a "did you mean" (Jaro-Winkler against each of the object type's attribute
# names, ~60 of them for a bound fact) for every attribute a value lacks when it evaluates, ~0.5 ms
# each (six an explain of a small trace, ~1% of it); the suggestion rides on the error, which
# ``evaluate`` turns into "no value" (its message does not hold the suggestion). While diag
# evaluates, that lookup returns none; parsing still gets rule-engine's suggestions, which name a
# rule file's misspelt attribute.
# The module is rule-engine's own, not its API: where a version lays it out otherwise, nothing is
# changed and evaluation keeps its suggestions (slower, same results).
_EVALUATING = contextvars.ContextVar("diag_evaluating", default=False)
_ACCESS = sys.modules.get("rule_engine.ast.expression.access")
_SUGGEST_SYMBOL = getattr(_ACCESS, "suggest_symbol", None)


def _suggest_unless_evaluating(word, options):
    return None if _EVALUATING.get() else _SUGGEST_SYMBOL(word, options)


if callable(_SUGGEST_SYMBOL):
    _ACCESS.suggest_symbol = _suggest_unless_evaluating


class EvaluationFailed(RuntimeError):
    """An expression raised at evaluation time (a missing value, an arithmetic error)."""


# --------------------------------------------------------------------------- templates

FILTERS = ("sci", "pct", "int", "fixed", "list")
_SLOT = re.compile(r"\{\{(.*?)\}\}", re.S)
_FILTER = re.compile(r"^(.*)\|\s*([A-Za-z_][A-Za-z0-9_]*)\s*$", re.S)


def format_value(value, filter_name: str | None = None) -> str:
    """Format one slot value for a sentence (``sci``: 1.2e+03, ``pct``: 12.5%, ``int``: 12)."""
    if value is None:
        return "?"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, (list, tuple)):
        return ", ".join(format_value(v, None if filter_name == "list" else filter_name) for v in value)
    if isinstance(value, (int, float)):
        x = float(value)
        if not math.isfinite(x):
            return "nan" if math.isnan(x) else ("inf" if x > 0 else "-inf")
        if filter_name == "sci":
            return f"{x:.2e}"
        if filter_name == "pct":
            return f"{100 * x:.1f}%"
        if filter_name == "int":
            return str(int(round(x)))
        if filter_name == "fixed":
            return f"{x:.2f}"
        if x == int(x) and abs(x) < 1e15:
            return str(int(x))
        return f"{x:.3g}"
    return str(value)


@dataclass(frozen=True)
class Template:
    """An evidence template: literal text and compiled ``{{ expr | filter }}`` slots."""

    text: str
    parts: tuple  # str or (Expression, filter)

    def render(self, values: dict) -> str:
        out = []
        for part in self.parts:
            if isinstance(part, str):
                out.append(part)
                continue
            expression, filter_name = part
            try:
                value = evaluate(expression, values)
            except EvaluationFailed:
                value = None
            out.append(format_value(value, filter_name))
        return " ".join("".join(out).split())


def compile_template(text: str, types: dict) -> Template:
    """Compile an evidence template; single braces and unknown filters are errors."""
    if not isinstance(text, str):
        raise ExpressionError("evidence must be a string")
    parts: list = []
    pos = 0
    for match in _SLOT.finditer(text):
        literal = text[pos:match.start()]
        _check_literal(literal)
        parts.append(literal)
        slot = match.group(1).strip()
        filter_name = None
        m = _FILTER.match(slot)
        if m and not m.group(1).rstrip().endswith("|"):
            name = m.group(2)
            if name not in FILTERS:
                from diag.engine.yamlloc import did_you_mean

                raise ExpressionError(f"unknown template filter {name!r}{did_you_mean(name, FILTERS)}; "
                                      f"filters are {', '.join(FILTERS)}")
            slot, filter_name = m.group(1).strip(), name
        parts.append((compile_expression(slot, types), filter_name))
        pos = match.end()
    _check_literal(text[pos:])
    parts.append(text[pos:])
    return Template(text=text, parts=tuple(p for p in parts if p != ""))


def _check_literal(literal: str) -> None:
    if "{" in literal or "}" in literal:
        raise ExpressionError(
            "single braces are not template slots (evidence is never passed to str.format); "
            "write a value as {{ expression }}"
        )
