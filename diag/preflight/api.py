"""``diag.preflight``: catch the wiring bugs in a minute, before the long run starts."""

from __future__ import annotations

import os
import sys
import time
from typing import Iterable, Optional, Sequence

from diag.preflight import data, gradient_flow, init_loss, lr_range, output_loss, overfit_one_batch, seed_repeat
from diag.preflight.errors import error_finding
from diag.preflight.report import PreflightReport
from diag.preflight.runner import Deadline, ProbeContext, ProbeResult, split_batch, take

# In the order they run: the cheap checks that explain the others' failures come first.
PROBES = {m.NAME: m for m in (data, output_loss, init_loss, gradient_flow, overfit_one_batch, lr_range, seed_repeat)}
BATCHES = 8  # batches read from each split; every probe uses (some of) these


def runner_for(model, loss_fn, optimizer, train_batches):
    """The framework runner for the model's type (no framework is imported to decide)."""
    torch = sys.modules.get("torch")
    if torch is not None and isinstance(model, torch.nn.Module):
        from diag.adapters.torch.preflight import TorchRunner

        return TorchRunner(model, loss_fn, optimizer, train_batches)
    nnx = sys.modules.get("flax.nnx")
    if nnx is not None and isinstance(model, nnx.Module):
        from diag.adapters.flax.preflight import FlaxRunner

        return FlaxRunner(model, loss_fn, optimizer, train_batches)
    raise TypeError(f"preflight needs a torch.nn.Module or a flax.nnx.Module; got {type(model).__name__}")


def preflight(model, loss_fn, optimizer, train_batches: Iterable, val_batches: Optional[Iterable] = None, *,
              budget_s: float = 60.0, only: Optional[Sequence[str]] = None, target: str = "preflight",
              trace: Optional[str | os.PathLike] = None) -> PreflightReport:
    """Check a training setup before the long run: seven short probes on copies of the model.

    The probes: ``data`` (NaN/Inf, labels vs outputs, train/val duplicates, constant features),
    ``output_loss`` (the output layer against the loss), ``init_loss`` (the loss at step 0 against
    chance), ``gradient_flow`` (every parameter gets a gradient), ``overfit_one_batch``,
    ``lr_range`` (a log-scale learning-rate sweep) and ``seed_repeat`` (two seeded runs agree).
    Every probe trains its own copy: ``model`` and ``optimizer`` are not changed, and the global
    random generators are put back as they were.

    Args:
      model: a ``torch.nn.Module`` or a ``flax.nnx.Module``.
      loss_fn: ``loss_fn(model(inputs), targets)`` returns a scalar.
      optimizer: a ``torch.optim.Optimizer`` over the model's parameters, or an optax
        ``GradientTransformation`` for an NNX model.
      train_batches: any iterable of ``(inputs, targets)`` batches (a DataLoader, a list); only
        the first 8 are read.
      val_batches: optional, the same for validation (for the duplicate check).
      budget_s: seconds for the whole preflight; long probes stop early and say so.
      only: names of the probes to run (default all, see ``PROBES``).
      target: the name the report shows.
      trace: a trace file to append the findings to, as ``check`` records named ``preflight.PROBE``
        (a new file gets a header), so they sit beside the run they belong to.

    Returns:
      A ``PreflightReport``: ``.findings``, ``.failed`` (a finding is likely), ``.diagnosis()``,
      ``.render("text" | "markdown" | "json")``, ``.write_trace(path)``.

    Example:
      >>> import torch
      >>> from diag.preflight import preflight
      >>> torch.manual_seed(0)  # doctest: +ELLIPSIS
      <torch._C.Generator object at ...>
      >>> model = torch.nn.Sequential(torch.nn.Linear(4, 16), torch.nn.ReLU(), torch.nn.Linear(16, 3))
      >>> x = torch.randn(64, 4); y = x[:, :3].argmax(1)
      >>> report = preflight(model, torch.nn.CrossEntropyLoss(), torch.optim.Adam(model.parameters(), 1e-2),
      ...                    [(x[i:i + 16], y[i:i + 16]) for i in range(0, 64, 16)], budget_s=20)
      >>> report.failed, [f.id for f in report.findings]
      (False, [])
    """
    names = list(only) if only else list(PROBES)
    unknown = [n for n in names if n not in PROBES]
    if unknown:
        raise ValueError(f"unknown probe {', '.join(unknown)}; the probes are {', '.join(PROBES)}")
    started = time.monotonic()
    runner = runner_for(model, loss_fn, optimizer, train_batches)
    report = PreflightReport(target=target, framework=runner.framework, budget_s=budget_s,
                             checks={n: PROBES[n].CHECKS for n in names})
    chosen = [PROBES[n] for n in PROBES if n in names]
    with runner.isolated():  # whatever the probes draw, the global generators end as they were
        train = take(train_batches, BATCHES)
        if not train:
            raise ValueError("train_batches yielded no batch")
        split_batch(train[0])  # a batch that is not (inputs, targets) is the caller's error, said once
        val = take(val_batches, BATCHES) if val_batches is not None else None
        _run_probes(report, runner, chosen, train, val, train_batches, started + budget_s)
    report.seconds = time.monotonic() - started
    report.steps = getattr(runner, "steps", 0)
    if trace is not None:
        report.write_trace(trace)
    return report


def _run_probes(report, runner, chosen, train, val, train_batches, end) -> None:
    numpy_cache: dict = {}  # batches converted once, shared by the probes
    for i, probe in enumerate(chosen):
        weights = sum(p.WEIGHT for p in chosen[i:])
        share = max(0.0, end - time.monotonic()) * probe.WEIGHT / weights
        ctx = ProbeContext(runner=runner, train=train, val=val, train_batches=train_batches,
                           deadline=Deadline(share), configured_lr=runner.learning_rate(), _numpy=numpy_cache)
        t0 = time.monotonic()
        try:
            result = probe.run(ctx)
        except Exception as exc:  # the user's step raised: that is the finding
            result = ProbeResult(probe.NAME, [error_finding(probe.NAME, exc, f"The {probe.NAME} probe's training step")],
                                 status="error", summary=f"{type(exc).__name__}: {' '.join(str(exc).split())[:120]}")
        if result.findings and result.status == "ok":
            result.status = "findings"
        result.seconds = time.monotonic() - t0
        report.results.append(result)
