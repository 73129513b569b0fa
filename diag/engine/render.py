"""A Diagnosis as text (like a compiler diagnostic), Markdown, or JSON; and the why-tree.

Example:
  >>> from diag.engine.diagnosis import Diagnosis, TraceInfo
  >>> print(render_text(Diagnosis(trace=TraceInfo(path="run.jsonl", steps=0))).splitlines()[0])
  diag: no cause found in run.jsonl (0 steps)
"""

from __future__ import annotations

from diag.engine.diagnosis import CauseResult, ClauseResult, Diagnosis, Justification


def _fmt(x) -> str:
    if isinstance(x, float):
        if x != x:
            return "nan"
        if x in (float("inf"), float("-inf")):
            return "inf" if x > 0 else "-inf"
        if x == int(x) and abs(x) < 1e15:
            return str(int(x))
        return f"{x:.3g}"
    if isinstance(x, list):
        return "[" + ", ".join(_fmt(v) for v in x) + "]"
    return str(x)


def _trace_line(d: Diagnosis) -> str:
    t = d.trace
    name = t.run_id or t.path
    layers = f", {t.layers} layers" if t.layers else ""
    return f"{name} ({t.steps} steps{layers})"


def _headline(d: Diagnosis) -> str:
    if not d.causes:
        return f"diag: no cause found in {_trace_line(d)}"
    counts = {b: sum(1 for c in d.causes if c.bucket == b) for b in ("likely", "possible", "weak")}
    parts = [f"{n} {b}" for b, n in counts.items() if n]
    total = len(d.causes)
    return f"diag: {total} cause{'s' if total != 1 else ''} ({', '.join(parts)}) in {_trace_line(d)}"


def _where(c: CauseResult) -> str:
    parts = []
    if c.series:
        parts.append("series " + ", ".join(c.series))
    if c.steps:
        parts.append(f"step {c.steps[0]}" if c.steps[0] == c.steps[1] else f"steps {c.steps[0]}-{c.steps[1]}")
    if c.layers:
        shown = c.layers[:4]
        more = f" (+{len(c.layers) - 4} more)" if len(c.layers) > 4 else ""
        parts.append(("layer " if len(c.layers) == 1 else "layers ") + ", ".join(shown) + more)
    return " · ".join(parts)


def _missing_summary(d: Diagnosis, limit: int = 6) -> list[str]:
    by_input: dict[str, list[str]] = {}
    for skipped in d.rules_skipped:
        for m in skipped.missing:
            by_input.setdefault(m, []).append(skipped.id)
    lines = [f"{name} ({len(rules)} rule{'s' if len(rules) != 1 else ''})" for name, rules in sorted(by_input.items())]
    if len(lines) > limit:
        lines = lines[:limit] + [f"and {len(lines) - limit} more"]
    return lines


def render_text(d: Diagnosis, *, trace_arg: str | None = None) -> str:
    """The default ``diag explain`` output."""
    out = [_headline(d), ""]
    trace_arg = trace_arg or d.trace.path
    for c in d.causes:
        out.append(f"{c.rank}. {c.id}  {c.bucket} ({c.certainty:.2f})  severity {c.severity}  [{c.category}]")
        out.append(f"   {c.title}")
        for sentence in c.evidence:
            out.append(f"   evidence: {sentence}")
        where = _where(c)
        if where:
            out.append(f"   at: {where}")
        if c.fix:
            out.append(f"   help: {c.fix[0].action}")
            for fx in c.fix[1:]:
                out.append(f"         {fx.action}")
        out.append(f"   why: diag explain {trace_arg} --why {c.id}   docs: {c.docs}")
        out.append("")
    if d.suppressed:
        out.append("Also consistent, explained by a cause above:")
        for c in d.suppressed:
            out.append(f"   {c.id} ({c.certainty:.2f}) explained by {c.suppressed_by}: {c.evidence[0] if c.evidence else ''}")
        out.append("")
    if d.ruled_out:
        out.append("Ruled out:")
        for c in d.ruled_out:
            out.append(f"   {c.id} ({c.certainty:.2f}): {c.evidence[0] if c.evidence else ''}")
        out.append("")
    if not d.causes and d.checks_run:
        out.append("Why this is believable: every rule whose inputs the trace has was evaluated and none fired.")
    elif not d.causes:
        out.append("Nothing could be checked: the trace lacks the inputs every rule reads (see below).")
    checked = ", ".join(d.checks_run) or "none"
    out.append(f"Checked {len(d.checks_run)} causes: {checked}.")
    if d.checks_skipped:
        out.append(f"Not checked ({len(d.checks_skipped)}, inputs missing): {', '.join(d.checks_skipped)}.")
    missing = _missing_summary(d)
    if missing:
        out.append(f"Missing inputs: {'; '.join(missing)}.")
    for err in d.rule_errors:
        out.append(f"warning: rule {err.id} failed: {err.message}")
    return "\n".join(out).rstrip() + "\n"


# --------------------------------------------------------------------------- why


