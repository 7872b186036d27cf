"""The on-disk format: dtypes, leaf records, the tree description and the manifest.

NumPy only: this module must not import jax (the crash tests run it in small child
processes, and a reader of the format should need nothing but NumPy and ``ml_dtypes``).
docs/checkpoints.md describes the format for readers outside funcnet.

Everything read from disk is untrusted: every field is type- and range-checked and the
manifest carries a checksum of its own contents (``_npz`` checks each array's SHA-256).
All problems raise :class:`CorruptCheckpointError` with a message naming the field.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import keyword
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import ml_dtypes
import numpy as np

from funcnet.checkpoint._errors import CheckpointError, CorruptCheckpointError
from funcnet.checkpoint._files import shorten

CHECKPOINT_FORMAT = "funcnet.checkpoint"
PARAMS_FORMAT = "funcnet.params"
FORMAT_VERSION = 1
MANIFEST_FILE = "manifest.json"
ARRAYS_FILE = "arrays.npz"
PARAMS_HEADER = "__funcnet__.json"
MAX_MANIFEST_BYTES = 64 << 20
"""The largest manifest (or params header) written or read: 64 MiB.

A manifest holds one line per leaf (its path, array name, dtype, shape and a 64-digit
SHA-256: a few hundred bytes) and small JSON metadata; 64 MiB is over 100,000 leaves,
hundreds of times what real models have, and still parses in about a second. ``save``
refuses a larger manifest, so every checkpoint it writes can be read back.
"""

ARRAY_KINDS = ("array", "prng_key")
SCALAR_KINDS: dict[str, type] = {"bool": bool, "int": int, "float": float, "str": str}

NATIVE_DTYPES = {
    name: np.dtype(name)
    for name in (
        "bool",
        "int8",
        "int16",
        "int32",
        "int64",
        "uint8",
        "uint16",
        "uint32",
        "uint64",
        "float16",
        "float32",
        "float64",
        "complex64",
        "complex128",
    )
}
# bfloat16, float8_*, int4, ...: NumPy's .npy cannot name them, so their bytes are stored as
# unsigned integers of the same width and the true dtype is recorded in the manifest.
EXTENDED_DTYPES = {
    np.dtype(obj).name: np.dtype(obj)
    for obj in vars(ml_dtypes).values()
    if isinstance(obj, type) and issubclass(obj, np.generic)
}
_MEMBER_KEY = re.compile(r"[A-Za-z0-9_\-.~]+")
_UNSAFE_CHARS = re.compile(r"[^A-Za-z0-9_\-]")
_SHA256 = re.compile(r"[0-9a-f]{64}")
_NONFINITE = {"nan": math.nan, "inf": math.inf, "-inf": -math.inf}

PathEntry = str | int


def _bad(problem: str) -> CorruptCheckpointError:
    return CorruptCheckpointError(problem)


def path_name(path: Sequence[Any]) -> str:
    """The dotted name of a leaf path, as in PyTorch's state_dict: ``params.fc1.weight``."""
    return ".".join(str(entry) for entry in path) if path else "<root>"


# ---------------------------------------------------------------------------- dtypes


def dtype_name(dtype: Any, where: str) -> str:
    """The manifest name of a storable dtype; TypeError naming ``where`` otherwise."""
    dtype = np.dtype(dtype)
    name = dtype.name
    if name in EXTENDED_DTYPES and dtype == EXTENDED_DTYPES[name]:
        return name
    if name in NATIVE_DTYPES and dtype.newbyteorder("=") == NATIVE_DTYPES[name]:
        return name
    raise TypeError(
        f"cannot save {where}: dtype {dtype} is not supported (supported: bool, (u)int8-64, "
        "float16-64, complex64/128 and ml_dtypes' types such as bfloat16)"
    )


def storage_dtype(name: str) -> np.dtype:
    """The little-endian dtype that the ``.npy`` member of a leaf of dtype ``name`` holds."""
    if name in NATIVE_DTYPES:
        return NATIVE_DTYPES[name].newbyteorder("<")
    return np.dtype(f"<u{EXTENDED_DTYPES[name].itemsize}")


# ---------------------------------------------------------------------------- leaves


