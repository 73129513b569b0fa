"""The engine: chaining, certainty combination, suppression, order independence, cycles,
justifications, skipped rules and rule errors. Each test writes a tiny knowledge base."""

from __future__ import annotations

import textwrap

import pytest

from diag.engine.api import diagnose
from diag.engine.certainty import combine, combine_all, combine_groups
from diag.engine.kb import load_knowledge_base
from diag.engine.synthetic import header_from_context, trace_from_series
from diag.engine.yamlloc import RuleFileError

def cause(cid, extra=""):
    """One catalog entry, YAML-indented for a file's causes: list."""
    lines = [f"  - id: {cid}", f"    title: {cid} title", "    category: loss", "    severity: high",
             "    doc: {what: w, why: y, example: e, use_instead: u, false_positives: f}",
             "    fix: [{action: do it}]"]
    if extra:
        lines.append("    " + extra)
    return "\n".join(lines) + "\n"


def write(folder, name, causes="", rules=""):
    text = "apiVersion: diag/v1\ncauses:\n" + (causes or "  []\n") + "rules:\n" + textwrap.indent(
        textwrap.dedent(rules), "  ")
    (folder / name).write_text(text)
    return folder / name


def kb_of(folder, **kwargs):
    return load_knowledge_base(paths=[folder], use_env=False, **kwargs)


SPIKE_AND_NAN = """
- id: s.spike
  type: symptom
  title: spike
  when: {signal: {series: grad_norm, op: ">", value: 10}}
  cf: 1.0
  evidence: "spike at {{ signal.first_step }}"
- id: s.nan
  type: symptom
  title: nan
  when: {signal: {series: loss, fn: non_finite}}
  cf: 1.0
  evidence: "nan at {{ signal.first_step }}"
"""


@pytest.fixture
def nan_trace():
    return trace_from_series({"loss": [2.0, 1.9, 1.8, float("nan"), float("nan")],
                              "grad_norm": [1.0, 1.0, 50.0, 80.0, float("inf")]})


def test_emycin_combination_matches_the_documented_examples():
    assert combine(0.8, 0.4) == pytest.approx(0.88)
    assert combine(0.5, -0.6) == pytest.approx(-0.2)
    assert combine(-0.5, -0.5) == pytest.approx(-0.75)
    assert combine_groups([("a", 0.6), ("a", 0.7), ("b", 0.5)]) == pytest.approx(0.85)


def test_combination_does_not_depend_on_the_order_of_contributions():
    factors = [0.6, -0.3, 0.5, -0.7, 0.2]
    expected = combine_all(factors)
    import itertools
    for perm in itertools.permutations(factors):
        assert combine_all(list(perm)) == pytest.approx(expected)


def test_rules_chain_from_signals_through_symptoms_to_a_cause(tmp_path, nan_trace):
    write(tmp_path, "r.yaml", cause("exploding_gradients"), SPIKE_AND_NAN + """
- id: c.spike-then-nan
  type: cause
  emits: exploding_gradients
  when:
    all:
      - {fact: s.nan, as: bad}
      - {fact: s.spike, as: sp, before: bad}
  cf: 0.8
  evidence: "spike {{ bad.first_step - sp.first_step }} steps before nan"
""")
    d = diagnose(nan_trace, kb=kb_of(tmp_path))
    assert [c.id for c in d.causes] == ["exploding_gradients"]
    top = d.causes[0]
    assert top.certainty == pytest.approx(0.8)
    assert top.evidence == ["spike 1 steps before nan"]
    assert top.first_step == 2
    assert {s.id for s in d.symptoms} == {"s.spike", "s.nan"}


