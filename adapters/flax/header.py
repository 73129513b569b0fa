"""The trace header of a Flax NNX run: layers in forward order, optimizer, dtypes, devices."""

from __future__ import annotations

import datetime
import importlib.metadata
import uuid

import jax
from flax import nnx

from diag.adapters.flax.forward import ForwardInfo, path_str
from diag.trace.records import Header, LayerInfo, OptimizerInfo, ParamInfo

# optax building blocks -> the optimizer a user would name.
_OPTAX_NAMES = {
    "scale_by_adam": "adam", "scale_by_adamax": "adamax", "scale_by_rms": "rmsprop",
    "scale_by_lion": "lion", "scale_by_adafactor": "adafactor", "scale_by_amsgrad": "amsgrad",
    "scale_by_novograd": "novograd", "scale_by_sm3": "sm3", "scale_by_yogi": "yogi",
    "scale_by_radam": "radam", "scale_by_lamb": "lamb", "scale_by_trust_ratio": "lars",
    "scale_by_stddev": "rmsprop", "scale_by_rss": "adagrad", "scale_by_sign": "signsgd",
}
_HYPER = ("learning_rate", "lr_schedule", "lr_peak", "b1", "b2", "eps", "momentum", "decay", "weight_decay", "nesterov",
          "max_norm", "initial_accumulator_value")


def _walk_optax(fn, found: dict, names: list, depth: int = 0) -> None:
    if depth > 6 or not callable(fn):
        return
    qual = getattr(fn, "__qualname__", "")
    head = qual.split(".<locals>")[0]
    if head in _OPTAX_NAMES:
        names.append(_OPTAX_NAMES[head])
    elif head in ("add_decayed_weights", "clip_by_global_norm", "trace", "scale_by_learning_rate", "scale",
                  "scale_by_schedule"):
        names.append(head)
    code = getattr(fn, "__code__", None)
    for var, cell in zip(getattr(code, "co_freevars", ()), getattr(fn, "__closure__", None) or ()):
        try:
            value = cell.cell_contents
        except ValueError:
            continue
        key = {"step_size_fn": "learning_rate", "decay": "momentum" if head == "trace" else "decay"}.get(var, var)
        if head == "scale" and var == "step_size" and isinstance(value, (int, float)):
            key, value = "learning_rate", -value  # optax.scale(-learning_rate) ends every optimizer
        if head == "scale_by_schedule" and var == "step_size_fn" and "learning_rate" not in found:
            # optax wraps the user's schedule as ``lambda count: -schedule(count)``.
            inner = _closure_value(value, "learning_rate")
            if inner is not None:
                found.update(describe_schedule(inner))
            else:
                found.update(describe_schedule(lambda count: -value(count)), lr_schedule="custom")
        if key in _HYPER and isinstance(value, (int, float, bool)) and key not in found:
            found[key] = value
        if isinstance(value, dict) and head.startswith("inject_hyperparams"):
            for k, v in value.items():
                if isinstance(v, (int, float)) and not isinstance(v, bool):
                    found.setdefault(k, float(v))
                elif k == "learning_rate" and callable(v) and k not in found:
                    found.update(describe_schedule(v))
        if callable(value) and not isinstance(value, type):
            if getattr(value, "__qualname__", "").split(".<locals>")[0] in ("adam", "adamw", "sgd", "rmsprop", "lion", "adafactor"):
                names.append(value.__qualname__.split(".<locals>")[0])
            _walk_optax(value, found, names, depth + 1)
        elif isinstance(value, (tuple, list)):
            for t in value:
                _walk_optax(t if callable(t) else getattr(t, "update", None), found, names, depth + 1)
        elif hasattr(value, "update") and hasattr(value, "init"):
            _walk_optax(value.update, found, names, depth + 1)


def _closure_value(fn, name: str):
    code = getattr(fn, "__code__", None)
    for var, cell in zip(getattr(code, "co_freevars", ()), getattr(fn, "__closure__", None) or ()):
        if var == name:
            try:
                return cell.cell_contents
            except ValueError:
                return None
    return None


