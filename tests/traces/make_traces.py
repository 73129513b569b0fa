"""Generate the shared test traces in this folder from real (small) JAX training runs.

Every trace comes from an actual training loop: a 4-layer MLP on generated Gaussian-cluster data,
trained with a hand-written optimizer so that the recorded statistics (loss, global and per-layer
gradient norms, update/weight ratios, ReLU zero fractions, loss scale) are what the run really
did. One fault is planted per trace; ``healthy.jsonl`` has none.

Run from the repository root (takes about half a minute on 2 CPU cores):

    .venv/bin/python tests/traces/make_traces.py

Traces: healthy, lr_too_high, nan_in_input, overfitting, leakage, fp16_overflow, bad_gradient.
"""

from __future__ import annotations

import hashlib
import os
import sys
from pathlib import Path

os.environ.setdefault("JAX_PLATFORMS", "cpu")

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

from diag.trace.records import (  # noqa: E402
    ActivationStats,
    BatchStats,
    Check,
    Data,
    Eval,
    FeatureScore,
    Header,
    LayerInfo,
    LayerStats,
    NonFiniteEvent,
    OptimizerInfo,
    ParamInfo,
    RunEndEvent,
    Step,
)
from diag.trace.writer import write_trace  # noqa: E402

HERE = Path(__file__).parent
WIDTHS = (16, 64, 64, 32, 4)  # input features, hidden..., classes
LAYERS = ("dense_0", "dense_1", "dense_2", "dense_3")


def make_data(n: int, seed: int, noise: float = 1.0, num_features: int = 16, classes: int = 4):
    rng = np.random.default_rng(seed)
    centers = np.random.default_rng(1234).normal(0, 1.0, (classes, num_features))
    y = rng.integers(0, classes, n)
    x = centers[y] + rng.normal(0, noise, (n, num_features))
    return x.astype(np.float32), y.astype(np.int32)


def init_params(seed: int, dtype=jnp.float32):
    key = jax.random.PRNGKey(seed)
    params = []
    for fan_in, fan_out in zip(WIDTHS[:-1], WIDTHS[1:]):
        key, sub = jax.random.split(key)
        w = jax.random.normal(sub, (fan_in, fan_out)) * jnp.sqrt(2.0 / fan_in)
        params.append({"w": w.astype(dtype), "b": jnp.zeros((fan_out,), dtype)})
    return params


def forward(params, x):
    acts = []
    h = x
    for i, layer in enumerate(params):
        h = h @ layer["w"] + layer["b"]
        if i < len(params) - 1:
            h = jax.nn.relu(h)
        acts.append(h)
    return h, acts


def loss_fn(params, x, y, scale=1.0):
    logits, acts = forward(params, x)
    logp = jax.nn.log_softmax(logits.astype(jnp.float32))
    loss = -jnp.mean(jnp.take_along_axis(logp, y[:, None], axis=1))
    return loss * scale, (loss, logits, acts)


grad_fn = jax.jit(jax.value_and_grad(loss_fn, has_aux=True))


@jax.jit
def layer_stats(params, grads, updates, acts):
    def norm(tree):
        return jnp.sqrt(sum(jnp.sum(jnp.square(v.astype(jnp.float32))) for v in tree.values()))

    g = jnp.stack([norm(t) for t in grads])
    p = jnp.stack([norm(t) for t in params])
    u = jnp.stack([norm(t) for t in updates])
    gnf = jnp.stack([sum(jnp.sum(~jnp.isfinite(v)) for v in t.values()) for t in grads]).astype(jnp.float32)
    zero = jnp.stack([jnp.mean(a == 0) for a in acts])
    anf = jnp.stack([jnp.sum(~jnp.isfinite(a)) for a in acts]).astype(jnp.float32)
    mean = jnp.stack([jnp.mean(a.astype(jnp.float32)) for a in acts])
    std = jnp.stack([jnp.std(a.astype(jnp.float32)) for a in acts])
    return g, p, u, gnf, zero, anf, mean, std


def evaluate(params, x, y):
    loss, (_, logits, _) = loss_fn(params, jnp.asarray(x), jnp.asarray(y))
    acc = float(jnp.mean(jnp.argmax(logits, -1) == jnp.asarray(y)))
    return float(loss), acc


def header(run_id, optimizer, lr, compute_dtype="float32", loss_scaling=None, steps=0):
    layers = [
        LayerInfo(name=name, type="Dense", activation=None if i == len(LAYERS) - 1 else "relu",
                  is_output=i == len(LAYERS) - 1, compute_dtype=compute_dtype,
                  params=[ParamInfo(name="kernel", shape=[WIDTHS[i], WIDTHS[i + 1]], dtype=compute_dtype),
                          ParamInfo(name="bias", shape=[WIDTHS[i + 1]], dtype=compute_dtype)])
        for i, name in enumerate(LAYERS)
    ]
    return Header(run_id=run_id, framework="jax", model_name="mlp4", layers=layers,
                  optimizer=OptimizerInfo(name=optimizer, hyperparameters={"learning_rate": lr}),
                  param_dtype=compute_dtype, compute_dtype=compute_dtype, task="classification", num_classes=4,
                  loss_kind="softmax_cross_entropy", batch_size=64, steps_planned=steps, seed=0,
                  loss_scaling=loss_scaling, device_platform="cpu")


