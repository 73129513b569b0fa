"""Text of a user rule file for tests and benchmarks: one cause (``my_cause``), then rules."""

from __future__ import annotations

HEAD = """\
apiVersion: diag/v1
causes:
  - id: my_cause
    title: t
    category: loss
    severity: high
    doc: {what: w, why: y, example: e, use_instead: u, false_positives: f}
    fix: [{action: a}]
rules:
"""


def cause_rule(when: str, rule_id: str = "my.rule", evidence: str = "e") -> str:
    """One rule emitting ``my_cause`` when ``when`` (a clause in flow YAML) holds, unindented."""
    return f"""\
- id: {rule_id}
  type: cause
  emits: my_cause
  when: {when}
  cf: 0.5
  evidence: {evidence}
"""