@dataclasses.dataclass(frozen=True)
class Leaf:
    """One leaf of a saved tree, as the manifest records it.

    ``array`` and ``prng_key`` leaves live in the ``.npz`` under ``key + ".npy"``; for a
    ``prng_key`` leaf the stored array is ``jax.random.key_data`` (``dtype``/``shape`` describe
    it; its last ``len(key_shape)`` axes are the implementation's key shape). Python scalar
    leaves (``bool``, ``int``, ``float``, ``str``) are stored inline as ``value``.
    """

    path: tuple[PathEntry, ...]
    kind: str
    key: str = ""
    dtype: str = ""
    shape: tuple[int, ...] = ()
    sha256: str = ""
    impl: str = ""
    key_shape: tuple[int, ...] = ()
    value: Any = None

    @property
    def name(self) -> str:
        return path_name(self.path)

    @property
    def stored(self) -> bool:
        """Whether the leaf's data is an array in the ``.npz``."""
        return self.kind in ARRAY_KINDS

    @property
    def nbytes(self) -> int:
        return math.prod(self.shape) * storage_dtype(self.dtype).itemsize

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"path": list(self.path), "kind": self.kind}
        if self.stored:
            out.update(key=self.key, dtype=self.dtype, shape=list(self.shape), sha256=self.sha256)
            if self.kind == "prng_key":
                out.update(impl=self.impl, key_shape=list(self.key_shape))
        elif self.kind == "float" and not math.isfinite(self.value):
            out["value"] = repr(self.value)  # "nan", "inf", "-inf": JSON has no such numbers
        else:
            out["value"] = self.value
        return out

    @classmethod
    def from_json(cls, obj: Any, where: str) -> Leaf:
        """Validates one entry of the manifest's ``leaves`` list."""
        if not isinstance(obj, dict):
            raise _bad(f"{where} is not an object")
        kind = obj.get("kind")
        if not isinstance(kind, str):
            raise _bad(f"{where} has no valid kind")
        if kind in ARRAY_KINDS:
            fields = {"path", "kind", "key", "dtype", "shape", "sha256"}
            if kind == "prng_key":
                fields |= {"impl", "key_shape"}
        elif kind in SCALAR_KINDS:
            fields = {"path", "kind", "value"}
        else:
            raise _bad(f"{where} has an unknown kind {shorten(kind)}")
        _check_fields(obj, fields, where)
        path = _check_path(obj["path"], f"{where}.path")
        if kind in SCALAR_KINDS:
            return cls(path=path, kind=kind, value=_check_scalar(kind, obj["value"], where))
        key, dtype, sha = obj["key"], obj["dtype"], obj["sha256"]
        if not (isinstance(key, str) and _MEMBER_KEY.fullmatch(key)):
            raise _bad(f"{where}.key is not a valid array name: {shorten(key)}")
        if not isinstance(dtype, str) or (
            dtype not in NATIVE_DTYPES and dtype not in EXTENDED_DTYPES
        ):
            raise _bad(f"{where}.dtype is not a known dtype: {shorten(dtype)}")
        if not (isinstance(sha, str) and _SHA256.fullmatch(sha)):
            raise _bad(f"{where}.sha256 is not a SHA-256 hex digest")
        shape = _check_shape(obj["shape"], f"{where}.shape")
        leaf = cls(path=path, kind=kind, key=key, dtype=dtype, shape=shape, sha256=sha)
        if kind == "prng_key":
            impl, key_shape = obj["impl"], _check_shape(obj["key_shape"], f"{where}.key_shape")
            if not (isinstance(impl, str) and impl.isidentifier()):
                raise _bad(f"{where}.impl is not a PRNG implementation name: {shorten(impl)}")
            if (
                dtype != "uint32"
                or not key_shape
                or shape[len(shape) - len(key_shape) :] != key_shape
            ):
                raise _bad(f"{where}: key data must be uint32 with trailing axes {key_shape}")
            leaf = dataclasses.replace(leaf, impl=impl, key_shape=key_shape)
        return leaf


@dataclasses.dataclass(frozen=True)
class Encoded:
    """A pytree ready to write: the structure, the leaf records and the leaves' values.

    ``values[i]`` is the array to store for ``leaves[i]`` (a jax or NumPy array, converted
    when written) or None for Python scalars, which the record holds.
    """

    tree: dict[str, Any]
    leaves: tuple[Leaf, ...]
    values: tuple[Any, ...]


def scalar_leaf(path: tuple[PathEntry, ...], value: bool | int | float | str) -> Leaf:
    """The record of a Python scalar leaf (stored inline in the manifest).

    Subclasses (``IntEnum``, ``numpy.float64``) are stored as the plain Python type.
    """
    for kind, cls in SCALAR_KINDS.items():  # bool before int: bool subclasses int
        if isinstance(value, cls):
            return Leaf(path=path, kind=kind, value=cls(value))
    raise TypeError(f"not a Python scalar: {type(value).__name__}")


