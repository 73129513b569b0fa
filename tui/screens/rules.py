"""Rules tab: the rules that fired (and what they concluded), the rules skipped for missing
inputs, and the run's events (exceptions, first non-finite values, end of run) and trace problems."""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.widgets import DataTable, Static

from diag.tui import fmt
from diag.tui.screens.pane import ALL, Pane, matches, set_text
from diag.tui.widgets.table import Table


class RulesPane(Pane):
    """Three tables: fired rules, skipped rules, events."""

    MAIN_WIDGET = "#fired"

    def compose(self) -> ComposeResult:
        yield Static(id="fired-label", classes="section")
        fired = Table(id="fired", cursor_type="row", zebra_stripes=True)
        fired.add_column("rule", key="rule", width=28)
        fired.add_column("concluded", key="fact", width=24)
        fired.add_column("adds", key="adds", width=5)
        fired.add_column("step", key="step", width=6)
        fired.add_column("evidence", key="evidence")
        yield fired
        yield Static(id="skipped-label", classes="section")
        skipped = Table(id="skipped", cursor_type="row")
        skipped.add_column("rule", key="rule", width=28)
        skipped.add_column("missing inputs", key="missing")
        yield skipped
        yield Static(id="events-label", classes="section")
        events = Table(id="events", cursor_type="row")
        events.add_column("step", key="step", width=8)
        events.add_column("event", key="event", width=9)
        events.add_column("detail", key="detail")
        yield events

    def redraw(self, kinds: frozenset[str] = ALL) -> None:
        if "diagnosis" in kinds:
            self._draw_rules()
        self._draw_events()

    def _draw_rules(self) -> None:
        outcome = self.app.outcome
        diagnosis = outcome.diagnosis if outcome is not None else None
        fired = self.query_one("#fired", Table)
        skipped = self.query_one("#skipped", Table)
        if diagnosis is None:
            fired.clear()
            skipped.clear()
            reason = outcome.error if outcome is not None and outcome.error else "not diagnosed yet"
            set_text(self.query_one("#fired-label", Static), Text(f"Rules fired: {reason}", style="bold"))
            set_text(self.query_one("#skipped-label", Static), Text("Rules skipped", style="bold"))
        else:
            contributions = _contributions(diagnosis)
            fired_rows = []
            for rule_id in diagnosis.rules_fired:
                for fact, adds, step, evidence in contributions.get(rule_id, [(None, None, None, "")]):
                    if not matches(self.filter_text, rule_id, fact, evidence):
                        continue
                    fired_rows.append(((Text(rule_id, style="bold"), fact or "-",
                                        "-" if adds is None else f"{adds:+.2f}", "-" if step is None else str(step),
                                        evidence or ""), None))
            set_text(self.query_one("#fired-label", Static), Text(
                f"Rules fired ({len(diagnosis.rules_fired)})" + (f", {len(diagnosis.rule_errors)} failed"
                                                                if diagnosis.rule_errors else ""), style="bold"))
            for error in diagnosis.rule_errors:
                if matches(self.filter_text, error.id, error.message):
                    fired_rows.append(((Text(error.id, style="bold red"), Text("error", style="red"), "-", "-",
                                        error.message), None))
            fired.show_rows(fired_rows)
            skipped.show_rows([((skip.id, ", ".join(skip.missing)), None) for skip in diagnosis.rules_skipped
                               if matches(self.filter_text, skip.id, *skip.missing)])
            set_text(self.query_one("#skipped-label", Static), Text(
                f"Rules skipped for missing inputs ({len(diagnosis.rules_skipped)})", style="bold"))
        self._draw_events()

    def _draw_events(self) -> None:
        trace = self.app.trace
        shown = (len(trace.events), len(trace.problems), self.filter_text)
        if shown == getattr(self, "_events_shown", None):
            return  # a new step rarely brings an event: keep the table (and its cursor) as it is
        self._events_shown = shown
        table = self.query_one("#events", DataTable)
        table.clear()
        count = 0
        for event in trace.events:
            detail = _event_detail(event)
            if not matches(self.filter_text, event.event, detail):
                continue
            count += 1
            style = "bold red" if event.event in ("exception", "nonfinite") else ""
            table.add_row("-" if event.step is None else str(event.step), Text(event.event, style=style), detail)
        for problem in trace.problems:
            if not matches(self.filter_text, problem.message):
                continue
            count += 1
            where = f"line {problem.line}" if problem.line else "-"
            table.add_row(where, Text(problem.severity, style="yellow" if problem.severity == "warning" else "red"),
                          (f"{problem.field}: " if problem.field else "") + problem.message)
        set_text(self.query_one("#events-label", Static), Text(f"Events and trace problems ({count})", style="bold"))


def _event_detail(event) -> str:
    kind = event.event
    if kind == "nonfinite":
        where = f" in {event.layer}" if event.layer else ""
        value = f" ({fmt.num(event.value)})" if event.value is not None else ""
        return f"first non-finite {event.tensor}{where}{value}" + (f": {event.message}" if event.message else "")
    if kind == "exception":
        return f"{event.type}: {event.message or ''}".rstrip(": ") + (f" in {event.layer}" if event.layer else "")
    if kind == "run_end":
        return f"run {event.status}" + (f" after {event.steps} steps" if event.steps is not None else "")
    if kind == "signal":
        return event.signal
    return event.message or ""


def _contributions(diagnosis) -> dict[str, list]:
    """rule id -> [(fact, contribution, first step, evidence)] from every cause's why-chain."""
    found: dict[str, list] = {}
    seen: set = set()

    def visit(justification) -> None:
        key = (justification.rule_id, justification.fact)
        if key not in seen:
            seen.add(key)
            found.setdefault(justification.rule_id, []).append(
                (justification.fact, justification.contribution, justification.first_step, justification.evidence))
        for clause in justification.clauses:
            visit_clause(clause)

    def visit_clause(clause) -> None:
        for because in clause.because:
            visit(because)
        for child in clause.children:
            visit_clause(child)

    for cause in (*diagnosis.causes, *diagnosis.suppressed, *diagnosis.ruled_out):
        for justification in cause.justification:
            visit(justification)
    return found
