"""A preflight's results: as a ``Diagnosis`` (so every renderer and the TUI show it), and as trace
``check`` records.

The diagnosis holds the findings as causes, ranked by certainty, a cause that another one explains
moved to ``suppressed`` (a too-high learning rate explains exploding gradients); each probe's
one-line account of what it measured is a symptom (``preflight.lr_range``), and the probes that
could not run are skipped rules, with what they lacked.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from diag.engine.certainty import LIKELY, combine
from diag.engine.diagnosis import Diagnosis, SkippedRule, SymptomResult, TraceInfo
from diag.engine.render import render_markdown, render_text
from diag.preflight.findings import Finding, suppressions, to_cause

COPIES_NOTE = ("Every probe trained its own copy of the model and optimizer; "
               "the model and optimizer given were not changed.")
SUPPRESS_AT = 0.5  # a cause explains another only when it is itself at least this certain


@dataclass
class PreflightReport:
    """What ``diag.preflight`` found.

    Attributes:
      target: what was checked (the CLI's TARGET, or ``"preflight"``).
      framework: ``"torch"`` or ``"flax"``.
      results: one ``ProbeResult`` per probe, in the order they ran.
      budget_s: the time budget; seconds: the time taken.
    """

    target: str
    framework: str
    results: list = field(default_factory=list)
    checks: dict = field(default_factory=dict)  # probe -> cause ids it checks
    budget_s: float = 60.0
    seconds: float = 0.0
    steps: int = 0  # optimizer steps the probes took on their copies

    @property
    def findings(self) -> list[Finding]:
        return sorted((f for r in self.results for f in r.findings), key=lambda f: -f.certainty)

    @property
    def failed(self) -> bool:
        """Whether a finding is at least likely (the CLI then exits 1)."""
        return any(c.bucket == "likely" for c in self.diagnosis().causes)

    def diagnosis(self) -> Diagnosis:
        merged: dict[str, Finding] = {}
        for f in self.findings:
            if f.id in merged:  # two probes saw the same cause: their evidence combines
                m = merged[f.id]
                m.certainty = combine(m.certainty, f.certainty)
                m.evidence += [e for e in f.evidence if e not in m.evidence]
                m.fix += [x for x in f.fix if x not in m.fix]
                m.layers += [x for x in f.layers if x not in m.layers]
            else:
                merged[f.id] = Finding(f.id, f.certainty, list(f.evidence), list(f.fix), f.probe, list(f.layers), list(f.series))
        ordered = sorted(merged.values(), key=lambda f: -f.certainty)
        explains = suppressions()
        suppressed_by: dict[str, str] = {}
        for f in ordered:
            if f.certainty >= SUPPRESS_AT and f.id not in suppressed_by:
                for other in ordered:
                    if other.id in explains.get(f.id, ()) and other.id not in suppressed_by and other.certainty <= f.certainty:
                        suppressed_by[other.id] = f.id
        kept = [f for f in ordered if f.id not in suppressed_by and f.bucket]
        causes = [to_cause(f, rank) for rank, f in enumerate(kept, 1)]
        suppressed = [to_cause(f, len(kept) + i, suppressed_by=suppressed_by[f.id])
                      for i, f in enumerate((f for f in ordered if f.id in suppressed_by), 1)]
        ran = [r for r in self.results if r.status != "skipped"]
        skipped = [r for r in self.results if r.status == "skipped"]
        checked = list(dict.fromkeys(c for r in ran for c in self.checks.get(r.probe, ())))
        unchecked = list(dict.fromkeys(c for r in skipped for c in self.checks.get(r.probe, ()) if c not in checked))
        return Diagnosis(
            trace=TraceInfo(path=self.target, run_id=f"preflight of {self.target}", framework=self.framework,
                            steps=self.steps, series=[f"preflight.{r.probe}" for r in ran]),
            causes=causes,
            suppressed=suppressed,
            symptoms=[SymptomResult(id=f"preflight.{r.probe}", key=f"preflight.{r.probe}", title=r.summary or r.status,
                                    labels={"status": r.status, "seconds": f"{r.seconds:.2f}"},
                                    certainty=max((f.certainty for f in r.findings), default=0.0),
                                    evidence=[r.summary] if r.summary else [], series=[f"preflight.{r.probe}"])
                      for r in self.results],
            rules_fired=[f"preflight.{r.probe}" for r in ran if r.findings],
            rules_skipped=[SkippedRule(id=f"preflight.{r.probe}", missing=r.missing or ["time budget"]) for r in skipped],
            checks_run=checked,
            checks_skipped=unchecked,
        )

    def _probe_lines(self) -> list[str]:
        width = max((len(r.probe) for r in self.results), default=0)
        lines = []
        for r in self.results:
            mark = {"ok": "ok", "findings": "FOUND", "stopped": "stopped", "skipped": "skipped", "error": "ERROR"}[r.status]
            text = r.summary or (f"skipped: needs {', '.join(r.missing)}" if r.missing else "")
            lines.append(f"  {r.probe:<{width}}  {mark:<7} {r.seconds:5.1f}s  {text}")
        return lines

    def text(self) -> str:
        """The diagnosis as ``diag explain`` prints it, then what each probe measured."""
        body = _without_explain_hint(render_text(self.diagnosis()))
        tail = [f"Probes ({self.seconds:.1f}s of a {self.budget_s:g}s budget, {self.framework}):", *self._probe_lines(), COPIES_NOTE]
        return body + "\n" + "\n".join(tail) + "\n"

    def markdown(self) -> str:
        body = render_markdown(self.diagnosis())
        rows = ["## Probes", "", "| probe | status | seconds | measured |", "|---|---|---|---|"]
        rows += [f"| `{r.probe}` | {r.status} | {r.seconds:.1f} | {r.summary} |" for r in self.results]
        return body + "\n" + "\n".join(rows) + "\n\n" + COPIES_NOTE + "\n"

    def json(self) -> str:
        return self.diagnosis().to_json()

    def render(self, fmt: str = "text") -> str:
        return {"text": self.text, "markdown": self.markdown, "json": self.json}[fmt]()

    # ---------------------------------------------------------------- trace records

    def check_records(self) -> list:
        """One ``check`` record per probe (passed: no finding), then one per finding."""
        from diag.trace.records import Check

        records = []
        for r in self.results:
            if r.status == "skipped":
                continue
            records.append(Check(name=f"preflight.{r.probe}", target=r.probe, method=self.framework,
                                 passed=not any(f.bucket for f in r.findings), message=r.summary or r.status))
            for f in r.findings:
                records.append(Check(name=f"preflight.{r.probe}", target=f.id, method=self.framework, passed=False,
                                     message=f"{f.id} ({f.bucket or 'below weak'} {f.certainty:.2f}): {' '.join(f.evidence)}"))
        return records

    def write_trace(self, path: str | os.PathLike) -> Path:
        """Append the check records to a trace (a new file gets a header first)."""
        from diag.trace.records import Header
        from diag.trace.writer import TraceWriter

        path = Path(path)
        fresh = not path.exists() or path.stat().st_size == 0
        with TraceWriter(path, flush_every=10_000) as writer:
            if fresh:
                writer.write(Header(run_id=f"preflight:{self.target}", framework=self.framework, diag_version=_version(),
                                    model_name=self.target, tags={"source": "diag preflight"}))
            writer.write_many(self.check_records())
        return path


def _version() -> str | None:
    # From the installed metadata, not `diag.__version__`: diag's __init__ reaches this package
    # (diag.preflight), so importing diag from here would close an import cycle.
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("diag")
    except PackageNotFoundError:  # pragma: no cover - running from a bare checkout
        return None


_EXPLAIN_HINT = re.compile(r"^   why: diag explain .*? --why \S+   docs: ", re.M)


def _without_explain_hint(text: str) -> str:
    # A preflight has no trace to ask `diag explain --why` about; keep only the docs pointer.
    return _EXPLAIN_HINT.sub("   docs: ", text)
