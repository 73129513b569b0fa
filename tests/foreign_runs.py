"""Real small PyTorch training runs whose curves the importer tests log with each tool's own library.

Three runs of an MLP on generated data (nothing downloaded):

* ``healthy``: separable 4-class data, SGD with momentum at a sound learning rate;
* ``diverging``: the same at a learning rate 60x too high;
* ``overfitting``: a wide MLP memorising 64 examples with random labels under Adam, evaluated on
  other random-label examples, so the validation loss climbs while the training loss falls to 0.

Each run is trained once per test session and returned as what a logger would have been handed.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field

SCENARIOS = ("healthy", "diverging", "overfitting")
EVAL_EVERY = 10


@dataclass
class Curves:
    """What a training loop hands its logger: per-step training scalars and periodic evaluations."""

    name: str
    lr: float
    optimizer: str
    train: list[dict] = field(default_factory=list)  # {"step", "loss", "grad_norm", "lr", "accuracy"}
    val: list[dict] = field(default_factory=list)    # {"step", "loss", "accuracy"}


@functools.lru_cache(maxsize=None)
def training_curves(name: str) -> Curves:
    """Train scenario ``name`` (a real run, a few seconds on a CPU) and return its curves."""
    import torch
    import torch.nn.functional as F
    from torch import nn

    torch.set_num_threads(1)  # tiny models: threads only contend on a shared CI machine
    torch.manual_seed(0)
    generator = torch.Generator().manual_seed(0)
    features, classes = 20, 4
    if name == "overfitting":
        x = torch.randn(64, features, generator=generator)
        y = torch.randint(0, classes, (64,), generator=generator)
        x_val = torch.randn(256, features, generator=generator)
        y_val = torch.randint(0, classes, (256,), generator=generator)
        model = nn.Sequential(nn.Linear(features, 128), nn.ReLU(), nn.Linear(128, classes))
        lr, steps, batch = 1e-2, 120, 64
        opt = torch.optim.Adam(model.parameters(), lr=lr)
        optimizer = "Adam"
    else:
        w = torch.randn(features, classes, generator=generator)
        x = torch.randn(2048, features, generator=generator)
        y = (x @ w).argmax(1)
        x_val = torch.randn(512, features, generator=generator)
        y_val = (x_val @ w).argmax(1)
        model = nn.Sequential(nn.Linear(features, 64), nn.ReLU(), nn.Linear(64, classes))
        lr, steps, batch = (0.05 if name == "healthy" else 3.0), 150, 64
        opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9)
        optimizer = "SGD"
    curves = Curves(name=name, lr=lr, optimizer=optimizer)
    for step in range(steps):
        index = torch.randint(0, x.shape[0], (batch,), generator=generator)
        logits = model(x[index])
        loss = F.cross_entropy(logits, y[index])
        opt.zero_grad()
        loss.backward()
        grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), float("inf"))
        opt.step()
        accuracy = (logits.argmax(1) == y[index]).float().mean()
        curves.train.append({"step": step, "loss": loss.item(), "grad_norm": grad_norm.item(), "lr": lr,
                             "accuracy": accuracy.item()})
        if step % EVAL_EVERY == 0 or step == steps - 1:
            with torch.no_grad():
                val_logits = model(x_val)
                curves.val.append({"step": step, "loss": F.cross_entropy(val_logits, y_val).item(),
                                   "accuracy": (val_logits.argmax(1) == y_val).float().mean().item()})
    return curves


def explain_json(*args) -> tuple[int, dict, str]:
    """``diag explain ARGS --format json`` in this process: exit code, the diagnosis, stderr."""
    import contextlib
    import io
    import json

    from diag.cli import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(["explain", *map(str, args), "--format", "json"])
    return code, (json.loads(out.getvalue()) if out.getvalue().strip() else {}), err.getvalue()


def run_cli(*args) -> tuple[int, str, str]:
    """Any ``diag`` command in this process: exit code, stdout, stderr."""
    import contextlib
    import io

    from diag.cli import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main([str(a) for a in args])
    return code, out.getvalue(), err.getvalue()


def top_causes(document: dict) -> list[str]:
    return [c["id"] for c in document.get("causes", [])]


def expected_top(name: str) -> set[str] | None:
    """The causes a run may rank first (None: the run is healthy and must show no cause)."""
    return {"healthy": None, "diverging": {"lr_too_high", "exploding_gradients"},
            "overfitting": {"overfitting"}}[name]


def assert_diagnosed_as(diagnosis: dict, name: str) -> None:
    """The first cause is one the scenario allows (none at all for the healthy run).

    "No cause" is only an answer when the log was read and the rules ran: an empty document, or a
    diagnosis that checked nothing, would show no cause too. So every scenario must have steps,
    and the healthy run must have been checked for the causes its faulty twins are diagnosed with.
    """
    assert diagnosis.get("trace", {}).get("steps", 0) > 0, f"{name}: no steps were read: {diagnosis}"
    causes = top_causes(diagnosis)
    expected = expected_top(name)
    if expected is None:
        assert causes == [], f"healthy run diagnosed with {causes}"
        checked = set(diagnosis["checks_run"])
        for twin in SCENARIOS:
            allowed = expected_top(twin) or set()
            assert not allowed or checked & allowed, (
                f"healthy run was not checked for {sorted(allowed)} ({twin}'s causes); it checked {sorted(checked)}")
    else:
        assert causes and causes[0] in expected, f"{name} run ranked {causes}, expected first one of {expected}"
