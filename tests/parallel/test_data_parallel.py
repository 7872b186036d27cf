"""DataParallel (pmap and shard_map) against single-device training, on 4 simulated CPU
devices in a child process.

Float64 comparisons use a 1e-12 tolerance: data-parallel training computes the same sums
as the single device, split into four partial sums and added in another order, so the
two differ only by reordered float64 roundings, each at most 2**-53 ≈ 1.1e-16 of the
sum's terms (here sums of at most 32 terms of size < 100, over a few SGD steps with
lr 0.1: ~1e-13 at the very worst, 1e-16 measured). A wrong combination (an unweighted
mean of the devices' means, a gradient summed twice or not at all, per-device batch
statistics) moves the parameters by 1e-3 or more.
"""

import json

import pytest

from tests._devices import run_with_cpu_devices

PRELUDE = """
import json, os, warnings
warnings.simplefilter("error")  # as pyproject's filterwarnings for the suite itself
import jax, jax.numpy as jnp, numpy as np
jax.config.update("jax_enable_x64", X64)
cache = os.environ.get("FUNCNET_TEST_CACHE", os.path.join(os.getcwd(), ".jax_cache"))
jax.config.update("jax_compilation_cache_dir", os.path.abspath(cache))
jax.config.update("jax_persistent_cache_min_compile_time_secs", 0)
jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
from funcnet import losses, metrics, nn, optim, parallel, train
from tests._numerics import to_float64
from tests.train._models import MLP, blobs

assert jax.device_count() == 4
BACKENDS = ("pmap", "shard_map")

def create(model, opt=None):
    params, model_state = model.init(jax.random.key(0))
    return train.TrainState.create(model, opt or optim.sgd(0.1, momentum=0.9), jax.random.key(1),
                                   params=to_float64(params), model_state=to_float64(model_state))

def run(step, state, batches):
    logs = []
    for batch in batches:
        state, m = step(state, batch)
        logs.append(jax.device_get(m))  # waits for the step: collectives in flight on CPU
    return jax.device_get(state), logs

def max_diff(a, b):
    return max(float(np.max(np.abs(np.asarray(u, np.float64) - np.asarray(v, np.float64))))
               for u, v in zip(jax.tree.leaves(a), jax.tree.leaves(b)))
"""

EQUIVALENCE = """
x, y = blobs(99)
x = x.astype(np.float64)
# full batches, a short one (30 rows: padded to 32), and one of 5 rows (padded to 8: the
# fourth device holds padding only)
batches = [(x[:32], y[:32]), (x[32:64], y[32:64]), (x[64:94], y[64:94]), (x[94:], y[94:])]
ms = {"acc": metrics.accuracy, "f1": metrics.F1Score(num_classes=3, average="macro")}
ref, ref_logs = run(train.make_train_step(losses.cross_entropy, metrics=ms), create(MLP()), batches)
out = {}
for backend in BACKENDS:
    dp = parallel.DataParallel(backend=backend)
    state, logs = run(dp.make_train_step(losses.cross_entropy, metrics=ms), create(MLP()), batches)
    out[backend] = {
        "params": max_diff(state.params, ref.params),
        "opt_state": max_diff(state.opt_state, ref.opt_state),
        "loss": max(abs(float(a["loss"]) - float(b["loss"])) for a, b in zip(logs, ref_logs)),
        "acc": max(abs(float(a["acc"]) - float(b["acc"])) for a, b in zip(logs, ref_logs)),
        "f1_equal": all(np.array_equal(a["f1"]["matrix"], b["f1"]["matrix"])
                        for a, b in zip(logs, ref_logs)),
        "counts": [float(m.get("count", -1)) for m in logs],
        "step": int(state.step),
    }

def bn_model(axis_name):
    return nn.Sequential(nn.Linear(8, 16), nn.BatchNorm1d(16, axis_name=axis_name), nn.ReLU(),
                         nn.Linear(16, 3))

full = batches[:2] * 2
ref, _ = run(train.make_train_step(losses.cross_entropy), create(bn_model(None)), full)
for backend in BACKENDS:
    dp = parallel.DataParallel(backend=backend)
    state, _ = run(dp.make_train_step(losses.cross_entropy), create(bn_model("data")), full)
    out[backend]["bn_params"] = max_diff(state.params, ref.params)
    out[backend]["bn_state"] = max_diff(state.model_state, ref.model_state)

# BatchNorm without axis_name: each device normalises its own 8 rows; device 0's running
# statistics are kept
model = bn_model(None)
state = create(model)
hidden = np.asarray(x[:8] @ state.params["0"]["weight"] + state.params["0"]["bias"])
dp = parallel.DataParallel()
plain, _ = run(dp.make_train_step(losses.cross_entropy), state, batches[:1])
single, _ = run(train.make_train_step(losses.cross_entropy), create(model), batches[:1])
out["bn_plain"] = {
    "mean_vs_device0": max_diff(plain.model_state["1"]["running_mean"], 0.1 * hidden.mean(0)),
    "params_vs_single": max_diff(plain.params, single.params),
}
print(json.dumps(out))
"""


