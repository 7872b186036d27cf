"""Fuzzing: random damage to a checkpoint and to a params file must give a clear
CheckpointError every time: never another exception, a hang, or wrong arrays.

Seeded, so a failure reproduces; each failure message names the trial and the mutation.
"""

from __future__ import annotations

import contextlib
import io
import json
import math
import random
import signal
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from funcnet import checkpoint
from funcnet.checkpoint import _format

CHECKPOINT_TRIALS = 320
PARAMS_TRIALS = 120
STEP = 7

Files = dict[str, bytes | None]  # file name -> content; None: deleted


def _tree() -> dict[str, Any]:
    # No uint8 or 1-byte ml_dtypes leaves: their bytes are stored as uint8, so an edit of the
    # dtype between them in a re-sealed manifest would be a consistent, undetectable forgery.
    params = {
        "fc1": {"weight": jnp.arange(12.0).reshape(3, 4), "bias": jnp.ones(4, jnp.bfloat16)},
        "fc2": {"weight": jnp.full((4, 2), -1.5, jnp.float16)},
    }
    return {
        "params": params,
        "opt_state": optax.adam(1e-3).init(params),
        "key": jax.random.split(jax.random.key(3), 2),
        "raw_key": jax.random.PRNGKey(4),
        "mask": jnp.array([True, False, True]),
        "count": np.int64(5),
        "epoch": 2,
        "lr": 0.5,
        "none": None,
    }


@contextlib.contextmanager
def _watchdog(seconds: int) -> Iterator[None]:
    """Fails the test instead of hanging (SIGALRM; a no-op where there is none)."""
    if not hasattr(signal, "SIGALRM"):
        yield
        return

    def expire(signum: int, frame: Any) -> None:
        raise TimeoutError(f"the fuzz loop took more than {seconds} s (a hang?)")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def _leaf_bytes(leaf: Any) -> tuple[str, tuple[int, ...], bytes] | Any:
    """A comparable form of a leaf: dtype, shape and bytes for arrays and keys."""
    if isinstance(leaf, jax.Array) and jax.dtypes.issubdtype(leaf.dtype, jax.dtypes.prng_key):
        return (str(leaf.dtype), leaf.shape, np.asarray(jax.random.key_data(leaf)).tobytes())
    if hasattr(leaf, "dtype"):
        array = np.asarray(leaf)
        return (array.dtype.name, array.shape, array.tobytes())
    return (type(leaf).__name__, repr(leaf))


def _fingerprint(tree: Any) -> tuple[Any, list[Any]]:
    leaves, treedef = jax.tree_util.tree_flatten(tree)
    return str(treedef), [_leaf_bytes(leaf) for leaf in leaves]


def _summary(ckpt: checkpoint.Checkpoint) -> tuple[Any, ...]:
    """Everything a restore returns, in comparable form."""
    return _fingerprint(ckpt.tree), ckpt.step, json.dumps([ckpt.metadata, ckpt.metrics])


# ---------------------------------------------------------------------------- mutations


def _flip(rng: random.Random, data: bytes) -> tuple[str, bytes]:
    out = bytearray(data)
    positions = [rng.randrange(len(out)) for _ in range(rng.randint(1, 4))]
    for i in positions:
        out[i] ^= rng.randrange(1, 256)
    return f"flip bytes at {positions}", bytes(out)


def _truncate(rng: random.Random, data: bytes) -> tuple[str, bytes]:
    n = rng.randrange(len(data))
    return f"truncate to {n} bytes", data[:n]


def _splice(rng: random.Random, data: bytes) -> tuple[str, bytes]:
    i, n = rng.randrange(len(data)), rng.randint(1, 64)
    if rng.random() < 0.5:
        return f"insert {n} bytes at {i}", data[:i] + rng.randbytes(n) + data[i:]
    return f"delete {n} bytes at {i}", data[:i] + data[i + n :]


def _json_positions(obj: Any, path: tuple = ()) -> list[tuple]:
    """Paths to every value in a JSON document (containers included)."""
    out = [path]
    if isinstance(obj, dict):
        for key, value in obj.items():
            out += _json_positions(value, (*path, key))
    elif isinstance(obj, list):
        for i, value in enumerate(obj):
            out += _json_positions(value, (*path, i))
    return out


_REPLACEMENTS = [
    None,
    True,
    0,
    -1,
    1,
    2,
    7,
    2**70,
    0.5,
    float("nan"),
    "",
    "x",
    "float32",
    "bfloat16",
    "int64",
    "rbg",
    "0" * 64,
    [],
    [1],
    [0, 3],
    [2, 2],
    {},
    {"type": "leaf"},
]
# Fields whose value the format can check against something else (the npz, the tree, the
# directory): edits to them must be caught even when the manifest's checksum is recomputed.
_CONFIRMED = {"dtype", "shape", "sha256", "key", "path", "impl", "key_shape", "kind", "step"}
_CONFIRMED |= {"arrays_size", "format", "format_version", "keys", "fields", "type", "children"}
_CONFIRMED_LISTS = {"path", "shape", "key_shape", "keys", "fields", "children"}


