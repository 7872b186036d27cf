"""Loss objects for the PyTorch habit: ``nn.CrossEntropyLoss(label_smoothing=0.1)`` and the
like, thin callables over :mod:`funcnet.losses`.

They are not modules (no parameters, no ``init`` or ``apply``): frozen dataclasses of the
options that ``loss(input, target)`` passes to the function of the same maths, e.g.
``nn.CrossEntropyLoss(label_smoothing=0.1)(logits, y)`` is
``losses.cross_entropy(logits, y, label_smoothing=0.1)``. Shapes, dtypes, numerics and
errors are the function's. Each is hashable and compares by value (array options such as
``weight`` by their contents), so it can be a static argument of ``jax.jit``, and each
call takes ``mask=`` as the function does, so ``train.fit`` may pad short batches.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable
from typing import Any

import jax
import numpy as np
from jax.typing import ArrayLike

from funcnet import losses
from funcnet.errors import UsageError
from funcnet.losses._reduction import _REDUCTIONS, Reduction, _check_reduction

__all__ = [
    "BCELoss",
    "BCEWithLogitsLoss",
    "CTCLoss",
    "CosineEmbeddingLoss",
    "CrossEntropyLoss",
    "GaussianNLLLoss",
    "HingeEmbeddingLoss",
    "HuberLoss",
    "KLDivLoss",
    "L1Loss",
    "MSELoss",
    "MarginRankingLoss",
    "MultiLabelMarginLoss",
    "MultiLabelSoftMarginLoss",
    "MultiMarginLoss",
    "NLLLoss",
    "PoissonNLLLoss",
    "SmoothL1Loss",
    "SoftMarginLoss",
    "TripletMarginLoss",
    "TripletMarginWithDistanceLoss",
]

Mask = ArrayLike | None


def _by_value(value: Any) -> Any:
    if isinstance(value, np.ndarray):
        return (value.dtype.str, value.shape, value.tobytes())
    return value


class _Loss:
    """Equality and hashing by value for the loss dataclasses below."""

    _arrays: tuple[str, ...] = ()
    _reductions: tuple[str, ...] = _REDUCTIONS

    def _key(self) -> tuple[Any, ...]:
        return tuple(_by_value(getattr(self, f.name)) for f in dataclasses.fields(self))

    def __eq__(self, other: object) -> bool:
        if type(other) is not type(self):
            return NotImplemented
        return self._key() == other._key()

    def __hash__(self) -> int:
        return hash((type(self), self._key()))

    def _options(self) -> dict[str, Any]:
        """The constructor's options: the loss function's keyword arguments, by name."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}

    def __post_init__(self) -> None:
        name = type(self).__name__
        _check_reduction(name, self.reduction, self._reductions)
        for field in self._arrays:
            object.__setattr__(self, field, _constant(name, field, getattr(self, field)))


def _constant(name: str, field: str, value: ArrayLike | None) -> np.ndarray | None:
    """A read-only host copy of an array option; a loss object is a static description."""
    if value is None:
        return None
    try:
        array = np.array(value)
    except jax.errors.TracerArrayConversionError:
        raise UsageError(
            f"{name}: {field} must be a concrete array, not a traced one (a loss object is a "
            "static, hashable description); inside jax.jit, call the funcnet.losses "
            f"function with {field}= instead"
        ) from None
    array.flags.writeable = False
    return array


def _loss(cls: type) -> type:
    """A frozen dataclass whose constructor refuses PyTorch's deprecated arguments."""
    cls = dataclasses.dataclass(frozen=True, eq=False)(cls)
    init = cls.__init__

    @functools.wraps(init)
    def __init__(self, *args: Any, size_average: Any = None, reduce: Any = None, **kwargs: Any):
        if size_average is not None or reduce is not None:
            raise UsageError(
                f"{cls.__name__}: size_average and reduce are deprecated in PyTorch and not "
                "supported; pass reduction= instead: 'mean' (the default), 'sum' "
                "(size_average=False) or 'none' (reduce=False)"
            )
        init(self, *args, **kwargs)

    cls.__init__ = __init__
    return cls


