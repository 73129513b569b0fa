"""A preflight finding: a root cause in the same form as the causes of a diagnosis.

A probe concludes a cause of ``shared/CAUSES.md`` (``disconnected_parameters``, ``lr_too_high``)
with a certainty, one sentence of evidence per observation, and the fix. ``to_cause`` turns it into
the :class:`~diag.engine.diagnosis.CauseResult` that ``diag explain`` prints, so the renderers and
the TUI show preflight findings unchanged. Title, category and severity come from the knowledge
base's catalog entry for the id; the few findings that no catalog cause fits are described here.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

from diag.engine.certainty import bucket as bucket_of
from diag.engine.diagnosis import CauseResult, FixItem

# Causes a probe can conclude that no catalog entry describes (title, category, severity).
LOCAL_CAUSES: dict[str, tuple[str, str, str]] = {
    "constant_features": ("Input features that never change", "data", "low"),
    "probe_error": ("The training step raised an error", "code", "high"),
    # in shared/CAUSES.md, without a rule in the knowledge base yet
    "nondeterminism": ("Same seed, different results", "convergence", "medium"),
}

# A cause that explains another when both come from one preflight (on top of the catalog's own
# ``suppresses``): a wrong loss keeps one batch from being fitted, a too-high lr explodes it.
EXTRA_SUPPRESSES: dict[str, tuple[str, ...]] = {
    "loss_output_mismatch": ("underfitting", "bad_initialization"),
    "disconnected_parameters": ("underfitting", "params_not_updating"),
    "shape_mismatch": ("underfitting", "bad_initialization"),
    "dtype_mismatch": ("underfitting",),
    "nan_in_input_data": ("nonfinite_values", "bad_initialization", "underfitting", "probe_error"),
}


@dataclass
class Finding:
    """One cause a probe concluded.

    Attributes:
      id: a cause id from shared/CAUSES.md (or ``LOCAL_CAUSES``).
      certainty: in [0, 1]; likely >= 0.6, possible >= 0.3, weak >= 0.2 (as in a diagnosis).
      evidence: one full sentence per observation, with the measured numbers.
      fix: what to change, most specific first.
      probe: the probe that found it.
      layers: parameters or layers the evidence points at, forward order.
      series: what the evidence was read from (``"train_batches"``, ``"loss"``).
    """

    id: str
    certainty: float
    evidence: list[str]
    fix: list[str] = field(default_factory=list)
    probe: str = ""
    layers: list[str] = field(default_factory=list)
    series: list[str] = field(default_factory=list)

    @property
    def bucket(self) -> Optional[str]:
        return bucket_of(self.certainty)


def _catalog():
    from diag.engine.api import builtin_knowledge_base

    return builtin_knowledge_base(use_env=False).causes


def suppressions() -> dict[str, set[str]]:
    """Which cause explains which: the catalog's ``suppresses`` plus ``EXTRA_SUPPRESSES``."""
    table: dict[str, set[str]] = {cid: set(c.spec.suppresses) for cid, c in _catalog().items()}
    for cid, explained in EXTRA_SUPPRESSES.items():
        table.setdefault(cid, set()).update(explained)
    return table


def to_cause(f: Finding, rank: int, *, suppressed_by: str | None = None) -> CauseResult:
    """The finding as a ``CauseResult`` (what ``diag explain`` renders)."""
    entry = _catalog().get(f.id)
    if entry is not None:
        title, category, severity = entry.spec.title, entry.spec.category, entry.spec.severity
        catalog_fix = [fx.action for fx in entry.spec.fix]
        docs = f"diag rules show {f.id}"
    else:
        title, category, severity = LOCAL_CAUSES.get(f.id, (f.id.replace("_", " ").capitalize(), "preflight", "medium"))
        catalog_fix = []
        docs = "diag preflight --help"
    fixes = list(dict.fromkeys(f.fix or catalog_fix))  # the probe's own fix is the specific one
    return CauseResult(
        id=f.id, rank=rank, certainty=round(float(f.certainty), 3), bucket=f.bucket, title=title,
        severity=severity, category=category, evidence=list(f.evidence), layers=list(f.layers),
        series=list(f.series) or [f"preflight.{f.probe}"], fix=[FixItem(action=a) for a in fixes],
        suppressed_by=suppressed_by, docs=docs,
    )
