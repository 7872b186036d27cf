"""save_safetensors / load_safetensors: the format written and read with NumPy alone.

References: the format's specification, checked byte by byte on files written here and
built here by hand; the ``safetensors`` package (NumPy and torch back ends) when it is
installed; and a broken file for every check the reader makes.
"""

from __future__ import annotations

import doctest
import json
import pickle
import struct

import jax
import jax.numpy as jnp
import ml_dtypes
import numpy as np
import pytest

import funcnet.checkpoint._safetensors
from funcnet import checkpoint, nn
from funcnet.checkpoint import (
    CheckpointError,
    CheckpointNotFoundError,
    CorruptCheckpointError,
    load_safetensors,
    load_safetensors_metadata,
    save_safetensors,
)

RNG = np.random.default_rng(0)


def _tensors():
    """One array of every dtype the format names, and the awkward shapes."""
    floats = RNG.standard_normal((2, 3))
    return {
        "f64": floats,
        "f32": floats.astype(np.float32),
        "f16": floats.astype(np.float16),
        "bf16": floats.astype(ml_dtypes.bfloat16),
        "f8_e4m3": floats.astype(ml_dtypes.float8_e4m3fn),
        "f8_e5m2": floats.astype(ml_dtypes.float8_e5m2),
        "i64": np.array([-(2**62), 2**62 + 1], np.int64),
        "i32": np.arange(-3, 3, dtype=np.int32).reshape(2, 3),
        "i16": np.array([-7, 300], np.int16),
        "i8": np.array([-128, 127], np.int8),
        "u64": np.array([2**64 - 1], np.uint64),
        "u32": np.array([2**32 - 1], np.uint32),
        "u16": np.array([65535], np.uint16),
        "u8": np.array([0, 255], np.uint8),
        "bool": np.array([[True, False, True]]),
        "scalar": np.float32(2.5),
        "empty": np.zeros((0, 4), np.float32),
        "big_endian": np.arange(4, dtype=">f4"),
    }


def _assert_same(got, want):
    assert set(got) == set(want)
    for name, value in want.items():
        value = np.asarray(value)
        assert got[name].dtype == value.dtype.newbyteorder("="), name
        assert got[name].shape == value.shape, name
        bits = [a.reshape(-1).view(np.uint8) for a in (got[name], value.astype(got[name].dtype))]
        np.testing.assert_array_equal(*bits, err_msg=name)


def test_round_trip_of_every_dtype_with_metadata(tmp_path):
    path = tmp_path / "all.safetensors"
    tensors = {**_tensors(), "jax": jnp.arange(6.0).reshape(3, 2)}
    assert save_safetensors(path, tensors, metadata={"format": "np", "step": "3"}) == path
    got = load_safetensors(path)
    _assert_same(got, {k: np.asarray(v) for k, v in tensors.items()})
    assert got["f32"].flags.writeable and got["f32"].flags.owndata is False  # a fresh buffer
    assert load_safetensors_metadata(path) == {"format": "np", "step": "3"}
    save_safetensors(path, {"x": np.ones(2)})  # replaced atomically, nothing left beside it
    assert load_safetensors_metadata(path) == {} and list(load_safetensors(path)) == ["x"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["all.safetensors"]


def test_the_file_is_laid_out_as_the_format_says(tmp_path):
    """Header length, padded JSON, data ordered by alignment then name, little-endian."""
    path = tmp_path / "m.safetensors"
    b, a, c = np.array([1, 2, 3], np.int32), np.array([0.5, -1.0]), np.array([True])
    save_safetensors(path, {"b": b, "c": c, "a": a}, metadata={"k": "v"})
    raw = path.read_bytes()
    (length,) = struct.unpack("<Q", raw[:8])
    assert length % 8 == 0
    header = json.loads(raw[8 : 8 + length])
    assert header == {
        "__metadata__": {"k": "v"},
        "a": {"dtype": "F64", "shape": [2], "data_offsets": [0, 16]},
        "b": {"dtype": "I32", "shape": [3], "data_offsets": [16, 28]},
        "c": {"dtype": "BOOL", "shape": [1], "data_offsets": [28, 29]},
    }
    assert raw[8 + length :] == a.astype("<f8").tobytes() + b.astype("<i4").tobytes() + b"\x01"


def _file(path, header, data=b"", length=None):
    """A file made by hand: header length, JSON header, data."""
    text = header if isinstance(header, bytes) else json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(text) if length is None else length) + text + data)
    return path


