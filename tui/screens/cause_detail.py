"""Cause detail: evidence sentences, the why-chain (rules, clauses, observed values, steps,
layers), the fix and the docs; ``m`` jumps to the metric and ``l`` to the layer it points at."""

from __future__ import annotations

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import Screen
from textual.widgets import Static, Tree

from diag.tui import fmt
from diag.tui.docs import cause_documentation
from diag.tui.screens.overview import SEVERITY_STYLE
from diag.tui.widgets.key_bar import KeyBar


class CauseDetailScreen(Screen):
    """Everything the diagnosis knows about one cause."""

    BINDINGS = [
        Binding("escape,backspace", "back", "Back"),
        Binding("m", "metric", "Metric"),
        Binding("l", "layer", "Layer"),
    ]

    def __init__(self, cause_id: str):
        super().__init__()
        self.cause_id = cause_id

    @property
    def cause(self):
        outcome = self.app.outcome
        return outcome.cause(self.cause_id) if outcome is not None else None

    def compose(self) -> ComposeResult:
        cause = self.cause
        yield Static(_title(cause, self.cause_id), id="cause-title")
        with VerticalScroll(id="cause-body"):
            if cause is None:
                yield Static("This cause is no longer in the diagnosis.")
                return
            yield Static(_evidence(cause, cause_series(cause, self.app.outcome.diagnosis)), id="cause-evidence")
            yield Static(Text("Why", style="bold underline"), classes="section")
            yield why_tree(cause)
            yield Static(_fix(cause), id="cause-fix")
            yield Static(_docs_header(cause, Text("loading the documentation…", style="dim")), id="cause-docs")
        yield KeyBar()

    def on_mount(self) -> None:
        self.query_one(VerticalScroll).focus()
        if self.cause is not None:
            self._load_docs(self.cause)

    @work(thread=True, exclusive=True, group="docs", exit_on_error=False)
    def _load_docs(self, cause) -> None:
        try:
            body = cause_documentation(cause.id) or Text("(not in the knowledge base)", style="dim")
        except Exception as e:  # noqa: BLE001 - a broken rule file must not break the screen
            body = Text(f"documentation unavailable: {type(e).__name__}", style="red")
        self.app.call_from_thread(self._show_docs, _docs_header(cause, body))

    def _show_docs(self, text: Text) -> None:
        if self.is_mounted:
            self.query_one("#cause-docs", Static).update(text)

    def action_back(self) -> None:
        self.app.pop_screen()

    def action_metric(self) -> None:
        cause = self.cause
        if cause is None:
            return
        series = cause_series(cause, self.app.outcome.diagnosis)
        self.app.jump_to_metric(series[0] if series else "loss", _steps(cause))

    def action_layer(self) -> None:
        cause = self.cause
        if cause is None:
            return
        layers = cause.layers or _clause_layers(cause)
        if not layers:
            self.notify("this cause points at no particular layer", severity="information")
            return
        self.app.jump_to_layer(layers[0], cause.first_step)


def _title(cause, cause_id: str) -> Text:
    text = Text(no_wrap=True, overflow="ellipsis")
    if cause is None:
        text.append(cause_id, style="bold")
        return text
    text.append(f"#{cause.rank} {cause.title}", style="bold")
    text.append(f"  {cause.id}\n", style="dim")
    text.append(f"certainty {cause.certainty:.2f} ({cause.bucket or 'ruled out'}) · ")
    text.append(cause.severity, style=SEVERITY_STYLE.get(cause.severity, ""))
    if cause.first_step is not None:
        text.append(f" · since step {cause.first_step}")
    if cause.layers:
        text.append(" · layers " + ", ".join(cause.layers[:4]) + ("…" if len(cause.layers) > 4 else ""))
    if cause.suppressed_by:
        text.append(f" · explained by {cause.suppressed_by}", style="yellow")
    return text


def _evidence(cause, series: list[str]) -> Text:
    text = Text("Evidence\n", style="bold underline")
    for sentence in cause.evidence or ["(no evidence sentences)"]:
        text.append(f"• {sentence}\n", style="not underline")
    if cause.explains:
        text.append("explains: " + ", ".join(cause.explains) + "\n", style="dim not underline")
    hints = ["m: plot " + (series[0] if series else "loss")]
    if cause.layers:
        hints.append(f"l: layer {cause.layers[0]}")
    text.append(" · ".join(hints), style="italic dim not underline")
    return text


