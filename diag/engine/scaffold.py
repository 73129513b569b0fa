"""``diag rules new``: a rule file and its test file that validate and pass from the start.

The scaffold is a complete, working example (a cause concluded when the smoothed training loss
ends above 0.5), so a user edits something that runs rather than filling in blanks.

Example:
  >>> import tempfile
  >>> paths = scaffold_rule("loss_stuck_high", tempfile.mkdtemp())
  >>> [p.name for p in paths]
  ['loss_stuck_high.yaml', 'loss_stuck_high.test.yaml']
"""

from __future__ import annotations

import re
from pathlib import Path

RULE_TEMPLATE = """\
# {cause_id}: a rule file made by `diag rules new`. Edit it, then run:
#   diag rules test {folder}      (the cases in {cause_id}.test.yaml)
#   diag explain RUN.jsonl --rules {folder}
apiVersion: diag/v1

causes:
  - id: {cause_id}
    title: The training loss ends above the level this project expects
    category: {category}
    severity: medium
    fix:
      - action: Describe the first thing to change, as an imperative sentence.
        effort: low
    doc:
      what: Fires when the training loss, averaged over its last 20 points, ends above 0.5.
      why: Explain why this breaks training and why the threshold is 0.5 (a loss above 0.5 late in training counts as high).
      example: "loss: 2.3 2.1 1.9 ... 1.6 1.6 1.6"
      use_instead: What a healthy run looks like.
      false_positives: When the rule may fire although the cause is absent.
      references: []

rules:
  - id: {slug}.loss-ends-high
    type: cause
    emits: {cause_id}
    when:
      signal: {{series: loss, smooth: 20, op: ">", value: 0.5, at: last}}
    cf: 0.6
    evidence: "the training loss ends at {{{{ signal.last | fixed }}}} (mean of the last 20 points), above 0.5"
"""

TEST_TEMPLATE = """\
rule_files: [{cause_id}.yaml]
tests:
  - name: a loss that ends high is reported
    input_series:
      - {{series: loss, values: '2.3-0.01x69 1.6+0x29'}}
    expect:
      causes:
        - {{id: {cause_id}, evidence_contains: "ends at 1.60"}}

  - name: a loss that falls below the level is not
    input_series:
      - {{series: loss, values: '2.3-0.02x99 0.2x30'}}
    expect:
      absent_causes: [{cause_id}]
"""


class ScaffoldError(ValueError):
    """The name or folder for a new rule cannot be used."""


def scaffold_rule(cause_id: str, folder: str | Path, *, category: str = "convergence", force: bool = False):
    """Write ``<folder>/<cause_id>.yaml`` and its ``.test.yaml``; returns both paths."""
    if not re.fullmatch(r"[a-z][a-z0-9_]*", cause_id):
        raise ScaffoldError(f"{cause_id!r} is not a cause id: use lowercase letters, digits and _ (e.g. loss_stuck_high)")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    rule_path = folder / f"{cause_id}.yaml"
    test_path = folder / f"{cause_id}.test.yaml"
    for path in (rule_path, test_path):
        if path.exists() and not force:
            raise ScaffoldError(f"{path} exists; pass --force to overwrite it")
    values = {"cause_id": cause_id, "slug": cause_id, "category": category, "folder": str(folder)}
    rule_path.write_text(RULE_TEMPLATE.format(**values), encoding="utf-8")
    test_path.write_text(TEST_TEMPLATE.format(**values), encoding="utf-8")
    return [rule_path, test_path]