def test_justification_tree_reaches_the_observed_series_values(tmp_path, nan_trace):
    write(tmp_path, "r.yaml", cause("exploding_gradients"), SPIKE_AND_NAN + """
- id: c.spike
  type: cause
  emits: exploding_gradients
  when: {fact: s.spike, as: sp}
  cf: 0.7
  evidence: "spike"
""")
    d = diagnose(nan_trace, kb=kb_of(tmp_path))
    j = d.causes[0].justification[0]
    assert (j.rule_id, j.rule_cf, j.premise_cf, j.contribution) == ("c.spike", 0.7, 1.0, 0.7)
    fact_clause = j.clauses[0]
    assert fact_clause.kind == "fact" and fact_clause.fact == "s.spike"
    symptom = fact_clause.because[0]
    signal_clause = symptom.clauses[0]
    assert signal_clause.kind == "signal"
    assert signal_clause.observed == 50.0 and signal_clause.threshold == 10.0
    assert signal_clause.steps == [2, 4]


def test_evidence_groups_count_correlated_rules_once(tmp_path, nan_trace):
    write(tmp_path, "r.yaml", cause("exploding_gradients"), SPIKE_AND_NAN + """
- id: c.a
  type: cause
  emits: exploding_gradients
  evidence_group: g
  when: {fact: s.spike}
  cf: 0.6
  evidence: "a"
- id: c.b
  type: cause
  emits: exploding_gradients
  evidence_group: g
  when: {fact: s.nan}
  cf: 0.5
  evidence: "b"
- id: c.c
  type: cause
  emits: exploding_gradients
  when: {fact: s.nan}
  cf: 0.5
  evidence: "c"
""")
    d = diagnose(nan_trace, kb=kb_of(tmp_path))
    assert d.causes[0].certainty == pytest.approx(combine(0.6, 0.5))  # max(0.6, 0.5) in g, then 0.5


def test_a_disconfirming_rule_moves_a_cause_to_ruled_out(tmp_path, nan_trace):
    write(tmp_path, "r.yaml", cause("lr_too_high"), SPIKE_AND_NAN + """
- id: c.for
  type: cause
  emits: lr_too_high
  when: {fact: s.spike}
  cf: 0.5
  evidence: "spike"
- id: c.against
  type: cause
  emits: lr_too_high
  when: {context: 'precision == "fp16"'}
  cf: -0.6
  evidence: "fp16 explains it"
""")
    trace = nan_trace
    trace.header = header_from_context({"precision": "fp16"})
    d = diagnose(trace, kb=kb_of(tmp_path))
    assert d.causes == []
    assert [c.id for c in d.ruled_out] == ["lr_too_high"]
    assert d.ruled_out[0].certainty == pytest.approx(-0.2)
    assert d.ruled_out[0].bucket is None


def test_a_cause_that_explains_another_suppresses_it_but_keeps_it_visible(tmp_path, nan_trace):
    write(tmp_path, "r.yaml", cause("lr_too_high", "suppresses: [nonfinite_values]") + cause("nonfinite_values"),
          SPIKE_AND_NAN + """
- id: c.lr
  type: cause
  emits: lr_too_high
  when: {fact: s.spike}
  explains: [s.nan]
  cf: 0.6
  evidence: "spike"
- id: c.nan
  type: cause
  emits: nonfinite_values
  when: {fact: s.nan}
  cf: 0.9
  evidence: "nan"
""")
    d = diagnose(nan_trace, kb=kb_of(tmp_path))
    assert [c.id for c in d.causes] == ["lr_too_high"]
    assert [(c.id, c.suppressed_by) for c in d.suppressed] == [("nonfinite_values", "lr_too_high")]


def test_a_weak_cause_does_not_suppress(tmp_path, nan_trace):
    write(tmp_path, "r.yaml", cause("lr_too_high", "suppresses: [nonfinite_values]") + cause("nonfinite_values"),
          SPIKE_AND_NAN + """
- id: c.lr
  type: cause
  emits: lr_too_high
  when: {fact: s.spike}
  cf: 0.3
  evidence: "spike"
- id: c.nan
  type: cause
  emits: nonfinite_values
  when: {fact: s.nan}
  cf: 0.9
  evidence: "nan"
""")
    d = diagnose(nan_trace, kb=kb_of(tmp_path))
    assert [c.id for c in d.causes] == ["nonfinite_values", "lr_too_high"]


