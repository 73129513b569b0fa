"""diag's Flax NNX adapter: record a training run into a diag trace from inside the jitted step.

Example::

    from diag.adapters.flax import Recorder
    rec = Recorder("run.jsonl", model, task="classification", num_classes=10,
                   loss_kind="softmax_cross_entropy")
    optimizer = nnx.Optimizer(model, rec.wrap(optax.adam(1e-3)), wrt=nnx.Param)
    # @rec.jit on the step, rec.value_and_grad, return rec.stats(...), rec.record(step, ...)
"""

from diag.adapters.flax.loss_scale import current_scale, dynamic_loss_scale
from diag.adapters.flax.recorder import DEFAULT_EVERY, Recorder
from diag.adapters.flax.transform import MeasureState, measure

__all__ = ["Recorder", "DEFAULT_EVERY", "measure", "MeasureState", "dynamic_loss_scale", "current_scale"]
