"""Engine benchmark: full built-in knowledge base over a 100,000-step x 64-layer trace.

A: ``diagnose(trace, kb=kb)``, from a loaded ``Trace`` to a ``Diagnosis`` (the knowledge base is
   loaded once beforehand, as the CLI and the TUI do).
B: the conventional way: one fact per step asserted into an existing rule engine (CLIPS through
   clipspy), with rules for four of the knowledge base's decisions (first non-finite loss; gradient
   norm above 100 for 3 steps; update/weight ratio above 0.1 in half the layers for 3 steps; loss
   scale at 2^-10 of its running peak). The engine does all 35 rules in A; B does 4, so the
   ratio understates the difference. Both must reach the same first steps (checked).

The trace is generated in memory: a float16 run whose learning rate problem starts at step
92,000 (updates too large), gradients blow up from 93,000, the loss scale collapses at 94,000 and
the loss is NaN from 95,000. Runs are interleaved A/B in one process; medians and the ratio print,
then the memory one more diagnosis takes beyond the trace (its tracemalloc peak).

    .venv/bin/python benchmarks/engine_bench.py              # full size
    .venv/bin/python benchmarks/engine_bench.py --steps 20000 --baseline-steps 20000

The baseline half is skipped, with a message, when clipspy is not installed (pip install clipspy).
"""

from __future__ import annotations

import argparse
import math
import statistics
import time
import tracemalloc

import numpy as np

from bench_results import publish
from diag.engine.api import diagnose
from diag.engine.kb import load_knowledge_base
from diag.trace.columnar import Trace
from diag.trace.records import Eval, Header, LayerInfo, OptimizerInfo

COLLAPSE = 2.0 ** -10


def make_trace(steps: int, layers: int, seed: int = 0) -> Trace:
    """A generated fp16 run that goes wrong late (see the module docstring), as Trace columns."""
    rng = np.random.default_rng(seed)
    t = np.arange(steps)
    f = steps / 100_000  # event steps scale with the run length
    lr_at, blow_at, scale_at, nan_at = (int(x * f) for x in (92_000, 93_000, 94_000, 95_000))
    loss = 2.3 * np.exp(-t / (steps / 4)) + 0.5 + rng.normal(0, 0.05, steps)
    loss[lr_at:] += np.linspace(0, 8, steps - lr_at)
    loss[nan_at:] = np.nan
    grad = np.exp(rng.normal(0, 0.3, steps))
    grad[blow_at:] *= 500
    grad[nan_at:] = np.inf
    scale = np.full(steps, 65536.0)
    scale[scale_at:] = 65536.0 * 0.5 ** np.minimum(np.arange(steps - scale_at) + 1, 24)
    ratio = np.exp(rng.normal(np.log(1e-3), 0.2, (steps, layers)))
    ratio[lr_at:, : int(layers * 0.6)] = 0.2
    lgrad = np.exp(rng.normal(0, 0.3, (steps, layers))) / np.sqrt(layers)
    lgrad[nan_at:] = np.inf
    gnf = np.zeros((steps, layers))
    gnf[nan_at:] = 1.0
    zero = np.clip(rng.normal(0.3, 0.02, (steps, layers)), 0, 1)
    zero[:, -1] = np.nan
    anf = np.zeros((steps, layers))
    pnorm = np.full((steps, layers), 10.0) + rng.normal(0, 0.01, (steps, layers))
    columns = {"loss": loss, "grad_norm": grad, "loss_scale": scale, "lr": np.full(steps, 1e-3),
               "input.nonfinite": np.zeros(steps)}
    layer_columns = {"layers.update_ratio": ratio, "layers.grad_norm": lgrad, "layers.grad_nonfinite": gnf,
                     "layers.param_norm": pnorm, "activations.zero_fraction": zero, "activations.nonfinite": anf}
    names = [f"block{i}" for i in range(layers)]
    header = Header(run_id="bench", framework="jax", compute_dtype="float16", param_dtype="float32",
                    optimizer=OptimizerInfo(name="adam", hyperparameters={"learning_rate": 1e-3}),
                    layers=[LayerInfo(name=n, activation="relu", is_output=i == layers - 1)
                            for i, n in enumerate(names)],
                    task="classification", num_classes=10, loss_scaling="dynamic")
    evals = [Eval(step=int(s), split="val", loss=float(loss[s] + 0.1) if math.isfinite(loss[s]) else None,
                  metrics={"accuracy": 0.8})
             for s in range(999, steps, 1000)]
    return Trace(path="<generated>", header=header, steps=t.astype(np.int64), columns=columns,
                 present={k: np.ones(steps, dtype=bool) for k in columns}, layer_columns=layer_columns,
                 layer_present={k: np.ones(steps, dtype=bool) for k in layer_columns}, evals=evals, headers=[header])