def test_result_does_not_depend_on_file_or_rule_order(tmp_path, nan_trace):
    rules_a = SPIKE_AND_NAN + """
- id: c.one
  type: cause
  emits: exploding_gradients
  when: {fact: s.spike}
  cf: 0.5
  evidence: "one"
- id: c.two
  type: cause
  emits: lr_too_high
  when: {fact: s.nan}
  cf: 0.5
  evidence: "two"
"""
    forward, backward = tmp_path / "f", tmp_path / "b"
    forward.mkdir()
    backward.mkdir()
    write(forward, "a.yaml", cause("exploding_gradients") + cause("lr_too_high"), rules_a)
    # The same rules split over two files whose names sort the other way, rules reversed.
    blocks = rules_a.strip().split("\n- ")
    blocks = ["- " + b if not b.startswith("- ") else b for b in blocks]
    write(backward, "z.yaml", cause("exploding_gradients"), "\n".join(reversed(blocks[:2])) + "\n")
    write(backward, "a.yaml", cause("lr_too_high"), "\n".join(reversed(blocks[2:])) + "\n")
    d1 = diagnose(nan_trace, kb=kb_of(forward))
    d2 = diagnose(nan_trace, kb=kb_of(backward))
    strip = lambda d: [(c.id, c.rank, c.certainty, c.evidence) for c in d.causes]  # noqa: E731
    assert strip(d1) == strip(d2)
    assert [c.id for c in d1.causes] == ["exploding_gradients", "lr_too_high"]  # tie broken by severity, step, id


def test_a_cycle_between_rules_is_a_load_error_not_a_hang(tmp_path):
    write(tmp_path, "r.yaml", "", """
- id: s.a
  type: symptom
  title: a
  when: {fact: s.b}
  cf: 1.0
  evidence: a
- id: s.b
  type: symptom
  title: b
  when: {fact: s.a}
  cf: 1.0
  evidence: b
""")
    with pytest.raises(RuleFileError, match=r"rule graph has a cycle: s\.a -> s\.b -> s\.a"):
        kb_of(tmp_path)


def test_a_rule_whose_inputs_are_missing_is_skipped_and_listed(tmp_path, nan_trace):
    write(tmp_path, "r.yaml", cause("overfitting"), """
- id: c.val
  type: cause
  emits: overfitting
  when: {signal: {series: eval.val.loss, fn: ratio_to_running_min, op: ">", value: 1.1}}
  cf: 0.8
  evidence: "val"
- id: c.lr
  type: cause
  emits: overfitting
  requires: {context: [lr]}
  when: {context: 'lr > 1'}
  cf: 0.5
  evidence: "lr"
""")
    d = diagnose(nan_trace, kb=kb_of(tmp_path))
    skipped = {s.id: s.missing for s in d.rules_skipped}
    assert skipped == {"c.val": ["eval.val.loss"], "c.lr": ["context.lr"]}
    assert d.checks_skipped == ["overfitting"] and d.checks_run == []


def test_per_layer_rules_fire_once_per_layer_and_name_the_layers(tmp_path):
    write(tmp_path, "r.yaml", cause("dead_relu"), """
- id: s.dead
  type: symptom
  title: dead
  for_each: layer
  when: {signal: {series: activations.zero_fraction, op: ">", value: 0.5, for: 2}}
  cf: 1.0
  evidence: "{{ layer }} dead from {{ signal.first_step }}"
- id: c.dead
  type: cause
  emits: dead_relu
  when: {fact: s.dead, as: d}
  cf: 0.7
  evidence: "{{ d.n_layers | int }} layers dead, first {{ d.layer }}"
""")
    trace = trace_from_series({
        'activations.zero_fraction{layer="a"}': [0.1, 0.2, 0.9, 0.9],
        'activations.zero_fraction{layer="b"}': [0.9, 0.9, 0.9, 0.9],
        'activations.zero_fraction{layer="c"}': [0.1, 0.1, 0.1, 0.1],
    })
    d = diagnose(trace, kb=kb_of(tmp_path))
    assert sorted(s.key for s in d.symptoms) == ["s.dead{layer=a}", "s.dead{layer=b}"]
    assert d.causes[0].evidence == ["2 layers dead, first b"]
    assert d.causes[0].layers == ["a", "b"]