def _clean(values):
    return [float(v) for v in np.asarray(values, dtype=np.float64)]


def train(run_id, *, steps=300, lr=1e-3, optimizer="adam", train_n=2048, noise=1.0, nan_batch_at=None,
          fp16=False, input_scale=1.0, eval_every=20, seed=0, records_extra=()):
    """Train the MLP and return the trace records of the run."""
    x_train, y_train = make_data(train_n, seed + 1, noise)
    x_val, y_val = make_data(512, seed + 2, noise)
    dtype = jnp.float16 if fp16 else jnp.float32
    params = init_params(seed, dtype)
    master = init_params(seed, jnp.float32)
    m = jax.tree_util.tree_map(jnp.zeros_like, master)
    v = jax.tree_util.tree_map(jnp.zeros_like, master)
    scale, good = 65536.0, 0
    rng = np.random.default_rng(seed)
    records = [header(run_id, optimizer, lr, "float16" if fp16 else "float32", "dynamic" if fp16 else None, steps)]
    nan_seen = False
    for step in range(steps):
        idx = rng.integers(0, train_n, 64)
        xb, yb = x_train[idx] * input_scale, y_train[idx]
        if nan_batch_at is not None and step == nan_batch_at:
            xb = xb.copy()
            xb[3, 5] = np.nan
            xb[10, 2] = np.nan
        batch = BatchStats(mean=float(np.nanmean(xb)), std=float(np.nanstd(xb)),
                           nonfinite=float((~np.isfinite(xb)).sum()))
        compute = params if fp16 else master
        (_, (loss, _, acts)), grads = grad_fn(compute, jnp.asarray(xb, dtype), jnp.asarray(yb), scale if fp16 else 1.0)
        grads = [{k: g.astype(jnp.float32) / (scale if fp16 else 1.0) for k, g in layer.items()} for layer in grads]
        finite = all(bool(jnp.all(jnp.isfinite(g))) for layer in grads for g in layer.values())
        skipped = False
        if fp16 and not finite:
            scale, good, skipped = scale / 2, 0, True
            updates = jax.tree_util.tree_map(jnp.zeros_like, master)
        else:
            if optimizer == "adam":
                m = jax.tree_util.tree_map(lambda a, g: 0.9 * a + 0.1 * g, m, grads)
                v = jax.tree_util.tree_map(lambda a, g: 0.999 * a + 0.001 * g * g, v, grads)
                t = step + 1
                updates = jax.tree_util.tree_map(
                    lambda a, b: -lr * (a / (1 - 0.9 ** t)) / (jnp.sqrt(b / (1 - 0.999 ** t)) + 1e-8), m, v)
            else:
                updates = jax.tree_util.tree_map(lambda g: -lr * g, grads)
            master = jax.tree_util.tree_map(lambda p, u: p + u, master, updates)
            if fp16:
                good += 1
                if good >= 200:
                    scale, good = scale * 2, 0
        params = jax.tree_util.tree_map(lambda p: p.astype(dtype), master)
        g, p, u, gnf, zero, anf, amean, astd = (np.asarray(a, dtype=np.float64)
                                                for a in layer_stats(master, grads, updates, acts))
        with np.errstate(divide="ignore", invalid="ignore"):
            ratio = u / p
        zero[-1] = np.nan  # the output layer feeds no ReLU
        gnorm = float(np.sqrt(np.sum(np.square(g))))
        records.append(Step(
            step=step, loss=float(loss), lr=lr, grad_norm=gnorm, update_norm=float(np.sqrt(np.sum(u * u))),
            param_norm=float(np.sqrt(np.sum(p * p))), loss_scale=scale if fp16 else None,
            skipped=skipped if fp16 else None, input=batch,
            layers=LayerStats(grad_norm=_clean(g), param_norm=_clean(p), update_norm=_clean(u),
                              update_ratio=_clean(ratio), grad_nonfinite=_clean(gnf)),
            activations=ActivationStats(mean=_clean(amean), std=_clean(astd),
                                        zero_fraction=[None if np.isnan(z) else float(z) for z in zero],
                                        nonfinite=_clean(anf)),
        ))
        if not nan_seen and not np.isfinite(float(loss)):
            nan_seen = True
            tensor = "input" if not np.isfinite(xb).all() else "loss"
            records.append(NonFiniteEvent(step=step, tensor=tensor))
        if (step + 1) % eval_every == 0:
            vloss, vacc = evaluate(master, x_val * input_scale, y_val)
            records.append(Eval(step=step, split="val", loss=vloss, metrics={"accuracy": vacc}, model_mode="eval",
                                examples=len(y_val)))
    records.append(Data(split="train", size=train_n, num_features=x_train.shape[1],
                        label_histogram={str(k): int(c) for k, c in zip(*np.unique(y_train, return_counts=True))},
                        input_nonfinite=0))
    records += list(records_extra)
    records.append(RunEndEvent(step=steps - 1, status="completed", steps=steps))
    return records


