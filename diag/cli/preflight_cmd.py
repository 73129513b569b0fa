"""``diag preflight TARGET``: seven short probes of a training setup, before the long run."""

from __future__ import annotations

from diag.cli import add_command
from diag.errors import EXIT_FINDINGS, EXIT_OK, DiagInputError, Problem

PROBE_NAMES = ("data", "output_loss", "init_loss", "gradient_flow", "overfit_one_batch", "lr_range", "seed_repeat")
REQUIRED = ("model", "loss_fn", "optimizer", "train_batches")
CONTRACT = ("TARGET must name a function that takes no arguments and returns a dict with model, loss_fn, "
            "optimizer, train_batches (and optionally val_batches), e.g. examples/preflight_torch.py:healthy")


def register(subparsers) -> None:
    parser = add_command(subparsers, "preflight", _run)
    parser.add_argument("target", metavar="TARGET", help="module:function or file.py:function returning the setup dict")
    parser.add_argument("--format", "-f", choices=("text", "json", "markdown"), default="text",
                        help="output format (default text)")
    parser.add_argument("--only", action="append", metavar="PROBE", default=None,
                        help=f"run only this probe (repeat, or separate with commas): {', '.join(PROBE_NAMES)}")
    parser.add_argument("--budget", type=float, default=60.0, metavar="SECONDS",
                        help="time for the whole preflight; long probes stop early and say so (default 60)")
    parser.add_argument("--trace", metavar="OUT", default=None,
                        help="also write the findings as check records to this trace (a new file gets a header)")


def _probes(only: list[str] | None) -> list[str] | None:
    if not only:
        return None
    names = [n.strip() for item in only for n in item.split(",") if n.strip()]
    unknown = [n for n in names if n not in PROBE_NAMES]
    if unknown:
        raise DiagInputError(f"unknown probe {', '.join(map(repr, unknown))}; the probes are {', '.join(PROBE_NAMES)}")
    return names


def load_setup(spec: str) -> dict:
    """Load TARGET, call it, and check that it returned the setup dict."""
    from diag.targets import call_target, load_callable

    factory, _ = load_callable(spec, contract=CONTRACT)
    value = call_target(factory, spec, contract=CONTRACT)
    where, _, attr = spec.rpartition(":")
    if not isinstance(value, dict):
        raise DiagInputError(Problem(path=spec, message=f"{attr}() returned {type(value).__name__}, expected a dict"),
                             hint=CONTRACT)
    missing = [k for k in REQUIRED if k not in value]
    extra = [k for k in value if k not in (*REQUIRED, "val_batches")]
    if missing or extra:
        what = "; ".join(filter(None, [f"missing {', '.join(missing)}" if missing else "",
                                       f"unexpected {', '.join(map(str, extra))}" if extra else ""]))
        raise DiagInputError(Problem(path=spec, message=f"{attr}() returned a dict with {what}"), hint=CONTRACT)
    return value


def _run(args) -> int:
    """Check a training setup before the long run (init loss, overfit one batch, gradients, lr, seeds, data).

    Catch the wiring bugs of a training setup in a minute, before the long run starts. Seven probes,
    each on its own copy of the model and optimizer (the originals are not changed):

      data               NaN/Inf in batches, labels vs output size, train/val duplicates, constant features
      output_loss        the output layer against the loss (softmax then cross-entropy, sigmoid + BCE-with-logits,
                         one-unit softmax, (N,1) vs (N,) broadcasting, float class labels)
      init_loss          the loss at step 0 against chance (log C for C classes; the mean guess for regression)
      gradient_flow      every trainable parameter gets a finite, non-zero gradient (detached or unused layers)
      overfit_one_batch  a few hundred steps on 16 examples must drive the loss near zero
      lr_range           a log-scale sweep (0.01x to 100x the configured learning rate): where the loss falls
                         fastest and where it diverges
      seed_repeat        two short runs with the same seed agree; if not, the source (data order, random layers,
                         non-deterministic kernels)

    TARGET is package.module:function or path/to/file.py:function, naming a function that takes no
    arguments and returns a dict: model (torch.nn.Module or flax.nnx.Module), loss_fn (called as
    loss_fn(model(inputs), targets)), optimizer (torch.optim.Optimizer, or an optax
    GradientTransformation for NNX), train_batches (any iterable of (inputs, targets), e.g. a
    DataLoader; the first 8 batches are read) and optionally val_batches.

    Findings are causes, as in `diag explain`: id, certainty, evidence, fix. Exit codes: 0 no finding
    is likely, 1 a finding is likely (certainty >= 0.6), 2 the target cannot be loaded or does not
    return the dict.

    Examples:
      diag preflight examples/preflight_torch.py:healthy
      diag preflight examples/preflight_torch.py:lr_too_high --only lr_range --format markdown
    """
    if not args.budget > 0:
        raise DiagInputError(f"--budget must be a positive number of seconds, got {args.budget:g}")
    only = _probes(args.only)
    setup = load_setup(args.target)
    from diag.preflight import preflight

    try:
        report = preflight(setup["model"], setup["loss_fn"], setup["optimizer"], setup["train_batches"],
                           setup.get("val_batches"), budget_s=args.budget, only=only, target=args.target)
    except (TypeError, ValueError) as e:  # the setup's objects are not what preflight needs
        raise DiagInputError(Problem(path=args.target, message=str(e)), hint=CONTRACT) from None
    print(report.render(args.format), end="")
    if args.trace:
        path = report.write_trace(args.trace)
        if args.format == "text":
            print(f"check records written to {path}")
    return EXIT_FINDINGS if report.failed else EXIT_OK
