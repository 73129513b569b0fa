"""The header record of a PyTorch run: the model's layers in forward order, optimizer, dtypes, device."""

from __future__ import annotations

import platform
from typing import Mapping

import torch
from torch import nn

from diag.adapters.torch._layers import LayerPlan, dtype_name
from diag.trace.records import Header, LayerInfo, OptimizerInfo, ParamInfo

# PyTorch optimizer classes under the names the Flax adapter gives their optax counterparts.
OPTIMIZER_NAMES = {"SGD": "sgd", "Adam": "adam", "AdamW": "adamw", "RMSprop": "rmsprop", "Adagrad": "adagrad"}


def recording_settings(grad_every: int, costly_every: int, update_method: str, *, activations: bool,
                       hold_outputs: bool) -> dict:
    """The header's ``recording`` block: what the recorder measures, how often, and how."""
    return {
        "adapter": "diag.adapters.torch",
        "every": 1,
        "grad_every": grad_every,
        "costly_every": costly_every,
        "update_method": update_method,
        "activations": "module hooks" if activations else "off",
        "localize": "hold" if hold_outputs else "replay",
        "activation_stats": "mean/std/nonfinite of the layer output; zero/saturation of its nonlinearity",
    }


def build_header(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    plan: LayerPlan,
    fields: Mapping[str, object],
    *,
    created_at: str | None,
    autocast_dtype: torch.dtype | None,
    loss_scaling: str | None,
    recording: dict,
) -> Header:
    """The trace header for ``model`` trained by ``optimizer``.

    Args:
      model: the module being trained.
      optimizer: its optimizer (hyper-parameters of the first parameter group are recorded).
      plan: the layers in forward order.
      fields: run_id, task, num_classes, loss_kind, batch_size, steps_planned, seed, tags.
      created_at: ISO time the run started.
      autocast_dtype: the autocast dtype seen in the first forward pass, if any.
      loss_scaling: 'dynamic' with a GradScaler, else None.
      recording: how the recorder records (intervals, methods).

    Returns:
      A :class:`~diag.trace.Header`.
    """
    from diag import __version__

    params = plan.params
    param_dtype = dtype_name(params[0].dtype) if params else None
    compute = dtype_name(autocast_dtype) if autocast_dtype is not None else param_dtype
    device = params[0].device if params else torch.device("cpu")
    layers = [
        LayerInfo(
            name=layer.name,
            type=type(layer.module).__name__,
            params=[ParamInfo(name=n, shape=list(p.shape), dtype=dtype_name(p.dtype))
                    for n, p in zip(layer.param_names, layer.params)],
            activation=layer.activation,
            compute_dtype=compute,
            is_output=layer.is_output,
        )
        for layer in plan.layers
    ]
    group = optimizer.param_groups[0]
    hyper = {k: _scalar(v) for k, v in group.items() if k != "params" and _scalar(v) is not None}
    opt_name = type(optimizer).__name__
    distributed = torch.distributed.is_available() and torch.distributed.is_initialized()
    return Header(
        run_id=fields["run_id"],
        created_at=created_at,
        framework="torch",
        framework_version=torch.__version__,
        diag_version=__version__,
        versions={"python": platform.python_version(), "numpy": _numpy_version()},
        model_name=type(model).__name__,
        layers=layers,
        param_count=sum(p.numel() for p in params),
        optimizer=OptimizerInfo(name=OPTIMIZER_NAMES.get(opt_name, opt_name.lower()), hyperparameters=hyper),
        param_dtype=param_dtype,
        compute_dtype=compute,
        task=fields["task"],
        num_classes=fields["num_classes"],
        loss_kind=fields["loss_kind"],
        batch_size=fields["batch_size"],
        steps_planned=fields["steps_planned"],
        seed=fields["seed"],
        device_platform=device.type,
        device_count=torch.cuda.device_count() if device.type == "cuda" else 1,
        world_size=torch.distributed.get_world_size() if distributed else 1,
        process_index=torch.distributed.get_rank() if distributed else 0,
        loss_scaling=loss_scaling,
        recording=recording,
        tags=fields["tags"],
    )


def _numpy_version() -> str:
    import numpy

    return numpy.__version__


def _scalar(value):
    """A hyper-parameter as a header scalar (tuples such as Adam's betas as 'b1,b2'), or None."""
    if isinstance(value, (bool, int, float, str)) or value is None:
        return value
    if isinstance(value, tuple) and all(isinstance(v, (int, float)) for v in value):
        return ",".join(str(v) for v in value)
    if isinstance(value, torch.Tensor) and value.numel() == 1:
        return float(value)
    return None
