"""restore, restore_checkpoint, restore_metadata, load_params, latest_step, all_steps."""

from __future__ import annotations

import dataclasses
import os
import warnings
from pathlib import Path
from typing import Any

from funcnet.checkpoint import _compare, _format, _layout, _npz, _tree
from funcnet.checkpoint._errors import (
    CheckpointError,
    CheckpointMismatchError,
    CheckpointNotFoundError,
    CorruptCheckpointError,
    PartialRestoreWarning,
)
from funcnet.checkpoint._save import check_step

__all__ = [
    "Checkpoint",
    "all_steps",
    "latest_step",
    "load_params",
    "restore",
    "restore_checkpoint",
    "restore_metadata",
]


@dataclasses.dataclass(frozen=True)
class Checkpoint:
    """A restored checkpoint: the tree and what was saved with it.

    Attributes:
        tree: the restored pytree (see ``restore``).
        step: the checkpoint's step.
        metadata: the ``metadata`` passed to ``save`` (JSON types: tuples became lists).
        metrics: the ``metrics`` passed to ``save``, as floats.
        path: the checkpoint's directory.
        skipped: with ``strict=False``, one line per difference that was not restored (the
            target's value was kept, or the checkpoint's leaf ignored); empty otherwise.
    """

    tree: Any
    step: int
    metadata: dict[str, Any]
    metrics: dict[str, float]
    path: Path
    skipped: tuple[str, ...] = ()


def _read_tree(
    reader: _npz.ArrayReader,
    manifest: _format.Manifest,
    target: Any,
    strict: bool,
    as_numpy: bool,
    where: str,
) -> tuple[Any, tuple[str, ...]]:
    """The tree (target-less, or into ``target``) and the differences skipped."""
    leaves = manifest.leaves
    load = lambda leaf: reader.read(leaf) if leaf.stored else leaf.value
    if target is None:
        values = [_tree.to_output(leaf, load(leaf), None, as_numpy) for leaf in leaves]
        return _tree.build(manifest.tree, values), ()
    paths, target_leaves, treedef = _tree.flatten_target(target)
    comparison = _compare.compare(leaves, paths, target_leaves)
    if comparison.differences and strict:
        message = _compare.report(where, comparison.differences)
        raise CheckpointMismatchError(message, comparison.differences)
    out = []
    for value, index in zip(target_leaves, comparison.matches):
        if index is None:
            out.append(value)
        else:
            out.append(_tree.to_output(leaves[index], load(leaves[index]), value, as_numpy))
    return treedef.unflatten(out), comparison.differences


def _warn_skipped(where: str, skipped: tuple[str, ...], stacklevel: int) -> None:
    if skipped:
        lines = "\n  ".join(skipped)
        warnings.warn(
            PartialRestoreWarning(
                f"{where} was restored with strict=False; {len(skipped)} difference(s) were "
                f"skipped (the target's values kept, leaves it lacks ignored):\n  {lines}"
            ),
            stacklevel=stacklevel + 1,
        )


