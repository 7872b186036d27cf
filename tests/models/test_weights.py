"""Weights files for zoo models: ``weights=``, load/save_weights, from_torch, funcnet-convert."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from funcnet import checkpoint, models, nn, optim, train
from funcnet.errors import StateDictError
from funcnet.models import convert as convert_cli


class Net(models.Pretrainable):
    """A small stand-in zoo model: Linear(3, 4) → BatchNorm1d(4)."""

    def __init__(self, features: int = 4, *, weights=None) -> None:
        super().__init__(weights)
        self.fc = nn.Linear(3, features)
        self.bn = nn.BatchNorm1d(features)

    def forward(self, ctx: nn.Context, x: jax.Array) -> jax.Array:
        return self.bn(ctx, self.fc(ctx, x))


def convert_torch(model, state_dict):
    """This module's conversion rule, which ``models.from_torch`` must find and use."""
    renamed = {key.replace("linear.", "fc."): value for key, value in state_dict.items()}
    return nn.load_state_dict(model, renamed, from_torch=True)


def trained(seed: int = 0):
    """Params and state unlike ``init``'s: random values everywhere."""
    params, state = Net().init(jax.random.key(seed))
    leaves, treedef = jax.tree.flatten((params, state))
    keys = jax.random.split(jax.random.key(seed + 1), len(leaves))
    new = [
        jax.random.normal(k, x.shape).astype(x.dtype) if x.dtype == jnp.float32 else x + 7
        for k, x in zip(keys, leaves)
    ]
    return jax.tree.unflatten(treedef, new)


def same(a, b) -> bool:
    return jax.tree.structure(a) == jax.tree.structure(b) and all(
        x.dtype == y.dtype and np.array_equal(x, y)
        for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b))
    )


@pytest.mark.parametrize("suffix", [".safetensors", ".npz"])
def test_init_returns_the_files_values_eagerly_under_jit_and_in_train_state(tmp_path, suffix):
    params, state = trained()
    path = models.save_weights(tmp_path / f"net{suffix}", params, state)
    model = Net(weights=path)
    assert model.weights == str(path)
    assert same(model.init(jax.random.key(9)), (params, state))
    assert same(jax.jit(model.init)(jax.random.key(3)), (params, state))
    shapes = jax.eval_shape(model.init, jax.random.key(0))
    assert jax.tree.map(lambda s: (s.shape, s.dtype), shapes) == jax.tree.map(
        lambda x: (x.shape, x.dtype), (params, state)
    )
    ts = train.TrainState.create(model, optim.sgd(0.1), jax.random.key(1))
    assert same((ts.params, ts.model_state), (params, state))
    assert same(models.load_weights(Net(), path), (params, state))
    # the random init is untouched without weights=
    assert not same(Net().init(jax.random.key(9))[0], params)


def test_a_file_for_another_architecture_names_every_wrong_entry(tmp_path):
    path = models.save_weights(tmp_path / "net.safetensors", *Net(5).init(jax.random.key(0)))
    with pytest.raises(StateDictError) as info:
        Net(4, weights=path).init(jax.random.key(0))
    message = str(info.value)
    assert "Net from" in message and str(path) in message
    assert "fc.weight: expected shape (3, 4), got (3, 5)" in message
    assert "bn.running_mean: expected shape (4,), got (5,)" in message


def test_strict_false_takes_missing_entries_from_into(tmp_path):
    params, state = trained()
    flat = nn.state_dict(params, state)
    del flat["fc.bias"]
    path = tmp_path / "partial.safetensors"
    checkpoint.save_safetensors(path, flat)
    with pytest.raises(StateDictError, match=r"fc\.bias"):
        models.load_weights(Net(), path)
    into = Net().init(jax.random.key(5))
    got_params, got_state = models.load_weights(Net(), path, strict=False, into=into)
    assert np.array_equal(got_state["bn"]["running_var"], state["bn"]["running_var"])
    assert np.array_equal(got_params["fc"]["bias"], into[0]["fc"]["bias"])
    assert np.array_equal(got_params["fc"]["weight"], params["fc"]["weight"])


def test_unknown_suffixes_and_broken_files_say_what_to_do(tmp_path):
    with pytest.raises(ValueError, match=r"funcnet-convert MODEL SOURCE\.safetensors"):
        Net(weights=tmp_path / "resnet18.h5").init(jax.random.key(0))
    with pytest.raises(ValueError, match="funcnet downloads nothing.*funcnet-convert"):
        Net(weights="IMAGENET1K_V1").init(jax.random.key(0))  # a torchvision weights name
    with pytest.raises(ValueError, match="safetensors or .npz"):
        models.save_weights(tmp_path / "w.pt", *Net().init(jax.random.key(0)))
    broken = tmp_path / "broken.safetensors"
    models.save_weights(broken, *Net().init(jax.random.key(0)))
    broken.write_bytes(broken.read_bytes()[:-5])
    with pytest.raises(checkpoint.CheckpointError):
        Net(weights=broken).init(jax.random.key(0))
    with pytest.raises(checkpoint.CheckpointError):
        Net(weights=tmp_path / "missing.npz").init(jax.random.key(0))


def test_from_torch_uses_the_defining_modules_conversion():
    params, state = trained()
    torch_sd = {
        key.replace("fc.", "linear."): value
        for key, value in nn.torch_state_dict(Net(), params, state).items()
    }
    assert same(models.from_torch(Net(), torch_sd), (params, state))


def test_from_torch_falls_back_to_load_state_dict_by_name():
    model = nn.Sequential(nn.Linear(3, 2))
    torch_sd = {"0.weight": np.arange(6.0).reshape(2, 3), "0.bias": np.zeros(2)}
    params, _ = models.from_torch(model, torch_sd)
    assert np.array_equal(params["0"]["weight"], np.arange(6.0).reshape(2, 3).T)


def test_pytorch_pickles_are_never_unpickled(tmp_path, capsys):
    # a pickle whose loading would run code: os.system("touch ran") via __reduce__
    pth = tmp_path / "resnet18.pth"
    pth.write_bytes(b"cos\nsystem\n(S'touch ran'\ntR.")
    with pytest.raises(checkpoint.CheckpointError, match="never unpickles.*save_file"):
        Net(weights=pth).init(jax.random.key(0))
    assert convert_cli.main(["resnet18", str(pth), str(tmp_path / "out.npz")]) == 1
    assert "never unpickles" in capsys.readouterr().err
    assert not (tmp_path / "ran").exists() and not (Path.cwd() / "ran").exists()


def test_the_command_line_reports_bad_input_without_a_traceback(tmp_path, capsys):
    assert convert_cli.main(["no_such_model", "a.safetensors", "b.npz"]) == 1
    assert "unknown zoo model 'no_such_model'" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        convert_cli.main(["resnet18", "a.safetensors", "b.npz", "--arg", "oops"])


def test_python_dash_m_runs_the_converter():
    done = subprocess.run(
        [sys.executable, "-m", "funcnet.models.convert", "--help"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert "funcnet-convert" in done.stdout and not done.stderr