def schedule_kind(fn) -> str:
    """The optax name of a schedule: 'cosine_decay_schedule', 'join_schedules(linear_schedule,
    cosine_decay_schedule)' for a warmup, 'custom' for a user's own function."""
    head = getattr(fn, "__qualname__", "").split(".<locals>")[0]
    if head == "join_schedules":
        parts = _closure_value(fn, "schedules") or []
        return f"join_schedules({', '.join(schedule_kind(p) for p in parts)})"
    from_optax = getattr(fn, "__module__", "").startswith("optax") and ".<locals>" in getattr(fn, "__qualname__", "")
    return head if from_optax else "custom"


def describe_schedule(fn) -> dict:
    """The learning rate of a schedule as header numbers: at step 0, its peak, and its kind.

    The peak is the largest value at steps 0..1024 and at 2**11, ..., 2**20: a warmup starts at
    0, and a rule that asks "is the learning rate too high" needs the value it warms up to.

    Example:
      >>> import optax
      >>> describe_schedule(optax.warmup_cosine_decay_schedule(0.0, 1e-3, 10, 100))
      {'learning_rate': 0.0, 'lr_peak': 0.001, 'lr_schedule': 'join_schedules(polynomial_schedule, cosine_decay_schedule)'}
    """
    fn = getattr(fn, "schedule_fn", fn)  # optax.inject_hyperparams keeps the user's schedule inside
    import numpy as np

    steps = np.concatenate([np.arange(1025), 2 ** np.arange(11, 21)])
    try:
        values = np.asarray(fn(steps), np.float64).reshape(-1)  # optax schedules take arrays
        if values.size != steps.size:
            raise ValueError("not elementwise")
    except Exception:  # noqa: BLE001 - evaluate step by step, or give up on a schedule that needs more
        try:
            values = np.array([float(fn(int(step))) for step in steps[:65]])
        except Exception:  # noqa: BLE001
            return {"learning_rate": "schedule", "lr_schedule": schedule_kind(fn)}
    return {"learning_rate": _float32(values[0]), "lr_peak": _float32(np.nanmax(values)),
            "lr_schedule": schedule_kind(fn)}


def _float32(value: float) -> float:
    """A float32 schedule value as its shortest decimal (0.1, not 0.10000000149011612)."""
    return float(f"{value:.7g}")


def describe_optimizer(tx) -> OptimizerInfo:
    """Best-effort name and hyperparameters of an optax optimizer, read from its closures.

    Example:
      >>> import optax
      >>> info = describe_optimizer(optax.adamw(1e-3, weight_decay=1e-4))
      >>> info.name, info.hyperparameters["learning_rate"], info.hyperparameters["weight_decay"]
      ('adamw', 0.001, 0.0001)
    """
    found: dict = {}
    names: list[str] = []
    _walk_optax(getattr(tx, "update", None), found, names)
    base = next((n for n in names if n in set(_OPTAX_NAMES.values()) | {"adam", "adamw", "sgd"}), None)
    if base == "adam" and "add_decayed_weights" in names:
        base = "adamw"
    if base is None:
        base = "sgd" if {"scale", "scale_by_schedule", "scale_by_learning_rate"} & set(names) else "unknown"
    hp = {k: v for k, v in found.items() if isinstance(v, (int, float, bool, str))}
    if "clip_by_global_norm" in names and "max_norm" in hp:
        # First in the chain it clips the raw gradient, as torch's clip_grad_norm_ does: the trace
        # calls that bound grad_clip (grad_norm is then the clipped norm). Later in the chain it
        # clips the optimizer's updates: clip_norm.
        hp["grad_clip" if names[0] == "clip_by_global_norm" else "clip_norm"] = hp.pop("max_norm")
    return OptimizerInfo(name=base, hyperparameters=hp)


def param_layers(model: nnx.Module, units=()) -> list[LayerInfo]:
    """Layers (modules that own ``nnx.Param``s, or recurrent ``units`` counted whole) in tree
    order, with their parameters."""
    from diag.adapters.flax.stats import unit_of

    modules = {path_str(p): m for p, m in nnx.iter_modules(model)} if hasattr(nnx, "iter_modules") else {}
    layers: dict[str, LayerInfo] = {}
    for path, var in nnx.to_flat_state(nnx.state(model, nnx.Param)):
        owner = path_str(path[:-1])
        name = unit_of(owner, units)
        a = var.get_value() if isinstance(var, nnx.Variable) else var
        if name not in layers:
            mod = modules.get(name)
            layers[name] = LayerInfo(name=name, type=type(mod).__name__ if mod is not None else None)
            dtype = getattr(mod, "dtype", None)
            if dtype is not None:
                layers[name].compute_dtype = jax.numpy.dtype(dtype).name
        inner = owner[len(name) + 1:] + "/" if owner != name else ""
        layers[name].params.append(ParamInfo(name=inner + str(path[-1]), shape=list(a.shape), dtype=str(a.dtype)))
    return list(layers.values())


