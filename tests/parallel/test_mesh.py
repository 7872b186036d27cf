"""funcnet.parallel's meshes, batch and replicated shardings, and CPU cores as devices.

The in-process tests see the suite's single CPU device; the others run in a child process
whose device count ``use_cpu_devices`` itself sets before JAX starts.
"""

import doctest
import os

import jax
import pytest
from jax.sharding import AxisType
from jax.sharding import PartitionSpec as P

import funcnet.parallel._mesh as mesh_module
from funcnet import parallel
from tests._devices import run_with_cpu_devices


def test_default_mesh_puts_every_device_on_one_auto_data_axis():
    mesh = parallel.make_mesh()
    assert mesh.axis_names == ("data",)
    assert mesh.devices.size == jax.device_count()
    # Auto, not the Explicit axes jax.make_mesh gives by default on newer JAX, with which
    # an unsharded input to a sharded computation is refused.
    assert mesh.axis_types == (AxisType.Auto,)
    assert parallel.make_mesh(axis_names="batch").axis_names == ("batch",)


@pytest.mark.parametrize(
    "args, message",
    [
        (((), ("data", "model")), r"axis_shapes \(\) and axis_names \('data', 'model'\) differ"),
        ((None, ("data", "model")), r"give axis_shapes for the 2 axes"),
        (((2, 3), ("data", "model")), r"\(2, 3\) do not fit the 1 devices; choose sizes"),
        (((-1, 2), ("data", "model")), r"\(-1, 2\) do not fit the 1 devices"),
    ],
)
def test_mesh_shapes_that_do_not_fit_the_devices_raise(args, message):
    with pytest.raises(ValueError, match=message):
        parallel.make_mesh(*args)


def test_batch_and_replicated_shardings():
    mesh = parallel.make_mesh()
    assert parallel.batch_sharding(mesh).spec == P("data")
    assert parallel.batch_sharding(mesh).mesh == mesh
    assert parallel.replicated(mesh).spec == P()
    with pytest.raises(ValueError, match=r"mesh axis 'model' is not one of the mesh's \('data',\)"):
        parallel.batch_sharding(mesh, "model")


def test_use_cpu_devices_once_jax_has_started():
    have = len(jax.devices("cpu"))  # starts JAX's backends, if nothing did before
    assert parallel.use_cpu_devices(have) == have  # the same count: a no-op
    with pytest.raises(
        RuntimeError, match=rf"already started with {have} CPU.*JAX_NUM_CPU_DEVICES={have + 1}"
    ):
        parallel.use_cpu_devices(have + 1)
    with pytest.raises(ValueError, match="n must be a positive integer, got 0"):
        parallel.use_cpu_devices(0)


def test_docstring_examples_run():
    result = doctest.testmod(mesh_module, optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0


USE_CPU_DEVICES = """
from funcnet import parallel
n = parallel.use_cpu_devices(4)  # first thing: the child starts with JAX_NUM_CPU_DEVICES=1
import jax, numpy as np
from jax import lax
from jax.sharding import AxisType, PartitionSpec as P
assert n == 4 and jax.device_count() == 4, jax.devices()
assert parallel.use_cpu_devices(4) == 4
try:
    parallel.use_cpu_devices(2)
    raise AssertionError("no error")
except RuntimeError as e:
    assert "JAX_NUM_CPU_DEVICES=2" in str(e), e
mesh = parallel.make_mesh((-1, 2), ("data", "model"))
assert dict(mesh.shape) == {"data": 2, "model": 2}, mesh.shape
assert mesh.axis_types == (AxisType.Auto, AxisType.Auto), mesh.axis_types
x = jax.device_put(np.arange(24.0).reshape(8, 3), parallel.batch_sharding(mesh))
assert sorted({s.data.shape for s in x.addressable_shards}) == [(4, 3)]
assert {s.index[0].start for s in x.addressable_shards} == {0, 4}
flat = parallel.make_mesh()
total = jax.shard_map(lambda v: lax.psum(v.sum(), "data"), mesh=flat, in_specs=P("data"),
                      out_specs=P())
assert float(total(np.arange(8.0))) == 28.0  # an unsharded input is accepted (Auto axes)
with jax.set_mesh(flat):
    again = jax.shard_map(lambda v: lax.psum(v.sum(), "data"), in_specs=P("data"),
                          out_specs=P())
    assert float(again(np.arange(8.0))) == 28.0
with jax.set_mesh(mesh):
    assert jax.jit(lambda v: v * 2)(x).sharding.spec == P("data")
print("ok")
"""


def test_use_cpu_devices_before_jax_starts_gives_that_many_devices():
    """In a fresh process: 4 devices, 2-D and flat meshes, batch placement, and the meshes
    working with ``jax.shard_map`` and ``jax.set_mesh``."""
    assert run_with_cpu_devices(USE_CPU_DEVICES, devices=1).strip() == "ok"


DEFAULT_COUNT = """
import os
os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})  # as under `taskset -c N`
from funcnet import parallel
n = parallel.use_cpu_devices()
import jax
assert n == 1 and jax.device_count() == 1, (n, jax.devices())
print("ok")
"""


@pytest.mark.skipif(not hasattr(os, "sched_setaffinity"), reason="needs CPU affinity (Linux)")
def test_use_cpu_devices_defaults_to_the_cores_the_process_may_use():
    """Pinned to one core, the default is one device, not the machine's core count (a
    container or ``taskset`` would otherwise get a device per host core)."""
    assert run_with_cpu_devices(DEFAULT_COUNT, devices=1).strip() == "ok"
