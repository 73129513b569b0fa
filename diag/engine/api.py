"""``diagnose(trace)``: the public entry point (the full engine lands behind this signature)."""

from __future__ import annotations

from typing import Iterable

from diag.engine.diagnosis import Diagnosis, TraceInfo


def trace_info(trace) -> TraceInfo:
    header = trace.header
    return TraceInfo(
        path=str(trace.path),
        run_id=header.run_id if header else None,
        framework=header.framework if header else None,
        steps=trace.num_steps,
        first_step=int(trace.steps[0]) if trace.num_steps else None,
        last_step=trace.last_step,
        layers=len(trace.layer_names),
        series=trace.series_names(),
    )


def diagnose(trace, extra_rule_dirs: Iterable[str] = ()) -> Diagnosis:
    """Diagnose a loaded trace with the built-in knowledge base plus ``extra_rule_dirs``.

    Args:
      trace: a ``diag.trace.Trace`` (from ``load_trace``).
      extra_rule_dirs: user rule folders, loaded after the built-in ones.

    Returns:
      A ``Diagnosis``: ranked causes, suppressed and ruled-out causes, symptoms, rules run/skipped.
    """
    return Diagnosis(trace=trace_info(trace))
