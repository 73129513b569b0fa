"""Which column each field of a step record goes to, and the plan both fast paths follow.

The builder's record-by-record fast path (``TraceBuilder._fast_step``) and its block path
(``diag.trace.step_block``) read a step record through the same plan, made once per distinct key
order (a recorder writes one or two), so both create the same columns in the same order.
"""

from __future__ import annotations

from diag.trace.records import ActivationStats, BatchStats, LayerStats, Step

FLOAT_FIELDS = frozenset({
    "time", "step_time", "data_wait_time", "loss", "lr", "grad_norm", "grad_norm_before_clip", "update_norm", "param_norm",
    "loss_scale", "memory_bytes",
})
# Derived from the record models, so a field added to the schema is a column without a second edit.
GROUP_FIELDS = {
    "layers": frozenset(LayerStats.model_fields),
    "activations": frozenset(ActivationStats.model_fields),
}
BATCH_FLOAT_FIELDS = frozenset(BatchStats.model_fields) - {"distinct_labels"}
STEP_KEYS = frozenset(Step.model_fields) | {"kind"}


def step_plan(keys: tuple) -> tuple | bool:
    """How the fast path reads a step record with these keys, in this order; False: the model path.

    ``(scalar keys, batch groups, metrics?, per-layer groups)``, each in the order the columns are
    created (scalars in the record's order, then input, labels, metrics, then layers, activations),
    so a trace's columns come out in the same order whatever path a record took.
    """
    if not set(keys) <= STEP_KEYS:
        return False
    scalars, batch, groups = [], [], []
    for key in keys:
        if key in FLOAT_FIELDS or key in ("epoch", "skipped"):
            scalars.append(key)
        elif key in ("kind", "step"):
            continue
        elif key not in GROUP_FIELDS and key not in ("input", "labels", "metrics"):
            return False  # lists of replicas/groups, memory: the model path handles them
    batch = [g for g in ("input", "labels") if g in keys]
    groups = [g for g in GROUP_FIELDS if g in keys]
    return tuple(scalars), tuple(batch), "metrics" in keys, tuple(groups)
