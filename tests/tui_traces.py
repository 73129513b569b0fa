"""Real traces for the TUI tests: a small numpy MLP trained with SGD, recorded with TraceWriter.

The training is real (forward, backward, SGD update on a 4-class Gaussian-blob problem), so the
traces carry the dynamics the rules look for: a healthy run, a learning rate high enough to blow
up, and one low enough to crawl. It runs in milliseconds, so tests build traces on the fly, and it
doubles as the "training process" of the tmux smoke test:

    python tests/tui_traces.py --out run.jsonl --lr 3.0 --steps 400 --delay 0.02
"""

from __future__ import annotations

import argparse
import math
import time
from pathlib import Path

import numpy as np

from diag.trace import (
    ActivationStats, BatchStats, Eval, Header, LayerInfo, LayerStats, NonFiniteEvent, OptimizerInfo, ParamInfo,
    RunEndEvent, Step, TraceWriter,
)

CLASSES = 4
FEATURES = 8


def _data(seed: int, n_train: int = 512, n_val: int = 256):
    """Train and validation splits drawn from the same four Gaussian blobs."""
    rng = np.random.default_rng(seed)
    centers = rng.normal(0, 1.5, size=(CLASSES, FEATURES))
    labels = rng.integers(0, CLASSES, size=n_train + n_val)
    x = centers[labels] + rng.normal(0, 1.0, size=(n_train + n_val, FEATURES))
    return x[:n_train], labels[:n_train], x[n_train:], labels[n_train:]


def _header(run_id: str, sizes: list[int], lr: float, steps: int, batch: int, seed: int) -> Header:
    layers = []
    for i in range(len(sizes) - 1):
        last = i == len(sizes) - 2
        layers.append(LayerInfo(
            name=f"dense_{i}", type="Dense", activation=None if last else "relu", is_output=last,
            params=[ParamInfo(name="kernel", shape=[sizes[i], sizes[i + 1]], dtype="float64"),
                    ParamInfo(name="bias", shape=[sizes[i + 1]], dtype="float64")],
        ))
    params = sum(sizes[i] * sizes[i + 1] + sizes[i + 1] for i in range(len(sizes) - 1))
    return Header(
        run_id=run_id, framework="numpy", model_name="MLP " + "-".join(map(str, sizes)), layers=layers,
        param_count=params, optimizer=OptimizerInfo(name="sgd", hyperparameters={"learning_rate": lr}),
        param_dtype="float64", compute_dtype="float64", task="classification", num_classes=CLASSES,
        loss_kind="softmax_cross_entropy", batch_size=batch, steps_planned=steps, seed=seed,
        device_platform="cpu", device_count=1,
    )


def _finite_or_nan(value: float) -> float:
    return float(value) if math.isfinite(value) else float("nan")


def train(writer: TraceWriter, *, lr: float = 0.1, steps: int = 200, seed: int = 0, hidden: tuple = (32, 32, 32),
          batch: int = 64, eval_every: int = 25, delay: float = 0.0, start_time: float = 1_700_000_000.0,
          run_id: str = "tui-test") -> None:
    """Train a ReLU MLP with plain SGD and write its trace.

    Args:
      writer: where the records go.
      lr: the learning rate (0.1 trains well; 3.0 blows up; 1e-4 barely moves).
      steps: optimizer steps.
      seed: data, init and batch order.
      hidden: hidden layer widths.
      batch: batch size.
      eval_every: steps between validation evaluations.
      delay: seconds to sleep after each step (the smoke test's "live" run), flushing each step.
      start_time: recorded wall-clock time of step 0; steps are recorded 10 ms apart so that traces
        (and TUI snapshots of them) are byte-for-byte reproducible. With ``delay`` the real clock is used.
      run_id: the header's run id.
    """
    sizes = [FEATURES, *hidden, CLASSES]
    rng = np.random.default_rng(seed)
    x, y, x_val, y_val = _data(seed)
    weights = [rng.normal(0, math.sqrt(2.0 / sizes[i]), size=(sizes[i], sizes[i + 1])) for i in range(len(sizes) - 1)]
    biases = [np.zeros(sizes[i + 1]) for i in range(len(sizes) - 1)]
    writer.write(_header(run_id, sizes, lr, steps, batch, seed))
    saw_nonfinite = False
    with np.errstate(all="ignore"):
        for step in range(steps):
            idx = rng.integers(0, len(x), size=batch)
            xb, yb = x[idx], y[idx]
            loss, grads_w, grads_b, acts = _forward_backward(weights, biases, xb, yb)
            updates = [-lr * g for g in grads_w]
            grad_norms = [math.sqrt(float(np.sum(gw * gw) + np.sum(gb * gb))) for gw, gb in zip(grads_w, grads_b)]
            param_norms = [math.sqrt(float(np.sum(w * w) + np.sum(b * b))) for w, b in zip(weights, biases)]
            update_norms = [lr * g for g in grad_norms]
            for i in range(len(weights)):
                weights[i] = weights[i] + updates[i]
                biases[i] = biases[i] - lr * grads_b[i]
            total_grad = math.sqrt(sum(g * g for g in grad_norms))
            now = time.time() if delay else start_time + 0.01 * step
            record = Step(
                step=step, time=now, step_time=0.01, loss=_finite_or_nan(loss), lr=lr,
                grad_norm=_finite_or_nan(total_grad),
                update_norm=_finite_or_nan(lr * total_grad),
                param_norm=_finite_or_nan(math.sqrt(sum(p * p for p in param_norms))),
                layers=LayerStats(
                    grad_norm=[_finite_or_nan(g) for g in grad_norms],
                    param_norm=[_finite_or_nan(p) for p in param_norms],
                    update_norm=[_finite_or_nan(u) for u in update_norms],
                    update_ratio=[_finite_or_nan(u / p) if p else None for u, p in zip(update_norms, param_norms)],
                    grad_nonfinite=[float(np.sum(~np.isfinite(g))) for g in grads_w],
                    param_nonfinite=[float(np.sum(~np.isfinite(w))) for w in weights],
                ),
                activations=ActivationStats(
                    mean=[_finite_or_nan(float(np.mean(a))) for a in acts],
                    std=[_finite_or_nan(float(np.std(a))) for a in acts],
                    zero_fraction=[float(np.mean(a == 0)) for a in acts[:-1]] + [None],
                    nonfinite=[float(np.sum(~np.isfinite(a))) for a in acts],
                ),
                input=BatchStats(mean=float(xb.mean()), std=float(xb.std()), min=float(xb.min()),
                                 max=float(xb.max()), nonfinite=0.0),
                labels=BatchStats(label_entropy=_entropy(yb), distinct_labels=int(len(set(yb.tolist())))),
                metrics={"accuracy": float(np.mean(np.argmax(acts[-1], axis=1) == yb))},
            )
            writer.write(record)
            if not saw_nonfinite and not math.isfinite(loss):
                saw_nonfinite = True
                writer.write(NonFiniteEvent(step=step, tensor="loss", message="loss became non-finite"))
            if eval_every and (step + 1) % eval_every == 0:
                val_loss, _, _, val_acts = _forward_backward(weights, biases, x_val, y_val, backward=False)
                writer.write(Eval(step=step, split="val", loss=_finite_or_nan(val_loss), examples=len(x_val),
                                  metrics={"accuracy": float(np.mean(np.argmax(val_acts[-1], axis=1) == y_val))},
                                  model_mode="eval"))
            if delay:
                writer.flush()
                time.sleep(delay)
    writer.write(RunEndEvent(step=steps - 1, status="completed", steps=steps))


