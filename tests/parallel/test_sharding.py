"""funcnet.parallel's sharding rules: data parallelism under jit, FSDP, tensor parallelism.

The rules themselves are checked in this process (one CPU device; an ``AbstractMesh``
stands in for larger meshes). Training runs in child processes with 4 and 8 simulated
CPU devices, in float64, against the same training on one device with the whole batch.

Why 1e-12 bounds: sharded training computes the same sums as one device, split into
partial sums per device and combined in another order (an all-reduce, a sharded matmul).
Reordering a float64 sum of n terms moves it by at most n·2**-53·Σ|terms|; here sums of at
most 512 terms of gradients below 1 and three SGD steps (lr 0.1, momentum 0.9) keep every
parameter within ~1e-13 in the worst case (about 1e-16 measured). SGD rather than Adam:
Adam divides by the root of the second moment, which turns the rounding noise of a
gradient that is zero in exact arithmetic (an attention key bias: softmax ignores a shift
of all logits) into lr·noise/(|noise| + eps), ~1e-11. A wrong reduction (the mean of one
device's rows only, a gradient counted N times, a missing all-reduce) moves parameters
by 1e-3 or more.
"""

import doctest
import json

import jax
import jax.numpy as jnp
import pytest
from jax.sharding import AbstractMesh
from jax.sharding import PartitionSpec as P

import funcnet.parallel._sharding as sharding_module
from funcnet import nn, optim, parallel, train
from tests._devices import run_with_cpu_devices

# --------------------------------------------------------------- rules, in this process


def _params():
    return {
        "encoder": {
            "fc1": {"weight": jnp.zeros((8, 16)), "bias": jnp.zeros(16)},
            "fc2": {"weight": jnp.zeros((16, 8)), "bias": jnp.zeros(8)},
        },
        "head": {"weight": jnp.zeros((8, 4)), "bias": jnp.zeros(4)},
    }


def test_first_matching_rule_wins_and_the_rest_get_the_default():
    rules = [
        ("encoder.fc1.weight", P(None, "model")),
        ("encoder", P("model")),  # a sub-tree, as in optim.param_groups
        (["*.bias", "nothing.*"], P("model")),  # a list of patterns
    ]
    specs = parallel.param_specs(_params(), rules, default=P(None, "data"))
    assert specs["encoder"]["fc1"] == {"weight": P(None, "model"), "bias": P("model")}
    assert specs["encoder"]["fc2"] == {"weight": P("model"), "bias": P("model")}
    assert specs["head"] == {"weight": P(None, "data"), "bias": P("model")}


def test_specs_lose_trailing_nones_as_jit_outputs_do():
    specs = parallel.param_specs(_params(), [("*.weight", P("model", None))])
    assert specs["head"]["weight"] == P("model") and len(specs["head"]["weight"]) == 1


@pytest.mark.parametrize(
    "rules, message",
    [
        ([("encoder.fc3", P())], r"rule \('encoder.fc3', P\(\)\) selects no parameter"),
        ([parallel.column_parallel("fc1")], r"column_parallel\('fc1', axis='model'\) selects no"),
        ([parallel.megatron()], r"megatron\('\*', axis='model'\) selects no parameter"),
        ([("*.weight", P(None, None, "model"))], r"'encoder.fc1.weight' of shape \(8, 16\): "),
        ([("head.bias", P("data"))], r"'head.bias' of shape \(4,\): .*splits dimension 0 \(4\) 8"),
        ([("head.bias", P("pipe"))], r"'head.bias' of shape \(4,\): .*names \['pipe'\], not axes"),
    ],
)
def test_rules_that_select_nothing_or_do_not_fit_raise(rules, message):
    mesh = AbstractMesh((8, 2), ("data", "model"))
    with pytest.raises(ValueError, match=message):
        parallel.param_specs(_params(), rules, mesh=mesh)


def test_a_rule_must_be_a_pair_or_a_callable():
    with pytest.raises(TypeError, match=r"\(pattern, PartitionSpec\) or a callable"):
        parallel.param_specs(_params(), [("head", "model")])


