"""Learning-rate schedules (``funcnet.optim.schedules``): pure functions of the step count.

Each is PyTorch's ``torch.optim.lr_scheduler`` class of the same name in snake case,
without the ``LR`` suffix, in closed form; ``ReduceLROnPlateau`` is host-side and lowers
the lr stored in the optimizer state.

| funcnet | PyTorch |
|---|---|
| ``constant`` | ``ConstantLR`` |
| ``linear`` | ``LinearLR`` |
| ``step`` | ``StepLR`` |
| ``multistep`` | ``MultiStepLR`` |
| ``exponential`` | ``ExponentialLR`` |
| ``cosine_annealing`` | ``CosineAnnealingLR`` |
| ``cosine_annealing_warm_restarts`` | ``CosineAnnealingWarmRestarts`` |
| ``polynomial`` | ``PolynomialLR`` |
| ``one_cycle`` | ``OneCycleLR`` (lr) |
| ``one_cycle_momentum`` | ``OneCycleLR`` (cycled momentum) |
| ``sequential`` | ``SequentialLR`` |
| ``chained`` | ``ChainedScheduler`` |
| ``lambda_lr`` | ``LambdaLR`` |
| ``multiplicative`` | ``MultiplicativeLR`` |
| ``cyclic`` | ``CyclicLR`` (lr) |
| ``cyclic_momentum`` | ``CyclicLR`` (cycled momentum) |
| ``linear_warmup`` | ``SequentialLR([LinearLR, after])`` |
| ``per_epoch`` | stepping the scheduler once per epoch |
| ``ReduceLROnPlateau`` | ``ReduceLROnPlateau`` |
"""

from ._cyclic import cyclic as cyclic
from ._cyclic import cyclic_momentum as cyclic_momentum
from ._plateau import ReduceLROnPlateau as ReduceLROnPlateau
from ._schedules import Schedule as Schedule
from ._schedules import chained as chained
from ._schedules import constant as constant
from ._schedules import cosine_annealing as cosine_annealing
from ._schedules import cosine_annealing_warm_restarts as cosine_annealing_warm_restarts
from ._schedules import exponential as exponential
from ._schedules import lambda_lr as lambda_lr
from ._schedules import linear as linear
from ._schedules import linear_warmup as linear_warmup
from ._schedules import multiplicative as multiplicative
from ._schedules import multistep as multistep
from ._schedules import one_cycle as one_cycle
from ._schedules import one_cycle_momentum as one_cycle_momentum
from ._schedules import per_epoch as per_epoch
from ._schedules import polynomial as polynomial
from ._schedules import sequential as sequential
from ._schedules import step as step

__all__ = [
    "ReduceLROnPlateau",
    "Schedule",
    "chained",
    "constant",
    "cosine_annealing",
    "cosine_annealing_warm_restarts",
    "cyclic",
    "cyclic_momentum",
    "exponential",
    "lambda_lr",
    "linear",
    "linear_warmup",
    "multiplicative",
    "multistep",
    "one_cycle",
    "one_cycle_momentum",
    "per_epoch",
    "polynomial",
    "sequential",
    "step",
]
