"""save and save_params: pytrees to disk, atomically."""

from __future__ import annotations

import dataclasses
import operator
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from funcnet._version import __version__
from funcnet.checkpoint import _format, _layout, _multihost, _npz, _tree
from funcnet.checkpoint._errors import CheckpointError

__all__ = ["save", "save_params"]


def check_step(step: Any) -> int:
    """``step`` as a non-negative int (NumPy and jax integer scalars are accepted)."""
    try:
        if isinstance(step, bool):
            raise TypeError
        value = operator.index(step)
    except TypeError:
        hint = " (pass the target as target=...)" if not hasattr(step, "dtype") else ""
        raise TypeError(
            f"step must be a non-negative int, got {type(step).__name__}{hint}"
        ) from None
    if value < 0:
        raise ValueError(f"step must be a non-negative int, got {value}")
    return value


def save(
    directory: str | os.PathLike[str],
    tree: Any,
    step: int,
    *,
    metadata: Mapping[str, Any] | None = None,
    metrics: Mapping[str, float] | None = None,
    overwrite: bool = False,
) -> Path:
    """Saves a pytree as ``directory/step_<step>`` atomically.

    The checkpoint is written under a temporary name, each file fsync'ed, then renamed
    into place: a process killed at any moment leaves either the complete new checkpoint
    or none, and never damages earlier ones. Arrays are copied off the device one at a
    time.

    In a run of several processes every process calls ``save`` with the same tree:
    arrays sharded across processes are gathered (``process_allgather``), process 0
    writes the one checkpoint, and all processes return after it is complete (a barrier),
    so a ``restore`` right after finds it. ``directory`` must then be on a file system
    that every process that restores can read.

    Args:
        directory: the checkpoint directory (created if missing); one per training run.
        tree: any pytree of arrays (jax or NumPy, any supported dtype including bfloat16),
            typed or raw PRNG keys, Python bool/int/float/str and None: params, a
            TrainState, optax states, plain dicts.
        step: the training step, a non-negative int; names the checkpoint.
        metadata: JSON-able data saved with the checkpoint (e.g. the data loader's position
            or the epoch); dicts need str keys, tuples come back as lists. Returned by
            ``restore_metadata`` and ``restore_checkpoint``.
        metrics: metric name -> number, e.g. ``{"val_loss": 0.31}``; CheckpointManager
            keeps the best checkpoints by one of them.
        overwrite: replace an existing checkpoint of the same step (atomically) instead of
            raising.

    Returns:
        The checkpoint's directory, ``directory/step_000000042``.

    Raises:
        CheckpointError: the step exists and ``overwrite`` is False, or writing failed
            (e.g. disk full); nothing is left behind. With several processes, raised in
            process 0.
        TypeError: a leaf, a dict key, the metadata or the metrics cannot be saved (the
            message names the path).

    Examples:
        >>> import tempfile, jax.numpy as jnp
        >>> from funcnet import checkpoint
        >>> tmp = tempfile.TemporaryDirectory()
        >>> state = {"params": {"weight": jnp.ones((2, 3))}, "step": 10}
        >>> checkpoint.save(tmp.name, state, step=10, metadata={"epoch": 1}).name
        'step_000000010'
        >>> checkpoint.restore(tmp.name, target=state)["params"]["weight"].shape
        (2, 3)
        >>> tmp.cleanup()
    """
    step = check_step(step)
    if metadata is not None and not isinstance(metadata, Mapping):
        raise TypeError(f"metadata must be a dict, got {type(metadata).__name__}")
    encoded = _tree.encode(tree)
    encoded = dataclasses.replace(encoded, values=_multihost.gather(encoded.values))
    metadata, metrics = (
        _format.json_value(metadata or {}, "metadata"),
        _format.json_metrics(metrics),
    )
    directory = Path(directory)
    _multihost.write_once(
        lambda: _layout.write_step(
            directory,
            step,
            encoded,
            metadata=metadata,
            metrics=metrics,
            funcnet_version=__version__,
            overwrite=overwrite,
        ),
        f"funcnet.checkpoint.save:{step}",
    )
    return directory / _layout.step_dir_name(step)


def save_params(path: str | os.PathLike[str], params: Any) -> Path:
    """Exports a pytree (typically the parameters alone) as one ``.npz`` file, atomically.

    The file holds one array per leaf under PyTorch-style dotted names (``fc1.weight``)
    and a JSON header, ``__funcnet__.json``, with the tree's structure, dtypes and a
    SHA-256 per array; ``numpy.load(path)`` reads it without funcnet. An existing file is
    replaced atomically. Read it back with ``load_params``. With several processes, every
    process calls it and process 0 writes the file, as for ``save``.

    Args:
        path: the file to write, conventionally ending in ``.npz`` (no suffix is added).
        params: a pytree, with the same leaves that ``save`` accepts.

    Returns:
        ``path`` as a Path.

    Raises:
        CheckpointError: writing failed; an existing file is left as it was.
        TypeError: a leaf or dict key cannot be saved.
    """
    path = Path(path)
    encoded = _tree.encode(params)
    encoded = dataclasses.replace(encoded, values=_multihost.gather(encoded.values))
    version = __version__

    def header(leaves: tuple[_format.Leaf, ...]) -> dict[str, bytes]:
        fields = _format.manifest_fields(
            _format.PARAMS_FORMAT, encoded.tree, leaves, version, _layout.now()
        )
        return {_format.PARAMS_HEADER: _format.dump_manifest(fields)}

    def write() -> None:
        try:
            _layout.write_file(
                path, lambda f: _npz.write_arrays(f, encoded.leaves, encoded.values, header)
            )
        except OSError as exc:
            if isinstance(exc, CheckpointError):
                raise
            raise CheckpointError(f"could not save params to {path} ({exc})") from exc

    _multihost.write_once(write, f"funcnet.checkpoint.save_params:{path}")
    return path
