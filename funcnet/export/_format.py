"""The file format of funcnet.export: a zip of JSON metadata and jax.export's program."""

from __future__ import annotations

import json
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import jax
import numpy as np

from funcnet._version import __version__
from funcnet.errors import FuncnetError

__all__ = ["ExportError"]

FORMAT = "funcnet.export"
FORMAT_VERSION = 1
METADATA_MEMBER = "metadata.json"
PROGRAM_MEMBER = "program.jaxexport"  # the bytes of jax.export's Exported.serialize()
BATCH = "batch"
INSTALL = 'pip install "funcnet[export]"'


class ExportError(FuncnetError, ValueError):
    """An exported file cannot be used here: not an export, written by a newer funcnet,
    exported for other platforms, or given weights that do not match it."""


def require_flatbuffers() -> None:
    """Raises an ImportError naming the extra when jax.export's optional dependency is missing."""
    try:
        import flatbuffers  # noqa: F401  (jax.export's optional dependency)
    except ImportError as exc:
        raise ImportError(
            "funcnet.export needs the flatbuffers package, which jax.export uses to "
            f"serialise programs: {INSTALL} (or pip install flatbuffers)"
        ) from exc


def dtype_of(x: Any) -> np.dtype:
    """The dtype of an array, a ShapeDtypeStruct or a Python scalar/list."""
    dtype = getattr(x, "dtype", None)
    return np.dtype(dtype) if dtype is not None else np.asarray(x).dtype


def weights_tree(params: Mapping[str, Any], state: Mapping[str, Any]) -> dict[str, Any]:
    """What a params file beside an export holds."""
    return {"params": params, "state": state}


def weights_path(path: Path) -> Path:
    """``model.fnx`` -> ``model.params.npz``."""
    return path.with_name(f"{path.stem if path.suffix else path.name}.params.npz")


def write_zip(f: Any, metadata: dict[str, Any], program: bytes) -> None:
    """The container: an uncompressed zip of the JSON metadata and the program."""
    with zipfile.ZipFile(f, "w", compression=zipfile.ZIP_STORED) as z:
        z.writestr(METADATA_MEMBER, json.dumps(metadata, indent=2))
        z.writestr(PROGRAM_MEMBER, bytes(program))


def read(path: Path) -> tuple[dict[str, Any], jax.export.Exported]:
    """The metadata and the deserialised program of an exported file."""
    if not path.is_file():
        raise FileNotFoundError(f"exported model {path} does not exist")
    try:
        with zipfile.ZipFile(path) as z:
            metadata = json.loads(z.read(METADATA_MEMBER))
            program = z.read(PROGRAM_MEMBER)
    except (zipfile.BadZipFile, KeyError, json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ExportError(f"{path} is not a file written by funcnet.export.export ({exc})") from exc
    _check_format(path, metadata)
    try:
        exported = jax.export.deserialize(bytearray(program))
    except Exception as exc:  # a damaged or incompatible program: say which versions
        raise ExportError(
            f"jax {jax.__version__} cannot read the program in {path}, exported with jax "
            f"{metadata.get('jax_version')} (jax.export reads what a jaxlib up to 6 months "
            f"older or 3 weeks newer than its own exported): {exc}"
        ) from exc
    return metadata, exported


def _check_format(path: Path, metadata: Any) -> None:
    """Raises ExportError unless ``metadata`` is version 1 of funcnet's export format."""
    if not isinstance(metadata, dict) or metadata.get("format") != FORMAT:
        raise ExportError(f"{path} is not a file written by funcnet.export.export")
    version = metadata.get("format_version")
    if isinstance(version, int) and version > FORMAT_VERSION:
        raise ExportError(
            f"{path} uses export format version {version}, written by a newer funcnet "
            f"({metadata.get('funcnet_version')}); this funcnet ({__version__}) reads version "
            f"{FORMAT_VERSION}: upgrade funcnet to load it"
        )
    if version != FORMAT_VERSION:
        raise ExportError(f"{path} has an invalid format_version {version!r}")