def _fix(cause) -> Text:
    text = Text("Fix\n", style="bold underline")
    if not cause.fix:
        text.append("(no fix recorded)\n", style="dim not underline")
    for item in cause.fix:
        text.append(f"→ {item.action}", style="not underline")
        extras = [e for e in (f"when {item.when}" if item.when else "", item.effort or "", item.ref or "") if e]
        if extras:
            text.append(f" ({'; '.join(extras)})", style="dim not underline")
        text.append("\n", style="not underline")
    return text


def _docs_header(cause, body: Text) -> Text:
    text = Text("Docs", style="bold underline")
    text.append(f"  ({cause.docs or f'diag rules show {cause.id}'})\n", style="dim not underline")
    text.append_text(body)
    return text


def why_tree(cause) -> Tree:
    """The why-chain as a tree: rule -> clauses (observed vs threshold) -> facts they used."""
    tree: Tree = Tree(Text(f"{cause.id}: certainty {cause.certainty:.2f}", style="bold"), id="why")
    tree.show_root = True
    for justification in cause.justification:
        _add_justification(tree.root, justification, depth=0)
    tree.root.expand_all()
    return tree


def _add_justification(parent, justification, depth: int) -> None:
    label = Text()
    label.append(justification.rule_id, style="bold")
    label.append(f" → {justification.fact} ({justification.contribution:+.2f})")
    if justification.first_step is not None:
        label.append(f" step {justification.first_step}", style="dim")
    node = parent.add(label)
    if justification.evidence:
        node.add_leaf(Text(justification.evidence, style="italic"))
    for clause in justification.clauses:
        _add_clause(node, clause, depth)


def _add_clause(parent, clause, depth: int) -> None:
    label = Text()
    label.append("✓ " if clause.result else "✗ ", style="green" if clause.result else "red")
    label.append(clause.text)
    details = []
    if clause.observed is not None:
        details.append(f"saw {_show(clause.observed)}")
    if clause.threshold is not None:
        details.append(f"vs {_show(clause.threshold)}")
    if clause.steps:
        details.append("step " + "–".join(str(s) for s in clause.steps[:2]) if len(set(clause.steps)) > 1
                       else f"step {clause.steps[0]}")
    if clause.layer:
        details.append(f"layer {clause.layer}")
    if clause.missing:
        details.append("missing " + ", ".join(clause.missing))
    if details:
        label.append("  " + " · ".join(details), style="cyan")
    if not clause.because and not clause.children:
        parent.add_leaf(label)
        return
    node = parent.add(label)
    if depth < 6:  # a why-chain deeper than this is a loop in the knowledge base; lint reports it
        for because in clause.because:
            _add_justification(node, because, depth + 1)
    for child in clause.children:
        _add_clause(node, child, depth)


def _show(value) -> str:
    if isinstance(value, float):
        return fmt.num(value)
    if isinstance(value, list):
        return "[" + ", ".join(_show(v) for v in value[:6]) + (", …" if len(value) > 6 else "") + "]"
    return str(value)


def _walk_clauses(cause):
    stack = [c for j in cause.justification for c in j.clauses]
    while stack:
        clause = stack.pop(0)
        yield clause
        stack.extend(clause.children)


def _clause_layers(cause) -> list[str]:
    return [c.layer for c in _walk_clauses(cause) if c.layer]


def cause_series(cause, diagnosis) -> list[str]:
    """Series a cause's evidence was read from: its own, then those of the symptoms it explains
    (earliest symptom first)."""
    found = list(cause.series)
    explained = [s for s in diagnosis.symptoms if s.key in cause.explains or s.id in cause.explains]
    explained.sort(key=lambda s: (s.first_step is None, s.first_step or 0))
    for symptom in explained:
        found.extend(symptom.series)
    return list(dict.fromkeys(found))


def _steps(cause) -> tuple[int, int] | None:
    if cause.steps:
        return (cause.steps[0], cause.steps[-1])
    if cause.first_step is not None:
        return (cause.first_step, cause.first_step)
    return None
