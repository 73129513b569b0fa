"""The condition language of rules: a tree of clauses, compiled at load and evaluated per binding.

A ``when:`` block is ``all:`` / ``any:`` / ``not:`` over six clause kinds:

* ``signal:`` a time-series predicate: a series, a signal function, a comparison, ``for: N``
  consecutive points, ``at: any|all|last``, ``within: {from, to}``, ``layers: {min_frac}``;
* ``fact:`` a symptom or cause concluded by another rule (``as:`` binds it, ``before:``/``after:``
  order it in time against another bound fact, ``where:`` filters on its attributes);
* ``absent:`` no such fact;
* ``context:`` / ``expr:`` a rule-engine expression over the run context and bound facts;
* ``record:`` a ``data``/``check``/``eval``/``event`` record matching ``where:``.

Every clause yields an ``Outcome``: whether it held, its certainty (crisp clauses 0 or 1, a
``fact:`` clause the fact's certainty, ``ramp: [lo, hi]`` a graded value), what it observed, the
steps and layer it points at, and the inputs it missed. Outcomes are the justification tree.

The modules, in the order they import each other:

* ``clause``: the compiled ``Clause``, its ``Outcome``, and the names they share;
* ``syntax``: small parsers shared by the clause kinds (keys, positions, ``ramp:``, ``as:`` names);
* ``signal_syntax`` then ``parse``: compiling a ``signal:`` clause, then any clause (``compile_clause``);
* ``windows``: a signal clause's vectorized predicate over every layer at once (comparisons,
  ``within:`` windows, ``for``/``at`` runs);
* ``signal_clause`` then ``evaluate``: evaluating a signal clause, then any clause, for one binding.

Example (a clause as written in a rule file):
  >>> clause = compile_clause({"signal": {"series": "loss", "fn": "non_finite"}}, "x.yaml", set())
  >>> clause.kind, clause.series
  ('signal', 'loss')
"""

from diag.engine.conditions.clause import (
    CF_THRESHOLD, LAYER_SERIES, SCALAR_SERIES, Clause, ClauseError, Outcome, count_clauses, known_series,
)
from diag.engine.conditions.evaluate import evaluate_clause, matching_records
from diag.engine.conditions.parse import compile_clause
from diag.engine.conditions.syntax import bound_names_of, expression_types
from diag.engine.conditions.windows import signal_result

__all__ = [
    "CF_THRESHOLD", "LAYER_SERIES", "SCALAR_SERIES", "Clause", "ClauseError", "Outcome", "bound_names_of",
    "compile_clause", "count_clauses", "evaluate_clause", "expression_types", "known_series", "matching_records",
    "signal_result",
]