def _entropy(labels: np.ndarray) -> float:
    counts = np.bincount(labels, minlength=CLASSES) / len(labels)
    counts = counts[counts > 0]
    return float(-(counts * np.log(counts)).sum())


def _forward_backward(weights, biases, x, y, backward: bool = True):
    acts, pre = [], []
    h = x
    for i, (w, b) in enumerate(zip(weights, biases)):
        z = h @ w + b
        pre.append(z)
        h = np.maximum(z, 0) if i < len(weights) - 1 else z
        acts.append(h)
    logits = acts[-1]
    shifted = logits - logits.max(axis=1, keepdims=True)
    logp = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    loss = float(-logp[np.arange(len(y)), y].mean())
    if not backward:
        return loss, None, None, acts
    delta = np.exp(logp)
    delta[np.arange(len(y)), y] -= 1
    delta /= len(y)
    grads_w, grads_b = [None] * len(weights), [None] * len(weights)
    inputs = [x] + acts[:-1]
    for i in reversed(range(len(weights))):
        grads_w[i] = inputs[i].T @ delta
        grads_b[i] = delta.sum(axis=0)
        if i:
            delta = (delta @ weights[i].T) * (pre[i - 1] > 0)
    return loss, grads_w, grads_b, acts


def write_run(path: str | Path, **kwargs) -> Path:
    """Train and write a whole trace to ``path``, replacing it (see ``train`` for the arguments)."""
    Path(path).unlink(missing_ok=True)  # TraceWriter appends
    with TraceWriter(path, flush_every=10_000) as writer:
        train(writer, **kwargs)
    return Path(path)


SNAPSHOT_DATA = Path(__file__).with_name("tui_data")
SNAPSHOT_RUNS = {"diverging": {"lr": 3.0}, "dead": {"lr": 1.0}}


def write_snapshot_data(folder: Path = SNAPSHOT_DATA) -> None:
    """Write the traces the TUI snapshot tests show, and the engine's diagnosis of each.

    The diagnosis is frozen next to its trace so that a change to a rule does not redraw every
    TUI snapshot; re-run this (``python tests/tui_traces.py --snapshot-data``) and
    ``pytest tests/test_tui_snapshots.py --snapshot-update`` when the layout or the engine's
    output format changes on purpose.
    """
    import json

    from diag.engine import diagnose
    from diag.trace import load_trace
    from diag.tui.docs import cause_documentation

    folder.mkdir(parents=True, exist_ok=True)
    for name, options in SNAPSHOT_RUNS.items():
        trace = write_run(folder / f"{name}.jsonl", steps=120, run_id=name, **options)
        diagnosis = diagnose(load_trace(trace))
        (folder / f"{name}.diagnosis.json").write_text(diagnosis.to_json() + "\n")
        docs = {c.id: cause_documentation(c.id).markup for c in diagnosis.causes}
        (folder / f"{name}.docs.json").write_text(json.dumps(docs, indent=1) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--snapshot-data", action="store_true", help="rewrite tests/tui_data/ and exit")
    parser.add_argument("--out")
    parser.add_argument("--lr", type=float, default=0.1)
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--delay", type=float, default=0.0)
    args = parser.parse_args()
    if args.snapshot_data:
        write_snapshot_data()
        return
    if not args.out:
        parser.error("--out is required")
    Path(args.out).unlink(missing_ok=True)
    with TraceWriter(args.out, flush_every=1) as writer:
        train(writer, lr=args.lr, steps=args.steps, seed=args.seed, delay=args.delay, run_id=Path(args.out).stem)


if __name__ == "__main__":
    main()
