"""nn.SyncBatchNorm: BatchNorm whose batch statistics span the devices of a named axis.

Over 4 simulated devices (a child process, float64) it must equal BatchNorm on the whole
batch: outputs, running statistics and gradients, under ``jax.shard_map`` and
``jax.pmap``. Float64 with a 1e-12 bound: the two differ only in the order of the sums
of the means and variances (partial sums per device, then a pmean), at most
n·2**-53·Σ|terms| ≈ 1e-14 for these 40-value sums of unit-size values; per-device
statistics instead (a SyncBatchNorm that did not synchronise) differ by ~0.1.
"""

import doctest
import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import PartitionSpec as P

import funcnet.nn._normalization as normalization_module
from funcnet import nn, parallel
from funcnet.errors import ShapeError
from tests._devices import run_with_cpu_devices
from tests._numerics import to_float64

FOUR_DEVICES = """
import json, os
import jax, jax.numpy as jnp, numpy as np
jax.config.update("jax_enable_x64", True)
cache = os.environ.get("FUNCNET_TEST_CACHE", os.path.join(os.getcwd(), ".jax_cache"))
jax.config.update("jax_compilation_cache_dir", os.path.abspath(cache))
jax.config.update("jax_persistent_cache_min_compile_time_secs", 0)
jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
from jax.sharding import PartitionSpec as P
from funcnet import nn, parallel
from tests._numerics import to_float64

rng = np.random.default_rng(0)
x = rng.normal(loc=1.0, scale=2.0, size=(8, 5, 3))  # 2 rows per device
r = rng.normal(size=x.shape)  # the loss sum(y * r) weighs every output differently
sync, full = nn.SyncBatchNorm(3), nn.BatchNorm1d(3)
params, state = to_float64(sync.init(jax.random.key(0)))
params = {"weight": jnp.array([1.5, 0.5, 2.0]), "bias": jnp.array([0.1, -0.2, 0.3])}

def loss(module, params, x, r):
    y, new_state = module.apply(params, state, x, train=True)
    return jnp.sum(y * r), (y, new_state)

grad = jax.grad(loss, argnums=(1, 2), has_aux=True)
(ref_dp, ref_dx), (ref_y, ref_state) = jax.jit(grad, static_argnums=0)(full, params, x, r)

def local(x, r):  # one device's rows; the parameters' gradient is summed over the axis
    (dp, dx), (y, new_state) = grad(sync, params, x, r)
    return y, new_state, dp, dx

mesh = parallel.make_mesh()
rows = P("data")
sharded = jax.shard_map(local, mesh=mesh, in_specs=(rows, rows), out_specs=(rows, P(), P(), rows))
y, new_state, dp, dx = jax.jit(sharded)(x, r)
pmapped = jax.pmap(lambda x: sync.apply(params, state, x, train=True), axis_name="data")
py, pstate = pmapped(x.reshape(4, 2, 5, 3))

def diff(a, b):
    return max(float(np.max(np.abs(np.asarray(u) - np.asarray(v))))
               for u, v in zip(jax.tree.leaves(a), jax.tree.leaves(b)))

evaluate = jax.jit(lambda m, s: m.apply(params, s, x)[0], static_argnums=0)
eval_y, ref_eval = evaluate(sync, new_state), evaluate(full, ref_state)  # no axis needed
local_only, _ = jax.jit(lambda x: full.apply(params, state, x, train=True))(x[:2])
print(json.dumps({
    "shard_map": {"y": diff(y, ref_y), "state": diff(new_state, ref_state),
                  "grad_params": diff(dp, ref_dp), "grad_x": diff(dx, ref_dx)},
    "pmap": {"y": diff(py.reshape(x.shape), ref_y),
             "state": diff(jax.tree.map(lambda a: a[0], pstate), ref_state),
             "same_on_devices": diff(jax.tree.map(lambda a: a[3], pstate),
                                     jax.tree.map(lambda a: a[0], pstate))},
    "eval": diff(eval_y, ref_eval),
    "unsynced": diff(local_only, ref_y[:2]),
    "count": int(new_state["num_batches_tracked"]),
}))
"""


@pytest.fixture(scope="module")
def four():
    return json.loads(run_with_cpu_devices(FOUR_DEVICES, devices=4).splitlines()[-1])


@pytest.mark.parametrize("transform", ["shard_map", "pmap"])
def test_sync_batchnorm_over_four_devices_equals_batchnorm_on_the_whole_batch(four, transform):
    out = four[transform]
    assert max(out.values()) < 1e-12, out
    assert four["count"] == 1


def test_sync_batchnorm_eval_uses_the_running_statistics_without_an_axis(four):
    assert four["eval"] < 1e-12
    assert four["unsynced"] > 1e-2  # the check above can tell the two apart


def test_sync_batchnorm_needs_its_axis_in_training():
    bn = nn.SyncBatchNorm(3)
    params, state = bn.init(jax.random.key(0))
    with pytest.raises(ValueError, match=r"model \(SyncBatchNorm\): axis_name 'data' is not"):
        bn.apply(params, state, jnp.ones((4, 3)), train=True)
    y, _ = bn.apply(params, state, jnp.ones((4, 3)))  # eval mode: no communication
    assert y.shape == (4, 3)
    with pytest.raises(ShapeError, match=r"expected input \(N, \*, C\) with at least 2"):
        bn.apply(params, state, jnp.ones(3))


@pytest.mark.parametrize("shape", [(4, 5, 3), (2, 3, 4, 3)])
def test_sync_batchnorm_matches_torch_on_one_device(shape):
    torch = pytest.importorskip("torch")
    x = np.random.default_rng(0).normal(loc=0.5, scale=2.0, size=shape)
    bn = nn.SyncBatchNorm(3, momentum=0.3)
    with jax.enable_x64(True):
        params, state = to_float64(bn.init(jax.random.key(0)))
        apply = jax.jit(
            jax.shard_map(
                lambda x: bn.apply(params, state, x, train=True),
                mesh=parallel.make_mesh(devices=jax.devices()[:1]),
                in_specs=P("data"),
                out_specs=(P("data"), P()),
            )
        )
        y, new_state = apply(jnp.asarray(x))
    reference = torch.nn.SyncBatchNorm(3, momentum=0.3).double().train()
    channels_first = torch.from_numpy(np.moveaxis(x, -1, 1).copy())
    expected = np.moveaxis(reference(channels_first).detach().numpy(), 1, -1)
    np.testing.assert_allclose(y, expected, rtol=0, atol=1e-12)
    np.testing.assert_allclose(new_state["running_mean"], reference.running_mean, atol=1e-12)
    np.testing.assert_allclose(new_state["running_var"], reference.running_var, atol=1e-12)


def test_docstring_examples_run():
    finder = doctest.DocTestFinder()
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS)
    for test in finder.find(normalization_module.SyncBatchNorm, "SyncBatchNorm"):
        runner.run(test)
    assert runner.summarize(verbose=False).failed == 0
