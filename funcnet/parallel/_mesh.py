"""Device meshes, the shardings of a batch and of replicated state, and CPU cores as devices.

A mesh names the axes of a grid of devices (``"data"``, ``"model"``); a
``NamedSharding(mesh, PartitionSpec(...))`` says which array axis is split over which mesh
axis. ``jax.jit`` compiles a step for the shardings of its inputs and inserts the
collectives itself (GSPMD), so the same step runs on one device or many.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from typing import Any

import jax
from jax.sharding import AxisType, Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

__all__ = ["batch_sharding", "make_mesh", "replicated", "use_cpu_devices"]


def _axis_shapes(
    axis_shapes: Sequence[int] | None, names: tuple[str, ...], count: int
) -> tuple[int, ...]:
    """The mesh shape: one axis of all devices by default, one ``-1`` filled in."""
    if axis_shapes is None:
        if len(names) != 1:
            raise ValueError(
                f"make_mesh: give axis_shapes for the {len(names)} axes {names}, e.g. "
                f"make_mesh(({count} // 2, 2), {names})"
            )
        return (count,)
    shapes = tuple(int(s) for s in axis_shapes)
    if len(shapes) != len(names):
        raise ValueError(f"make_mesh: axis_shapes {shapes} and axis_names {names} differ in length")
    rest = math.prod(s for s in shapes if s != -1)
    if shapes.count(-1) == 1 and rest > 0 and count % rest == 0:
        shapes = tuple(count // rest if s == -1 else s for s in shapes)
    if any(s <= 0 for s in shapes) or math.prod(shapes) != count:
        raise ValueError(
            f"make_mesh: axis_shapes {tuple(axis_shapes)} do not fit the {count} devices; "
            f"choose sizes whose product is {count} (one may be -1), or pass devices="
        )
    return shapes


def make_mesh(
    axis_shapes: Sequence[int] | None = None,
    axis_names: Sequence[str] | str = ("data",),
    *,
    devices: Sequence[Any] | None = None,  # jax.Device: jaxlib ships no type for it
) -> Mesh:
    """A mesh of devices with named axes, every axis ``Auto`` (GSPMD decides the layouts).

    ``make_mesh()`` puts all devices on one ``"data"`` axis (data parallelism);
    ``make_mesh((2, 4), ("data", "model"))`` is a 2-D mesh, 2-way data and 4-way model
    parallel; one size may be -1 (``make_mesh((-1, 2), ("data", "model"))``). Built with
    ``jax.make_mesh``, which orders the devices for the physical topology (TPU slices, GPU
    NVLink islands), with ``axis_types`` Auto on every JAX version (newer JAX makes Explicit
    axes by default, with which unsharded inputs are refused). The mesh works with
    ``jax.set_mesh(mesh)``, ``jax.shard_map(..., mesh=mesh)`` and ``NamedSharding``.

    Args:
        axis_shapes: the size of each axis; None for one axis of all the devices.
        axis_names: the name of each axis.
        devices: the devices to use (default ``jax.devices()``, every process's devices
            in a multi-process run).

    Returns:
        A ``jax.sharding.Mesh``.

    Raises:
        ValueError: the shapes do not multiply to the number of devices.

    Examples:
        >>> from funcnet import parallel
        >>> mesh = parallel.make_mesh()
        >>> mesh.axis_names, mesh.devices.size == len(jax.devices())
        (('data',), True)
    """
    names = (axis_names,) if isinstance(axis_names, str) else tuple(axis_names)
    devices = list(jax.devices() if devices is None else devices)
    shapes = _axis_shapes(axis_shapes, names, len(devices))
    return jax.make_mesh(shapes, names, axis_types=(AxisType.Auto,) * len(names), devices=devices)


def _check_axes(mesh: Mesh, axis: str | tuple[str, ...]) -> None:
    for name in (axis,) if isinstance(axis, str) else axis:
        if name not in mesh.axis_names:
            raise ValueError(f"mesh axis {name!r} is not one of the mesh's {mesh.axis_names}")


def batch_sharding(mesh: Mesh, axis: str | tuple[str, ...] = "data") -> NamedSharding:
    """The sharding of a batch split along its leading axis: ``NamedSharding(mesh, P(axis))``.

    Give it to ``DataLoader(..., device=batch_sharding(mesh))``: each batch (N, ...) then
    arrives as N / mesh.shape[axis] rows per device (replicated over the other axes), and
    a jitted step computes on every device's rows. N must divide evenly
    (``drop_last=True`` or ``pad_last=True``).

    Args:
        mesh: the mesh.
        axis: the mesh axis (or a tuple of axes) that splits the batch.

    Returns:
        A ``NamedSharding`` for arrays (N, ...).
    """
    _check_axes(mesh, axis)
    return NamedSharding(mesh, P(axis))


def replicated(mesh: Mesh) -> NamedSharding:
    """The sharding of an array copied whole on every device of ``mesh``: ``P()``."""
    return NamedSharding(mesh, P())


def _usable_cores() -> int:
    """The cores this process may run on (its CPU affinity), as Python 3.13's
    ``os.process_cpu_count()``; ``os.cpu_count()`` where affinity is unknown."""
    if hasattr(os, "process_cpu_count"):
        return os.process_cpu_count() or 1
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0)) or 1
    return os.cpu_count() or 1


def use_cpu_devices(n: int | None = None) -> int:
    """Makes JAX see ``n`` CPU devices, so data-parallel code fills a many-core CPU.

    XLA:CPU runs one device's program on a few threads and leaves the other cores idle;
    with several CPU devices a data-parallel step runs one shard per device, in parallel.
    Call it first thing in a script (before any JAX computation): the device count is
    fixed when JAX starts its backends. The environment variable
    ``JAX_NUM_CPU_DEVICES=n`` does the same from outside. Sets the ``jax_num_cpu_devices``
    option; on a machine with a GPU or TPU the accelerators stay the default devices.

    Args:
        n: the number of CPU devices; default: the cores this process may run on
            (``os.process_cpu_count()``, which respects ``taskset`` and CPU affinity).

    Returns:
        The number of CPU devices.

    Raises:
        ValueError: ``n`` is not a positive integer.
        RuntimeError: JAX has already started with another number of CPU devices.

    Examples:
        >>> from funcnet import parallel
        >>> have = len(jax.devices("cpu"))  # JAX has started: only a no-op is possible
        >>> parallel.use_cpu_devices(have) == have
        True
    """
    n = _usable_cores() if n is None else n
    if not isinstance(n, int) or n < 1:
        raise ValueError(f"use_cpu_devices: n must be a positive integer, got {n!r}")
    try:
        jax.config.update("jax_num_cpu_devices", n)
    except RuntimeError:
        have = len(jax.devices("cpu"))
        if have != n:
            raise RuntimeError(
                f"use_cpu_devices({n}): JAX has already started with {have} CPU device(s). "
                "Call use_cpu_devices first thing in the script, before any JAX computation "
                f"(importing funcnet is fine), or set JAX_NUM_CPU_DEVICES={n} in the "
                "environment."
            ) from None
    return n