def test_fsdp_splits_the_largest_divisible_dimension_of_large_parameters():
    params = {
        "a": jnp.zeros((256, 64)),
        "b": jnp.zeros((64, 256)),
        "c": jnp.zeros((3, 512)),
        "d": jnp.zeros((100, 20)),  # 2,000 elements, no dimension divisible by 8
        "e": jnp.zeros((8, 8)),  # below min_size
    }
    specs = parallel.param_specs(params, [parallel.fsdp()], mesh=AbstractMesh((8,), ("data",)))
    assert specs == {"a": P("data"), "b": P(None, "data"), "c": P(None, "data"), "d": P(), "e": P()}
    with pytest.raises(ValueError, match=r"fsdp\(axis='data', min_size=1024\) needs a mesh"):
        parallel.param_specs(params, [parallel.fsdp()])
    with pytest.raises(ValueError, match=r"fsdp\(axis='data', min_size=100000\) selects no"):
        parallel.param_specs(
            params, [parallel.fsdp(min_size=10**5)], mesh=AbstractMesh((8,), ("data",))
        )


def test_megatron_splits_the_feed_forward_network_and_optionally_attention():
    encoder = nn.TransformerEncoder(nn.TransformerEncoderLayer(16, 4, dim_feedforward=32), 2)
    params = jax.eval_shape(encoder.init, jax.random.key(0))[0]  # shapes are enough
    specs = parallel.param_specs(params, [parallel.megatron()])
    for layer in specs["layers"].values():
        assert layer["linear1"] == {"weight": P(None, "model"), "bias": P("model")}
        assert layer["linear2"] == {"weight": P("model"), "bias": P()}
        assert layer["self_attn"]["in_proj_weight"] == P()  # whole heads stay together
        assert layer["norm1"] == {"weight": P(), "bias": P()}
    only_1 = parallel.param_specs(params, [parallel.megatron("layers.1", attention=True)])
    assert only_1["layers"]["0"]["linear1"]["weight"] == P()
    attn = only_1["layers"]["1"]["self_attn"]
    assert attn["in_proj_weight"] == P(None, "model") and attn["in_proj_bias"] == P("model")
    assert attn["out_proj"] == {"weight": P("model"), "bias": P()}
    mha = nn.MultiheadAttention(16, 4, kdim=8, vdim=8)  # separate q/k/v weights, top level
    specs = parallel.param_specs(
        jax.eval_shape(mha.init, jax.random.key(0))[0], [parallel.megatron(attention=True)]
    )
    assert [specs[f"{n}_proj_weight"] for n in "qkv"] == [P(None, "model")] * 3


def test_column_and_row_parallel():
    rules = [parallel.column_parallel("encoder.fc1"), parallel.row_parallel("*.fc2", "m")]
    specs = parallel.param_specs(_params(), rules)
    assert specs["encoder"]["fc1"] == {"weight": P(None, "model"), "bias": P("model")}
    assert specs["encoder"]["fc2"] == {"weight": P("m"), "bias": P()}


def _opt_specs(state):
    names = optim.leaf_names(state.opt_state)
    specs = [a.sharding.spec for a in jax.tree.leaves(state.opt_state)]
    return dict(zip(names, specs))


@pytest.mark.parametrize(
    "opt",
    [
        optim.adam(1e-3),
        optim.with_ema(optim.accumulate(2, optim.adamw(1e-3)), 0.9),
        optim.param_groups([("0", optim.sgd(0.1, momentum=0.9))], default=optim.adam(1e-3)),
    ],
    ids=["adam", "ema-accumulate-adamw", "param_groups"],
)
def test_optimizer_state_follows_its_parameters(opt):
    model = nn.Sequential(nn.Linear(4, 8), nn.BatchNorm1d(8), nn.Linear(8, 2))
    state = train.TrainState.create(model, opt, jax.random.key(0))
    rules = [("0.weight", P(None, "data")), ("2", P("data")), ("1.running_mean", P("data"))]
    state = parallel.shard_state(state, parallel.make_mesh(), rules)
    assert state.params["0"]["weight"].sharding.spec == P(None, "data")
    assert state.params["1"]["weight"].sharding.spec == P()
    assert state.model_state["1"]["running_mean"].sharding.spec == P("data")
    assert state.model_state["1"]["running_var"].sharding.spec == P()
    assert state.step.sharding.spec == P() and state.key.sharding.spec == P()
    mirrored = 0
    for name, spec in _opt_specs(state).items():
        if name.endswith(("0.weight", "2.weight", "2.bias")):
            want = P(None, "data") if name.endswith("0.weight") else P("data")
            assert spec == want, name
            mirrored += 1
        else:  # counts, hyper-parameters, the other parameters' moments
            assert spec == P(), name
    assert mirrored >= 3