def restore_checkpoint(
    directory: str | os.PathLike[str],
    target: Any = None,
    step: int | None = None,
    *,
    strict: bool = True,
    as_numpy: bool = False,
) -> Checkpoint:
    """Restores a checkpoint with its step, metadata and metrics; see ``restore``.

    Unlike ``restore``, ``strict=False`` does not warn: the differences that were skipped
    are in the result's ``skipped``.

    Args:
        directory: the directory given to ``save``.
        target: a pytree to restore into, or None to rebuild the saved structure.
        step: the step to restore; None for the newest.
        strict: raise on any difference from ``target``; if False restore what matches.
        as_numpy: return NumPy arrays instead of jax arrays.

    Returns:
        A :class:`Checkpoint` (``tree``, ``step``, ``metadata``, ``metrics``, ``path``,
        ``skipped``).

    Raises:
        CheckpointNotFoundError: the directory, any checkpoint, or the step is missing.
        CorruptCheckpointError: the checkpoint is truncated, corrupt or was edited.
        CheckpointMismatchError: the checkpoint does not match ``target`` (``strict=True``).
        CheckpointError: the checkpoint was written by a newer funcnet.
    """
    directory = Path(directory)
    step = None if step is None else check_step(step)
    step, path, manifest = _layout.find(directory, step)
    where = f"checkpoint {path}"
    try:
        with _npz.ArrayReader(path / _format.ARRAYS_FILE, _format.ARRAYS_FILE) as reader:
            reader.check_members(manifest.leaves)
            tree, skipped = _read_tree(reader, manifest, target, strict, as_numpy, where)
    except CorruptCheckpointError as exc:
        raise CorruptCheckpointError(f"{where}: {exc}; {_layout.advice(directory, step)}") from exc
    return Checkpoint(tree, step, manifest.metadata, manifest.metrics, path, skipped)


def restore(
    directory: str | os.PathLike[str],
    target: Any = None,
    step: int | None = None,
    *,
    strict: bool = True,
    as_numpy: bool = False,
) -> Any:
    """Restores the pytree saved by ``save``, bit-exactly.

    Without a target, the structure is rebuilt from the manifest alone: dicts, lists,
    tuples and None come back as they were; a NamedTuple (an optax state) comes back as a
    look-alike ``collections.namedtuple`` with the same name and fields (attribute access
    works, but it is not the original class); other pytree nodes (dataclasses) come back
    as dicts keyed by field name. Pass ``target`` to get the original classes.

    With a target (a pytree of arrays or ``jax.ShapeDtypeStruct``, e.g. a freshly
    initialised TrainState or ``jax.eval_shape`` of one), the result has exactly the
    target's structure. Leaves are matched by path, and every missing or extra leaf and
    every shape, dtype or kind difference is reported at once, e.g.
    ``params.fc1.weight: expected shape (784, 128), got (100, 128)``.

    Leaves come back as jax arrays, placed with the target leaf's sharding where there is
    one (else on the default device); as NumPy arrays with ``as_numpy=True``, and always
    for 64-bit arrays that jax cannot hold without ``jax_enable_x64`` (never silently
    downcast). Typed PRNG keys always come back as jax key arrays, Python scalars as
    Python scalars. Restored arrays own their memory (nothing aliases the files).

    Args:
        directory: the directory given to ``save``.
        target: a pytree with the structure, shapes and dtypes to restore into; None
            rebuilds the structure from the checkpoint.
        step: the step to restore; None restores the newest. If the newest step is
            damaged, that is an error naming the steps that can be restored instead
            (never a silent fallback).
        strict: with a target, raise on any difference. If False, restore the leaves that
            match, keep the target's values for the rest, ignore checkpoint leaves the
            target lacks, and list what was skipped in a ``PartialRestoreWarning``
            (``restore_checkpoint`` returns the list instead).
        as_numpy: return NumPy arrays instead of jax arrays.

    Returns:
        The restored pytree.

    Raises:
        CheckpointNotFoundError: the directory, any checkpoint, or the step is missing.
        CorruptCheckpointError: the checkpoint is truncated, corrupt or was edited; the
            message names the file and the leaf and says which steps can be restored.
        CheckpointMismatchError: the checkpoint does not match ``target`` (``strict=True``);
            ``.differences`` lists every difference.
        CheckpointError: the checkpoint was written by a newer funcnet.

    Examples:
        >>> import tempfile, jax, jax.numpy as jnp
        >>> from funcnet import checkpoint
        >>> tmp = tempfile.TemporaryDirectory()
        >>> state = {"w": jnp.zeros((784, 128)), "key": jax.random.key(0)}
        >>> _ = checkpoint.save(tmp.name, state, step=1)
        >>> checkpoint.restore(tmp.name, target=state)["w"].shape
        (784, 128)
        >>> try:
        ...     checkpoint.restore(tmp.name, target={"w": jnp.zeros((100, 128))})
        ... except checkpoint.CheckpointMismatchError as error:
        ...     for line in error.differences:
        ...         print(line)
        w: expected shape (100, 128), got (784, 128)
        key: not in the target (checkpoint: key<fry> PRNG key array of shape ())
        >>> tmp.cleanup()
    """
    ckpt = restore_checkpoint(directory, target, step, strict=strict, as_numpy=as_numpy)
    _warn_skipped(f"checkpoint {ckpt.path}", ckpt.skipped, stacklevel=2)
    return ckpt.tree


