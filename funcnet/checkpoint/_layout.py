"""The checkpoint directory: step directories, atomic writes, listing and deletion.

NumPy only (no jax), like ``_format``: the crash tests drive :func:`write_step` and
:func:`delete_step` from small child processes and SIGKILL them at random moments.

A directory holds ``step_000000042/`` (``manifest.json`` + ``arrays.npz``) per step. Every
change is a rename of a whole directory, so a step directory is either absent or complete:

- a save writes ``.tmp-step_000000042-<random>/``, fsyncs each file and the directory,
  then renames it to ``step_000000042`` and fsyncs the parent;
- an overwrite first renames the old step to ``.old-step_000000042-<random>`` and removes
  it after the new one is in place; if the process dies in between, readers use the old
  copy (so a step never vanishes) and the next save renames it back;
- a deletion renames the step to ``.del-<random>`` before removing it.

Names starting with ``.`` are never read as checkpoints; :func:`remove_leftovers` clears
those left by killed processes. One process writes to a directory at a time.
"""

from __future__ import annotations

import datetime
import os
import re
import secrets
import shutil
import stat
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from funcnet.checkpoint import _format, _npz
from funcnet.checkpoint._errors import (
    CheckpointError,
    CheckpointNotFoundError,
    CorruptCheckpointError,
)
from funcnet.checkpoint._files import read_regular
from funcnet.checkpoint._format import ARRAYS_FILE, MANIFEST_FILE, Encoded, Manifest

_STEP = re.compile(r"step_(\d{9,})")
_OLD = re.compile(r"\.old-step_(\d{9,})-[0-9a-f]+")


def step_dir_name(step: int) -> str:
    """``step_000000042``: zero-padded so that names sort like steps."""
    return f"step_{step:09d}"


def _parse_step(name: str, pattern: re.Pattern[str] = _STEP) -> int | None:
    match = pattern.fullmatch(name)
    if match is None:
        return None
    step = int(match.group(1))
    return step if match.group(1) == f"{step:09d}" else None