# ---------------------------------------------------------------------------------------
# The losses PyTorch users know best
# ---------------------------------------------------------------------------------------


@_loss
class CrossEntropyLoss(_Loss):
    """``torch.nn.CrossEntropyLoss``: :func:`funcnet.losses.cross_entropy` as an object.

    Attributes:
        weight: optional class weights ``(C,)`` (stored as a read-only NumPy array).
        ignore_index: a class-index target with this value counts nowhere.
        reduction: ``"mean"``, ``"sum"`` or ``"none"``.
        label_smoothing: in ``[0, 1]``.

    Call ``loss(input, target, *, mask=None)``: logits ``(..., C)``, class axis last;
    class indices ``(...)`` or probabilities ``(..., C)``.

    Examples:
        >>> import jax.numpy as jnp
        >>> from funcnet import nn
        >>> loss = nn.CrossEntropyLoss(label_smoothing=0.1)
        >>> round(float(loss(jnp.array([[2.0, 0.0, 0.0]]), jnp.array([0]))), 4)
        0.3729
    """

    _arrays = ("weight",)
    weight: ArrayLike | None = None
    _: dataclasses.KW_ONLY
    ignore_index: int = -100
    reduction: Reduction = "mean"
    label_smoothing: float = 0.0

    def __call__(self, input: ArrayLike, target: ArrayLike, *, mask: Mask = None) -> jax.Array:
        """The loss; see :func:`funcnet.losses.cross_entropy`."""
        return losses.cross_entropy(input, target, **self._options(), mask=mask)


@_loss
class NLLLoss(_Loss):
    """``torch.nn.NLLLoss``: :func:`funcnet.losses.nll_loss` as an object.

    Attributes:
        weight: optional class weights ``(C,)``.
        ignore_index: a target with this value counts nowhere.
        reduction: ``"mean"``, ``"sum"`` or ``"none"``.

    Call ``loss(input, target, *, mask=None)``: log-probabilities ``(..., C)``, class
    indices ``(...)``.
    """

    _arrays = ("weight",)
    weight: ArrayLike | None = None
    _: dataclasses.KW_ONLY
    ignore_index: int = -100
    reduction: Reduction = "mean"

    def __call__(self, input: ArrayLike, target: ArrayLike, *, mask: Mask = None) -> jax.Array:
        """The loss; see :func:`funcnet.losses.nll_loss`."""
        return losses.nll_loss(input, target, **self._options(), mask=mask)


@_loss
class MSELoss(_Loss):
    """``torch.nn.MSELoss``: :func:`funcnet.losses.mse_loss` as an object.

    Attributes:
        reduction: ``"mean"``, ``"sum"`` or ``"none"``.

    Call ``loss(input, target, *, mask=None)``: two arrays of one shape.
    """

    _: dataclasses.KW_ONLY
    reduction: Reduction = "mean"

    def __call__(self, input: ArrayLike, target: ArrayLike, *, mask: Mask = None) -> jax.Array:
        """The loss; see :func:`funcnet.losses.mse_loss`."""
        return losses.mse_loss(input, target, **self._options(), mask=mask)


@_loss
class L1Loss(_Loss):
    """``torch.nn.L1Loss``: :func:`funcnet.losses.l1_loss` as an object.

    Attributes:
        reduction: ``"mean"``, ``"sum"`` or ``"none"``.

    Call ``loss(input, target, *, mask=None)``: two arrays of one shape.
    """

    _: dataclasses.KW_ONLY
    reduction: Reduction = "mean"

    def __call__(self, input: ArrayLike, target: ArrayLike, *, mask: Mask = None) -> jax.Array:
        """The loss; see :func:`funcnet.losses.l1_loss`."""
        return losses.l1_loss(input, target, **self._options(), mask=mask)