def test_a_rule_that_fails_at_evaluation_is_reported_and_the_others_still_run(tmp_path, nan_trace):
    write(tmp_path, "r.yaml", cause("exploding_gradients") + cause("lr_too_high"), SPIKE_AND_NAN + """
- id: c.ok
  type: cause
  emits: exploding_gradients
  when: {fact: s.spike}
  cf: 0.6
  evidence: ok
- id: c.boom
  type: cause
  emits: lr_too_high
  when: {signal: {series: grad_norm, fn: "delta(window=2)", op: ">", value: 0}}
  cf: 0.6
  evidence: boom
""")
    kb = kb_of(tmp_path)
    from diag.engine import signals

    original = signals.SIGNALS["delta"]
    broken = signals.SignalSpec(fn=lambda x, window=1: (_ for _ in ()).throw(ValueError("bad window")),
                                params=original.params)
    signals.SIGNALS["delta"] = broken
    try:
        d = diagnose(nan_trace, kb=kb)
    finally:
        signals.SIGNALS["delta"] = original
    assert [e.id for e in d.rule_errors] == ["c.boom"] and "bad window" in d.rule_errors[0].message
    assert [c.id for c in d.causes] == ["exploding_gradients"]


def test_record_rules_fire_once_per_matching_record(tmp_path):
    from diag.trace.records import Check

    write(tmp_path, "r.yaml", cause("incorrect_gradient"), """
- id: c.check
  type: cause
  emits: incorrect_gradient
  for_each: record
  when: {record: {kind: check, where: 'not passed'}}
  cf: 0.9
  evidence: "{{ record.target }} error {{ record.error | sci }}"
""")
    trace = trace_from_series({"loss": [1.0, 0.9]}, records=[
        Check(name="gradient", target="fc1", passed=False, error=0.01),
        Check(name="gradient", target="fc2", passed=True, error=1e-9),
        Check(name="gradient", target="fc3", passed=False, error=0.2),
    ])
    d = diagnose(trace, kb=kb_of(tmp_path))
    assert d.causes[0].evidence == ["fc3 error 2.00e-01", "fc1 error 1.00e-02"] or \
        sorted(d.causes[0].evidence) == ["fc1 error 1.00e-02", "fc3 error 2.00e-01"]
    assert d.causes[0].certainty == pytest.approx(0.9)  # one evidence group: counted once


def test_near_miss_names_the_clause_that_failed(tmp_path, nan_trace):
    write(tmp_path, "r.yaml", cause("fp16_overflow"), SPIKE_AND_NAN + """
- id: c.fp16
  type: cause
  emits: fp16_overflow
  when:
    all:
      - context: 'precision == "fp16"'
      - fact: s.nan
  cf: 0.8
  evidence: fp16
""")
    nan_trace.header = header_from_context({"precision": "bf16"})
    d = diagnose(nan_trace, kb=kb_of(tmp_path))
    miss = d.near_misses[0]
    assert (miss.cause, miss.satisfied, miss.total) == ("fp16_overflow", 1, 2)
    failed = [c for c in miss.clauses if not c.result]
    assert failed[0].text == 'precision == "fp16"' and failed[0].observed == "precision=bf16"