def member_keys(paths: Iterable[Sequence[Any]]) -> list[str]:
    """Unique, file-name-safe ``.npz`` member names derived from dotted leaf paths."""
    used: set[str] = set()
    keys = []
    for path in paths:
        base = ".".join(_UNSAFE_CHARS.sub("_", str(entry)) or "_" for entry in path) or "root"
        key, n = base, 1
        while key in used:
            key, n = f"{base}~{n}", n + 1
        used.add(key)
        keys.append(key)
    return keys


def _check_fields(obj: dict[str, Any], fields: set[str], where: str) -> None:
    missing, unknown = fields - obj.keys(), obj.keys() - fields
    if missing or unknown:
        parts = [f"missing {sorted(missing)}"] if missing else []
        parts += [f"unknown {sorted(unknown)}"] if unknown else []
        raise _bad(f"{where} has the wrong fields ({', '.join(parts)})")


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _check_path(value: Any, where: str) -> tuple[PathEntry, ...]:
    if not isinstance(value, list) or not all(isinstance(e, str) or _is_int(e) for e in value):
        raise _bad(f"{where} must be a list of str and int entries")
    return tuple(value)


def _check_shape(value: Any, where: str) -> tuple[int, ...]:
    if not isinstance(value, list) or not all(_is_int(n) and n >= 0 for n in value):
        raise _bad(f"{where} must be a list of non-negative ints")
    return tuple(value)


def _check_scalar(kind: str, value: Any, where: str) -> Any:
    if kind == "float":
        if isinstance(value, str) and value in _NONFINITE:
            return _NONFINITE[value]
        if _is_int(value) or isinstance(value, float):
            return float(value)
    elif kind == "int" and _is_int(value):
        return value
    elif kind in ("bool", "str") and isinstance(value, SCALAR_KINDS[kind]):
        return value
    raise _bad(f"{where}.value is not a valid {kind}: {shorten(value)}")


# ---------------------------------------------------------------------------- tree


def _valid_name(name: Any) -> bool:
    return isinstance(name, str) and name.isidentifier() and not keyword.iskeyword(name)


def namedtuple_ok(name: str, fields: Sequence[str]) -> bool:
    """Whether ``collections.namedtuple(name, fields)`` can rebuild a NamedTuple node."""
    return (
        _valid_name(name)
        and all(_valid_name(f) and not f.startswith("_") for f in fields)
        and len(set(fields)) == len(fields)
    )


def tree_leaf_paths(tree: Any) -> list[tuple[PathEntry, ...]]:
    """Validates the manifest's ``tree`` and returns its leaves' paths in order."""
    paths: list[tuple[PathEntry, ...]] = []

    def walk(node: Any, path: tuple[PathEntry, ...]) -> None:
        where = f"tree node at {path_name(path)}"
        kind = node.get("type") if isinstance(node, dict) else None
        if kind in ("leaf", "none"):
            _check_fields(node, {"type"}, where)
            if kind == "leaf":
                paths.append(path)
            return
        extra = {"dict": {"keys"}, "namedtuple": {"name", "fields"}, "node": {"class", "keys"}}
        if kind not in ("list", "tuple", *extra):
            raise _bad(f"{where} has an unknown type {shorten(kind)}")
        _check_fields(node, {"type", "children", *extra.get(kind, ())}, where)
        children = node["children"]
        if not isinstance(children, list):
            raise _bad(f"{where}: children must be a list")
        if kind in ("list", "tuple"):
            keys: list[Any] = list(range(len(children)))
        elif kind == "namedtuple":
            keys = node["fields"]
            if not (isinstance(keys, list) and namedtuple_ok(node["name"], keys)):
                raise _bad(f"{where}: invalid NamedTuple name or fields")
        else:
            keys = node["keys"]
            if kind == "node" and not isinstance(node["class"], str):
                raise _bad(f"{where}: class must be a str")
            if not (isinstance(keys, list) and all(isinstance(k, str) or _is_int(k) for k in keys)):
                raise _bad(f"{where}: keys must be a list of str and int")
            if len({(type(k), k) for k in keys}) != len(keys):
                raise _bad(f"{where}: duplicate keys")
        if len(keys) != len(children):
            raise _bad(f"{where}: {len(keys)} keys for {len(children)} children")
        for key, child in zip(keys, children):
            walk(child, (*path, key))

    try:
        walk(tree, ())
    except RecursionError:
        raise _bad("the tree in the manifest is nested too deeply") from None
    return paths