@_loss
class SmoothL1Loss(_Loss):
    """``torch.nn.SmoothL1Loss``: :func:`funcnet.losses.smooth_l1_loss` as an object.

    Attributes:
        reduction: ``"mean"``, ``"sum"`` or ``"none"``.
        beta: the threshold between the quadratic and linear parts, ``>= 0``.

    Call ``loss(input, target, *, mask=None)``: two arrays of one shape.
    """

    _: dataclasses.KW_ONLY
    reduction: Reduction = "mean"
    beta: float = 1.0

    def __call__(self, input: ArrayLike, target: ArrayLike, *, mask: Mask = None) -> jax.Array:
        """The loss; see :func:`funcnet.losses.smooth_l1_loss`."""
        return losses.smooth_l1_loss(input, target, **self._options(), mask=mask)


@_loss
class HuberLoss(_Loss):
    """``torch.nn.HuberLoss``: :func:`funcnet.losses.huber_loss` as an object.

    Attributes:
        reduction: ``"mean"``, ``"sum"`` or ``"none"``.
        delta: the threshold between the quadratic and linear parts, ``> 0``.

    Call ``loss(input, target, *, mask=None)``: two arrays of one shape.
    """

    reduction: Reduction = "mean"
    delta: float = 1.0

    def __call__(self, input: ArrayLike, target: ArrayLike, *, mask: Mask = None) -> jax.Array:
        """The loss; see :func:`funcnet.losses.huber_loss`."""
        return losses.huber_loss(input, target, **self._options(), mask=mask)


@_loss
class BCELoss(_Loss):
    """``torch.nn.BCELoss``: :func:`funcnet.losses.binary_cross_entropy` as an object.

    Attributes:
        weight: optional rescaling, broadcastable to the input's shape.
        reduction: ``"mean"``, ``"sum"`` or ``"none"``.

    Call ``loss(input, target, *, mask=None)``: probabilities and targets of one shape.
    """

    _arrays = ("weight",)
    weight: ArrayLike | None = None
    _: dataclasses.KW_ONLY
    reduction: Reduction = "mean"

    def __call__(self, input: ArrayLike, target: ArrayLike, *, mask: Mask = None) -> jax.Array:
        """The loss; see :func:`funcnet.losses.binary_cross_entropy`."""
        return losses.binary_cross_entropy(input, target, **self._options(), mask=mask)


@_loss
class BCEWithLogitsLoss(_Loss):
    """``torch.nn.BCEWithLogitsLoss``: :func:`funcnet.losses.binary_cross_entropy_with_logits`
    as an object.

    Attributes:
        weight: optional rescaling, broadcastable to the input's shape.
        reduction: ``"mean"``, ``"sum"`` or ``"none"``.
        pos_weight: optional weight of positive examples, broadcastable to the input's
            shape: ``(C,)`` for ``(..., C)`` logits (channels last).

    Call ``loss(input, target, *, mask=None)``: logits and targets of one shape.
    """

    _arrays = ("weight", "pos_weight")
    weight: ArrayLike | None = None
    _: dataclasses.KW_ONLY
    reduction: Reduction = "mean"
    pos_weight: ArrayLike | None = None

    def __call__(self, input: ArrayLike, target: ArrayLike, *, mask: Mask = None) -> jax.Array:
        """The loss; see :func:`funcnet.losses.binary_cross_entropy_with_logits`."""
        return losses.binary_cross_entropy_with_logits(input, target, **self._options(), mask=mask)


@_loss
class KLDivLoss(_Loss):
    """``torch.nn.KLDivLoss``: :func:`funcnet.losses.kl_div` as an object.

    Attributes:
        reduction: ``"mean"``, ``"batchmean"``, ``"sum"`` or ``"none"``.
        log_target: whether the target holds log-probabilities.

    Call ``loss(input, target, *, mask=None)``: log-probabilities and a target of one
    shape.
    """

    _reductions = ("mean", "batchmean", "sum", "none")
    _: dataclasses.KW_ONLY
    reduction: str = "mean"
    log_target: bool = False

    def __call__(self, input: ArrayLike, target: ArrayLike, *, mask: Mask = None) -> jax.Array:
        """The loss; see :func:`funcnet.losses.kl_div`."""
        return losses.kl_div(input, target, **self._options(), mask=mask)