def test_a_parameter_tree_is_placed_too():
    params = parallel.shard_state(_params(), parallel.make_mesh(), [("*.bias", P("data"))])
    assert params["head"]["bias"].sharding.spec == P("data")
    assert params["head"]["weight"].sharding.spec == P()


def test_docstring_examples_run():
    result = doctest.testmod(sharding_module, optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0


# --------------------------------------------------------- training, in child processes

PRELUDE = """
import json, os, re
import jax, jax.numpy as jnp, numpy as np
jax.config.update("jax_enable_x64", True)
cache = os.environ.get("FUNCNET_TEST_CACHE", os.path.join(os.getcwd(), ".jax_cache"))
jax.config.update("jax_compilation_cache_dir", os.path.abspath(cache))
jax.config.update("jax_persistent_cache_min_compile_time_secs", 0)
jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
from jax.sharding import PartitionSpec as P
from funcnet import losses, nn, optim, parallel, train
from funcnet.data import ArrayDataset, DataLoader
from tests._numerics import to_float64

OPS = ("all-reduce", "all-gather", "reduce-scatter", "all-to-all", "collective-permute")
LINE = re.compile(r"=\\s*(.*?)\\s(" + "|".join(OPS) + r")(?:-start)?\\(")
SHAPE = re.compile(r"\\b[a-z]+[0-9]*\\[([0-9,]*)\\]")

def compile_step(step, state, batch):
    \"\"\"The compiled step and {collective: [elements of each result]} from its HLO.\"\"\"
    compiled = step.lower(state, batch).compile()
    found = {}
    for line in compiled.as_text().splitlines():
        m = LINE.search(line)
        if m:
            sizes = [int(np.prod([int(d) for d in dims.split(",") if d]))
                     for dims in SHAPE.findall(m.group(1))]
            found.setdefault(m.group(2), []).extend(sizes)
    return compiled, found

def create(model, opt):
    params, model_state = model.init(jax.random.key(0))
    return train.TrainState.create(model, opt, jax.random.key(1), params=to_float64(params),
                                   model_state=to_float64(model_state))

def run(step, state, batches):
    for batch in batches:
        state, m = step(state, batch)
        jax.block_until_ready(state)  # collectives in flight on CPU deadlock: sync each step
    assert m["loss"].dtype == jnp.float64
    return state

def max_diff(a, b):
    return max(float(np.max(np.abs(np.asarray(u) - np.asarray(v))))
               for u, v in zip(jax.tree.leaves(a), jax.tree.leaves(b)))

def size(tree):
    return sum(int(np.prod(np.shape(a))) for a in jax.tree.leaves(tree))

SGD = optim.sgd(0.1, momentum=0.9)
rng = np.random.default_rng(0)
out = {}
"""

FOUR_DEVICES = """
# Data parallelism under jit: fit on a batch-sharded DataLoader, the state replicated.
mesh = parallel.make_mesh()
mlp = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 3))
dataset = ArrayDataset(rng.normal(size=(64, 8)), rng.integers(0, 3, 64).astype(np.int32))
fit = dict(epochs=2, loss_fn=losses.cross_entropy, progress="quiet", log_every=1)
ref, _ = train.fit(create(mlp, optim.adam(1e-2)), DataLoader(dataset, 16, drop_last=True), **fit)
loader = DataLoader(dataset, 16, drop_last=True, device=parallel.batch_sharding(mesh))
state = parallel.shard_state(create(mlp, optim.adam(1e-2)), mesh)
dp, _ = train.fit(state, loader, **fit)
batch = next(iter(loader))
_, found = compile_step(train.make_train_step(losses.cross_entropy), state, batch)
out["dp"] = {"params": max_diff(dp.params, ref.params), "opt": max_diff(dp.opt_state, ref.opt_state),
             "step": int(dp.step), "batch": str(batch[0].sharding.spec), "n_params": size(ref.params),
             "replicated": all(a.sharding == parallel.replicated(mesh) for a in jax.tree.leaves(dp)),
             "collectives": found}

# Tensor parallelism on a (data 2, model 2) mesh: a transformer encoder layer.
mesh = parallel.make_mesh((2, 2), ("data", "model"))
layer = nn.TransformerEncoderLayer(16, 4, dim_feedforward=32, dropout=0.0, batch_first=True)
batches = [(rng.normal(size=(8, 6, 16)), rng.normal(size=(8, 6, 16))) for _ in range(3)]
step = train.make_train_step(losses.mse_loss)
ref = run(step, create(layer, SGD), batches)
sharded = [jax.device_put(b, parallel.batch_sharding(mesh)) for b in batches]
for name, rule in [("megatron", parallel.megatron()), ("attention", parallel.megatron(attention=True))]:
    state = parallel.shard_state(create(layer, SGD), mesh, [rule])
    before = parallel.state_shardings(state)
    compiled, found = compile_step(step, state, sharded[0])
    tp = run(compiled, state, sharded)  # the compiled program refuses other shardings
    out[name] = {"params": max_diff(tp.params, ref.params), "kept": parallel.state_shardings(tp) == before,
                 "linear1": str(tp.params["linear1"]["weight"].sharding.spec),
                 "momentum": str(tp.opt_state.inner_state[1].momentum_buffer["linear2"]["weight"].sharding.spec),
                 "collectives": found}
params = ref.params
out["sizes"] = {"split": size([params["linear1"], params["linear2"]["weight"]]), "all": size(params)}
print(json.dumps(out))
"""

EIGHT_DEVICES = """
# FSDP over 8 devices.
mesh = parallel.make_mesh()
mlp = nn.Sequential(nn.Linear(256, 256), nn.ReLU(), nn.Linear(256, 256), nn.ReLU(), nn.Linear(256, 8))
batches = [(rng.normal(size=(512, 256)), rng.integers(0, 8, 512).astype(np.int32)) for _ in range(3)]
step = train.make_train_step(losses.cross_entropy)
ref = run(step, create(mlp, SGD), batches)
state = parallel.shard_state(create(mlp, SGD), mesh, [parallel.fsdp()])

def device_bytes(tree, device):
    return sum(s.data.nbytes for a in jax.tree.leaves(tree) for s in a.addressable_shards
               if s.device == device)

sharded_bytes = sum(a.nbytes for a in jax.tree.leaves((state.params, state.opt_state))
                    if a.sharding.spec != P())
out["bytes"] = {"devices": [device_bytes((state.params, state.opt_state), d) for d in jax.devices()],
                "total": sum(a.nbytes for a in jax.tree.leaves((state.params, state.opt_state))),
                "sharded": sharded_bytes}
sharded = [jax.device_put(b, parallel.batch_sharding(mesh)) for b in batches]
before = parallel.state_shardings(state)
compiled, found = compile_step(step, state, sharded[0])
fs = run(compiled, state, sharded)
out["fsdp"] = {"params": max_diff(fs.params, ref.params), "opt": max_diff(fs.opt_state, ref.opt_state),
               "kept": parallel.state_shardings(fs) == before, "collectives": found,
               "specs": [str(a.sharding.spec) for a in jax.tree.leaves(fs.params)],
               "n_params": size(ref.params), "batch": size(batches[0][0]),
               "weights": [size(ref.params[k]["weight"]) for k in ("0", "2", "4")]}

# A small model whose batch is smaller than its weights: XLA may hand back some leaves
# sharded otherwise; pinned out_shardings keep the layout (and one compiled program).
small = nn.Sequential(nn.Linear(32, 64), nn.ReLU(), nn.Linear(64, 16), nn.ReLU(), nn.Linear(16, 4))
state = parallel.shard_state(create(small, optim.adam(1e-3)), mesh, [parallel.fsdp(min_size=512)])
before = parallel.state_shardings(state)
pinned = jax.jit(train.make_train_step(losses.cross_entropy, jit=False), donate_argnums=0,
                 out_shardings=(before, None))
tiny = [jax.device_put((rng.normal(size=(16, 32)), rng.integers(0, 4, 16).astype(np.int32)),
                       parallel.batch_sharding(mesh)) for _ in range(2)]
out["pinned"] = parallel.state_shardings(run(pinned, state, tiny)) == before
print(json.dumps(out))
"""


def _run(script: str, devices: int) -> dict:
    return json.loads(run_with_cpu_devices(PRELUDE + script, devices=devices).splitlines()[-1])


@pytest.fixture(scope="module")
def four():
    return _run(FOUR_DEVICES, 4)


@pytest.fixture(scope="module")
def eight():
    return _run(EIGHT_DEVICES, 8)


def _reduced(found: dict) -> tuple[int, int]:
    """(elements all-reduced in arrays, number of scalars all-reduced)."""
    sizes = found.get("all-reduce", [])
    return sum(s for s in sizes if s > 1), sum(1 for s in sizes if s == 1)


def test_data_parallel_under_jit_equals_one_device_on_the_whole_batch(four):
    dp = four["dp"]
    assert dp["params"] < 1e-12 and dp["opt"] < 1e-12, dp
    assert dp["step"] == 8 and dp["batch"] == "P('data',)" and dp["replicated"]


def test_data_parallel_step_all_reduces_exactly_the_gradients(four):
    """One all-reduce of every gradient (each parameter's elements once, combined into a
    few tuples by XLA) plus the loss's scalars; the batch is never gathered."""
    dp = four["dp"]
    assert set(dp["collectives"]) == {"all-reduce"}, dp["collectives"]
    elements, scalars = _reduced(dp["collectives"])
    assert elements == dp["n_params"] == 195 and scalars <= 3


@pytest.mark.parametrize("rule", ["megatron", "attention"])
def test_tensor_parallel_equals_one_device(four, rule):
    tp = four[rule]
    assert tp["params"] < 1e-12, tp
    assert tp["linear1"] == "P(None, 'model')" and tp["momentum"] == "P('model',)"
    assert tp["kept"], "the step returned the state with other shardings"


def test_tensor_parallel_feed_forward_costs_two_activation_all_reduces(four):
    """megatron() on a (data 2, model 2) mesh: gradients of the replicated parameters are
    all-reduced over "data", those of the split ones (half per device) too, and the
    feed-forward network's output and its input gradient over "model": (B/2)·L·E = 384
    elements each. No gather, no all-to-all, no permutation."""
    found = four["megatron"]["collectives"]
    assert set(found) == {"all-reduce"}, found
    sizes = four["sizes"]
    replicated, split = sizes["all"] - sizes["split"], sizes["split"] // 2
    elements, scalars = _reduced(found)
    assert elements == replicated + split + 2 * 4 * 6 * 16 and scalars <= 3, found


def test_fsdp_takes_an_eighth_of_the_memory_per_device(eight):
    """Parameters and SGD momentum of an MLP 256-256-256-8: the three weights are split 8
    ways, the biases (< 1024 elements) replicated. Every device holds exactly
    sharded/8 + replicated bytes, within 5 % of total/8 (2.7 % here)."""
    b = eight["bytes"]
    expected = b["sharded"] // 8 + (b["total"] - b["sharded"])
    assert b["devices"] == [expected] * 8
    assert expected <= 1.05 * b["total"] / 8


def test_fsdp_equals_one_device(eight):
    fs = eight["fsdp"]
    assert fs["params"] < 1e-12 and fs["opt"] < 1e-12, fs
    assert fs["specs"] == ["P()", "P('data',)"] * 3
    assert fs["kept"]


def test_fsdp_gathers_each_weight_once_and_reduces_every_gradient(eight):
    """XLA:CPU's FSDP step: each split weight all-gathered once (forward, reused by the
    backward pass), never the batch; the gradients all-reduced (XLA:CPU emits no
    reduce-scatter: each device then updates its own slice)."""
    fs = eight["fsdp"]
    found = fs["collectives"]
    assert sorted(found["all-gather"]) == sorted(fs["weights"]), found
    assert fs["batch"] not in found["all-gather"]
    assert set(found) <= {"all-gather", "all-reduce", "reduce-scatter"}, found
    elements, scalars = _reduced(found)
    assert elements + sum(found.get("reduce-scatter", [])) == fs["n_params"] and scalars <= 3


def test_pinned_out_shardings_keep_the_layout(eight):
    assert eight["pinned"]
