"""A ``SweepReport`` as a text table, Markdown, CSV (one row per run) or JSON."""

from __future__ import annotations

import csv
import io
import math

from diag.sweep.runner import SweepReport

FORMATS = ("text", "json", "markdown", "csv")
_SHOWN_SETTINGS = 5
_COLUMNS = ("path", "status", "top cause", "certainty", "steps", "final loss")
_STATUS_WORDS = {"likely": "likely cause", "possible": "possible cause", "weak": "weak cause",
                 "healthy": "healthy", "unreadable": "could not read"}


def render(report: SweepReport, fmt: str) -> str:
    """The report in ``fmt`` (one of ``FORMATS``), ending with a newline."""
    if fmt == "json":
        return report.to_json() + "\n"
    if fmt == "csv":
        return render_csv(report)
    if fmt == "markdown":
        return render_markdown(report)
    return render_text(report)


def _number(value: float | None, digits: int = 4) -> str:
    if value is None:
        return "-"
    if math.isnan(value):
        return "nan"
    if math.isinf(value):
        return "inf" if value > 0 else "-inf"
    return f"{value:.{digits}g}"


def _cells(row) -> tuple[str, ...]:
    return (row.path, _STATUS_WORDS[row.status], row.top_cause or "-",
            "-" if row.certainty is None else f"{row.certainty:.2f}",
            "-" if row.steps is None else str(row.steps), _number(row.final_loss))


_COUNT_WORDS = {"likely": "with a likely cause", "possible": "with a possible cause", "weak": "with a weak cause",
                "healthy": "healthy", "unreadable": "could not be read"}


def _headline(report: SweepReport) -> str:
    total = len(report.runs)
    parts = ", ".join(f"{n} {_COUNT_WORDS[s]}" for s, n in report.counts().items())
    return f"diag sweep: {total} run{'s' if total != 1 else ''} under {report.root}: {parts}"


def _sides(report: SweepReport) -> tuple[int, int]:
    counts = report.counts()
    return counts.get("likely", 0), counts.get("healthy", 0)


def render_text(report: SweepReport) -> str:
    """A table of runs, then groups by top cause, then the settings that separate failed runs."""
    table = [_COLUMNS] + [_cells(row) for row in report.runs]
    widths = [max(len(cells[i]) for cells in table) for i in range(len(_COLUMNS))]
    right = {3, 4, 5}
    lines = [_headline(report), ""]
    for cells in table:
        parts = [c.rjust(w) if i in right else c.ljust(w) for i, (c, w) in enumerate(zip(cells, widths))]
        lines.append("  ".join(parts).rstrip())
    unreadable = [row for row in report.runs if row.status == "unreadable"]
    if unreadable:
        lines += ["", "Could not read:"]
        lines += [f"  {row.path}: {row.reason}" for row in unreadable]
    if report.groups:
        lines += ["", "Runs by top cause:"]
        width = max(len(g.cause) for g in report.groups)
        for group in report.groups:
            runs = f"{group.count} run{'s' if group.count != 1 else ''}"
            lines.append(f"  {group.cause.ljust(width)}  {runs:>8}  ({group.likely} likely)  {group.title or ''}".rstrip())
    failed, healthy = _sides(report)
    lines.append("")
    if not failed or not healthy:
        lines.append("What separates failed from healthy runs: needs at least one run of each "
                     f"({failed} with a likely cause, {healthy} healthy).")
    elif not report.separating:
        lines.append(f"What separates the {failed} failed from the {healthy} healthy runs: "
                     "no recorded setting differs between them.")
    else:
        lines.append(f"What separates the {failed} failed from the {healthy} healthy runs "
                     "(distance 0-1, most first):")
        shown = report.separating[:_SHOWN_SETTINGS]
        width = max(len(s.name) for s in shown)
        for s in shown:
            lines.append(f"  {s.name.ljust(width)}  {s.score:.2f}  failed: {s.failed}  |  healthy: {s.healthy}")
        if len(report.separating) > len(shown):
            lines.append(f"  ... and {len(report.separating) - len(shown)} more (--format json lists all)")
    return "\n".join(lines) + "\n"


def _markdown_cell(text: str) -> str:
    return text.replace("|", "\\|")


def render_markdown(report: SweepReport) -> str:
    """The text report's three parts as Markdown tables."""
    lines = [f"## {_headline(report)}", "", "| " + " | ".join(_COLUMNS) + " |",
             "|" + "|".join("---" if i < 3 else "---:" for i in range(len(_COLUMNS))) + "|"]
    for row in report.runs:
        cells = list(_cells(row))
        cells[0] = f"`{cells[0]}`"
        lines.append("| " + " | ".join(_markdown_cell(c) for c in cells) + " |")
    unreadable = [row for row in report.runs if row.status == "unreadable"]
    if unreadable:
        lines += ["", "**Could not read:**", ""]
        lines += [f"- `{row.path}`: {_markdown_cell(row.reason or '')}" for row in unreadable]
    if report.groups:
        lines += ["", "### Runs by top cause", "", "| cause | runs | likely | title |", "|---|---:|---:|---|"]
        lines += [f"| `{g.cause}` | {g.count} | {g.likely} | {_markdown_cell(g.title or '')} |" for g in report.groups]
    failed, healthy = _sides(report)
    lines += ["", "### What separates failed from healthy runs", ""]
    if report.separating:
        lines += [f"{failed} runs with a likely cause against {healthy} healthy runs (distance 0-1).", "",
                  "| setting | distance | failed | healthy |", "|---|---:|---|---|"]
        lines += [f"| `{s.name}` | {s.score:.2f} | {_markdown_cell(s.failed)} | {_markdown_cell(s.healthy)} |"
                  for s in report.separating]
    else:
        lines.append(f"Nothing to compare: {failed} runs with a likely cause, {healthy} healthy, "
                     "and no setting differs between them." if failed and healthy else
                     f"Needs at least one run of each ({failed} with a likely cause, {healthy} healthy).")
    return "\n".join(lines) + "\n"


def render_csv(report: SweepReport) -> str:
    """One line per run: its row's fields, then one column per hyper-parameter (``hp.<name>``)."""
    settings = sorted({name for row in report.runs for name in row.hyperparameters})
    fields = ["path", "status", "top_cause", "certainty", "severity", "steps", "last_step", "final_loss",
              "kind", "run_id", "skipped_records", "causes", "reason"]
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(fields + [f"hp.{name}" for name in settings])
    for row in report.runs:
        values = row.model_dump()
        values["causes"] = " ".join(row.causes)
        line = ["" if values[f] is None else values[f] for f in fields]
        line += ["" if row.hyperparameters.get(name) is None else row.hyperparameters[name] for name in settings]
        writer.writerow(line)
    return out.getvalue()


__all__ = ["FORMATS", "render", "render_csv", "render_markdown", "render_text"]