def _confirmed(position: tuple) -> bool:
    """Whether a position in the manifest holds one of the _CONFIRMED fields or an item of one."""
    if position and position[-1] in _CONFIRMED:
        return True
    return len(position) >= 2 and position[-2] in _CONFIRMED_LISTS


def _edit_json(rng: random.Random, data: bytes, reseal: bool) -> tuple[str, bytes]:
    obj = json.loads(data)
    checksum = obj.pop("checksum")
    positions = _json_positions(obj)[1:]
    if reseal:
        # Scalar values, names and the kinds of scalars have no redundancy ("int" -> "float"
        # would be a consistent forgery): only fields that something else confirms.
        positions = [p for p in positions if _confirmed(p) and not _scalar_kind(obj, p)]
    elif rng.random() < 0.3:
        # Values that nothing but the manifest's own checksum protects.
        values = [p for p in positions if p[-1] == "value" or p[0] in ("metadata", "metrics")]
        positions = values or positions
    where = rng.choice(positions)
    new = rng.choice(_REPLACEMENTS)
    parent = obj
    for key in where[:-1]:
        parent = parent[key]
    old = parent[where[-1]]
    if reseal and where[0] == "leaves" and rng.random() < 0.5:
        new = _same_size(rng, where[-1], old, new)
    if rng.random() < 0.2 and isinstance(parent, dict):
        del parent[where[-1]]
        what = f"delete {list(where)}"
    else:
        parent[where[-1]] = new
        what = f"set {list(where)} from {old!r} to {new!r}"
    if _same(old, new) and "delete" not in what:
        parent[where[-1]] = [old]
        what = f"wrap {list(where)} in a list"
    if reseal:
        return f"{what}, re-sealed", _format.dump_manifest(obj)
    obj["checksum"] = checksum
    return what, json.dumps(obj).encode()


def _same_size(rng: random.Random, field: Any, old: Any, default: Any) -> Any:
    """A dtype or shape that keeps the array's byte size: the forgeries that only the check
    of each ``.npy`` header against the manifest can catch."""
    if field == "dtype" and old in _format.NATIVE_DTYPES | _format.EXTENDED_DTYPES:
        size, storage = _format.storage_dtype(old).itemsize, _format.storage_dtype(old)
        names = [
            name
            for name in sorted(_format.NATIVE_DTYPES) + sorted(_format.EXTENDED_DTYPES)
            if _format.storage_dtype(name).itemsize == size
            and _format.storage_dtype(name) != storage  # same storage: undetectable
        ]
        return rng.choice(names) if names else default
    if field == "shape" and isinstance(old, list) and len(old) > 0:
        return rng.choice([old[::-1], [math.prod(old)], [*old, 1], [1, *old]])
    return default


def _same(a: Any, b: Any) -> bool:
    return type(a) is type(b) and json.dumps(a) == json.dumps(b)


def _scalar_kind(obj: dict[str, Any], position: tuple) -> bool:
    if len(position) >= 3 and position[0] == "leaves" and position[2] == "kind":
        return obj["leaves"][position[1]]["kind"] in _format.SCALAR_KINDS
    return False


def _rezip(rng: random.Random, data: bytes) -> tuple[str, bytes]:
    """A valid zip with one member dropped, duplicated, added, or its bytes changed (valid
    CRC): only the manifest's list and SHA-256 can tell."""
    source = zipfile.ZipFile(io.BytesIO(data))
    members = {name: source.read(name) for name in source.namelist()}
    name = rng.choice(sorted(members))
    action = rng.choice(["drop", "add", "change", "swap"])
    if action == "drop":
        del members[name]
    elif action == "add":
        members["extra.npy"] = members[name]
    elif action == "change":
        body = bytearray(members[name])
        body[-1] ^= 1
        members[name] = bytes(body)
    else:
        other = rng.choice(sorted(members))
        members[name], members[other] = members[other], members[name]
        name = f"{name}<->{other}"
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as target:
        for member, body in members.items():
            target.writestr(member, body)
    return f"rezip: {action} {name}", out.getvalue()