def order_layers(layers: list[LayerInfo], info: ForwardInfo | None) -> list[LayerInfo]:
    """Put layers in forward order and fill in activations and the output flag.

    Layers the forward pass never called through ``__call__`` keep their tree order, last.
    """
    if info is None:
        if layers:
            layers[-1].is_output = True
        return layers
    rank = {p: i for i, p in enumerate(info.order)}
    ordered = sorted(layers, key=lambda l: (rank.get(l.name, len(rank)), ))
    for layer in ordered:
        layer.activation = info.activation.get(layer.name)
        layer.is_output = layer.name == info.output
    if not any(l.is_output for l in ordered) and ordered:
        # The model output came from a module that owns no parameters: its last layer is the head.
        called = [l for l in ordered if l.name in rank]
        (called or ordered)[-1].is_output = True
    return ordered


def _versions() -> dict[str, str]:
    out = {}
    for pkg in ("jax", "jaxlib", "flax", "optax", "numpy"):
        try:
            out[pkg] = importlib.metadata.version(pkg)
        except importlib.metadata.PackageNotFoundError:
            pass
    return out


def build_header(model: nnx.Module, layers: list[LayerInfo], optimizer: OptimizerInfo | None, **fields) -> Header:
    """A Header for ``model`` with device and version facts filled in; ``fields`` override."""
    from diag import __version__

    versions = _versions()
    dtypes = sorted({p.dtype for l in layers for p in l.params})
    compute = sorted({l.compute_dtype for l in layers if l.compute_dtype})
    values = dict(
        run_id=uuid.uuid4().hex[:12],
        created_at=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        framework="flax",
        framework_version=versions.get("flax"),
        diag_version=__version__,
        versions=versions,
        model_name=type(model).__name__,
        layers=layers,
        param_count=sum(_prod(p.shape) for l in layers for p in l.params),
        optimizer=optimizer,
        param_dtype=dtypes[0] if len(dtypes) == 1 else (",".join(dtypes) or None),
        compute_dtype=compute[0] if len(compute) == 1 else (",".join(compute) or None),
        device_platform=jax.default_backend(),
        device_count=jax.device_count(),
        world_size=jax.process_count(),
        process_index=jax.process_index(),
    )
    values.update({k: v for k, v in fields.items() if v is not None})
    return Header(**values)


def _prod(shape) -> int:
    n = 1
    for s in shape:
        n *= int(s)
    return n


class HeaderLifecycle:
    """The recorder's header: a first one when it opens (so a run killed while compiling still
    leaves a readable trace), restated complete once the first step is traced (forward order,
    optimizer), with the records that waited for it."""

    def _ensure_header(self) -> None:
        if self._header is not None:
            return
        layers = order_layers(param_layers(self.model, self._units), self._forward if (self._forward and self._forward.order) else None)
        recording = {"every": self.every, "localize": self.localize, "global_norms_every_step": ",".join(self._every_step_norms),
                     "activations": "layer output (pre-activation); zero/saturation fractions of the following activation"}
        if getattr(self, "_forward_error", None):
            recording["forward_order"] = "tree order: " + self._forward_error[:200]
        for info in layers:
            info.output_element = self._output_elements.get(info.name)
        self._header = build_header(self.model, layers, self._optimizer, recording=recording, **self._header_fields)
        self._layer_names = [l.name for l in self._header.layers]
        self._emit(self._header)
        for record in self._early:
            self._emit(record)
        self._early.clear()

    def _opening_header(self) -> Header:
        layers = order_layers(param_layers(self.model, self._units), None)
        recording = {"every": self.every, "localize": self.localize,
                     "header": "written when the recorder opened: layers in tree order, no optimizer yet; "
                               "restated once the first step is traced"}
        return build_header(self.model, layers, None, recording=recording, **self._header_fields)
