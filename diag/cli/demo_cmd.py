"""``diag demo [SCENARIO]``: train a small real Flax model, then explain what went wrong."""

from __future__ import annotations

import sys
import time

from diag.cli import add_command

DEFAULT_SCENARIO = "lr_too_high"


def register(subparsers) -> None:
    parser = add_command(subparsers, "demo", _run)
    parser.add_argument("scenario", nargs="?", default=DEFAULT_SCENARIO,
                        help=f"which run to train (default {DEFAULT_SCENARIO}); see --list")
    parser.add_argument("--out", "-o", default=None, help="trace file to write (default: demo_<scenario>.jsonl)")
    parser.add_argument("--steps", type=int, default=None, help="optimizer steps (default: the scenario's)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    parser.add_argument("--list", action="store_true", help="list the scenarios and exit")
    parser.add_argument("--no-explain", action="store_true", help="only write the trace")


def _run(args) -> int:
    """Train a small Flax model with a planted fault, write its trace, and explain it.

    Train a small real Flax NNX model on generated data (nothing is downloaded) with the diag
    recorder on, optionally with a planted fault, write the trace, then run diag explain on it.
    Scenarios: diag demo --list.

    Examples:
      diag demo --list
      diag demo dead_relu --out dead.jsonl
    """
    from diag.demo.scenarios import SCENARIOS
    from diag.errors import DiagInputError, Problem

    if args.list:
        width = max(map(len, SCENARIOS))
        for name, s in SCENARIOS.items():
            cause = f"  [{s.expected_cause}]" if s.expected_cause else ""
            print(f"{name:<{width}}  {s.summary}{cause}")
        return 0
    if args.scenario not in SCENARIOS:
        import difflib

        close = difflib.get_close_matches(args.scenario, SCENARIOS, n=1)
        hint = f"did you mean {close[0]!r}? " if close else ""
        raise DiagInputError(Problem("", f"unknown demo scenario {args.scenario!r}"),
                             hint=f"{hint}diag demo --list shows them all")
    if args.steps is not None and args.steps < 1:
        raise DiagInputError(Problem("", f"--steps must be at least 1, got {args.steps}"))
    out = args.out or f"demo_{args.scenario}.jsonl"
    scenario = SCENARIOS[args.scenario]
    print(f"diag demo: {scenario.name}: {scenario.summary}", file=sys.stderr)

    from diag.demo import run_demo

    bar = _Progress(sys.stderr)
    start = time.monotonic()
    path = run_demo(args.scenario, out, steps=args.steps, seed=args.seed, progress=bar.update)
    bar.done()
    print(f"trace written to {path} ({time.monotonic() - start:.1f} s)", file=sys.stderr)
    if args.no_explain:
        return 0
    print(file=sys.stderr)
    return _explain(str(path))


def _explain(path: str) -> int:
    """Run ``diag explain`` when the engine is installed, else ``diag summary``, else key facts."""
    from diag.cli import main

    try:
        import diag.cli.explain_cmd  # noqa: F401
        import diag.engine.api  # noqa: F401
    except ImportError:
        pass
    else:
        code = main(["explain", path])
        return 0 if code == 1 else code  # findings are the point of a demo, not a failure
    try:
        import diag.cli.summary_cmd  # noqa: F401
    except ImportError:
        return _facts(path)
    return main(["summary", path])


def _facts(path: str) -> int:
    from diag.trace import load_trace

    trace = load_trace(path)
    loss = trace.series("loss")
    print(f"{len(loss)} steps; loss {loss.values[0]:.4g} -> {loss.values[-1]:.4g}")
    for event in trace.events:
        print(f"event at step {event.step}: {event.message or event.event}")
    return 0


class _Progress:
    """A one-line progress bar on stderr (plain text when stderr is not a terminal)."""

    def __init__(self, stream, width: int = 30):
        self.stream, self.width = stream, width
        self.tty = stream.isatty()
        self.loss = None
        self.last_print = -1.0

    def update(self, step: int, steps: int, loss: float | None) -> None:
        if loss is not None:
            self.loss = loss
        done = (step + 1) / steps
        now = time.monotonic()
        if self.tty:
            if now - self.last_print < 0.05 and step + 1 < steps:
                return
            filled = int(done * self.width)
            loss = "" if self.loss is None else f"  loss {self.loss:.4g}"
            self.stream.write(f"\r  [{'#' * filled}{'.' * (self.width - filled)}] {step + 1}/{steps}{loss}")
            self.stream.flush()
        elif step + 1 == steps or (step + 1) % max(1, steps // 4) == 0:
            loss = "" if self.loss is None else f"  loss {self.loss:.4g}"
            self.stream.write(f"  step {step + 1}/{steps}{loss}\n")
        self.last_print = now

    def done(self) -> None:
        if self.tty:
            self.stream.write("\n")
