"""Which modules are layers, in which order they run, and which nonlinearity follows each.

A *layer* is a module that owns parameters directly (``module.parameters(recurse=False)``), the
same unit the Flax adapter reports. Forward order is learned from the first forward pass (pre-hooks
that are removed once it ends); layers that never ran are appended in registration order, so an
unused layer still shows up, with a zero gradient, as evidence of disconnected parameters.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field

import torch
from torch import nn

# Module classes that are the nonlinearity after a layer, and the name the header uses for them.
ACTIVATION_NAMES: dict[type, str] = {
    nn.ReLU: "relu",
    nn.ReLU6: "relu6",
    nn.LeakyReLU: "leaky_relu",
    nn.PReLU: "prelu",
    nn.ELU: "elu",
    nn.SELU: "selu",
    nn.CELU: "celu",
    nn.GELU: "gelu",
    nn.SiLU: "silu",
    nn.Mish: "mish",
    nn.Softplus: "softplus",
    nn.Sigmoid: "sigmoid",
    nn.Hardsigmoid: "hard_sigmoid",
    nn.Tanh: "tanh",
    nn.Hardtanh: "hard_tanh",
    nn.Softmax: "softmax",
    nn.LogSoftmax: "log_softmax",
}
# Activations whose zero outputs mean a dead unit (exactly zero iff the input was <= 0).
ZERO_ACTIVATIONS = frozenset({"relu", "relu6"})
# Activations with bounds a unit can saturate at: (low, high).
SATURATING = {"sigmoid": (0.0, 1.0), "hard_sigmoid": (0.0, 1.0), "tanh": (-1.0, 1.0), "hard_tanh": (-1.0, 1.0)}
# Modules that may sit between a layer and its nonlinearity without changing which one it is.
_TRANSPARENT = (nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d, nn.AlphaDropout, nn.Identity, nn.Flatten)


def dtype_name(dtype: torch.dtype) -> str:
    """'float32' for ``torch.float32`` (the header's spelling, shared with the Flax adapter)."""
    return str(dtype).removeprefix("torch.")


def main_output(output) -> tuple[torch.Tensor | None, str | None]:
    """The tensor that carries a module's output, and which element of a structured output it is.

    A tuple or list (``nn.GRU``, ``nn.LSTM``, ``nn.MultiheadAttention``): its first tensor,
    ``'output[i]'``. A mapping or dataclass (Hugging Face model outputs):
    ``last_hidden_state`` or ``logits`` when present, else its first tensor field, by name.

    Example:
      >>> gru = nn.GRU(3, 4, batch_first=True)
      >>> tensor, element = main_output(gru(torch.zeros(2, 5, 3)))
      >>> tuple(tensor.shape), element
      ((2, 5, 4), 'output[0]')
    """
    if isinstance(output, torch.Tensor):
        return output, None
    if isinstance(output, (tuple, list)):
        for i, item in enumerate(output):
            if isinstance(item, torch.Tensor):
                return item, f"output[{i}]"
        return None, None
    if isinstance(output, Mapping):
        fields = dict(output)
    elif dataclasses.is_dataclass(output):
        fields = {f.name: getattr(output, f.name) for f in dataclasses.fields(output)}
    else:
        return None, None
    for name in ("last_hidden_state", "logits", *fields):
        if isinstance(fields.get(name), torch.Tensor):
            return fields[name], name
    return None, None


def activation_name(module: nn.Module) -> str | None:
    """The header name of an activation module, or None for any other module."""
    for cls in type(module).__mro__:
        if cls in ACTIVATION_NAMES:
            return ACTIVATION_NAMES[cls]
    return None


@dataclass
class Layer:
    """One parameterized module and its parameters (deduplicated across layers)."""

    name: str
    module: nn.Module
    param_names: list[str]
    params: list[nn.Parameter]
    activation: str | None = None
    is_output: bool = False


@dataclass
class LayerPlan:
    """Layers in forward order with a flat parameter list and each parameter's layer index."""

    layers: list[Layer]
    params: list[nn.Parameter] = field(default_factory=list)
    param_layer: list[int] = field(default_factory=list)

    @property
    def names(self) -> list[str]:
        return [layer.name for layer in self.layers]


def find_layers(model: nn.Module) -> list[Layer]:
    """Parameter-owning modules in registration order; a shared parameter counts once, first owner."""
    seen: set[int] = set()
    layers = []
    for path, module in model.named_modules():
        names, params = [], []
        for pname, p in module.named_parameters(recurse=False):
            if id(p) in seen:
                continue
            seen.add(id(p))
            names.append(pname)
            params.append(p)
        if params:
            layers.append(Layer(name=path or "root", module=module, param_names=names, params=params))
    return layers


def plan_layers(layers: list[Layer], call_order: list[nn.Module] | None) -> LayerPlan:
    """Order layers as the forward pass called them and name the nonlinearity after each.

    Args:
      layers: from :func:`find_layers`.
      call_order: every module whose forward started during the first pass, in call order (layers,
        activations and transparent modules); None when no forward pass has been seen.

    Returns:
      A :class:`LayerPlan` whose parameter list follows the layer order.
    """
    by_module = {id(layer.module): layer for layer in layers}
    ordered: list[Layer] = []
    if call_order:
        placed: set[int] = set()
        for i, module in enumerate(call_order):
            layer = by_module.get(id(module))
            if layer is None or id(module) in placed:
                continue
            placed.add(id(module))
            ordered.append(layer)
            layer.activation = _following_activation(call_order, i, by_module)
        if ordered:
            ordered[-1].is_output = True
        ordered += [layer for layer in layers if id(layer.module) not in placed]
    else:
        ordered = list(layers)
    plan = LayerPlan(layers=ordered)
    for index, layer in enumerate(ordered):
        plan.params += layer.params
        plan.param_layer += [index] * len(layer.params)
    return plan


def _following_activation(call_order, i, by_module) -> str | None:
    """The activation module called right after call_order[i] (skipping its own children)."""
    owner = call_order[i]
    children = {id(m) for m in owner.modules()}
    for module in call_order[i + 1 :]:
        if id(module) in children:
            continue
        if id(module) in by_module:
            return None
        name = activation_name(module)
        if name is not None:
            return name
        # A container without parameters of its own only calls its children: look inside it.
        is_container = next(module.children(), None) is not None
        if not isinstance(module, _TRANSPARENT) and not is_container:
            return None
    return None