def test_reads_a_file_built_by_hand(tmp_path):
    half = np.array([[1.5, -2.0]], "<f2")
    header = {
        "flags": {"dtype": "BOOL", "shape": [3], "data_offsets": [4, 7]},
        "half": {"dtype": "F16", "shape": [1, 2], "data_offsets": [0, 4]},
    }
    got = load_safetensors(
        _file(tmp_path / "h.safetensors", header, half.tobytes() + b"\x01\x00\x01")
    )
    assert list(got) == ["half", "flags"]  # the order of the data
    np.testing.assert_array_equal(got["half"], half)
    np.testing.assert_array_equal(got["flags"], [True, False, True])


def _broken_cases():
    f32 = {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}
    eight = b"\x00" * 8
    return [
        (None, b"\x01\x02", "3 bytes is too short|2 bytes is too short"),
        ({"a": f32}, eight, "the header length 999 exceeds the", 999),
        ({"a": f32}, eight, "exceeds the format's limit of 100000000", 2**40),
        (b"{not json}", b"", "the header is not UTF-8 JSON"),
        (b"\xff\xfe", b"", "the header is not UTF-8 JSON"),
        ([1, 2], b"", "the header is JSON list, not an object"),
        ({"a": {"dtype": "F32", "shape": [2]}}, eight, "exactly dtype, shape and data_offsets"),
        ({"a": {**f32, "dtype": "C64"}}, eight, "unknown dtype 'C64'"),
        ({"a": {**f32, "shape": [-2]}}, eight, r"shape \[-2\], not a list of integers"),
        ({"a": {**f32, "shape": [True]}}, eight, "not a list of integers"),
        ({"a": {**f32, "data_offsets": [0]}}, eight, r"data_offsets \[0\], not \[begin, end\]"),
        ({"a": {**f32, "shape": [3]}}, eight, r"needs 12 bytes but its data_offsets \[0, 8\] span 8"),
        ({"a": f32, "b": {**f32, "data_offsets": [4, 12]}}, eight * 2, "overlaps the tensor"),
        ({"a": f32, "b": {**f32, "data_offsets": [12, 20]}}, eight * 3, "4 unclaimed bytes before 'b'"),
        ({"a": f32}, eight + b"x", "describes 8 bytes of data but the file holds 9"),
        ({"a": f32}, eight[:5], r"holds 5 \(truncated\)"),
        ({"a": {"dtype": "BOOL", "shape": [2], "data_offsets": [0, 2]}}, b"\x01\x02", "bytes other than 0 and 1"),
        ({"__metadata__": {"a": 1}}, b"", "__metadata__ must map str to str"),
        (b'{"a": 1, "a": 2}', b"", "duplicate key 'a'"),
    ]  # fmt: skip


def test_broken_files_raise_saying_what_is_wrong(tmp_path):
    for i, (header, data, match, *length) in enumerate(_broken_cases()):
        path = tmp_path / f"broken{i}.safetensors"
        if header is None:
            path.write_bytes(data)
        else:
            _file(path, header, data, *length)
        with pytest.raises(CorruptCheckpointError, match=match) as info:
            load_safetensors(path)
        assert str(info.value).startswith(f"{path} is not a valid safetensors file: ")


def test_pickles_are_refused_with_how_to_convert(tmp_path):
    named = tmp_path / "model.pt"
    named.write_bytes(b"anything")
    zipped = tmp_path / "zip.safetensors"
    zipped.write_bytes(b"PK\x03\x04" + b"\x00" * 40)  # torch.save's zip archive
    pickled = tmp_path / "pickle.safetensors"
    pickled.write_bytes(pickle.dumps({"weight": [1.0, 2.0]}, protocol=4))
    for path in (named, zipped, pickled):
        with pytest.raises(CheckpointError, match="funcnet never unpickles") as info:
            load_safetensors(path)
        assert "safetensors.torch import save_file" in str(info.value)
        assert "numpy.savez" in str(info.value)
    # a real header whose length starts with the pickle opcode byte is read, not refused
    path = tmp_path / "x.safetensors"
    save_safetensors(path, {"w" * 68: np.zeros(1, np.float32)})
    assert path.read_bytes()[:2] == b"\x80\x00"  # a 128-byte header
    assert list(load_safetensors(path)) == ["w" * 68]