# ---------------------------------------------------------------------------------------
# Probabilistic, margin, embedding and sequence losses
# ---------------------------------------------------------------------------------------


@_loss
class PoissonNLLLoss(_Loss):
    """``torch.nn.PoissonNLLLoss``: :func:`funcnet.losses.poisson_nll_loss` as an object.

    Attributes:
        log_input: whether the input is the log of the rate.
        full: whether to add the Stirling term.
        eps: keeps ``log`` finite when ``log_input=False``.
        reduction: ``"mean"``, ``"sum"`` or ``"none"``.

    Call ``loss(input, target, *, mask=None)``: rates (or log-rates) and counts of one
    shape.
    """

    log_input: bool = True
    full: bool = False
    _: dataclasses.KW_ONLY
    eps: float = 1e-8
    reduction: Reduction = "mean"

    def __call__(self, input: ArrayLike, target: ArrayLike, *, mask: Mask = None) -> jax.Array:
        """The loss; see :func:`funcnet.losses.poisson_nll_loss`."""
        return losses.poisson_nll_loss(input, target, **self._options(), mask=mask)


@_loss
class GaussianNLLLoss(_Loss):
    """``torch.nn.GaussianNLLLoss``: :func:`funcnet.losses.gaussian_nll_loss` as an object.

    Attributes:
        full: whether to add the constant ``0.5 * log(2 * pi)``.
        eps: the smallest variance used.
        reduction: ``"mean"``, ``"sum"`` or ``"none"``.

    Call ``loss(input, target, var, *, mask=None)``: means and samples of one shape, and
    variances (see the function for the shapes ``var`` may take).
    """

    _: dataclasses.KW_ONLY
    full: bool = False
    eps: float = 1e-6
    reduction: Reduction = "mean"

    def __call__(
        self, input: ArrayLike, target: ArrayLike, var: ArrayLike | float, *, mask: Mask = None
    ) -> jax.Array:
        """The loss; see :func:`funcnet.losses.gaussian_nll_loss`."""
        return losses.gaussian_nll_loss(input, target, var, **self._options(), mask=mask)


@_loss
class SoftMarginLoss(_Loss):
    """``torch.nn.SoftMarginLoss``: :func:`funcnet.losses.soft_margin_loss` as an object.

    Attributes:
        reduction: ``"mean"``, ``"sum"`` or ``"none"``.

    Call ``loss(input, target, *, mask=None)``: scores and targets of ±1 of one shape.
    """

    _: dataclasses.KW_ONLY
    reduction: Reduction = "mean"

    def __call__(self, input: ArrayLike, target: ArrayLike, *, mask: Mask = None) -> jax.Array:
        """The loss; see :func:`funcnet.losses.soft_margin_loss`."""
        return losses.soft_margin_loss(input, target, **self._options(), mask=mask)


@_loss
class MultiLabelSoftMarginLoss(_Loss):
    """``torch.nn.MultiLabelSoftMarginLoss``: :func:`funcnet.losses.multilabel_soft_margin_loss`
    as an object.

    Attributes:
        weight: optional rescaling broadcastable to the input's shape, e.g. ``(C,)``.
        reduction: ``"mean"``, ``"sum"`` or ``"none"``.

    Call ``loss(input, target, *, mask=None)``: logits and 0/1 targets ``(N, C)``.
    """

    _arrays = ("weight",)
    weight: ArrayLike | None = None
    _: dataclasses.KW_ONLY
    reduction: Reduction = "mean"

    def __call__(self, input: ArrayLike, target: ArrayLike, *, mask: Mask = None) -> jax.Array:
        """The loss; see :func:`funcnet.losses.multilabel_soft_margin_loss`."""
        return losses.multilabel_soft_margin_loss(input, target, **self._options(), mask=mask)