def restore_metadata(directory: str | os.PathLike[str], step: int | None = None) -> dict[str, Any]:
    """The ``metadata`` saved with a checkpoint, reading only its manifest.

    Args:
        directory: the directory given to ``save``.
        step: the step; None for the newest.

    Returns:
        The metadata dict (JSON types: tuples came back as lists).

    Raises:
        CheckpointNotFoundError: no such directory, checkpoint or step.
        CorruptCheckpointError: the manifest is damaged.
    """
    step = None if step is None else check_step(step)
    return _layout.find(Path(directory), step)[2].metadata


def all_steps(directory: str | os.PathLike[str]) -> list[int]:
    """The steps of the complete checkpoints in ``directory``, ascending.

    Complete means its manifest parses, its checksum holds and its files are present with
    the recorded sizes (array checksums are verified by ``restore``). Temporary and
    damaged directories are left out; a missing directory gives ``[]``.
    """
    return list(_layout.complete_steps(Path(directory)))


def latest_step(directory: str | os.PathLike[str]) -> int | None:
    """The newest complete checkpoint's step, or None if there is none (see ``all_steps``)."""
    steps = all_steps(directory)
    return steps[-1] if steps else None


def load_params(
    path: str | os.PathLike[str],
    target: Any = None,
    *,
    strict: bool = True,
    as_numpy: bool = False,
) -> Any:
    """Reads a file written by ``save_params``, verifying every array's checksum.

    ``target``, ``strict`` and ``as_numpy`` work as in ``restore``, including the
    ``PartialRestoreWarning`` with ``strict=False``.

    Args:
        path: the ``.npz`` file.
        target: a pytree to restore into, or None to rebuild the saved structure.
        strict: raise on any difference from ``target``; if False restore what matches.
        as_numpy: return NumPy arrays instead of jax arrays.

    Returns:
        The parameters.

    Raises:
        CheckpointNotFoundError: the file does not exist.
        CorruptCheckpointError: the file is truncated, corrupt, edited or not a params file.
        CheckpointMismatchError: the file does not match ``target`` (``strict=True``).
    """
    path = Path(path)
    where = f"params file {path}"
    if not path.exists():
        raise CheckpointNotFoundError(f"{where} does not exist")
    if path.is_dir():
        raise CheckpointNotFoundError(
            f"{path} is a directory; checkpoints written by save() are read with restore()"
        )
    try:
        with _npz.ArrayReader(path, path.name) as reader:
            header = reader.read_bytes(_format.PARAMS_HEADER, limit=_format.MAX_MANIFEST_BYTES)
            manifest = _format.parse_manifest(header, _format.PARAMS_FORMAT, "its header")
            reader.check_members(manifest.leaves, extra=[_format.PARAMS_HEADER])
            tree, skipped = _read_tree(reader, manifest, target, strict, as_numpy, where)
    except CorruptCheckpointError as exc:
        raise CorruptCheckpointError(f"{where}: {exc}; export it again with save_params") from exc
    except CheckpointError as exc:
        if type(exc) is not CheckpointError:  # a mismatch report names the file already
            raise
        raise CheckpointError(f"{where}: {exc}") from exc
    _warn_skipped(where, skipped, stacklevel=2)
    return tree
