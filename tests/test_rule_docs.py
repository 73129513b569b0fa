"""The texts a user reads about the knowledge base (``diag rules show``, the evidence of a report)
speak to users: no internal references (the seed documents the rules were drafted from, benchmark
scenario ids, issue numbers) and no doubled words ("fact fact")."""

from __future__ import annotations

import re

import pytest

from diag.cli import main
from diag.engine.kb import load_knowledge_base

# Internal references that mean nothing outside the project: the seed documents ("seed 003"),
# benchmark scenario ids ("dead_relu/mlp-bias-minus3") and sets ("set4"), issue and ticket numbers.
INTERNAL = re.compile(
    r"\bseeds?\s*0\d\d\b"
    r"|\b[a-z][a-z0-9_]*/[a-z0-9]+(?:-[a-z0-9.]+)+\b"
    r"|\bset\s?\d\b"
    r"|\bissue\s*#?\d+"
    r"|\bKB-\d+",
    re.IGNORECASE,
)
# A word written twice in a row. Series values in examples repeat on purpose ("loss: nan nan nan").
DOUBLED = re.compile(r"\b([A-Za-z]+)\s+\1\b", re.IGNORECASE)
REPEATED_VALUES = {"nan", "inf"}
URL = re.compile(r"https?://\S+")
# Where a rule is defined ("defined in /home/me/diag-src/knowledge_base/x.yaml:4"): the checkout's
# own path, whatever its folder names look like, is not prose either.
FILE_PATH = re.compile(r"(?<![\w/])/(?:[\w.-]+/)+[\w.-]+(?::\d+)?")


def problems_in(text: str) -> list[str]:
    """What is wrong with one user-facing text: internal references and doubled words."""
    flat = URL.sub("<url>", " ".join(str(text).split()))  # a reference's path is not prose
    flat = FILE_PATH.sub("<file>", flat)
    found = [f"internal reference {m.group(0)!r}" for m in INTERNAL.finditer(flat)]
    found += [f"doubled word {m.group(0)!r}" for m in DOUBLED.finditer(flat)
              if m.group(1).lower() not in REPEATED_VALUES]
    return found


def test_the_checkout_path_a_page_names_is_not_an_internal_reference():
    # CI clones into folders like /tmp/ci-check, whose name has the shape of a scenario id.
    page = "defined in /tmp/ci-check/knowledge_base/loss/x.yaml:4; seen in dead_relu/mlp-bias-minus3"
    assert problems_in(page) == ["internal reference 'dead_relu/mlp-bias-minus3'"]


@pytest.mark.parametrize("text, expected", [
    ("a log-scale scan (seed 003)", "internal reference 'seed 003'"),
    ("as in exploding_gradients/rnn-tanh-recurrent3", "internal reference 'exploding_gradients/rnn-tanh-recurrent3'"),
    ("set4 misses it", "internal reference 'set4'"),
    ("tracked as KB-42", "internal reference 'KB-42'"),
    ("when (fact fact loss.diverging)", "doubled word 'fact fact'"),
    ("the the\n   loss", "doubled word 'the the'"),
    ("see https://example.org/a/b-c then seed 000", "internal reference 'seed 000'"),
])
def test_the_scan_finds_internal_references_and_doubled_words(text, expected):
    assert expected in problems_in(text)


@pytest.mark.parametrize("text", [
    "loss: 2.1 1.9 nan nan nan (first non-finite at step 3)",
    "update_norm: 0 0 0 ...",
    "optax.clip_by_global_norm(1.0) / torch.nn.utils.clip_grad_norm_(params, 1.0)",
    "healthy runs of diag's diagnosis benchmark (benchmarks/diagnosis)",
    "https://github.com/pytorch/examples/tree/main/word_language_model and more",
])
def test_the_scan_passes_ordinary_texts(text):
    assert problems_in(text) == []


def _builtin():
    return load_knowledge_base([], use_env=False)


def test_every_doc_field_of_the_builtin_knowledge_base_speaks_to_users():
    kb = _builtin()
    texts = []
    for cause_id, cause in kb.causes.items():
        spec = cause.spec
        texts.append((cause_id, "title", spec.title))
        for section in ("what", "why", "example", "use_instead", "false_positives"):
            texts.append((cause_id, section, getattr(spec.doc, section)))
        for fix in spec.fix:
            texts += [(cause_id, "fix", fix.action), (cause_id, "fix when", fix.when)]
    for rule_id, rule in kb.rules.items():
        spec = rule.spec
        texts += [(rule_id, "title", spec.title), (rule_id, "doc", spec.doc), (rule_id, "evidence", spec.evidence)]
    checked = [(owner, field, text) for owner, field, text in texts if text]
    assert len(checked) > 3 * len(kb.causes) + len(kb.rules)  # the scan saw every section, not an empty list
    bad = [f"{owner} {field}: {p}" for owner, field, text in checked for p in problems_in(text)]
    assert bad == []


def test_rules_show_prints_no_doubled_words_for_any_cause_or_rule(capsys, monkeypatch):
    """Every page of ``diag rules show``: the doc fields and how each rule's condition is printed."""
    import diag.engine.kb as kb_module

    monkeypatch.delenv("DIAG_RULES_PATH", raising=False)
    kb = _builtin()
    # One real load serves every page (a load per id would take minutes on a shared machine).
    monkeypatch.setattr(kb_module, "load_knowledge_base", lambda *a, **k: kb)
    ids = sorted(kb.causes) + sorted(kb.rules)
    assert len(ids) > 100  # every page was shown: an empty knowledge base has no doubled words either
    bad = []
    for item in ids:
        assert main(["rules", "show", item]) == 0
        out = capsys.readouterr().out
        bad += [f"{item}: {p}" for p in problems_in(out)]
    assert bad == []