# ---------------------------------------------------------------------------- manifest


@dataclasses.dataclass(frozen=True)
class Manifest:
    """A parsed and validated manifest (checkpoint) or header (params file)."""

    format: str
    funcnet_version: str
    created: str
    tree: Any
    leaves: tuple[Leaf, ...]
    step: int | None = None
    metadata: dict[str, Any] = dataclasses.field(default_factory=dict)
    metrics: dict[str, float] = dataclasses.field(default_factory=dict)
    arrays_size: int | None = None


_FIELDS = {
    CHECKPOINT_FORMAT: {"step", "metadata", "metrics", "arrays_size"},
    PARAMS_FORMAT: set(),
}
_COMMON_FIELDS = {"format", "format_version", "funcnet_version", "created", "tree", "leaves"}


def _canonical(obj: Any) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), allow_nan=True).encode()


def dump_manifest(fields: Mapping[str, Any]) -> bytes:
    """Serialises manifest fields (JSON-ready) with a checksum of their canonical form.

    The layout is for people: one top-level field per line and one leaf per line.
    """
    body = {**fields, "checksum": "sha256:" + hashlib.sha256(_canonical(fields)).hexdigest()}
    compact = lambda v: json.dumps(v, separators=(", ", ": "), allow_nan=True)
    lines = []
    for name, value in body.items():
        if name == "leaves" and value:
            inner = ",\n".join("  " + compact(leaf) for leaf in value)
            lines.append(f' "leaves": [\n{inner}\n ]')
        else:
            lines.append(f" {json.dumps(name)}: {compact(value)}")
    data = ("{\n" + ",\n".join(lines) + "\n}\n").encode("ascii")
    if len(data) > MAX_MANIFEST_BYTES:
        raise CheckpointError(
            f"the manifest would be {len(data)} bytes, over the format's limit of "
            f"{MAX_MANIFEST_BYTES}: keep metadata small (store large data as arrays in the "
            "tree) or save fewer, larger leaves"
        )
    return data


def manifest_fields(
    fmt: str,
    tree: Any,
    leaves: Sequence[Leaf],
    funcnet_version: str,
    created: str,
    **extra: Any,
) -> dict[str, Any]:
    """The JSON-ready fields of a manifest (without its checksum)."""
    return {
        "format": fmt,
        "format_version": FORMAT_VERSION,
        "funcnet_version": funcnet_version,
        "created": created,
        **extra,
        "tree": tree,
        "leaves": [leaf.to_json() for leaf in leaves],
    }


def parse_manifest(data: bytes, fmt: str, what: str) -> Manifest:
    """Parses and validates a manifest; ``what`` names it in messages (``manifest.json``).

    Raises:
        CorruptCheckpointError: for any problem; CheckpointError for a newer format.
    """
    try:
        return _parse_manifest(data, fmt, what)
    except CheckpointError:
        raise
    except (TypeError, KeyError, ValueError, AttributeError, IndexError, RecursionError) as exc:
        # A safety net: the checks below are meant to catch everything first.
        raise _bad(f"{what} is corrupt (unreadable content: {type(exc).__name__}: {exc})") from exc


def _parse_manifest(data: bytes, fmt: str, what: str) -> Manifest:
    try:
        obj = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise _bad(f"{what} is truncated or corrupt (not valid JSON: {exc})") from None
    if not isinstance(obj, dict):
        raise _bad(f"{what} is corrupt (not a JSON object)")
    found = obj.get("format")
    if found != fmt:
        if isinstance(found, str) and found in _FIELDS:
            other = "restore()" if found == CHECKPOINT_FORMAT else "load_params()"
            raise _bad(f"{what} describes a {found} file, not a {fmt}; read it with {other}")
        raise _bad(f"{what} is not a funcnet manifest (format {shorten(found)}, expected {fmt!r})")
    version = obj.get("format_version")
    if _is_int(version) and version > FORMAT_VERSION:
        raise CheckpointError(
            f"{what} uses format version {version}, written by a newer funcnet; this funcnet "
            f"reads version {FORMAT_VERSION}: upgrade funcnet to read it"
        )
    checksum = obj.pop("checksum", None)
    expected = "sha256:" + hashlib.sha256(_canonical(obj)).hexdigest()
    if checksum != expected:
        raise _bad(f"{what} was modified or is corrupt (its checksum does not match its contents)")
    _check_fields(obj, _COMMON_FIELDS | _FIELDS[fmt], what)
    if version != FORMAT_VERSION:
        raise _bad(f"{what} has an invalid format_version {shorten(version)}")
    for name in ("funcnet_version", "created"):
        if not isinstance(obj[name], str):
            raise _bad(f"{what}: {name} must be a str")
    paths = tree_leaf_paths(obj["tree"])
    if not isinstance(obj["leaves"], list):
        raise _bad(f"{what}: leaves must be a list")
    leaves = tuple(
        Leaf.from_json(entry, f"{what}: leaves[{i}]") for i, entry in enumerate(obj["leaves"])
    )
    if [leaf.path for leaf in leaves] != paths:
        raise _bad(f"{what}: the tree and the leaf table disagree")
    keys = [leaf.key for leaf in leaves if leaf.stored]
    if len(set(keys)) != len(keys):
        raise _bad(f"{what}: two leaves share an array name")
    manifest = Manifest(
        format=fmt,
        funcnet_version=obj["funcnet_version"],
        created=obj["created"],
        tree=obj["tree"],
        leaves=leaves,
    )
    if fmt == CHECKPOINT_FORMAT:
        manifest = _checkpoint_fields(manifest, obj, what)
    return manifest