# --------------------------------------------------------------------------- B: CLIPS, one fact per step

CLIPS_RULES = """
(deftemplate step (slot n) (slot prev) (slot loss-finite) (slot gnorm) (slot scale) (multislot ratio))
(defglobal ?*smax* = 0.0 ?*collapsed* = FALSE)
(deffunction count-above (?values ?limit)
  (bind ?count 0)
  (foreach ?v ?values (if (> ?v ?limit) then (bind ?count (+ ?count 1))))
  ?count)
(defrule loss-non-finite
  (step (n ?n) (loss-finite FALSE))
  (not (first-nonfinite ?))
  =>
  (assert (first-nonfinite ?n)))
(defrule grad-huge
  (step (n ?a) (gnorm ?g1&:(> ?g1 100)))
  (step (n ?b) (prev ?a) (gnorm ?g2&:(> ?g2 100)))
  (step (n ?c) (prev ?b) (gnorm ?g3&:(> ?g3 100)))
  (not (first-huge ?))
  =>
  (assert (first-huge ?a)))
(defrule ratio-high
  (step (n ?a) (ratio $?r1&:(>= (count-above ?r1 0.1) (/ (length$ ?r1) 2))))
  (step (n ?b) (prev ?a) (ratio $?r2&:(>= (count-above ?r2 0.1) (/ (length$ ?r2) 2))))
  (step (n ?c) (prev ?b) (ratio $?r3&:(>= (count-above ?r3 0.1) (/ (length$ ?r3) 2))))
  (not (first-ratio ?))
  =>
  (assert (first-ratio ?a)))
(defrule scale-collapse
  (step (n ?n) (scale ?s))
  =>
  (if (> ?s ?*smax*) then (bind ?*smax* ?s))
  (if (and (not ?*collapsed*) (<= (/ ?s ?*smax*) 0.0009765625))
   then (bind ?*collapsed* TRUE) (assert (first-collapse ?n))))
"""


def clips_decisions(trace: Trace, steps: int, exact: bool = False) -> tuple[dict, float]:
    """Assert one fact per step and run the rules after each (streaming, the conventional way).

    CLIPS interns every distinct float in a fixed-size hash table, so 6.4 million distinct
    per-layer values make assertion quadratic (measured: 8,000 steps of random ratios take 3.4x
    as long as 4,000). Unless ``exact``, per-layer ratios are rounded to 4 decimals beforehand
    (untimed; it cannot change a comparison with 0.1), which keeps CLIPS linear: the baseline
    is the charitable one. Returns the first steps found and the seconds the per-step loop took.
    """
    import clips

    env = clips.Environment()
    for construct in _constructs(CLIPS_RULES):
        env.build(construct)
    template = env.find_template("step")
    loss, grad, scale = (trace.columns[k] for k in ("loss", "grad_norm", "loss_scale"))
    ratio = trace.layer_columns["layers.update_ratio"][:steps]
    if not exact:
        ratio = np.round(ratio, 4)
    true, false = clips.Symbol("TRUE"), clips.Symbol("FALSE")
    t0 = time.perf_counter()
    for i in range(steps):
        g = float(grad[i])
        template.assert_fact(n=i, prev=i - 1, **{"loss-finite": true if math.isfinite(loss[i]) else false},
                             gnorm=g if math.isfinite(g) else 1e308, scale=float(scale[i]),
                             ratio=ratio[i].tolist())
        env.run()
    elapsed = time.perf_counter() - t0
    found = {}
    for fact in env.facts():
        name = fact.template.name
        if name.startswith("first-"):
            found[name] = int(fact[0])
    return ({"loss.non-finite": found.get("first-nonfinite"), "grad.norm-huge": found.get("first-huge"),
             "update.ratio-high": found.get("first-ratio"), "amp.loss-scale-collapse": found.get("first-collapse")},
            elapsed)


def _constructs(text: str) -> list[str]:
    out, depth, start = [], 0, None
    for i, ch in enumerate(text):
        if ch == "(":
            if depth == 0:
                start = i
            depth += 1
        elif ch == ")":
            depth -= 1
            if depth == 0:
                out.append(text[start:i + 1])
    return out


