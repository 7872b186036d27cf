"""Loss functions with PyTorch's definitions, as pure JAX functions.

Every loss is ``loss(input, target, ...)`` as in ``torch.nn.functional`` and returns the
reduced loss (``reduction="mean"`` or ``"sum"``, a scalar) or the per-element loss
(``reduction="none"``).

Families: regression (``mse_loss``, ``l1_loss``, ``smooth_l1_loss``, ``huber_loss``,
``poisson_nll_loss``, ``gaussian_nll_loss``); classification over a class axis
(``cross_entropy``, ``nll_loss``, ``linear_cross_entropy``, ``multi_margin_loss``,
``multilabel_margin_loss``); binary and distribution (``binary_cross_entropy``,
``binary_cross_entropy_with_logits``, ``kl_div``, ``soft_margin_loss``,
``multilabel_soft_margin_loss``); embedding and ranking (``cosine_embedding_loss``,
``margin_ranking_loss``, ``hinge_embedding_loss``, ``triplet_margin_loss``,
``triplet_margin_with_distance_loss``); sequences (``ctc_loss``). ``funcnet.nn`` has a
loss object for each (``nn.CrossEntropyLoss``, ...).

Channels last:
    funcnet keeps images as ``(N, H, W, C)``, so the class axis of ``cross_entropy`` and
    ``nll_loss`` is the **last** axis: ``input`` is ``(..., C)`` where PyTorch expects
    ``(N, C, d1, ...)``. For plain ``(N, C)`` logits the two agree. Likewise ``ctc_loss``
    is batch-first, ``(N, T, C)``, where PyTorch takes ``(T, N, C)``.

Masks:
    Every loss takes ``mask=``, a bool ``(N,)`` array of the rows that count (a padded
    last batch): the rows where it is False enter neither the sum nor the mean.

Dtypes:
    Losses compute in float32 when ``input`` is a 16-bit float (bfloat16, float16), so
    log-sum-exp and sums stay accurate, and return **float32** for bfloat16, float16 and
    float32 inputs (float64 for float64 inputs). PyTorch returns the input's dtype.

Validation:
    Shapes, dtypes and options are checked while tracing: a wrong target shape raises
    :class:`funcnet.errors.ShapeError` naming the function and both shapes; an unknown
    ``reduction`` raises ``ValueError``. Values cannot be checked under ``jax.jit``: a class
    index outside ``[0, C)`` (other than ``ignore_index``) gives ``nan`` where PyTorch
    raises, and probabilities outside ``[0, 1]`` give ``nan``.
"""

from funcnet.losses._binary import (
    binary_cross_entropy,
    binary_cross_entropy_with_logits,
    kl_div,
    multilabel_soft_margin_loss,
    soft_margin_loss,
)
from funcnet.losses._classification import cross_entropy, linear_cross_entropy, nll_loss
from funcnet.losses._ctc import ctc_loss
from funcnet.losses._embedding import (
    cosine_embedding_loss,
    hinge_embedding_loss,
    margin_ranking_loss,
    triplet_margin_loss,
    triplet_margin_with_distance_loss,
)
from funcnet.losses._margin import multi_margin_loss, multilabel_margin_loss
from funcnet.losses._reduction import Reduction as Reduction
from funcnet.losses._regression import (
    gaussian_nll_loss,
    huber_loss,
    l1_loss,
    mse_loss,
    poisson_nll_loss,
    smooth_l1_loss,
)

__all__ = [
    "binary_cross_entropy",
    "binary_cross_entropy_with_logits",
    "cosine_embedding_loss",
    "cross_entropy",
    "ctc_loss",
    "gaussian_nll_loss",
    "hinge_embedding_loss",
    "huber_loss",
    "kl_div",
    "l1_loss",
    "linear_cross_entropy",
    "margin_ranking_loss",
    "mse_loss",
    "multi_margin_loss",
    "multilabel_margin_loss",
    "multilabel_soft_margin_loss",
    "nll_loss",
    "poisson_nll_loss",
    "smooth_l1_loss",
    "soft_margin_loss",
    "triplet_margin_loss",
    "triplet_margin_with_distance_loss",
]

# doctest.testmod(funcnet.losses) only looks at objects defined in this file; listing the
# re-exported functions here runs their Examples too.
__test__: dict[str, object] = {name: globals()[name] for name in __all__}