def _checkpoint_fields(manifest: Manifest, obj: dict[str, Any], what: str) -> Manifest:
    step, size, metadata, metrics = obj["step"], obj["arrays_size"], obj["metadata"], obj["metrics"]
    if not (_is_int(step) and step >= 0):
        raise _bad(f"{what}: step must be a non-negative int")
    if not isinstance(metadata, dict):
        raise _bad(f"{what}: metadata must be an object")
    if not (
        isinstance(metrics, dict)
        and all(isinstance(v, float) or _is_int(v) for v in metrics.values())
    ):
        raise _bad(f"{what}: metrics must map names to numbers")
    if not (_is_int(size) and size >= sum(leaf.nbytes for leaf in manifest.leaves if leaf.stored)):
        raise _bad(f"{what}: arrays_size is invalid or smaller than the arrays it lists")
    return dataclasses.replace(
        manifest,
        step=step,
        metadata=metadata,
        metrics={name: float(v) for name, v in metrics.items()},
        arrays_size=size,
    )


# ---------------------------------------------------------------------------- JSON values


def json_value(value: Any, where: str) -> Any:
    """``value`` as JSON-ready data (tuples become lists); TypeError naming ``where`` if not.

    Accepts dicts with str keys, lists, tuples, str, bool, int, float, None, NumPy scalars and
    0-d arrays of bool, int or float (stored as Python numbers).
    """
    if value is None or isinstance(value, (bool, str)):
        return value
    dtype = getattr(value, "dtype", None)
    if isinstance(value, np.generic) or (getattr(value, "shape", None) == () and dtype is not None):
        if isinstance(dtype, np.dtype) and dtype.kind in ("b", "i", "u", "f"):
            return np.asarray(value).item()
    elif isinstance(value, int):
        return int(value)
    elif isinstance(value, float):
        return float(value)
    elif isinstance(value, Mapping):
        out = {}
        for key, item in value.items():
            if not isinstance(key, str):
                raise TypeError(
                    f"{where}: key {shorten(key)} is not a str (JSON object keys are str)"
                )
            out[key] = json_value(item, f"{where}[{shorten(key)}]")
        return out
    elif isinstance(value, (list, tuple)):
        return [json_value(item, f"{where}[{i}]") for i, item in enumerate(value)]
    raise TypeError(
        f"{where} is a {type(value).__name__}, which JSON cannot hold; use dicts with str keys, "
        "lists, str, int, float, bool and None"
    )


def json_metrics(metrics: Mapping[str, Any] | None) -> dict[str, float]:
    """Validates ``metrics`` (names to real numbers) and converts the values to float."""
    if metrics is None:
        return {}
    if not isinstance(metrics, Mapping):
        raise TypeError(f"metrics must be a dict of name -> number, got {type(metrics).__name__}")
    out = {}
    for name, value in metrics.items():
        number = json_value(value, f"metrics[{name!r}]") if isinstance(name, str) else None
        if not isinstance(name, str) or isinstance(number, bool) or not _is_number(number):
            raise TypeError(
                f"metrics[{name!r}] must be a number keyed by a str, got {shorten(value)}"
            )
        out[name] = float(number)
    return out


def _is_number(value: Any) -> bool:
    return isinstance(value, float) or _is_int(value)