def engine_decisions(diagnosis) -> dict:
    first = {}
    for s in diagnosis.symptoms:
        if s.id in ("loss.non-finite", "grad.norm-huge", "update.ratio-high", "amp.loss-scale-collapse"):
            first[s.id] = s.first_step if s.id not in first else min(first[s.id], s.first_step)
    return first


def diagnosis_peak_memory(trace: Trace, kb) -> int:
    """Bytes allocated at the peak of one diagnosis, beyond what was allocated before it (numpy
    reports its arrays to tracemalloc): the working memory the engine needs on top of the trace."""
    trace._eval_cache.clear()
    tracemalloc.start()
    try:
        diagnose(trace, kb=kb)
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def trace_bytes(trace: Trace) -> int:
    return sum(v.nbytes for v in (*trace.columns.values(), *trace.layer_columns.values()))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=100_000)
    parser.add_argument("--layers", type=int, default=64)
    parser.add_argument("--baseline-steps", type=int, default=None,
                        help="steps given to CLIPS (default: all); fewer are extrapolated linearly")
    parser.add_argument("--repeats", type=int, default=5, help="engine runs (CLIPS runs twice)")
    parser.add_argument("--exact-floats", action="store_true",
                        help="give CLIPS the unrounded per-layer floats (quadratic: use with --baseline-steps)")
    args = parser.parse_args()

    kb = load_knowledge_base(use_env=False)
    trace = make_trace(args.steps, args.layers)
    print(f"trace: {args.steps} steps x {args.layers} layers; knowledge base: {len(kb.rules)} rules, "
          f"{len(kb.causes)} causes")
    try:
        import clips  # noqa: F401
        have_clips = True
    except ImportError:
        have_clips = False
        print("clipspy is not installed: skipping the per-step CLIPS baseline (pip install clipspy)")

    base_steps = args.baseline_steps or args.steps
    a_times, b_times, a_cpu = [], [], []
    diagnosis = clips_found = None
    for r in range(args.repeats):
        trace._eval_cache.clear()
        t0, c0 = time.perf_counter(), time.process_time()
        diagnosis = diagnose(trace, kb=kb)
        a_times.append(time.perf_counter() - t0)
        a_cpu.append(time.process_time() - c0)
        print(f"  A engine   run {r + 1}: {a_times[-1]:.3f} s ({a_cpu[-1]:.3f} s CPU)")
        if have_clips and r < 2:
            clips_found, elapsed = clips_decisions(trace, base_steps, exact=args.exact_floats)
            b_times.append(elapsed * args.steps / base_steps)
            note = "" if base_steps == args.steps else f" ({elapsed:.2f} s for {base_steps} steps, scaled)"
            print(f"  B clipspy  run {r + 1}: {b_times[-1]:.2f} s{note}")

    a = statistics.median(a_times)
    print(f"\nA engine (full KB, {len(kb.rules)} rules), median of {len(a_times)}: {a:.3f} s "
          f"({statistics.median(a_cpu):.3f} s CPU; the CPU time moves less on a shared machine)  "
          f"[goal <= 0.25 s CPU: {'met' if statistics.median(a_cpu) <= 0.25 else 'MISSED'}]")
    peak = diagnosis_peak_memory(trace, kb)
    print(f"memory a diagnosis takes beyond the trace's own columns (tracemalloc peak, one more run): "
          f"{peak / 1e6:.0f} MB; the trace's columns: {trace_bytes(trace) / 1e6:.0f} MB")
    publish("engine", wall_s=a, cpu_s=statistics.median(a_cpu), peak_mb=peak / 1e6)
    print(f"top cause: {diagnosis.top.id if diagnosis.top else None}; "
          f"causes: {[c.id for c in diagnosis.causes]}")
    mine = engine_decisions(diagnosis)
    print(f"engine first steps: {mine}")
    if b_times:
        b = statistics.median(b_times)
        print(f"clips  first steps: {clips_found}")
        if base_steps == args.steps:
            agree = all(mine.get(k) == v for k, v in clips_found.items())
            print(f"decisions agree: {agree}")
        print(f"B clipspy (4 rules, one fact per step), median of {len(b_times)}: {b:.2f} s")
        print(f"ratio B/A: {b / a:.0f}x  [goal >= 100x: {'met' if b / a >= 100 else 'MISSED'}]")


if __name__ == "__main__":
    main()
