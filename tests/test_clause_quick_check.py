"""The quick clause check accepts only what the pydantic clause models accept, and knows every field.

``diag.engine.conditions.quick_check`` lets a clause through without building the models when its
values are plainly valid; if it ever accepted a value a model refuses, a bad rule would load. So
generated clauses (valid, wrong types, out of range, unknown keys, NaN, bools for numbers, huge
ints) must never pass the quick check while the model refuses them.
"""

from __future__ import annotations

import os
import subprocess
import sys

from hypothesis import given, settings
from hypothesis import strategies as st

from diag.engine.conditions import models, quick_check

MODELS = {"signal": models.SignalClause, "record": models.RecordClause, "fact": models.FactClause}


def _names(model) -> set[str]:
    return {field.alias or name for name, field in model.model_fields.items()}


def test_the_quick_check_knows_exactly_the_fields_of_each_model():
    for kind, model in MODELS.items():
        assert set(quick_check.FIELDS[kind]) == _names(model), kind
        required = {field.alias or name for name, field in model.model_fields.items() if field.is_required()}
        assert set(quick_check.REQUIRED[kind]) == required, kind
    assert set(quick_check._WITHIN.__closure__[0].cell_contents) == _names(models.Within)
    assert set(quick_check._LAYERS.__closure__[0].cell_contents) == _names(models.Layers)


scalars = st.one_of(
    st.none(), st.booleans(), st.integers(), st.integers(min_value=-3, max_value=3), st.sampled_from([2 ** 63, 10 ** 400]),
    st.floats(allow_nan=True, allow_infinity=True), st.floats(min_value=-0.5, max_value=1.5),
    st.sampled_from([">", ">=", "!=", "=>", "any", "all", "last", "first", "loss", "50%", "", "1.5"]),
)
values = st.one_of(
    scalars,
    st.lists(scalars, max_size=3),
    st.dictionaries(st.sampled_from(["from", "to", "from_", "min_frac", "exclude_output", "x", "k"]), scalars, max_size=3),
)


# Values a field plausibly takes, so that most generated clauses are valid but for one or two fields.
GOOD = {
    "series": ["loss", "grad.norm"], "fn": ["value", "spike"], "args": [None, {"k": 6}, {"k": 2.5}],
    "smooth": [0, 5, 1_000_000], "other": [None, "lr"], "other_smooth": [0, 3], "op": [">", "<=", "!="],
    "value": [0, 1.5, -2], "for": [1, 3], "at": ["any", "last"], "min_frac": [0, 0.5, 1],
    "within": [None, {"from": "50%"}, {"from": 10, "to": 20.5}], "layers": [None, {"min_frac": 0.2},
    {"exclude_output": True}], "non_finite_is_true": [True, False], "ramp": [None, [0, 1], [0.5, 2.5]],
    "as": [None, "s"], "kind": ["data", "check"], "where": [None, "r.x > 1"], "ramp_of": [None, "r.x"],
    "fact_id": ["grad.zero"], "before": [None, "s"], "after": [None, "s"],
}


@st.composite
def clause_bodies(draw):
    kind = draw(st.sampled_from(sorted(MODELS)))
    keys = sorted(quick_check.FIELDS[kind])
    body = {key: draw(st.sampled_from(GOOD[key])) for key in keys if draw(st.booleans())}
    body[quick_check.REQUIRED[kind][0]] = GOOD[quick_check.REQUIRED[kind][0]][0]
    for _ in range(draw(st.integers(0, 2))):  # one or two fields (or unknown keys) of any value
        body[draw(st.sampled_from(keys + ["for_", "as_", "from_", "bogus"]))] = draw(values)
    if kind == "signal" and draw(st.booleans()):  # a nested field of any value
        nested = draw(st.sampled_from(["within", "layers"]))
        inner = ["from", "to", "from_"] if nested == "within" else ["min_frac", "exclude_output", "min"]
        body[nested] = {draw(st.sampled_from(inner)): draw(scalars)}
    return kind, body


@settings(max_examples=1500, deadline=None)
@given(clause_bodies())
def test_what_the_quick_check_accepts_the_model_accepts(case):
    kind, body = case
    if quick_check.plainly_valid(kind, body):
        assert models.first_error(MODELS[kind], body) is None, body
    assert quick_check.first_error(kind, body) == models.first_error(MODELS[kind], body)


def test_every_clause_of_the_built_in_rules_passes_without_the_models(tmp_path):
    # The point of the quick check: loading the built-in rules (here from YAML, no cache) never
    # builds the models. A fresh process, so that no other test has imported them already.
    code = ("import sys; from diag.engine.kb import load_knowledge_base; kb = load_knowledge_base(use_env=False); "
            "print(len(kb.rules), 'diag.engine.conditions.models' in sys.modules)")
    env = {**os.environ, "DIAG_CACHE_DIR": str(tmp_path)}
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    rules, models_built = done.stdout.split()
    assert int(rules) > 100 and models_built == "False"
    examples = [
        ("signal", {"series": "grad.norm", "fn": "spike", "args": {"k": 6}, "op": ">", "value": 1.0, "for": 2,
                    "within": {"from": "50%"}, "layers": {"min_frac": 0.5, "exclude_output": True}, "as": "s"}),
        ("record", {"kind": "data", "where": "r.x > 1", "ramp": [0, 1.5]}),
        ("fact", {"fact_id": "grad.zero", "before": "s"}),
    ]
    for kind, body in examples:
        assert quick_check.plainly_valid(kind, body), body
        assert models.first_error(MODELS[kind], body) is None, body
