"""What an imported run can and cannot show: the lines ``diag explain`` prints above its diagnosis.

A foreign log has what its author chose to log, usually the loss, the learning rate and a few
metrics. The engine skips a rule whose inputs are absent; this module says so in words, per cause:
"not checked (the log has no per-layer gradients): vanishing_gradients", so a quiet report is never
read as a clean bill of health.
"""

from __future__ import annotations

from diag.adapters.importers.scalars import SOURCE_TITLES

# Input names the engine reports as missing -> what a reader calls them (prefix match, first wins).
_PHRASES = (
    ("layers.grad_norm", "per-layer gradients"),
    ("layers.update", "per-layer update sizes"),
    ("layers.param_norm", "per-layer weight norms"),
    ("layers.grad_nonfinite", "per-layer non-finite counts"),
    ("layers.param_nonfinite", "per-layer non-finite counts"),
    ("activations.nonfinite", "per-layer non-finite counts"),
    ("activations.", "activation statistics"),
    ("grad_norm", "gradient norm"),
    ("update_norm", "update norm"),
    ("lr", "learning rate"),
    ("loss_scale", "loss-scaling records"),
    ("skipped", "loss-scaling records"),
    ("input.", "input batch statistics"),
    ("labels.", "label statistics"),
    ("eval.train_eval.", "train-subset evaluations (train_eval)"),
    ("eval.val.metrics.accuracy", "validation accuracy"),
    ("eval.val.loss", "validation loss"),
    ("data records", "dataset facts (data probe)"),
    ("check records", "gradient checks"),
    ("event records", "non-finite or exception events"),
    ("context.precision", "dtypes"),
    ("context.param_precision", "dtypes"),
    ("context.task", "task and number of classes"),
    ("context.num_classes", "task and number of classes"),
    ("context.ln_num_classes", "task and number of classes"),
    ("context.loss_kind", "loss kind"),
    ("context.lr", "optimizer settings"),
    ("context.optimizer", "optimizer settings"),
)


def phrase(missing: str) -> str:
    """What a missing input is called in a sentence ('layers.grad_norm' -> 'per-layer gradients')."""
    for prefix, words in _PHRASES:
        if missing == prefix or (prefix.endswith(".") and missing.startswith(prefix)) or missing.startswith(prefix + "."):
            return words
    return missing


def not_checked(diagnosis) -> list[tuple[str, list[str]]]:
    """(what the log lacks, causes left unchecked for it), for causes none of whose rules could run."""
    by_reason: dict[str, list[str]] = {}
    for cause in diagnosis.checks_skipped:
        lacking = sorted({phrase(m) for s in diagnosis.rules_skipped if s.id.startswith(cause + ".")
                          for m in s.missing})
        reason = " or ".join(lacking) if lacking else "the inputs its rules read"
        by_reason.setdefault(reason, []).append(cause)
    return sorted(by_reason.items(), key=lambda item: (-len(item[1]), item[0]))


def coverage_lines(trace) -> list[str]:
    """Where an imported run came from and which trace fields its log had ([] for a diag trace)."""
    header = trace.header
    recording = header.recording if header is not None else {}
    source = recording.get("imported_from")
    if source is None:
        return []
    title = SOURCE_TITLES.get(str(source), str(source))
    unit = " (its steps are epochs)" if recording.get("step_unit") == "epoch" else ""
    lines = [f"imported from {title}: {recording.get('source_path')} (run {header.run_id}){unit}",
             f"fields in the log: {recording.get('fields') or 'none'}"]
    return lines


def not_checked_lines(diagnosis) -> list[str]:
    """'not checked (the log has no per-layer gradients): vanishing_gradients', one line per reason."""
    return [f"not checked (the log has no {reason}): {', '.join(causes)}" for reason, causes in not_checked(diagnosis)]