def _mutate_checkpoint(rng: random.Random, files: Files) -> tuple[str, Files, bool]:
    """A random mutation; the bool says whether the manifest must be re-sealed to match."""
    files = dict(files)
    name = rng.choice(["manifest.json", "arrays.npz"])
    kind = rng.choice(["flip", "flip", "truncate", "splice", "delete", "edit", "reseal", "rezip"])
    reseal = False
    if kind == "delete":
        files[name] = None
        return f"delete {name}", files, False
    if kind in ("edit", "reseal"):
        what, files["manifest.json"] = _edit_json(rng, files["manifest.json"], kind == "reseal")
        return f"manifest.json: {what}", files, False
    if kind == "rezip":
        what, files["arrays.npz"] = _rezip(rng, files["arrays.npz"])
        reseal = True  # so that the size check does not catch it first
        return f"arrays.npz: {what}", files, reseal
    mutate: Callable[[random.Random, bytes], tuple[str, bytes]] = {
        "flip": _flip,
        "truncate": _truncate,
        "splice": _splice,
    }[kind]
    what, files[name] = mutate(rng, files[name])
    return f"{name}: {what}", files, False


def _reseal_size(files: Files) -> None:
    obj = json.loads(files["manifest.json"])
    obj.pop("checksum")
    obj["arrays_size"] = len(files["arrays.npz"])
    files["manifest.json"] = _format.dump_manifest(obj)


def _write(directory: Path, files: Files) -> None:
    for name, data in files.items():
        path = directory / name
        path.unlink(missing_ok=True)
        if data is not None:
            path.write_bytes(data)


def _check(trial: int, what: str, run: Callable[[], Any], expected: Any, where: str) -> str:
    """Runs one restore; returns "error" or "intact", or fails the test with the trial."""
    label = f"trial {trial} ({what})"
    try:
        result = run()
    except checkpoint.CheckpointError as exc:
        message = str(exc)
        assert where in message, f"{label}: the message does not name the file: {message}"
        assert "unreadable content" not in message, f"{label}: unforeseen damage: {message}"
        return "error"
    except Exception as exc:
        pytest.fail(f"{label}: {type(exc).__name__} instead of a CheckpointError: {exc}")
    assert result == expected, f"{label}: restored silently wrong data"
    return "intact"


def test_random_damage_to_a_checkpoint_always_gives_a_checkpoint_error(tmp_path):
    tree = _tree()
    step_dir = checkpoint.save(
        tmp_path, tree, STEP, metadata={"epoch": 2, "loader": [3, 4]}, metrics={"loss": 0.25}
    )
    pristine = {name: (step_dir / name).read_bytes() for name in ("manifest.json", "arrays.npz")}
    into_target = lambda: _summary(checkpoint.restore_checkpoint(tmp_path, tree, STEP))
    target_less = lambda: _summary(checkpoint.restore_checkpoint(tmp_path, as_numpy=True))
    expected = {into_target: into_target(), target_less: target_less()}
    rng = random.Random(1)
    outcomes = {"error": 0, "intact": 0}
    with _watchdog(120):
        for trial in range(CHECKPOINT_TRIALS):
            what, files, reseal = _mutate_checkpoint(rng, pristine)
            if reseal:
                _reseal_size(files)
            _write(step_dir, files)
            run = into_target if trial % 2 else target_less
            outcomes[_check(trial, what, run, expected[run], str(step_dir))] += 1
    # Almost every mutation must be detected; the rare survivors (e.g. a flipped byte in a
    # zip timestamp) must have restored the original data, which _check verified.
    assert outcomes["error"] >= 0.9 * CHECKPOINT_TRIALS, outcomes


def _mutate_params(rng: random.Random, data: bytes) -> tuple[str, bytes]:
    kind = rng.choice(["flip", "flip", "truncate", "splice", "header", "rezip"])
    if kind == "header":
        source = zipfile.ZipFile(io.BytesIO(data))
        members = {name: source.read(name) for name in source.namelist()}
        what, members[_format.PARAMS_HEADER] = _edit_json(
            rng, members[_format.PARAMS_HEADER], reseal=rng.random() < 0.5
        )
        out = io.BytesIO()
        with zipfile.ZipFile(out, "w") as target:
            for member, body in members.items():
                target.writestr(member, body)
        return f"header: {what}", out.getvalue()
    mutate = {"flip": _flip, "truncate": _truncate, "splice": _splice, "rezip": _rezip}[kind]
    return mutate(rng, data)


def test_random_damage_to_a_params_file_always_gives_a_checkpoint_error(tmp_path):
    params = _tree()["params"]
    path = checkpoint.save_params(tmp_path / "model.npz", params)
    pristine = path.read_bytes()
    into_target = lambda: _fingerprint(checkpoint.load_params(path, target=params))
    target_less = lambda: _fingerprint(checkpoint.load_params(path, as_numpy=True))
    expected = {into_target: into_target(), target_less: target_less()}
    rng = random.Random(2)
    outcomes = {"error": 0, "intact": 0}
    with _watchdog(60):
        for trial in range(PARAMS_TRIALS):
            what, data = _mutate_params(rng, pristine)
            path.write_bytes(data)
            run = into_target if trial % 2 else target_less
            outcomes[_check(trial, what, run, expected[run], str(path))] += 1
    assert outcomes["error"] >= 0.9 * PARAMS_TRIALS, outcomes