@_loss
class MultiLabelMarginLoss(_Loss):
    """``torch.nn.MultiLabelMarginLoss``: :func:`funcnet.losses.multilabel_margin_loss` as an
    object.

    Attributes:
        reduction: ``"mean"``, ``"sum"`` or ``"none"``.

    Call ``loss(input, target, *, mask=None)``: scores ``(N, C)`` and class indices of
    that shape, padded with -1.
    """

    _: dataclasses.KW_ONLY
    reduction: Reduction = "mean"

    def __call__(self, input: ArrayLike, target: ArrayLike, *, mask: Mask = None) -> jax.Array:
        """The loss; see :func:`funcnet.losses.multilabel_margin_loss`."""
        return losses.multilabel_margin_loss(input, target, **self._options(), mask=mask)


@_loss
class MultiMarginLoss(_Loss):
    """``torch.nn.MultiMarginLoss``: :func:`funcnet.losses.multi_margin_loss` as an object.

    Attributes:
        p: 1 or 2.
        margin: the gap asked for.
        weight: optional class weights ``(C,)``.
        reduction: ``"mean"``, ``"sum"`` or ``"none"``.

    Call ``loss(input, target, *, mask=None)``: scores ``(N, C)``, class indices ``(N,)``.
    """

    _arrays = ("weight",)
    p: int = 1
    margin: float = 1.0
    weight: ArrayLike | None = None
    _: dataclasses.KW_ONLY
    reduction: Reduction = "mean"

    def __call__(self, input: ArrayLike, target: ArrayLike, *, mask: Mask = None) -> jax.Array:
        """The loss; see :func:`funcnet.losses.multi_margin_loss`."""
        return losses.multi_margin_loss(input, target, **self._options(), mask=mask)


@_loss
class HingeEmbeddingLoss(_Loss):
    """``torch.nn.HingeEmbeddingLoss``: :func:`funcnet.losses.hinge_embedding_loss` as an
    object.

    Attributes:
        margin: the distance that dissimilar pairs should exceed.
        reduction: ``"mean"``, ``"sum"`` or ``"none"``.

    Call ``loss(input, target, *, mask=None)``: distances and targets of ±1 of one shape.
    """

    margin: float = 1.0
    _: dataclasses.KW_ONLY
    reduction: Reduction = "mean"

    def __call__(self, input: ArrayLike, target: ArrayLike, *, mask: Mask = None) -> jax.Array:
        """The loss; see :func:`funcnet.losses.hinge_embedding_loss`."""
        return losses.hinge_embedding_loss(input, target, **self._options(), mask=mask)


@_loss
class CosineEmbeddingLoss(_Loss):
    """``torch.nn.CosineEmbeddingLoss``: :func:`funcnet.losses.cosine_embedding_loss` as an
    object.

    Attributes:
        margin: subtracted from the cosine of dissimilar pairs.
        reduction: ``"mean"``, ``"sum"`` or ``"none"``.

    Call ``loss(input1, input2, target, *, mask=None)``: ``(N, D)`` twice, ``(N,)`` of ±1.
    """

    margin: float = 0.0
    _: dataclasses.KW_ONLY
    reduction: Reduction = "mean"

    def __call__(
        self, input1: ArrayLike, input2: ArrayLike, target: ArrayLike, *, mask: Mask = None
    ) -> jax.Array:
        """The loss; see :func:`funcnet.losses.cosine_embedding_loss`."""
        return losses.cosine_embedding_loss(input1, input2, target, **self._options(), mask=mask)


