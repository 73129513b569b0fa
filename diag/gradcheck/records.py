"""Gradient-check results as trace records, so the knowledge base concludes ``incorrect_gradient``.

Each leaf result becomes one ``Check`` record: ``name`` is ``"gradient"`` (finite differences) or
``"custom_vjp"`` (custom VJP vs autodiff of its primal), ``target`` is the layer, ``passed``,
``error`` and ``threshold`` as measured, and the parameter path in ``message``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Iterable

from diag import __version__
from diag.gradcheck.result import GradCheckReport, LeafResult
from diag.trace.records import Check, Header, LayerInfo, ParamInfo
from diag.trace.writer import TraceWriter


def to_check_records(report: GradCheckReport, step: int | None = None) -> list[Check]:
    """One ``Check`` record per leaf result.

    Args:
      report: a gradient-check report.
      step: the training step the check belongs to, when it was run during training.

    Returns:
      Check records in the report's order.

    Example:
      >>> from diag.gradcheck.result import GradCheckReport, LeafResult
      >>> r = GradCheckReport("f", "jax", [LeafResult("dense2/w", "gradient", (4, 2), 0.06, 1e-6, False, "float64", 32)])
      >>> rec = to_check_records(r)[0]
      >>> (rec.name, rec.target, rec.passed)
      ('gradient', 'dense2', False)
    """
    return [_record(r, step) for r in report.results]


def _record(r: LeafResult, step: int | None) -> Check:
    message = r.message or (
        f"{r.name}: relative error {r.error:.1e} within {r.threshold:.0e} ({r.dtype})"
    )
    if not message.startswith(r.name):
        message = f"{r.name}: {message}"
    return Check(
        name=r.check,
        target=r.layer,
        passed=bool(r.passed),
        method=r.method or None,
        error=float(r.error),
        threshold=float(r.threshold),
        dtype=r.dtype,
        directions=r.directions,
        worst_direction=r.worst_direction,
        worst_elements=[list(e) for e in r.worst_elements],
        step=step,
        message=message,
    )


def header_for(reports: Iterable[GradCheckReport]) -> Header:
    """A header that makes a stand-alone check file a valid trace: the checked layers and leaves."""
    reports = list(reports)
    layers: dict[str, LayerInfo] = {}
    for report in reports:
        for r in report.results:
            layer = layers.setdefault(r.layer, LayerInfo(name=r.layer))
            leaf = r.name[len(r.layer) + 1:] if r.name != r.layer else r.name
            if all(p.name != leaf for p in layer.params):
                layer.params.append(ParamInfo(name=leaf, shape=list(r.shape), dtype=r.dtype))
    first = reports[0] if reports else GradCheckReport(target="gradcheck", framework="jax")
    return Header(
        run_id=f"gradcheck:{first.target}",
        framework=first.framework,
        diag_version=__version__,
        model_name=first.target,
        layers=list(layers.values()),
        tags={"source": "diag gradcheck"},
    )


def write_check_trace(path: str | os.PathLike, *reports: GradCheckReport, step: int | None = None) -> Path:
    """Write check records to ``path``: a new trace with a header, or appended to an existing one.

    Appending lets a check join the trace of the training run it belongs to, so ``diag explain``
    weighs it with everything else the run recorded.

    Args:
      path: the ``.jsonl`` trace file.
      *reports: one or more reports (for example the finite-difference and the custom-VJP check).
      step: the training step, when the check ran during training.

    Returns:
      The path written.
    """
    path = Path(path)
    fresh = not path.exists() or path.stat().st_size == 0
    with TraceWriter(path, flush_every=10_000) as writer:
        if fresh:
            writer.write(header_for(reports))
        for report in reports:
            writer.write_many(to_check_records(report, step))
    return path
