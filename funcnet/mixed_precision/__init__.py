"""Mixed precision: one dtype policy for a model, and dynamic loss scaling for float16.

``model.apply(params, state, x, precision="bf16")``, ``train.make_train_step(loss,
precision="bf16")`` and ``train.fit(..., precision="bf16")`` keep float32 parameters and
optimizer state and compute in bfloat16; ``precision="fp16"`` computes in float16 with
the optimizer wrapped in `with_loss_scale` (PyTorch's ``GradScaler``). See
``docs/mixed-precision.md``.
"""

from funcnet.mixed_precision._loss_scale import DynamicLossScale as DynamicLossScale
from funcnet.mixed_precision._loss_scale import LossScaleState as LossScaleState
from funcnet.mixed_precision._loss_scale import current_loss_scale as current_loss_scale
from funcnet.mixed_precision._loss_scale import find_loss_scale as find_loss_scale
from funcnet.mixed_precision._loss_scale import with_loss_scale as with_loss_scale
from funcnet.mixed_precision._policy import Policy as Policy
from funcnet.mixed_precision._policy import get_policy as get_policy