def test_a_user_rule_replaces_a_builtin_only_when_marked_override(tmp_path):
    text = """
- id: grad.norm-spike
  type: symptom
  title: my spike
  when: {signal: {series: grad_norm, op: ">", value: 5}}
  cf: 1.0
  evidence: mine
"""
    write(tmp_path, "r.yaml", "", text)
    with pytest.raises(RuleFileError, match="duplicate rule id 'grad.norm-spike'.*set override: true"):
        load_knowledge_base([tmp_path], use_env=False)
    write(tmp_path, "r.yaml", "", text.replace("cf: 1.0", "cf: 1.0\n  override: true"))
    kb = load_knowledge_base([tmp_path], use_env=False)
    assert kb.rules["grad.norm-spike"].spec.title == "my spike"


def test_rules_path_environment_variable_adds_user_folders(tmp_path, monkeypatch, nan_trace):
    write(tmp_path, "r.yaml", cause("my_cause"), """
- id: mine.nan
  type: cause
  emits: my_cause
  when: {signal: {series: loss, fn: non_finite}}
  cf: 0.99
  evidence: mine
""")
    monkeypatch.setenv("DIAG_RULES_PATH", str(tmp_path))
    d = diagnose(nan_trace)
    assert d.causes[0].id == "my_cause"


def test_keep_going_loads_the_good_rules_and_lists_the_bad(tmp_path, nan_trace):
    write(tmp_path, "r.yaml", cause("exploding_gradients"), SPIKE_AND_NAN + """
- id: c.good
  type: cause
  emits: exploding_gradients
  when: {fact: s.spike}
  cf: 0.6
  evidence: good
- id: c.bad
  type: cause
  emits: exploding_gradients
  when: {signal: {series: grad_nrom}}
  cf: 0.6
  evidence: bad
""")
    with pytest.raises(RuleFileError, match="unknown series .grad_nrom."):
        kb_of(tmp_path)
    kb = kb_of(tmp_path, keep_going=True)
    assert "c.good" in kb.rules and "c.bad" not in kb.rules
    assert any("grad_nrom" in p.message for p in kb.problems)
    assert diagnose(nan_trace, kb=kb).causes[0].id == "exploding_gradients"


def test_a_cause_whose_symptoms_cannot_be_measured_is_not_counted_as_checked(tmp_path):
    write(tmp_path, "r.yaml", cause("fp16_overflow"), """
- id: s.collapse
  type: symptom
  title: collapse
  when: {signal: {series: loss_scale, fn: ratio_to_running_max, op: "<=", value: 0.001}}
  cf: 1.0
  evidence: collapse
- id: c.collapse
  type: cause
  emits: fp16_overflow
  when: {fact: s.collapse}
  cf: 0.8
  evidence: fp16
""")
    d = diagnose(trace_from_series({"loss": [2.0, 1.0]}), kb=kb_of(tmp_path))
    assert d.checks_run == [] and d.checks_skipped == ["fp16_overflow"]
    assert {s.id: s.missing for s in d.rules_skipped} == {"s.collapse": ["loss_scale"], "c.collapse": ["loss_scale"]}


def test_builtin_knowledge_base_is_shared_and_user_folders_are_reread(tmp_path, monkeypatch):
    from diag.engine.api import builtin_knowledge_base

    monkeypatch.delenv("DIAG_RULES_PATH", raising=False)
    first = builtin_knowledge_base()
    assert builtin_knowledge_base() is first  # the TUI asks after diagnose(): no second parse
    assert "lr_too_high" in first.causes
    write(tmp_path, "r.yaml", cause("my_cause"), """
- id: mine.nan
  type: cause
  emits: my_cause
  when: {signal: {series: loss, fn: non_finite}}
  cf: 0.99
  evidence: mine
""")
    assert "my_cause" in builtin_knowledge_base([tmp_path]).causes
    write(tmp_path, "r.yaml", cause("my_other_cause"), """
- id: mine.nan
  type: cause
  emits: my_other_cause
  when: {signal: {series: loss, fn: non_finite}}
  cf: 0.99
  evidence: mine
""")
    edited = builtin_knowledge_base([tmp_path])
    assert "my_other_cause" in edited.causes and "my_cause" not in edited.causes
    assert "my_cause" not in builtin_knowledge_base().causes


