"""Numerical tolerances of the tests: gradient checks in float64, float32 bounds justified.

CI must pass on any machine of its kind, not only on the one a tolerance was tried on.
XLA's CPU kernels (reductions, matmuls, convolutions via Eigen/oneDNN/YNNPACK) and
PyTorch's and NumPy's BLAS sum in orders that depend on the CPU model, so a float32
result may move by a few roundings from machine to machine. Hence:

* Gradients are checked against finite differences in float64 (``check_grads_float64``).
  ``jax.test_util.check_grads`` takes central differences with step 1e-4. In float32
  they carry a rounding error of about eps32·|f| / 1e-4 ≈ 1e-3·|f|, the size of its own
  float32 bound (2e-3): whether such a check passes depends on the CPU (LayerNorm's
  failed on one with 2.9e-3). In float64 that error is ≈ 2e-12·|f| and the step's
  truncation error O(1e-8·f'''), far below the float64 bound (1e-5 relative and
  absolute), which a gradient wrong by 1 % does not meet (nor, for most of these
  checks' random directions, one wrong by 0.1 %; the float32 checks missed 1 % in half
  of the layers tried).

* A float32 value compared with a float64 reference (or two float32 computations of the
  same maths) keeps a bound that float32 rounding justifies, stated next to it. With the
  unit roundoff ``U32 = 2**-24`` ≈ 6e-8 (half of eps32): an elementwise function is
  within a few ulp; a sum of n terms computed in any order is within n·U32·Σ|terms|
  (worst case) and in practice within about √n·U32·Σ|terms| (rounding errors of
  different orders are alike in size, not in sign). A bound is kept where it is at least
  10x the latter (and the error measured) for the test's sizes, or where it holds in the
  worst case; otherwise the comparison is done in float64, or the bound is computed from
  the worst case (``sum_error_bound``, ``matmul_error_bound``).
"""

import jax
import jax.numpy as jnp
import numpy as np
from jax.test_util import check_grads

U32 = 2.0**-24  # float32's unit roundoff: one rounding moves a value by at most U32·|x|


def sum_error_bound(terms, n=None):
    """Worst-case error of a float32 sum of ``terms`` (float32 products included) in any
    order: n·U32·Σ|terms|, n the number of terms (rounding each product counts once)."""
    terms = np.abs(np.asarray(terms, np.float64))
    return (terms.size if n is None else n) * U32 * terms.sum()


def matmul_error_bound(x, w, b=None):
    """Worst-case error of any element of float32 ``x @ w (+ b)`` in any summation order:
    (K + 1)·U32 times the largest element of ``|x| @ |w| (+ |b|)``, K the contracted size
    (K products and K - 1 additions, one more for the bias), with a 10 % allowance."""
    x, w = (np.abs(np.asarray(a, np.float64)) for a in (x, w))
    mags = x @ w + (0.0 if b is None else np.abs(np.asarray(b, np.float64)))
    k = w.shape[0]
    return 1.1 * (k + 1) * U32 * float(mags.max(initial=0.0))


def _float64(a):
    a = jnp.asarray(a)
    return a.astype(jnp.float64) if jnp.issubdtype(a.dtype, jnp.floating) else a


def to_float64(tree):
    """``tree`` with its floating leaves cast to float64 (call under ``jax.enable_x64``)."""
    return jax.tree.map(_float64, tree)


def check_grads_float64(f, args, order=1, modes=("rev",), **kwargs):
    """``check_grads(f, args, ...)`` with x64 enabled and every floating leaf of ``args``
    cast to float64; asserts the outputs are float64, so that float32 computation (which
    would bring back float32 differences) cannot hide inside ``f``."""
    with jax.enable_x64(True):
        args = to_float64(tuple(args))
        dtypes = {str(a.dtype) for a in jax.tree.leaves(f(*args))}
        assert dtypes == {"float64"}, f"expected a float64 computation, got outputs {dtypes}"
        check_grads(f, args, order, modes=modes, **kwargs)