# --------------------------------------------------------------------------- data probe (real computation)


def row_hashes(x: np.ndarray) -> list[str]:
    return [hashlib.sha1(row.tobytes()).hexdigest() for row in np.ascontiguousarray(x)]


def overlap_record(split, x_split, x_train) -> Data:
    train = set(row_hashes(x_train))
    hits = sum(h in train for h in row_hashes(x_split))
    return Data(split=split, size=len(x_split), overlap_with_train=hits, overlap_fraction=hits / len(x_split))


def feature_scores(x, y) -> list[FeatureScore]:
    """Accuracy of predicting the label from one feature alone: the majority label of each of 20
    quantile bins, fitted on half the rows and scored on the other half (multi-class, honest)."""
    half = len(y) // 2
    scores = []
    for j in range(x.shape[1]):
        edges = np.unique(np.quantile(x[:half, j], np.linspace(0, 1, 21)[1:-1]))
        fit_bins, test_bins = np.digitize(x[:half, j], edges), np.digitize(x[half:, j], edges)
        majority = {b: np.bincount(y[:half][fit_bins == b]).argmax() for b in np.unique(fit_bins)}
        guess = np.array([majority.get(b, 0) for b in test_bins])
        scores.append(FeatureScore(feature=f"f{j}", score=float(np.mean(guess == y[half:])),
                                   metric="holdout_accuracy"))
    return scores


# --------------------------------------------------------------------------- gradient check (real)


def gradient_check_records() -> list[Check]:
    """A float64 directional gradient check of a correct and a wrong custom_vjp."""
    jax.config.update("jax_enable_x64", True)

    @jax.custom_vjp
    def good(x):
        return jnp.sin(x) * x

    good.defvjp(lambda x: (good(x), x), lambda x, ct: (ct * (jnp.cos(x) * x + jnp.sin(x)),))

    @jax.custom_vjp
    def bad(x):
        return jnp.sin(x) * x

    bad.defvjp(lambda x: (bad(x), x), lambda x, ct: (ct * jnp.cos(x) * x,))  # forgets the sin(x) term

    out = []
    x = jnp.linspace(-1.0, 1.0, 32, dtype=jnp.float64)
    rng = np.random.default_rng(0)
    for name, fn in (("dense_1.activation", good), ("dense_2.activation", bad)):
        errors = []
        for _ in range(8):
            d = jnp.asarray(rng.normal(size=x.shape))
            d = d / jnp.linalg.norm(d)
            analytic = jnp.vdot(jax.grad(lambda z: jnp.sum(fn(z)))(x), d)
            eps = 1e-5
            numeric = (jnp.sum(fn(x + eps * d)) - jnp.sum(fn(x - eps * d))) / (2 * eps)
            errors.append(float(abs(analytic - numeric) / max(abs(numeric), 1e-12)))
        worst = max(errors)
        out.append(Check(name="gradient", target=name, passed=worst < 1e-6, method="directional", error=worst,
                         threshold=1e-6, dtype="float64", directions=8))
    jax.config.update("jax_enable_x64", False)
    return out


def main() -> None:
    traces = {}
    x_tr, y_tr = make_data(2048, 1)
    x_va, _ = make_data(512, 2)
    traces["healthy"] = train("healthy", records_extra=[overlap_record("val", x_va, x_tr)])
    traces["lr_too_high"] = train("lr_too_high", lr=0.3, optimizer="adam", steps=200)
    traces["nan_in_input"] = train("nan_in_input", nan_batch_at=150, steps=200)
    traces["overfitting"] = train("overfitting", train_n=48, noise=2.0, lr=3e-3, steps=600, eval_every=25)
    # Leakage: the validation split copies 25% of train rows; feature f0 is the label itself.
    x_leak = x_tr.copy()
    x_leak[:, 0] = y_tr
    x_val_leak = np.concatenate([x_va[:384], x_tr[:128]])
    leak_data = [overlap_record("val", x_val_leak, x_tr),
                 Data(split="train", size=len(x_leak), feature_scores=feature_scores(x_leak, y_tr))]
    traces["leakage"] = train("leakage", steps=200, records_extra=leak_data)
    traces["fp16_overflow"] = train("fp16_overflow", fp16=True, input_scale=3000.0, lr=1e-3, steps=120)
    checks = gradient_check_records()
    traces["bad_gradient"] = train("bad_gradient", steps=100, records_extra=checks)
    for name, records in traces.items():
        path = HERE / f"{name}.jsonl"
        if path.exists():
            path.unlink()
        write_trace(path, records)
        print(f"wrote {path} ({len(records)} records, {path.stat().st_size // 1024} KiB)")


if __name__ == "__main__":
    sys.exit(main())
