"""gradient_flow: every trainable parameter gets a finite, non-zero gradient on one batch.

A parameter without a gradient is never trained: a branch cut off by ``.detach()`` or
``stop_gradient``, a head that the loss does not use, a layer defined but never called. Its
gradient is missing (PyTorch: ``p.grad is None``) or exactly zero (JAX). Those are listed.
"""

from __future__ import annotations

import math

from diag.preflight.findings import Finding
from diag.preflight.runner import ProbeContext, ProbeResult, fmt, names

NAME = "gradient_flow"
CHECKS = ("disconnected_parameters", "params_not_updating", "nonfinite_values")
WEIGHT = 0.05


def run(ctx: ProbeContext) -> ProbeResult:
    loss, grads = ctx.runner.session().gradients(ctx.train[0])
    trainable = [g for g in grads if g.trainable]
    frozen = [g.name for g in grads if not g.trainable]
    findings = []
    if not trainable:
        findings.append(Finding(
            "params_not_updating", 0.9, [f"None of the model's {len(grads)} parameters is trainable."],
            ["Unfreeze the parameters the optimizer should train (requires_grad / the optimizer's wrt filter)."],
            probe=NAME))
        return ProbeResult(NAME, findings, summary="no trainable parameter")
    missing = [g.name for g in trainable if not g.connected]
    zero = [g.name for g in trainable if g.connected and g.finite and g.norm == 0.0]
    bad = [g.name for g in trainable if g.connected and not g.finite]
    if missing or zero:
        cut = missing + zero
        size = sum(g.size for g in trainable if g.name in set(cut))
        total = sum(g.size for g in trainable)
        how = []
        if missing:
            how.append(f"no gradient reaches {names(missing)}")
        if zero:
            how.append(f"the gradient of {names(zero)} is exactly zero")
        findings.append(Finding(
            "disconnected_parameters", 0.9 if missing else 0.8,
            [f"On the first batch {' and '.join(how)}: {len(cut)} of {len(trainable)} trainable parameters "
             f"({size:,} of {total:,} values) would never be trained."],
            ["Look for a .detach() / stop_gradient / torch.no_grad() between these parameters and the loss, "
             "or a layer that the forward pass does not use."],
            probe=NAME, layers=cut))
    if bad:
        findings.append(Finding(
            "nonfinite_values", 0.8, [f"The gradient of {names(bad)} holds NaN or Inf on the first batch."],
            ["Find the operation that overflows (log(0), division by ~0, exp) and make it stable."],
            probe=NAME, layers=bad))
    norms = [g.norm for g in trainable if g.connected and math.isfinite(g.norm) and g.norm > 0]
    summary = (f"{len(trainable) - len(missing) - len(zero) - len(bad)} of {len(trainable)} trainable parameters "
               f"get a finite non-zero gradient (norms {fmt(min(norms)) if norms else '-'} to {fmt(max(norms)) if norms else '-'})")
    if frozen:
        summary += f"; {len(frozen)} frozen on purpose or by mistake: {names(frozen, 3)}"
    return ProbeResult(NAME, findings, summary=summary)
