"""Evaluating a ``signal:`` clause for one binding: choose the column (layer) that fired, and
describe it (steps, values, layers) for evidence and the why-chain.
"""

from __future__ import annotations

import numpy as np

from diag.engine.conditions.clause import CF_THRESHOLD, Clause, Outcome, bind, ramp_cf
from diag.engine.conditions.windows import SignalResult, base_columns, signal_result


def _column_attrs(clause: Clause, r: SignalResult, j: int, layer: str | None) -> dict:
    st = r.column_stats(j)
    s = int(r.start[j])
    last_true = int(st["last_true"])
    return {
        "first_step": float(r.steps[s]), "fired_at": float(r.steps[int(r.fired_at[j])]),
        "last_step": float(r.steps[last_true if last_true >= 0 else s]),
        "value": float(st["value"]), "peak": float(st["peak"]), "low": float(st["low"]),
        "last": float(st["last"]), "raw": float(st["raw"]), "count": float(st["count"]),
        "frac": float(st["frac"]), "n": float(len(r.steps)), "series": clause.series, "layer": layer,
    }


def evaluate_signal(clause: Clause, env, labels: dict, values: dict) -> Outcome:
    r = signal_result(clause, env)
    if r is None:
        missing = [clause.series] + ([clause.other] if clause.other and base_columns(env, clause.other) is None else [])
        if clause.other and base_columns(env, clause.series) is not None:
            missing = [clause.other]
        return Outcome(clause, False, 0.0, missing=missing)
    is_layer = clause.is_layer_signal
    names = env.layer_names
    if is_layer and "layer" in labels:
        j = env.layer_index[labels["layer"]]
        if j >= r.fired.shape[0] or not r.measured[j]:
            return Outcome(clause, False, 0.0, missing=[f"{clause.series}{{layer={labels['layer']}}}"])
        columns = [j] if r.fired[j] else []
        chosen = j
    else:
        eligible = r.measured.copy()
        if is_layer and clause.exclude_output:
            eligible &= ~env.output_mask[: len(eligible)]
        columns = [j for j in np.flatnonzero(r.fired & eligible)]
        if is_layer and clause.layers_min_frac > 0:
            if eligible.sum() == 0 or len(columns) / eligible.sum() < clause.layers_min_frac:
                columns_ok = False
            else:
                columns_ok = True
        else:
            columns_ok = bool(columns)
        if not columns_ok:
            observed = None
            if columns:
                observed = f"{len(columns)}/{int(eligible.sum())} layers"
            return Outcome(clause, False, 0.0, observed=observed, threshold=clause.value)
        chosen = min(columns, key=lambda j: (int(r.start[j]) if r.start[j] >= 0 else 1 << 62, j))
    if not columns:
        # The last value is what a reader compares with the threshold in a why-not report.
        last = float(r.y[-1, chosen]) if len(r.steps) else float("nan")
        return Outcome(clause, False, 0.0, observed=last if np.isfinite(last) else None, threshold=clause.value)
    layer = names[chosen] if is_layer and chosen < len(names) else None
    attrs = _column_attrs(clause, r, chosen, layer)
    if is_layer:
        fired_layers = [names[j] for j in columns if j < len(names)]
        attrs["layers"] = fired_layers
        attrs["n_layers"] = float(len(fired_layers))
        eligible_count = max(int(r.measured.sum()), 1)
        attrs["frac_layers"] = len(fired_layers) / eligible_count
    cf = 1.0
    if clause.ramp is not None:
        x = attrs["peak"] if clause.op in (">", ">=") else attrs["low"]
        cf = ramp_cf(x, clause.ramp)
    attrs["cf"] = cf
    bind(clause, values, attrs)
    observed = attrs["last"] if clause.at == "last" else attrs["value"]
    return Outcome(clause, cf >= CF_THRESHOLD, cf, attrs=attrs, observed=observed, threshold=clause.value,
                   steps=[int(attrs["first_step"]), int(attrs["last_step"])], layer=layer)
