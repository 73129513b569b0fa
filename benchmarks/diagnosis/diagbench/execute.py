"""Run one scenario: build its data, train it for real, diagnose the trace, summarise what it shows.

This is what each worker process of ``run.py`` does, and what the test calls in-process.
"""

from __future__ import annotations

import json
import math
import time
import traceback
from pathlib import Path

import numpy as np

from diagbench import data as D


def prepare_data(sc: dict) -> D.Dataset:
    if sc.get("style") == "program":  # held-out sets 4-5: their own tasks (diagbench/programs)
        from diagbench.programs import tasks

        return tasks.make(sc["data"], int(sc["seed"]))
    ds = D.build(sc["data"], int(sc["seed"]))
    return D.apply_faults(ds, sc.get("fault") or {}, int(sc["seed"]))


def train(sc: dict, path: Path) -> None:
    """Train the scenario and write its trace to ``path`` (replacing an older one)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.exists():
        path.unlink()
    ds = prepare_data(sc)
    if sc.get("style") == "program":
        if sc.get("framework", "flax") == "torch":
            from diagbench.programs.torch_loop import run
        else:
            from diagbench.programs.flax_loop import run
        run(sc, ds, str(path))
    elif sc.get("framework", "flax") == "torch":
        from diagbench.torch_train import train_torch

        train_torch(sc, ds, str(path))
    else:
        from diagbench.flax_train import train_flax

        train_flax(sc, ds, str(path))
    _settle(path)


def _settle(path: Path, timeout: float = 120.0) -> None:
    """Wait until the trace stops growing: a loaded machine once returned from Recorder.close()
    (its writer thread's join times out after 30 s) before the records were on disk."""
    deadline = time.monotonic() + timeout
    last = -1
    while time.monotonic() < deadline:
        size = path.stat().st_size if path.exists() else 0
        if size > 0 and size == last:
            return
        last = size
        time.sleep(0.5)


_KB_CACHE: dict = {}


def diagnose(path: Path, kb_dir: str | None = None) -> dict:
    """Ranked causes (not suppressed) with certainty and bucket, and the trace summary.

    ``kb_dir``: diagnose with the rules of that folder instead of the built-in knowledge base (to
    score an older knowledge base, e.g. the one before a change, on the same traces).
    """
    from diag.engine import diagnose as engine_diagnose
    from diag.engine.kb import load_knowledge_base
    from diag.trace import load_trace

    trace = load_trace(path)
    kb = None
    if kb_dir:
        kb = _KB_CACHE.get(kb_dir) or _KB_CACHE.setdefault(kb_dir, load_knowledge_base(paths=[kb_dir], use_env=False))
    dx = engine_diagnose(trace, kb=kb, use_env=False)
    ranked = [{"id": c.id, "certainty": round(c.certainty, 3), "bucket": c.bucket} for c in dx.causes]
    return {"ranked": ranked, "summary": summarize(trace)}


def run_one(sc: dict, path: Path, *, reuse_key: str | None = None, kb_dir: str | None = None) -> dict:
    """Train (unless a kept trace with the same key exists) and diagnose; never raises."""
    t0 = time.perf_counter()
    out = {"scenario": sc["id"], "expected": sc["expect"], "error": None, "trained": False,
           "framework": sc.get("framework", "flax")}
    key_file = Path(str(path) + ".key")
    try:
        if not (reuse_key and path.exists() and key_file.exists() and key_file.read_text() == reuse_key):
            train(sc, path)
            out["trained"] = True
            if reuse_key:
                key_file.write_text(reuse_key)
        out["train_s"] = round(time.perf_counter() - t0, 2)
        out.update(diagnose(path, kb_dir))
    except Exception as e:  # one broken scenario must not stop the benchmark
        out["error"] = f"{type(e).__name__}: {e}"
        out["traceback"] = traceback.format_exc(limit=6)
        out.setdefault("ranked", [])
    out["seconds"] = round(time.perf_counter() - t0, 2)
    return out


# --------------------------------------------------------------------------- what the trace showed


def _fmt(v) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "nan"
    if isinstance(v, float):
        return f"{v:.3g}"
    return str(v)


def summarize(trace) -> dict:
    """A few numbers per domain, for the report of a miss (what a rule could have used)."""
    import warnings

    with warnings.catch_warnings():  # a layer that never logged a finite value has no median
        warnings.simplefilter("ignore", RuntimeWarning)
        return _summarize(trace)


def _summarize(trace) -> dict:
    s: dict = {}

    def series(name):
        try:
            return trace.series(name).values
        except Exception:
            return None

    loss = series("loss")
    if loss is not None and len(loss):
        finite = loss[np.isfinite(loss)]
        s["loss"] = {"first": _fmt(float(loss[0])), "min": _fmt(float(finite.min())) if len(finite) else "nan",
                     "last": _fmt(float(loss[-1])), "nonfinite_steps": int((~np.isfinite(loss)).sum())}
    g = series("grad_norm")
    if g is not None and len(g):
        fg = g[np.isfinite(g)]
        if len(fg):
            s["grad_norm"] = {"first": _fmt(float(fg[0])), "median": _fmt(float(np.median(fg))),
                              "max": _fmt(float(fg.max())), "last": _fmt(float(fg[-1]))}
    try:
        lg = trace.layer_matrix("layers.grad_norm").values
        names = list(trace.layer_names)
        if lg.size:
            med = np.nanmedian(np.where(np.isfinite(lg), lg, np.nan), axis=0)
            s["layer_grad_median"] = {n: _fmt(float(v)) for n, v in zip(names, med)}
        ur = trace.layer_matrix("layers.update_ratio").values
        if ur.size:
            s["update_ratio_median"] = _fmt(float(np.nanmedian(np.where(np.isfinite(ur), ur, np.nan))))
        zf = trace.layer_matrix("activations.zero_fraction").values
        if zf.size and np.isfinite(zf).any():
            s["zero_fraction_last"] = {n: _fmt(float(v)) for n, v in zip(names, zf[-1]) if np.isfinite(v)}
    except Exception:
        pass
    for name in ("input.mean", "input.std", "input.nonfinite", "labels.label_entropy", "loss_scale"):
        v = series(name)
        if v is not None and len(v) and np.isfinite(v).any():
            fv = v[np.isfinite(v)]
            s[name] = {"first": _fmt(float(fv[0])), "min": _fmt(float(fv.min())), "max": _fmt(float(fv.max()))}
    sk = series("skipped")
    if sk is not None and len(sk):
        s["skipped_steps"] = int(np.nansum(sk))
    for split in ("val", "train_eval"):
        evs = [e for e in trace.evals if e.split == split]
        if evs:
            s[f"eval.{split}"] = {"first_loss": _fmt(evs[0].loss), "last_loss": _fmt(evs[-1].loss),
                                  "min_loss": _fmt(min((e.loss for e in evs if e.loss is not None and math.isfinite(e.loss)),
                                                       default=float("nan"))),
                                  "last_acc": _fmt(evs[-1].metrics.get("accuracy")), "mode": evs[-1].model_mode}
    facts = []
    for d in trace.data:
        bits = [f"{d.split}: n={d.size}"]
        if d.overlap_fraction:
            bits.append(f"overlap {d.overlap_fraction:.2f}")
        if d.feature_scores:
            top = d.feature_scores[0]
            bits.append(f"best feature {top.feature} {top.score:.2f}")
        if d.time_min is not None:
            bits.append(f"time {d.time_min:.0f}..{d.time_max:.0f}")
        if d.conflicting_fraction:
            bits.append(f"conflicting {d.conflicting_fraction:.2f}")
        if d.input_nonfinite:
            bits.append(f"nonfinite inputs {d.input_nonfinite}")
        facts.append(", ".join(bits))
    if facts:
        s["data"] = facts
    bad = [f"{c.target} err {c.error:.2g}" for c in trace.checks if not c.passed]
    if trace.checks:
        s["checks"] = {"run": len(trace.checks), "failed": bad[:3]}
    ev = [f"{e.event}@{e.step}:{getattr(e, 'tensor', '')}:{getattr(e, 'layer', '') or ''}"
          for e in trace.events if getattr(e, "event", "") in ("nonfinite", "exception")]
    if ev:
        s["events"] = ev
    return s


def summary_line(summary: dict) -> str:
    return json.dumps(summary, separators=(", ", ": "))
