"""Bad input to every registered layer raises a funcnet error naming the layer path.

Driven by the conformance registry (``registry_<family>.py``): for every entry, a wrong
rank, a wrong feature size, a wrong dtype, an empty batch and the parameters of another
configuration. Every case runs under ``jax.eval_shape``, so nothing compiles: the checks
are trace-time checks. The dtype rule per layer is written down in
docs/differences-from-pytorch.md ("Input dtypes").
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import pytest

import funcnet.functional as F
from funcnet import nn
from funcnet.errors import FuncnetError
from funcnet.nn import _activation as activation_layers
from tests.conformance._entry import Entry
from tests.conformance.test_conformance import ENTRIES, _run

# the layer path and type, as every funcnet layer error starts: "model.0 (Linear): ..."
NAMES_LAYER = r"model(\.\w+)* \(\w+\)"

PADS = {
    f"{kind}Pad{n}d"
    for kind in ("Constant", "Zero", "Reflection", "Replication", "Circular")
    for n in (1, 2, 3)
}
REARRANGING = {
    "Identity",
    "Flatten",
    "Unflatten",
    "PixelShuffle",
    "PixelUnshuffle",
    "Unfold",
    "Fold",
    "UpsamplingNearest2d",
    "Upsample-nearest-1d",
    *PADS,
}

# the dtypes a layer accepts besides floating point (docs/differences-from-pytorch.md)
ALSO_ACCEPTS: dict[str, tuple[str, ...]] = {
    **{name: ("int32", "complex64") for name in REARRANGING},
    **{name: ("int32",) for name in ("ReLU", "PairwiseDistance", "CosineSimilarity")},
    **{f"{kind}Pool{n}d": ("int32",) for kind in ("Max", "AdaptiveMax") for n in (1, 2, 3)},
    **{name: ("complex64",) for name in ("Tanh", "Sigmoid", "SiLU", "Softsign", "Tanhshrink")},
}
IDS = {"Embedding", "EmbeddingBag"}  # integer ids in, floats refused

# layers that take inputs of any rank (elementwise, or over the last axes only)
ANY_RANK = {
    *(set(activation_layers.__all__) - {"Softmax2d"}),
    *"Identity Flatten Unflatten Linear Bilinear CosineSimilarity PairwiseDistance".split(),
    *"LayerNorm RMSNorm GroupNorm LocalResponseNorm SyncBatchNorm Embedding".split(),
    *"Dropout AlphaDropout FeatureAlphaDropout Sequential LayerStack".split(),
    *"PixelShuffle PixelUnshuffle".split(),
}
# layers with no configured size on the last input axis
NO_FEATURE = {
    *ALSO_ACCEPTS,
    *(set(activation_layers.__all__) - {"PReLU"}),
    *(f"{kind}Pool{n}d" for kind in ("Avg", "AdaptiveAvg") for n in (1, 2, 3)),
    "Embedding",
    "EmbeddingBag",
    "Dropout",
    "Dropout1d",
    "Dropout2d",
    "Dropout3d",
    "AlphaDropout",
    "FeatureAlphaDropout",
    "LocalResponseNorm",
    "CosineSimilarity",
    "LearnedPositionalEmbedding",
    "Upsample",
    "UpsamplingBilinear2d",
}

# entries without a batch axis, or whose keyword inputs are sized by the batch
NO_BATCH = {
    "Conv2d-unbatched",
    "ConvTranspose2d-dilated-unbatched",
    "MaxPool2d-reshape-padded-ceil",
    "AvgPool2d-overlapping-ceil-divisor",
    "AvgPool3d-reshape-unbatched",
    "AdaptiveMaxPool1d-uneven",
    "AdaptiveMaxPool2d-divisible",
    "InstanceNorm3d-unbatched-nobias",
    "Dropout3d-unbatched",
    "ConstantPad2d",
    "ZeroPad3d",
    "ReplicationPad3d",
    "LSTM-hoisted-unbatched-cell_state",
    "LSTM-proj_size-2layer-bidirectional-dropout-batch_first-lengths",
    "GRU-bidirectional-lengths-nobias-h_n",
    "MultiheadAttention-add_bias_kv-add_zero_attn-key_padding-weights-per-head",
    "EmbeddingBag-offsets-max-padding",
    "EmbeddingBag-sum-weights-last-offset",
    "Fold-tiling",
}


def _layer(entry: Entry) -> str:
    return entry.id.split("-")[0]


def _accepts(entry: Entry) -> tuple[str, ...]:
    return ALSO_ACCEPTS.get(entry.id, ALSO_ACCEPTS.get(_layer(entry), ()))


def _float_positions(entry: Entry) -> list[int]:
    return [
        i for i, (_, d) in enumerate(entry.inputs) if jnp.issubdtype(jnp.dtype(d), jnp.floating)
    ]


def _batch_axis(module) -> int:
    """Sequence-first layers (PyTorch's default) take (L, N, ...), the rest (N, ...)."""
    inner = getattr(module, "encoder_layer", None) or getattr(module, "decoder_layer", None)
    return 0 if getattr(inner or module, "batch_first", True) else 1


def _specs(entry: Entry, change=None) -> list[jax.ShapeDtypeStruct]:
    """The entry's inputs as shape specs, ``change(i, shape, dtype)`` applied to each."""
    out = []
    for i, (shape, dtype) in enumerate(entry.inputs):
        if change is not None:
            shape, dtype = change(i, tuple(shape), dtype)
        out.append(jax.ShapeDtypeStruct(shape, dtype))
    return out


def _eval(entry: Entry, module, specs, params=None, train: bool = False):
    real_params, state = jax.eval_shape(module.init, jax.random.key(0))
    params = real_params if params is None else params
    return jax.eval_shape(
        lambda p, s, *a: _run(entry, module, p, s, a, train), params, state, *specs
    )


def _raises_naming_layer(entry: Entry, specs, params=None):
    with pytest.raises(FuncnetError, match=NAMES_LAYER):
        _eval(entry, entry.make(), specs, params)


def _cases(kind: str) -> list:
    return [pytest.param(e, id=e.id) for e in ENTRIES if _applies(kind, e)]


def _applies(kind: str, entry: Entry) -> bool:
    name = _layer(entry)
    if kind == "rank":  # any-rank layers still need an axis for their feature size
        return name not in ANY_RANK or name not in NO_FEATURE
    if kind == "feature":
        return name not in NO_FEATURE
    if kind == "empty":
        return entry.id not in NO_BATCH
    return True


# ------------------------------------------------------------------------ wrong rank
@pytest.mark.parametrize("entry", _cases("rank"))
def test_wrong_rank(entry):
    """Three extra leading axes for layers of fixed rank; a 0-D input for the others."""
    first = (_float_positions(entry) or [0])[0]
    scalar = _layer(entry) in ANY_RANK

    def change(i, shape, dtype):
        if i != first:
            return shape, dtype
        return ((), dtype) if scalar else ((1, 1, 1, *shape), dtype)

    _raises_naming_layer(entry, _specs(entry, change))


# ---------------------------------------------------------------- wrong feature size
@pytest.mark.parametrize("entry", _cases("feature"))
def test_wrong_feature_size(entry):
    first = _float_positions(entry)[0]

    def change(i, shape, dtype):
        return ((*shape[:-1], shape[-1] + 1), dtype) if i == first else (shape, dtype)

    _raises_naming_layer(entry, _specs(entry, change))


# --------------------------------------------------------------------- wrong dtype
def _dtype_cases() -> list:
    cases = []
    for e in ENTRIES:
        if _layer(e) in IDS:
            cases += [pytest.param(e, d, id=f"{e.id}-{d}") for d in ("float32", "complex64")]
        elif _float_positions(e):
            bad = [d for d in ("int32", "complex64") if d not in _accepts(e)]
            cases += [pytest.param(e, d, id=f"{e.id}-{d}") for d in bad]
    return cases


def _with_dtype(entry: Entry, dtype: str):
    ids = _layer(entry) in IDS

    def change(i, shape, old):
        floating = jnp.issubdtype(jnp.dtype(old), jnp.floating)
        return shape, (dtype if floating != ids else old)

    return _specs(entry, change)


@pytest.mark.parametrize(("entry", "dtype"), _dtype_cases())
def test_wrong_dtype(entry, dtype):
    _raises_naming_layer(entry, _with_dtype(entry, dtype))


@pytest.mark.parametrize(
    ("entry", "dtype"),
    [pytest.param(e, d, id=f"{e.id}-{d}") for e in ENTRIES for d in _accepts(e)],
)
def test_accepted_dtype_keeps_working(entry, dtype):
    out = _eval(entry, entry.make(), _with_dtype(entry, dtype))
    assert jax.tree_util.tree_leaves(out)


def test_integer_images_get_the_conversion_to_write():
    model = nn.Sequential(nn.Conv2d(1, 4, 3), F.relu)
    params, state = jax.eval_shape(model.init, jax.random.key(0))
    images = jax.ShapeDtypeStruct((8, 28, 28, 1), jnp.uint8)
    with pytest.raises(
        FuncnetError,
        match=r"model\.0 \(Conv2d\): expected floating input, got "
        r"dtype uint8.*x\.astype\(jnp\.float32\) / 255",
    ):
        jax.eval_shape(lambda p, s, x: model.apply(p, s, x), params, state, images)


@pytest.mark.parametrize(
    ("layer", "dtype", "jax_said"),
    [
        (nn.GELU(), jnp.complex64, "erfc"),
        (nn.SiLU(), jnp.int32, "logistic"),
        (nn.Sigmoid(), jnp.int32, "logistic"),
    ],
)
def test_activation_dtype_errors_name_the_layer_not_jax(layer, dtype, jax_said):
    x = jax.ShapeDtypeStruct((3, 6), dtype)
    with pytest.raises(FuncnetError, match=rf"model \({type(layer).__name__}\): expected") as err:
        jax.eval_shape(lambda x: layer.apply({}, {}, x), x)
    assert jax_said not in str(err.value)


# --------------------------------------------------------------------- empty batch
@pytest.mark.parametrize("entry", _cases("empty"))
def test_empty_batch_gives_an_empty_output(entry):
    """PyTorch accepts a batch of 0 rows; so does funcnet, with the batch axis 0 out."""
    module = entry.make()
    axis = _batch_axis(module)

    def change(i, shape, dtype):
        return (*shape[:axis], 0, *shape[axis + 1 :]), dtype

    for train in [False, True] if entry.train else [False]:
        full = _eval(entry, module, _specs(entry), train=train)[0]
        empty = _eval(entry, module, _specs(entry, change), train=train)[0]
        assert empty.dtype == full.dtype
        diff = [a for a, (m, n) in enumerate(zip(full.shape, empty.shape)) if m != n]
        assert len(full.shape) == len(empty.shape) and len(diff) == 1, (full, empty)
        assert empty.shape[diff[0]] == 0


def test_batchnorm_keeps_its_statistics_on_an_empty_batch():
    """As PyTorch: no NaN statistics from a mean over 0 rows; the step is counted."""
    model = nn.BatchNorm1d(3)
    params, state = model.init(jax.random.key(0))
    y, new = model.apply(params, state, jnp.zeros((0, 3)), train=True)
    assert y.shape == (0, 3)
    assert jnp.array_equal(new["running_mean"], state["running_mean"])
    assert jnp.array_equal(new["running_var"], state["running_var"])
    assert new["num_batches_tracked"] == 1


# ------------------------------------------------- params of another configuration
# These rely on apply's check of params and state against ``init`` (issue #24, the first
# "Layers" bullet: funcnet/nn/_check_params.py); without it most end in JAX's errors.
OTHER: dict[str, object] = {
    "Sequential": lambda: nn.Sequential(nn.Linear(6, 9), F.relu, nn.Linear(9, 2)),
    "Sequential-remat": lambda: nn.Sequential(
        nn.Sequential(nn.Linear(6, 9), nn.BatchNorm1d(9), F.relu, nn.Dropout(0.1)),
        nn.Linear(9, 2),
        remat="dots_saveable",
    ),
    "LayerStack": lambda: nn.LayerStack(nn.Sequential(nn.Linear(6, 6), F.relu), 2),
    "TransformerEncoder": lambda: nn.TransformerEncoder(
        nn.TransformerEncoderLayer(8, 2, 12), 2, nn.LayerNorm(8)
    ),
    "TransformerDecoder": lambda: nn.TransformerDecoder(
        nn.TransformerDecoderLayer(8, 2, 12, norm_first=True), 2
    ),
}


def _tree_shapes(module):
    return jax.tree_util.tree_map(
        lambda a: (a.shape, a.dtype), jax.eval_shape(module.init, jax.random.key(0))
    )


def _other_configuration(entry: Entry):
    """The same class with one size argument changed, so its parameters differ in shape."""
    if entry.id in OTHER:
        return OTHER[entry.id]()
    return _resized(entry.make())


def _resized(module):
    if not dataclasses.is_dataclass(module):
        return None
    for field in dataclasses.fields(module):
        for value in _other_values(getattr(module, field.name)):
            try:
                other = dataclasses.replace(module, **{field.name: value})
                if _tree_shapes(other) != _tree_shapes(module):
                    return other
            except (ValueError, TypeError, FuncnetError):
                continue
    return None


def _other_values(value) -> list:
    """Other sizes to try for a field: one more, twice as many (for divisibility rules)."""
    if type(value) is int:
        return [value + 1, 2 * value]
    if isinstance(value, tuple) and value and all(type(v) is int for v in value):
        return [tuple(v + 1 for v in value), tuple(2 * v for v in value)]
    if isinstance(value, nn.Module):
        inner = _resized(value)
        return [] if inner is None else [inner]
    return []


def _param_cases() -> list:
    cases = []
    for e in ENTRIES:
        if jax.tree_util.tree_leaves(jax.eval_shape(e.make().init, jax.random.key(0))[0]):
            cases.append(pytest.param(e, id=e.id))
    return cases


@pytest.mark.parametrize("entry", _param_cases())
def test_params_of_another_configuration(entry):
    other = _other_configuration(entry)
    assert other is not None, f"no other configuration found for {entry.id}: add one to OTHER"
    params, _ = jax.eval_shape(other.init, jax.random.key(0))
    _raises_naming_layer(entry, _specs(entry), params=params)