@_loss
class MarginRankingLoss(_Loss):
    """``torch.nn.MarginRankingLoss``: :func:`funcnet.losses.margin_ranking_loss` as an object.

    Attributes:
        margin: the gap asked for.
        reduction: ``"mean"``, ``"sum"`` or ``"none"``.

    Call ``loss(input1, input2, target, *, mask=None)``: three arrays of one shape.
    """

    margin: float = 0.0
    _: dataclasses.KW_ONLY
    reduction: Reduction = "mean"

    def __call__(
        self, input1: ArrayLike, input2: ArrayLike, target: ArrayLike, *, mask: Mask = None
    ) -> jax.Array:
        """The loss; see :func:`funcnet.losses.margin_ranking_loss`."""
        return losses.margin_ranking_loss(input1, input2, target, **self._options(), mask=mask)


@_loss
class TripletMarginLoss(_Loss):
    """``torch.nn.TripletMarginLoss``: :func:`funcnet.losses.triplet_margin_loss` as an object.

    Attributes:
        margin: the gap asked for, ``> 0``.
        p: the norm's degree.
        eps: added to the differences.
        swap: use the distance swap.
        reduction: ``"mean"``, ``"sum"`` or ``"none"``.

    Call ``loss(anchor, positive, negative, *, mask=None)``: ``(N, D)`` three times.
    """

    margin: float = 1.0
    p: float = 2.0
    eps: float = 1e-6
    swap: bool = False
    _: dataclasses.KW_ONLY
    reduction: Reduction = "mean"

    def __call__(
        self, anchor: ArrayLike, positive: ArrayLike, negative: ArrayLike, *, mask: Mask = None
    ) -> jax.Array:
        """The loss; see :func:`funcnet.losses.triplet_margin_loss`."""
        return losses.triplet_margin_loss(anchor, positive, negative, **self._options(), mask=mask)


@_loss
class TripletMarginWithDistanceLoss(_Loss):
    """``torch.nn.TripletMarginWithDistanceLoss``:
    :func:`funcnet.losses.triplet_margin_with_distance_loss` as an object.

    Attributes:
        distance_function: ``d(x1, x2) -> (N,)``, a JAX function; None for the Euclidean
            distance. Compared and hashed as the function object.
        margin: the gap asked for, ``> 0``.
        swap: use the distance swap.
        reduction: ``"mean"``, ``"sum"`` or ``"none"``.

    Call ``loss(anchor, positive, negative, *, mask=None)``.
    """

    _: dataclasses.KW_ONLY
    distance_function: Callable[[jax.Array, jax.Array], jax.Array] | None = None
    margin: float = 1.0
    swap: bool = False
    reduction: Reduction = "mean"

    def __call__(
        self, anchor: ArrayLike, positive: ArrayLike, negative: ArrayLike, *, mask: Mask = None
    ) -> jax.Array:
        """The loss; see :func:`funcnet.losses.triplet_margin_with_distance_loss`."""
        options = self._options()
        return losses.triplet_margin_with_distance_loss(
            anchor, positive, negative, **options, mask=mask
        )


@_loss
class CTCLoss(_Loss):
    """``torch.nn.CTCLoss``: :func:`funcnet.losses.ctc_loss` as an object, batch-first.

    Attributes:
        blank: the blank's class index.
        reduction: ``"mean"`` (per-sample loss over target length, then the batch mean),
            ``"sum"`` or ``"none"``.
        zero_infinity: replace infinite losses and their gradients by 0.

    Call ``loss(log_probs, targets, input_lengths, target_lengths, *, mask=None)``:
    ``log_probs`` ``(N, T, C)`` (PyTorch: ``(T, N, C)``), targets padded ``(N, S)`` or
    concatenated, lengths ``(N,)``.
    """

    blank: int = 0
    reduction: Reduction = "mean"
    zero_infinity: bool = False

    def __call__(
        self,
        log_probs: ArrayLike,
        targets: ArrayLike,
        input_lengths: ArrayLike,
        target_lengths: ArrayLike,
        *,
        mask: Mask = None,
    ) -> jax.Array:
        """The loss; see :func:`funcnet.losses.ctc_loss`."""
        lengths = (input_lengths, target_lengths)
        return losses.ctc_loss(log_probs, targets, *lengths, **self._options(), mask=mask)
