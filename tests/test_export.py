"""funcnet.export: a model exported in one process runs in a fresh one that never imports
its code, at another batch size, with weights baked in or read from a params file; wrong
inputs, newer files, missing params files and other platforms give clear errors; the
docstring example and docs/export.md run."""

from __future__ import annotations

import contextlib
import doctest
import io
import json
import os
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import jax
import numpy as np
import pytest

import funcnet
from funcnet import ShapeError, export, nn
from funcnet.export import ExportError, _export

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "export.md"
EXAMPLE_BATCH, RUN_BATCH = 2, 5
# The loaded program is the StableHLO that jax.jit compiles for model.apply, compiled by
# the same XLA for the same CPU: with the weights as inputs the outputs and gradients are
# bit-identical (measured on jax 0.10.2 and 0.12). Baked weights are constants that XLA
# folds (BatchNorm's scale and shift precomputed), which moves results by an ulp or two of
# float32 (6e-8 measured): RTOL and ATOL allow a few.
RTOL, ATOL = 1e-6, 1e-6


class BNNet(nn.Module):
    """Linear -> BatchNorm1d -> ReLU -> Linear; its code exists only in this file."""

    def __init__(self) -> None:
        super().__init__()
        self.fc1 = nn.Linear(4, 16)
        self.bn = nn.BatchNorm1d(16)
        self.fc2 = nn.Linear(16, 3)

    def forward(self, ctx: nn.Context, x: jax.Array) -> jax.Array:
        return self.fc2(ctx, jax.nn.relu(self.bn(ctx, self.fc1(ctx, x))))


class Gated(nn.Module):
    """Two positional inputs, a keyword input and a dict output."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 3)
        self.gate = nn.Linear(2, 3)

    def forward(self, ctx: nn.Context, x: jax.Array, y: jax.Array, *, bias: jax.Array) -> dict:
        gate = jax.nn.sigmoid(self.gate(ctx, y))
        return {"out": self.fc(ctx, x) * gate + bias, "gate": gate}


def _inputs(batch: int) -> dict[str, np.ndarray]:
    keys = jax.random.split(jax.random.key(batch), 3)
    shapes = {"x": (batch, 4), "y": (batch, 2), "bias": (batch, 3)}
    return {n: np.asarray(jax.random.normal(k, s)) for k, (n, s) in zip(keys, shapes.items())}


def _bn_model(seed: int = 0) -> tuple[BNNet, dict, dict]:
    """BNNet after one training step, so its running statistics are neither the initial
    (0, 1) nor any batch's: eval mode must use them for the outputs to match."""
    model = BNNet()
    params, state = model.init(jax.random.key(seed))
    x = 3.0 + 2.0 * jax.random.normal(jax.random.key(seed + 1), (8, 4))
    _, state = model.apply(params, state, x, train=True)
    return model, params, state


def _reference(model, params, state, *inputs, **kwargs):
    """model.apply in eval mode, jitted as the export is."""
    return jax.jit(lambda p, s, a, k: model.apply(p, s, *a, **k)[0])(params, state, inputs, kwargs)


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """Three exports made once at batch EXAMPLE_BATCH, with their models and weights."""
    folder = tmp_path_factory.mktemp("exports")
    bn, params, state = _bn_model()
    gated = Gated()
    gated_params, _ = gated.init(jax.random.key(2))
    small = _inputs(EXAMPLE_BATCH)
    export.export(bn, params, state, small["x"], path=folder / "bn_baked.fnx")
    export.export(
        bn, params, state, jax.ShapeDtypeStruct((EXAMPLE_BATCH, 4), np.float32),
        path=folder / "bn_inputs.fnx", params_as_inputs=True, differentiable=True,
    )  # fmt: skip
    export.export(
        gated, gated_params, {}, small["x"], small["y"], bias=small["bias"],
        path=folder / "gated.fnx",
    )  # fmt: skip
    return {"folder": folder, "bn": (bn, params, state), "gated": (gated, gated_params, {})}


FRESH_PROCESS = """
import sys
import jax
import numpy as np
from funcnet import export

folder, model_module = sys.argv[1], sys.argv[2]
x, y, bias = (np.load(f"{folder}/inputs.npz")[k] for k in ("x", "y", "bias"))
outputs = {"bn_baked": export.load(f"{folder}/bn_baked.fnx")(x)}
bn = export.load(f"{folder}/bn_inputs.fnx")
outputs["bn_inputs"] = bn(x)
gated = export.load(f"{folder}/gated.fnx")(x, y, bias=bias)
outputs.update({f"gated.{k}": v for k, v in gated.items()})
loss = lambda params, x: bn.apply(params, bn.state, x)[0].sum()
grad_params, grad_x = jax.grad(loss, argnums=(0, 1))(bn.params, x)
outputs.update({f"grad.{k}.{n}": v for k, d in grad_params.items() for n, v in d.items()})
outputs["grad.x"] = grad_x
np.savez(f"{folder}/outputs.npz", **{k: np.asarray(v) for k, v in outputs.items()})
assert model_module not in sys.modules, f"{model_module} was imported"
"""


