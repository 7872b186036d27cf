"""Weights files for zoo models: ``weights=``, load/save_weights, from_torch, funcnet-convert."""

from __future__ import annotations

import subprocess
import sys

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
    pth = tmp_path / "resnet18.pth"
    pth.write_bytes(b"\x80\x02}q\x00.")
    with pytest.raises(ValueError, match=r"funcnet\.models\.convert"):
        Net(weights=pth).init(jax.random.key(0))
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


@pytest.mark.torch
def test_read_torch_state_dict_reads_pth_safely(tmp_path):
    torch = pytest.importorskip("torch")
    sd = {"fc.weight": torch.ones(4, 3), "fc.bias": torch.zeros(4)}
    torch.save({"epoch": 3, "state_dict": sd}, tmp_path / "ckpt.pth")
    got = models.read_torch_state_dict(tmp_path / "ckpt.pth")
    assert set(got) == set(sd) and torch.equal(got["fc.weight"], sd["fc.weight"])

    torch.save({"fn": Net}, tmp_path / "code.pth")  # a pickled class: refused, not run
    with pytest.raises(Exception, match="(?i)weights_only|unpickl|global"):
        models.read_torch_state_dict(tmp_path / "code.pth")
    torch.save([1, 2], tmp_path / "list.pt")
    with pytest.raises(ValueError, match="no state dict"):
        models.read_torch_state_dict(tmp_path / "list.pt")


def test_read_torch_state_dict_needs_no_torch_for_safetensors(tmp_path):
    checkpoint.save_safetensors(tmp_path / "m.safetensors", {"a": np.ones(3, np.float32)})
    assert models.read_torch_state_dict(tmp_path / "m.safetensors")["a"].tolist() == [1, 1, 1]
    with pytest.raises(ValueError, match=r"\.safetensors, \.pth"):
        models.read_torch_state_dict(tmp_path / "m.h5")


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