def fsync_dir(path: Path) -> None:
    """Makes renames and new entries in ``path`` durable (a no-op where unsupported)."""
    if os.name != "posix":
        return
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_file(path: Path, data: bytes) -> None:
    with open(path, "xb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


def _discard(path: Path) -> None:
    """Deletes a directory atomically: rename out of sight first, then remove."""
    trash = path.parent / f".del-{secrets.token_hex(6)}"
    os.rename(path, trash)
    fsync_dir(path.parent)
    shutil.rmtree(trash, ignore_errors=True)


# ---------------------------------------------------------------------------- reading


def read_manifest(path: Path, step: int) -> Manifest:
    """The validated manifest of the step directory ``path``, whose files must be present.

    Raises:
        CorruptCheckpointError: the manifest is missing, damaged, or disagrees with the
            directory's name or the size of ``arrays.npz``.
    """
    try:
        data = read_regular(path / MANIFEST_FILE, MANIFEST_FILE, _format.MAX_MANIFEST_BYTES)
    except FileNotFoundError:
        raise CorruptCheckpointError(f"{MANIFEST_FILE} is missing") from None
    except CheckpointError:
        raise
    except OSError as exc:
        raise CorruptCheckpointError(f"cannot read {MANIFEST_FILE} ({exc})") from exc
    manifest = _format.parse_manifest(data, _format.CHECKPOINT_FORMAT, MANIFEST_FILE)
    if manifest.step != step:
        raise CorruptCheckpointError(
            f"{MANIFEST_FILE} is for step {manifest.step}, not the directory's step {step}"
        )
    try:
        info = os.stat(path / ARRAYS_FILE)
    except FileNotFoundError:
        raise CorruptCheckpointError(f"{ARRAYS_FILE} is missing") from None
    except OSError as exc:
        raise CorruptCheckpointError(f"cannot read {ARRAYS_FILE} ({exc})") from exc
    if not stat.S_ISREG(info.st_mode):
        raise CorruptCheckpointError(f"{ARRAYS_FILE} is not a regular file")
    size = info.st_size
    if size != manifest.arrays_size:
        raise CorruptCheckpointError(
            f"{ARRAYS_FILE} is truncated or was replaced ({size} bytes; the manifest says "
            f"{manifest.arrays_size})"
        )
    return manifest


def _complete(path: Path, step: int) -> Manifest | None:
    try:
        return read_manifest(path, step)
    except CheckpointError:
        return None


def _scan(directory: Path) -> dict[int, Path]:
    """Step -> the directory to read it from, complete or not.

    A step whose directory is missing is read from a complete ``.old-`` copy, which exists
    only if an overwrite was interrupted between its two renames.
    """
    steps: dict[int, Path] = {}
    backups: dict[int, list[Path]] = {}
    try:
        entries = list(os.scandir(directory))
    except (FileNotFoundError, NotADirectoryError):
        return {}
    for entry in entries:
        if not entry.is_dir():
            continue
        step = _parse_step(entry.name)
        if step is not None:
            steps[step] = Path(entry.path)
        elif (step := _parse_step(entry.name, _OLD)) is not None:
            backups.setdefault(step, []).append(Path(entry.path))
    for step, paths in backups.items():
        if step not in steps:
            for path in sorted(paths):
                if _complete(path, step) is not None:
                    steps[step] = path
                    break
    return steps


def complete_steps(directory: Path) -> dict[int, tuple[Path, Manifest]]:
    """The complete checkpoints in ``directory`` (manifest valid, files present), by step."""
    out = {}
    for step, path in sorted(_scan(directory).items()):
        manifest = _complete(path, step)
        if manifest is not None:
            out[step] = (path, manifest)
    return out


def advice(directory: Path, bad_step: int) -> str:
    """What to do about a damaged step: which other steps can be restored."""
    path = directory / step_dir_name(bad_step)
    others = [step for step in complete_steps(directory) if step != bad_step]
    if not others:
        return f"no other complete checkpoint is in {directory}: delete {path} and start again"
    shown = ", ".join(map(str, others[-5:]))
    return f"restore another step with step={others[-1]} (complete: {shown}) or delete {path}"


def find(directory: Path, step: int | None) -> tuple[int, Path, Manifest]:
    """Resolves ``step`` (None: the newest) to its directory and validated manifest.

    Raises:
        CheckpointNotFoundError: no such directory, no checkpoint, or no such step.
        CorruptCheckpointError: the step (with ``step=None``: the newest) is damaged; the
            message says which other steps can be restored.
    """
    if not directory.exists():
        raise CheckpointNotFoundError(
            f"checkpoint directory {directory} does not exist; check the path, or save a "
            "checkpoint there first"
        )
    if not directory.is_dir():
        raise CheckpointNotFoundError(
            f"{directory} is a file, not a checkpoint directory (a file written by "
            "save_params is read with load_params)"
        )
    candidates = _scan(directory)
    if step is None:
        if not candidates:
            hint = ""
            if (directory / MANIFEST_FILE).exists():
                hint = f"; it looks like a single step: pass its parent, {directory.parent}"
            raise CheckpointNotFoundError(f"no checkpoint in {directory}{hint}")
        step = max(candidates)
    elif step not in candidates:
        steps = sorted(complete_steps(directory))
        available = f"available steps: {steps}" if steps else "it holds no complete checkpoint"
        raise CheckpointNotFoundError(f"no checkpoint for step {step} in {directory}; {available}")
    path = candidates[step]
    try:
        return step, path, read_manifest(path, step)
    except CorruptCheckpointError as exc:
        raise CorruptCheckpointError(
            f"checkpoint {path}: {exc}; {advice(directory, step)}"
        ) from exc
    except CheckpointError as exc:
        raise CheckpointError(f"checkpoint {path}: {exc}") from exc


# ---------------------------------------------------------------------------- writing


def _exists(directory: Path, step: int) -> bool:
    return step in _scan(directory)


def write_step(
    directory: Path,
    step: int,
    encoded: Encoded,
    *,
    metadata: Mapping[str, Any],
    metrics: Mapping[str, float],
    funcnet_version: str,
    overwrite: bool,
) -> Path:
    """Writes one step atomically; see the module docstring for the protocol.

    Args:
        directory: the checkpoint directory (created if missing).
        step: the step number.
        encoded: the tree's structure, leaf records and values.
        metadata: JSON-ready metadata.
        metrics: metric name -> float.
        funcnet_version: recorded in the manifest.
        overwrite: replace an existing step instead of raising.

    Returns:
        The step directory.
    """
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise CheckpointError(
            f"cannot create the checkpoint directory {directory} ({exc})"
        ) from exc
    remove_leftovers(directory)
    final = directory / step_dir_name(step)
    if not overwrite and _exists(directory, step):
        raise CheckpointError(
            f"checkpoint {final} already exists; pass overwrite=True to replace it "
            "(atomically), or save under another step"
        )
    tmp = directory / f".tmp-{final.name}-{secrets.token_hex(4)}"
    try:
        tmp.mkdir()
        _write_contents(tmp, step, encoded, metadata, metrics, funcnet_version)
        fsync_dir(tmp)
        if final.exists():
            for old in _backups(directory, step):
                _discard(old)
            os.rename(final, directory / f".old-{final.name}-{secrets.token_hex(4)}")
            fsync_dir(directory)
        os.rename(tmp, final)
        fsync_dir(directory)
    except BaseException as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        if isinstance(exc, OSError) and not isinstance(exc, CheckpointError):
            raise CheckpointError(f"could not save checkpoint {final} ({exc})") from exc
        raise
    for old in _backups(directory, step):
        _discard(old)
    return final


def _write_contents(
    tmp: Path,
    step: int,
    encoded: Encoded,
    metadata: Mapping[str, Any],
    metrics: Mapping[str, float],
    funcnet_version: str,
) -> None:
    with open(tmp / ARRAYS_FILE, "xb") as f:
        leaves = _npz.write_arrays(f, encoded.leaves, encoded.values)
        f.flush()
        os.fsync(f.fileno())
        size = os.fstat(f.fileno()).st_size
    fields = _format.manifest_fields(
        _format.CHECKPOINT_FORMAT,
        encoded.tree,
        leaves,
        funcnet_version,
        now(),
        step=step,
        metrics=dict(metrics),
        metadata=dict(metadata),
        arrays_size=size,
    )
    _write_file(tmp / MANIFEST_FILE, _format.dump_manifest(fields))


def now() -> str:
    """The current UTC time in ISO 8601, for the manifest's ``created`` field."""
    return datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")


def _backups(directory: Path, step: int) -> list[Path]:
    prefix = f".old-{step_dir_name(step)}-"
    return [p for p in directory.iterdir() if p.name.startswith(prefix)]


def delete_step(directory: Path, step: int) -> None:
    """Deletes a step atomically (its ``.old-`` copies first, so it cannot reappear)."""
    for old in _backups(directory, step):
        _discard(old)
    final = directory / step_dir_name(step)
    if final.exists():
        _discard(final)


def remove_leftovers(directory: Path) -> None:
    """Clears what killed processes left: temporary and half-deleted directories.

    An ``.old-`` copy of a step whose directory is missing (an overwrite killed between its
    renames) is renamed back into place; other ``.old-`` copies are deleted.
    """
    for entry in list(os.scandir(directory)):
        path = Path(entry.path)
        if entry.name.startswith((".tmp-step_", ".del-")):
            shutil.rmtree(path, ignore_errors=True)
            continue
        step = _parse_step(entry.name, _OLD)
        if step is None:
            continue
        final = directory / step_dir_name(step)
        if not final.exists() and _complete(path, step) is not None:
            os.rename(path, final)
            fsync_dir(directory)
        else:
            _discard(path)


def write_file(path: Path, write: Any) -> Path:
    """Writes a single file atomically: ``write(f)`` into a hidden temporary, fsync, rename.

    Temporaries that a killed writer left beside ``path`` are removed first.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    prefix = f".{path.name}.tmp-"
    for stale in path.parent.iterdir():
        if stale.name.startswith(prefix):
            stale.unlink(missing_ok=True)
    tmp = path.parent / f"{prefix}{secrets.token_hex(4)}"
    try:
        with open(tmp, "xb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        fsync_dir(path.parent)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path