def test_missing_files_and_bad_arguments(tmp_path):
    with pytest.raises(CheckpointNotFoundError, match="does not exist"):
        load_safetensors(tmp_path / "nope.safetensors")
    with pytest.raises(CheckpointNotFoundError, match="is a directory"):
        load_safetensors_metadata(tmp_path)
    path = tmp_path / "m.safetensors"
    cases = [
        ({1: np.ones(1)}, None, "keys must be str, got 1"),
        ({"fc": {"weight": np.ones(1)}}, None, "'fc' is a dict; pass a flat dict"),
        ({"c": np.ones(1, np.complex64)}, None, "'c' has dtype complex64, which safetensors"),
        ({"a": np.ones(1)}, {"step": 3}, "metadata must be a dict of str to str"),
        ({"__metadata__": np.ones(1)}, None, "'__metadata__' is reserved"),
    ]
    for tensors, metadata, match in cases:
        with pytest.raises(TypeError, match=match):
            save_safetensors(path, tensors, metadata=metadata)
    assert not path.exists()


def test_torch_layouts_through_a_safetensors_file(tmp_path):
    """funcnet → PyTorch layouts → file → funcnet, exactly (int64 counters included)."""
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.Flatten(), nn.Linear(16, 2))
    specs = jax.eval_shape(model.init, jax.random.key(0))
    params, state = jax.tree.map(lambda s: RNG.standard_normal(s.shape).astype(s.dtype), specs)
    flatten = {"3": (4, 2, 2)}
    path = checkpoint.save_safetensors(
        tmp_path / "m.safetensors",
        nn.torch_state_dict(model, params, state, flatten_inputs=flatten),
    )
    tensors = load_safetensors(path)
    assert tensors["1.num_batches_tracked"].dtype == np.int64
    again = nn.load_state_dict(model, tensors, from_torch=True, flatten_inputs=flatten)
    for a, b in zip(jax.tree.leaves(again), jax.tree.leaves((params, state))):
        np.testing.assert_array_equal(a, b)


def test_files_agree_with_the_safetensors_package(tmp_path):
    st = pytest.importorskip("safetensors.numpy")
    from safetensors import safe_open

    tensors = {k: v for k, v in _tensors().items() if not k.startswith(("bf16", "f8"))}
    ours = save_safetensors(tmp_path / "ours.safetensors", tensors, metadata={"a": "b"})
    _assert_same(st.load_file(ours), tensors)
    with safe_open(ours, framework="numpy") as f:
        assert f.metadata() == {"a": "b"}
    theirs = tmp_path / "theirs.safetensors"
    st.save_file(
        {k: np.asarray(v, order="C") for k, v in tensors.items()}, theirs, metadata={"x": "y"}
    )
    _assert_same(load_safetensors(theirs), tensors)
    assert load_safetensors_metadata(theirs) == {"x": "y"}
    assert theirs.read_bytes() == save_safetensors(tmp_path / "again.safetensors", load_safetensors(theirs), metadata={"x": "y"}).read_bytes()  # fmt: skip


@pytest.mark.torch
def test_bfloat16_and_int64_agree_with_safetensors_torch(tmp_path):
    torch = pytest.importorskip("torch")
    st = pytest.importorskip("safetensors.torch")
    weights = {
        "w": torch.randn(3, 2, dtype=torch.bfloat16),
        "n": torch.tensor(7, dtype=torch.int64),
        "h": torch.randn(4, dtype=torch.float16),
        "e4": torch.randn(2).to(torch.float8_e4m3fn),
        "e5": torch.randn(2).to(torch.float8_e5m2),
    }
    theirs = tmp_path / "theirs.safetensors"
    st.save_file(weights, theirs)
    got = load_safetensors(theirs)
    assert got["w"].dtype == ml_dtypes.bfloat16 and got["n"].dtype == np.int64
    np.testing.assert_array_equal(got["w"].astype(np.float32), weights["w"].float().numpy())
    assert got["n"] == 7
    ours = save_safetensors(tmp_path / "ours.safetensors", got)
    assert ours.read_bytes() == theirs.read_bytes()  # byte for byte, BF16 included
    back = st.load_file(ours)
    assert all(torch.equal(back[k], weights[k]) for k in weights)


def test_docstring_examples():
    result = doctest.testmod(funcnet.checkpoint._safetensors)
    assert result.attempted >= 3 and result.failed == 0
