"""Optimizers, written from scratch in optax's protocol with PyTorch's names and semantics.

A transform is ``GradientTransformation(init, update)``: ``opt_state = opt.init(params)``,
``updates, opt_state = opt.update(grads, opt_state, params)``, then
``params = apply_updates(params, updates)``. funcnet and optax transforms mix freely in
both directions. See ``docs/optim.md``.
"""

from . import schedules as schedules
from ._adadelta import ScaleByAdadeltaState as ScaleByAdadeltaState
from ._adadelta import adadelta as adadelta
from ._adadelta import scale_by_adadelta as scale_by_adadelta
from ._adam_variants import ScaleByAdamaxState as ScaleByAdamaxState
from ._adam_variants import ScaleByNadamState as ScaleByNadamState
from ._adam_variants import adamax as adamax
from ._adam_variants import nadam as nadam
from ._adam_variants import radam as radam
from ._adam_variants import scale_by_adamax as scale_by_adamax
from ._adam_variants import scale_by_nadam as scale_by_nadam
from ._adam_variants import scale_by_radam as scale_by_radam
from ._asgd import AsgdState as AsgdState
from ._asgd import asgd as asgd
from ._asgd import asgd_averaged_params as asgd_averaged_params
from ._base import EmptyState as EmptyState
from ._base import GradientTransformation as GradientTransformation
from ._base import OptState as OptState
from ._base import Params as Params
from ._base import Schedule as Schedule
from ._base import Updates as Updates
from ._base import apply_updates as apply_updates
from ._base import chain as chain
from ._base import identity as identity
from ._base import set_to_zero as set_to_zero
from ._ema import EmaState as EmaState
from ._ema import ema_params as ema_params
from ._ema import with_ema as with_ema
from ._guards import SkipNonfiniteState as SkipNonfiniteState
from ._guards import all_finite as all_finite
from ._guards import skip_nonfinite as skip_nonfinite
from ._guards import update_if_finite as update_if_finite
from ._guards import zero_nonfinite as zero_nonfinite
from ._hyperparams import HyperparamsState as HyperparamsState
from ._hyperparams import current_lr as current_lr
from ._hyperparams import get_hyperparams as get_hyperparams
from ._hyperparams import inject_hyperparams as inject_hyperparams
from ._hyperparams import set_hyperparams as set_hyperparams
from ._lbfgs import Lbfgs as Lbfgs
from ._lbfgs import LbfgsState as LbfgsState
from ._lbfgs import lbfgs as lbfgs
from ._masking import FrozenState as FrozenState
from ._masking import MaskedNode as MaskedNode
from ._masking import MaskedState as MaskedState
from ._masking import ParamGroupsState as ParamGroupsState
from ._masking import exclude_bias_and_norm as exclude_bias_and_norm
from ._masking import freeze as freeze
from ._masking import leaf_names as leaf_names
from ._masking import masked as masked
from ._masking import param_groups as param_groups
from ._optimizers import adagrad as adagrad
from ._optimizers import adam as adam
from ._optimizers import adamw as adamw
from ._optimizers import rmsprop as rmsprop
from ._optimizers import sgd as sgd
from ._plateau import ReduceLROnPlateau as ReduceLROnPlateau
from ._rprop import ScaleByRpropState as ScaleByRpropState
from ._rprop import rprop as rprop
from ._rprop import scale_by_rprop as scale_by_rprop
from ._transforms import ScaleByAdagradState as ScaleByAdagradState
from ._transforms import ScaleByAdamState as ScaleByAdamState
from ._transforms import ScaleByRmsState as ScaleByRmsState
from ._transforms import ScaleByScheduleState as ScaleByScheduleState
from ._transforms import TraceState as TraceState
from ._transforms import add_decayed_weights as add_decayed_weights
from ._transforms import add_weight_decay as add_weight_decay
from ._transforms import clip_grad_norm as clip_grad_norm
from ._transforms import clip_grad_value as clip_grad_value
from ._transforms import global_norm as global_norm
from ._transforms import scale as scale
from ._transforms import scale_by_adagrad as scale_by_adagrad
from ._transforms import scale_by_adam as scale_by_adam
from ._transforms import scale_by_lr as scale_by_lr
from ._transforms import scale_by_rms as scale_by_rms
from ._transforms import trace as trace
from ._wrappers import AccumulateState as AccumulateState
from ._wrappers import accumulate as accumulate