def _run(script: str, x64: bool) -> dict:
    prelude = PRELUDE.replace("X64", str(x64))
    return json.loads(run_with_cpu_devices(prelude + script, devices=4).splitlines()[-1])


def test_data_parallel_reaches_the_parameters_of_single_device_training():
    out = _run(EQUIVALENCE, x64=True)
    for backend in ("pmap", "shard_map"):
        r = out[backend]
        assert r["step"] == 4
        assert r["params"] < 1e-12 and r["opt_state"] < 1e-12, r
        assert r["loss"] < 1e-12 and r["acc"] < 1e-6 and r["f1_equal"], r  # acc is float32
        assert r["counts"] == [-1, -1, 30.0, 5.0], r  # global counts of the padded batches
        # BatchNorm(axis_name="data"): global batch statistics, as on one device
        assert r["bn_params"] < 1e-12 and r["bn_state"] < 1e-12, r
    # without axis_name: per-device statistics, device 0's running mean kept
    assert out["bn_plain"]["mean_vs_device0"] < 1e-12
    assert out["bn_plain"]["params_vs_single"] > 1e-6


FIT = """
import tempfile
from funcnet.data import ArrayDataset, DataLoader

x, y = blobs(150)

def loader(rows, seed):
    return DataLoader(ArrayDataset(x[rows].astype(np.float64), y[rows]), 32, shuffle=True, seed=seed)

ms = {"acc": metrics.accuracy, "f1": metrics.F1Score(num_classes=3, average="macro")}

def fit(train_step=None, eval_step=None, callbacks=()):
    state = create(MLP(), optim.adam(1e-2))
    return train.fit(state, loader(slice(0, 100), 0), epochs=2, loss_fn=losses.cross_entropy, metrics=ms,
                     eval_loader=loader(slice(100, 150), 1), train_step=train_step, eval_step=eval_step,
                     callbacks=callbacks, progress="quiet")

ref_state, ref = fit()
out = {}
for backend in BACKENDS:
    dp = parallel.DataParallel(backend=backend)
    with tempfile.TemporaryDirectory() as directory:
        state, history = fit(dp.make_train_step(losses.cross_entropy, metrics=ms),
                             dp.make_eval_step(losses.cross_entropy, metrics=ms),
                             [train.ModelCheckpoint(directory)])
        restored = train.restore_training(directory, create(MLP(), optim.adam(1e-2)))
    out[backend] = {
        "history": {k: max(abs(a - b) for a, b in zip(history.history[k], ref.history[k]))
                    for k in ("loss", "acc", "f1", "val_loss", "val_acc", "val_f1")},
        "steps": max(abs(a["loss"] - b["loss"]) for a, b in zip(history.steps, ref.steps)),
        "n_steps": len(history.steps),
        "params": max_diff(state.params, ref_state.params),
        "restored": max_diff(restored.params, state.params),
        "restored_step": int(restored.step),
    }
out["val_f1"] = ref.history["val_f1"]
print(json.dumps(out))
"""


def test_fit_with_data_parallel_steps_matches_single_device_fit():
    out = _run(FIT, x64=True)
    assert out["val_f1"][-1] > 0.5  # a trained model: the F1 compared is not a trivial one
    for backend in ("pmap", "shard_map"):
        r = out[backend]
        assert r["n_steps"] == 8  # 4 batches per epoch, the last one padded
        assert r["steps"] < 1e-12 and r["params"] < 1e-12, r
        for name, diff in r["history"].items():  # accuracy and F1 are float32 values
            assert diff < (1e-12 if "loss" in name else 1e-6), (name, r)
        assert r["restored"] == 0 and r["restored_step"] == 8, r