def test_every_builtin_evidence_sentence_stands_on_its_own():
    """explain prints each rule's evidence as its own line, in certainty order: a sentence that
    continues another ("and the loss ...") reads as a fragment when it comes first."""
    kb = load_knowledge_base((), use_env=False)
    assert len(kb.rules) > 50  # the built-in rules were loaded: an empty list has no fragments either
    continuations = ("and", "but", "or", "so", "while", "although", "though", "yet", "which", "whose")
    fragments = [f"{rule_id}: {rule.spec.evidence}" for rule_id, rule in kb.rules.items()
                 if rule.spec.evidence.split(maxsplit=1)[0].lower() in continuations]
    assert fragments == []


def test_an_expression_text_met_again_is_parsed_again_only_when_its_symbols_types_differ():
    from diag.engine.expressions import FLOAT, STRING, ExpressionError, compile_expression, evaluate

    first = compile_expression("lr > 0.1 and precision == 'fp16'", {"lr": FLOAT, "precision": STRING, "x": FLOAT})
    # Other symbols around it: the same parse.
    again = compile_expression("lr > 0.1 and precision == 'fp16'", {"lr": FLOAT, "precision": STRING})
    assert again.rule is first.rule and again.symbols == first.symbols == {"lr", "precision"}
    assert evaluate(again, {"lr": 0.3, "precision": "fp16"}) is True
    # A symbol of another type: parsed again, and refused as a fresh parse would refuse it.
    with pytest.raises(ExpressionError):
        compile_expression("lr > 0.1 and precision == 'fp16'", {"lr": STRING, "precision": STRING})
    with pytest.raises(ExpressionError, match="unknown name"):
        compile_expression("lr > 0.1 and precision == 'fp16'", {"lr": FLOAT})


@pytest.mark.parametrize("text, values, result", [
    ("$abs(lr) > 0.1", {"lr": -0.3}, True),  # a built-in: a symbol no table holds
    ("[n for n in names if n != 'fc'] == ['conv']", {"names": ["conv", "fc"]}, True),  # a comprehension's variable
])
def test_an_expression_with_names_no_table_holds_compiles_again_from_the_shared_parse(text, values, result):
    from diag.engine.expressions import FLOAT, STRINGS, compile_expression, evaluate

    types = {"lr": FLOAT, "names": STRINGS}
    first = compile_expression(text, types)
    again = compile_expression(text, dict(types))
    assert again.rule is first.rule
    assert evaluate(first, values) is result and evaluate(again, values) is result


def test_a_missing_attribute_at_evaluation_fails_with_the_same_message_and_no_suggestion_lookup(monkeypatch):
    # rule-engine's "did you mean" (Jaro-Winkler over every attribute name) is skipped while diag
    # evaluates: the error's message never held it. Parsing still suggests.
    import rule_engine.suggestions

    from diag.engine.conditions.syntax import expression_types
    from diag.engine.expressions import EvaluationFailed, ExpressionError, compile_expression, evaluate

    types = expression_types({"fit"})
    with pytest.raises(ExpressionError, match=r"unknown attribute 'lastt' in 'fit.lastt > 1' \(did you mean 'last'\?\)"):
        compile_expression("fit.lastt > 1", types)
    expression = compile_expression("fit.last > 1", types)
    looked_up = []
    monkeypatch.setattr(rule_engine.suggestions, "_suggest", lambda *args: looked_up.append(args))
    with pytest.raises(EvaluationFailed) as failed:
        evaluate(expression, {"fit": None})
    assert str(failed.value) == "'fit.last > 1': unknown attribute: 'last'" and looked_up == []
    assert evaluate(expression, {"fit": {"last": 2.0}}) is True