def test_a_fresh_process_runs_the_exports_without_the_model_code(exported):
    folder = exported["folder"]
    inputs = _inputs(RUN_BATCH)
    np.savez(folder / "inputs.npz", **inputs)
    env = {**os.environ, "JAX_PLATFORMS": "cpu"}
    result = subprocess.run(
        [sys.executable, "-c", FRESH_PROCESS, str(folder), BNNet.__module__],
        env=env, cwd=folder, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    with np.load(folder / "outputs.npz") as npz:
        got = dict(npz)

    bn, params, state = exported["bn"]
    expected = _reference(bn, params, state, inputs["x"])
    assert got["bn_baked"].shape == (RUN_BATCH, 3)
    np.testing.assert_allclose(got["bn_baked"], expected, rtol=RTOL, atol=ATOL)
    np.testing.assert_array_equal(got["bn_inputs"], expected)
    gated, gated_params, _ = exported["gated"]
    reference = _reference(gated, gated_params, {}, inputs["x"], inputs["y"], bias=inputs["bias"])
    for name in ("out", "gate"):
        np.testing.assert_allclose(got[f"gated.{name}"], reference[name], rtol=RTOL, atol=ATOL)

    loss = lambda p, x: _reference(bn, p, state, x).sum()
    grad_params, grad_x = jax.grad(loss, argnums=(0, 1))(params, inputs["x"])
    np.testing.assert_array_equal(got["grad.x"], grad_x)  # the exported VJP: jax.vjp of it
    for layer, grads in grad_params.items():
        for name, value in grads.items():
            np.testing.assert_array_equal(got[f"grad.{layer}.{name}"], value)


def test_the_metadata_describes_inputs_outputs_versions_and_model(exported):
    folder = exported["folder"]
    with zipfile.ZipFile(folder / "bn_inputs.fnx") as z:
        assert sorted(z.namelist()) == ["metadata.json", "program.jaxexport"]
        meta = json.loads(z.read("metadata.json"))
    assert meta["format"] == "funcnet.export" and meta["format_version"] == 1
    assert meta["funcnet_version"] == funcnet.__version__ and meta["jax_version"] == jax.__version__
    assert meta["platforms"] == ["cpu", "cuda"] and meta["batch_dim"] == "batch"
    assert meta["inputs"] == [
        {"name": "x", "shape": ["batch", 4], "dtype": "float32", "keyword": False}
    ]
    assert meta["outputs"] == [{"name": "output", "shape": ["batch", 3], "dtype": "float32"}]
    assert meta["params_as_inputs"]
    assert meta["differentiable"] and "BatchNorm1d(num_features=16)" in meta["model"]
    with np.load(folder / "bn_inputs.params.npz", allow_pickle=False) as npz:
        assert {"params.fc1.weight", "state.bn.running_mean"} <= set(npz.files)

    gated = export.load(folder / "gated.fnx")
    assert [i["name"] for i in gated.metadata["inputs"]] == ["x", "y", "bias"]
    assert [i["keyword"] for i in gated.metadata["inputs"]] == [False, False, True]
    assert [o["name"] for o in gated.metadata["outputs"]] == ["output['gate']", "output['out']"]
    assert not gated.metadata["params_as_inputs"]
    assert "x (batch, 4) float32" in repr(gated)


def test_wrong_inputs_name_the_input_and_the_expected_shape(exported):
    gated = export.load(exported["folder"] / "gated.fnx")
    x, y, bias = _inputs(3).values()
    with pytest.raises(
        ShapeError, match=r"gated\.fnx: expected input x \(batch, 4\) float32, got \(3, 5\) float32"
    ):
        gated(np.zeros((3, 5), np.float32), y, bias=bias)
    with pytest.raises(
        ShapeError, match=r"expected input y \(batch, 2\) float32, got \(3, 2\) int32"
    ):
        gated(x, np.zeros((3, 2), np.int32), bias=bias)
    with pytest.raises(ShapeError, match="input y has batch size 4 but x has 3"):
        gated(x, np.zeros((4, 2), np.float32), bias=bias)
    with pytest.raises(TypeError, match=r"takes inputs \(x \(batch, 4\) float32, .*bias"):
        gated(x, y)
    assert gated(x.astype(np.float64), y, bias=bias)["out"].shape == (3, 3)  # as jax.jit does


def test_weights_are_swapped_without_exporting_again(exported, tmp_path):
    path = tmp_path / "model.fnx"
    shutil.copy(exported["folder"] / "bn_inputs.fnx", path)  # without its params file
    with pytest.raises(
        FileNotFoundError, match=r"model\.params\.npz, which does not exist.*save_weights"
    ):
        export.load(path)
    model, params, state = _bn_model(seed=7)
    export.save_weights(path, params, state)
    x = _inputs(RUN_BATCH)["x"]
    expected = _reference(model, params, state, x)
    np.testing.assert_array_equal(export.load(path)(x), expected)
    in_memory = export.load(path, params=params, state=state)
    np.testing.assert_array_equal(in_memory.apply(params, state, x)[0], expected)

    other = nn.Sequential(nn.Linear(4, 8))
    other_params, _ = other.init(jax.random.key(0))
    with pytest.raises(
        ExportError,
        match=r"(?s)differences\):.*params\.0\.weight: not in the export.*params\.fc1\.weight: missing",
    ):
        export.save_weights(path, other_params)
    wide = {**params, "fc1": {**params["fc1"], "bias": np.zeros(17, np.float32)}}
    with pytest.raises(
        ExportError, match=r"params\.fc1\.bias: expected float32\[16\], got float32\[17\]"
    ):
        export.load(path, params=wide, state=state)
    with pytest.raises(ExportError, match="constants"):
        export.load(exported["folder"] / "bn_baked.fnx", params=params, state=state)


def _rewrite_metadata(source: Path, target: Path, **changes) -> None:
    with zipfile.ZipFile(source) as z:
        members = {name: z.read(name) for name in z.namelist()}
    meta = {**json.loads(members["metadata.json"]), **changes}
    with zipfile.ZipFile(target, "w") as z:
        for name, data in {**members, "metadata.json": json.dumps(meta).encode()}.items():
            z.writestr(name, data)


def test_newer_and_foreign_files_are_refused(exported, tmp_path):
    folder = exported["folder"]
    _rewrite_metadata(folder / "gated.fnx", tmp_path / "newer.fnx", format_version=2)
    with pytest.raises(ExportError, match="format version 2, written by a newer funcnet.*upgrade"):
        export.load(tmp_path / "newer.fnx")
    with pytest.raises(ExportError, match="not a file written by funcnet.export"):
        export.load(folder / "bn_inputs.params.npz")
    with pytest.raises(FileNotFoundError, match="nowhere.fnx does not exist"):
        export.load(tmp_path / "nowhere.fnx")


def test_fixed_shapes_and_platforms(tmp_path):
    model = nn.Linear(4, 2)
    params, state = model.init(jax.random.key(0))
    x = np.ones((EXAMPLE_BATCH, 4), np.float32)
    fixed = export.export(
        model,
        params,
        state,
        x,
        path=tmp_path / "fixed.fnx",
        platforms="cpu",
        batch_polymorphic=False,
    )
    loaded = export.load(fixed)
    assert loaded.metadata["inputs"][0]["shape"] == [2, 4] and loaded.metadata["platforms"] == [
        "cpu"
    ]
    np.testing.assert_allclose(loaded(x), _reference(model, params, state, x), rtol=RTOL, atol=ATOL)
    with pytest.raises(ShapeError, match=r"expected input x \(2, 4\) float32, got \(3, 4\)"):
        loaded(np.ones((3, 4), np.float32))

    gpu_only = export.export(
        model, params, state, x, path=tmp_path / "gpu.fnx", platforms=("cuda",)
    )
    with pytest.raises(
        ExportError,
        match=r"exported for platforms \('cuda',\), but JAX's default platform here is 'cpu'",
    ):
        export.load(gpu_only)
    with pytest.raises(ValueError, match="'gpu' is 'cuda' for NVIDIA"):
        export.export(model, params, state, x, path=tmp_path / "bad.fnx", platforms=("cpu", "gpu"))
    gated = Gated()
    with pytest.raises(
        ValueError, match=r"sizes differ \(\{'x': 2, 'y': 3, 'bias': 2\}\).*batch_polymorphic=False"
    ):
        export.export(
            gated, {}, {}, x, np.ones((3, 2)), bias=np.ones((2, 3)), path=tmp_path / "g.fnx"
        )


def test_a_missing_flatbuffers_names_the_extra(exported, monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "flatbuffers", None)  # import flatbuffers now fails
    model = nn.Linear(4, 2)
    params, state = model.init(jax.random.key(0))
    with pytest.raises(ImportError, match=r'pip install "funcnet\[export\]"'):
        export.export(model, params, state, np.ones((1, 4)), path=tmp_path / "m.fnx")
    with pytest.raises(ImportError, match=r'pip install "funcnet\[export\]"'):
        export.load(exported["folder"] / "gated.fnx")


def test_the_docstring_example_runs(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = doctest.testmod(_export, optionflags=doctest.ELLIPSIS, verbose=False)
    assert result.attempted > 0 and result.failed == 0


def test_the_guides_code_runs_and_prints_what_it_shows(tmp_path, monkeypatch):
    """Runs docs/export.md's python blocks in order; a text block right after one is its output."""
    text = DOC.read_text()
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    output, end, ran, compared = None, -1, 0, 0
    for block in re.finditer(r"```(\w+)\n(.*?)```", text, flags=re.DOTALL):
        language, code = block.groups()
        if language == "python":
            buffer = io.StringIO()
            with contextlib.redirect_stdout(buffer):
                exec(compile(code, str(DOC), "exec"), namespace)
            output, end, ran = buffer.getvalue(), block.end(), ran + 1
        elif language == "text" and output is not None and not text[end : block.start()].strip():
            assert output.strip() == code.strip()
            compared += 1
    assert ran >= 9 and compared >= 7