def _clause_line(c: ClauseResult) -> str:
    mark = "✓" if c.result else ("?" if c.missing else "✗")
    prefix = f"{c.kind} " if c.kind in ("signal", "context", "expr") else ""
    text = f"{mark} {prefix}{c.text}"
    details = []
    if c.observed is not None and c.kind != "fact":
        details.append(f"observed {_fmt(c.observed)}")
    if c.kind == "fact" and c.result:
        details.append(f"cf {c.cf:.2f}")
    if c.steps:
        details.append(f"step {c.steps[0]}" if c.steps[0] == c.steps[1] else f"steps {c.steps[0]}-{c.steps[1]}")
    if c.layer:
        details.append(f"layer {c.layer}")
    if c.missing:
        details.append("missing " + ", ".join(c.missing))
    return text + (f"   ({'; '.join(details)})" if details else "")


def _tree(items: list, prefix: str, out: list[str]) -> None:
    for i, (line, children) in enumerate(items):
        last = i == len(items) - 1
        out.append(prefix + ("└─ " if last else "├─ ") + line)
        _tree(children, prefix + ("   " if last else "│  "), out)


def _clause_items(c: ClauseResult) -> tuple[str, list]:
    children = [_clause_items(child) for child in c.children]
    for j in c.because:
        children.append(_justification_items(j))
    return _clause_line(c), children


def _justification_items(j: Justification) -> tuple[str, list]:
    line = f"[{j.contribution:+.2f}] {j.rule_id} → {j.fact}  (rule cf {j.rule_cf:.2f} × premise {j.premise_cf:.2f})"
    children = []
    for clause in j.clauses:
        if clause.kind == "all":
            children += [_clause_items(child) for child in clause.children]
        else:
            children.append(_clause_items(clause))
    children.append((f"“{j.evidence}”", []))
    return line, children


def _walk(clauses):
    for c in clauses:
        yield c
        yield from _walk(c.children)


def render_why(d: Diagnosis, cause_id: str) -> str:
    """The justification tree of a cause, or why it was not concluded (closest miss, missing inputs)."""
    c = d.cause(cause_id)
    out: list[str] = []
    if c is not None:
        status = c.bucket or "ruled out"
        if c.suppressed_by:
            status += f", explained by {c.suppressed_by}"
        out.append(f"{c.id}  certainty {c.certainty:.2f} ({status})  rank {c.rank}")
        _tree([_justification_items(j) for j in c.justification], "", out)
        if c.fix:
            out.append(f"help: {c.fix[0].action}")
        return "\n".join(out) + "\n"
    out.append(f"{cause_id} was not concluded from {_trace_line(d)}.")
    misses = [m for m in d.near_misses if m.cause == cause_id]
    if misses:
        m = misses[0]
        out.append(f"Closest miss: rule {m.rule_id} held {m.satisfied} of {m.total} conditions:")
        _tree([_clause_items(cl) for cl in m.clauses], "", out)
    skipped = [s for s in d.rules_skipped if s.id.startswith(cause_id + ".")]
    for s in skipped:
        out.append(f"Rule {s.id} was skipped: the trace lacks {', '.join(s.missing)}.")
    # A symptom a near miss needed may itself have been unmeasurable (rule id == symptom id).
    needed = {c.text.split()[1] for m in misses for c in _walk(m.clauses) if c.kind == "fact" and not c.result}
    for s in d.rules_skipped:
        if s.id in needed:
            out.append(f"Symptom {s.id} could not be checked: the trace lacks {', '.join(s.missing)}.")
    if not misses and not skipped:
        if cause_id in d.checks_run:
            out.append("Its rules ran and none of their conditions held.")
        else:
            out.append("No rule in the loaded knowledge base concludes it (see diag rules list).")
    return "\n".join(out) + "\n"


# --------------------------------------------------------------------------- markdown


def render_markdown(d: Diagnosis, *, trace_arg: str | None = None) -> str:
    """Markdown for issues and reports."""
    out = [f"# {_headline(d)[len('diag: '):].capitalize()}", ""]
    for c in d.causes:
        out.append(f"## {c.rank}. `{c.id}`: {c.title}")
        out.append("")
        out.append(f"**{c.bucket}** (certainty {c.certainty:.2f}) · severity {c.severity} · {c.category}")
        out.append("")
        out.append("**Evidence**")
        out.append("")
        out += [f"- {e}" for e in c.evidence]
        where = _where(c)
        if where:
            out += ["", f"*At:* {where}"]
        out += ["", "**Fix**", ""]
        out += [f"- {fx.action}" + (f" *(when {fx.when})*" if fx.when else "") for fx in c.fix]
        out.append("")
    if d.suppressed:
        out += ["## Also consistent", ""]
        out += [f"- `{c.id}` ({c.certainty:.2f}), explained by `{c.suppressed_by}`" for c in d.suppressed]
        out.append("")
    if d.ruled_out:
        out += ["## Ruled out", ""]
        out += [f"- `{c.id}` ({c.certainty:.2f}): {c.evidence[0] if c.evidence else ''}" for c in d.ruled_out]
        out.append("")
    out += ["## Checks", "", f"- Checked: {', '.join(f'`{x}`' for x in d.checks_run) or 'none'}"]
    if d.checks_skipped:
        out.append(f"- Not checked (inputs missing): {', '.join(f'`{x}`' for x in d.checks_skipped)}")
    return "\n".join(out).rstrip() + "\n"