COLLECTIVES = """
import re
OPS = r"(all-reduce|all-gather|all-to-all|collective-permute|reduce-scatter)(-start)?"
SHAPE = re.compile(r"(pred|[suf]\\d+)\\[([\\d,]*)\\]")
WIDTH = {"pred": 1}

def collectives(step, *args):
    found = []
    for line in step.lower(*args).compile().as_text().splitlines():
        m = re.search(r"=\\s*(.*?)\\s" + OPS + r"\\(", line)
        if m:
            shapes = SHAPE.findall(m.group(1))
            nbytes = sum(WIDTH.get(t, int(t[1:]) // 8) * int(np.prod([int(d) for d in dims.split(",") if d]))
                         for t, dims in shapes)
            found.append([m.group(2), sorted({t for t, _ in shapes}), nbytes])
    return found

state = train.TrainState.create(MLP(), optim.adam(1e-3), jax.random.key(0))
x, y = blobs(32)
mask = np.ones(32, bool)
out = {"grad_bytes": sum(a.nbytes for a in jax.tree.leaves(state.params))}
for backend in BACKENDS:
    dp = parallel.DataParallel(backend=backend)
    acc = {"acc": metrics.accuracy}
    f1 = {"acc": metrics.accuracy, "f1": metrics.F1Score(num_classes=3, average="macro")}
    out[backend] = {
        "train": collectives(dp.make_train_step(losses.cross_entropy, metrics=acc), state, (x, y), mask),
        "train_f1": collectives(dp.make_train_step(losses.cross_entropy, metrics=f1), state, (x, y), mask),
        "eval": collectives(dp.make_eval_step(losses.cross_entropy, metrics=acc), state, (x, y), mask),
    }
    step = dp.make_train_step(lambda out, y: losses.cross_entropy(out, y))
    try:
        step(state, (x[:30], y[:30]))
        out[backend]["error"] = None
    except ValueError as e:
        out[backend]["error"] = str(e)
print(json.dumps(out))
"""


@pytest.fixture(scope="module")
def collectives():
    return _run(COLLECTIVES, x64=False)


def test_the_step_sends_the_gradients_and_scalars_in_one_all_reduce(collectives):
    grad_bytes = collectives["grad_bytes"]  # MLP(8, 16, 3): 195 float32 = 780 bytes
    assert grad_bytes == 780
    for backend in ("pmap", "shard_map"):
        r = collectives[backend]
        # gradients + loss, accuracy, count: one all-reduce, no collective per parameter
        assert r["train"] == [["all-reduce", ["f32"], grad_bytes + 3 * 4]], r
        # an F1 accumulator: its (3, 3) int32 state from each of the 4 devices, merged
        # after the all-reduce by F1Score.merge (integers: a second all-reduce)
        assert sorted(r["train_f1"]) == [
            ["all-reduce", ["f32"], grad_bytes + 3 * 4],
            ["all-reduce", ["s32"], 4 * 3 * 3 * 4],
        ], r
        assert r["eval"] == [["all-reduce", ["f32"], 3 * 4]], r


def test_a_batch_the_devices_do_not_divide_needs_a_loss_with_mask(collectives):
    for backend in ("pmap", "shard_map"):
        error = collectives[backend]["error"]
        assert error is not None and "a batch of 30 rows does not split evenly" in error
        assert "drop_last=True" in error and "mask=" in error


LOSS_SCALE = """
from funcnet import mixed_precision as mp

x, y = blobs(64)
batches = [(x[i:i + 16], y[i:i + 16]) for i in range(0, 64, 16)] * 2

def create16():
    # 2**40 overflows float16 gradients; each overflow divides the scale by 2**10
    scaler = mp.DynamicLossScale(init_scale=2.0**40, backoff_factor=2.0**-10, growth_interval=3)
    return train.TrainState.create(MLP(), mp.with_loss_scale(optim.adam(1e-2), scaler),
                                   jax.random.key(1))

def trace(step):
    _, logs = run(step, create16(), batches)
    return {"skipped": [bool(m["skipped"]) for m in logs],
            "scale": [float(m["loss_scale"]) for m in logs],
            "loss": [float(m["loss"]) for m in logs]}

out = {"single": trace(train.make_train_step(losses.cross_entropy, precision="fp16"))}
for backend in BACKENDS:
    dp = parallel.DataParallel(backend=backend)
    out[backend] = trace(dp.make_train_step(losses.cross_entropy, precision="fp16"))
print(json.dumps(out))
"""


def test_data_parallel_float16_skips_the_steps_one_device_skips():
    out = _run(LOSS_SCALE, x64=False)
    single = out["single"]
    # 2**40, 2**30 and 2**20 overflow float16 gradients; 2**10 does not, and grows to
    # 2**11 after 3 good steps
    assert single["skipped"][:6] == [True] * 3 + [False] * 3, single
    assert single["scale"][:7] == [2.0**40, 2.0**30, 2.0**20] + [2.0**10] * 3 + [2.0**11], single
    for backend in ("pmap", "shard_map"):
        r = out[backend]
        assert r["skipped"] == single["skipped"] and r["scale"] == single["scale"], (backend, r)
        # float16 sums split over four devices round differently
        assert max(abs(a - b) for a, b in zip(r["loss"], single["loss"])) < 1e-2, (backend, r)
