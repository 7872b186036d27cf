"""Two real processes on loopback (CPU collectives, 2 simulated devices each): init_distributed,
a sharded DataLoader feeding fit, checkpoints written once and restored by both, and what
happens when a process dies.

Every process is bounded: small JAX timeouts, a wall-clock limit per run, a fresh port per
run, SIGKILL (JAX ignores SIGTERM) for whatever is left.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import jax
import numpy as np
import pytest

from funcnet import losses, metrics, optim, parallel, train
from funcnet.data import ArrayDataset, DataLoader
from funcnet.launch import free_port
from tests._devices import run_with_cpu_devices
from tests.train._models import MLP, blobs

ROOT = Path(__file__).parents[2]
LIMIT = 60  # seconds for any run of processes: several times what one takes, and below
# JAX's default timeouts (100 s and more), which init_distributed(timeout=...) replaces

WORKER = textwrap.dedent(
    """
    import itertools, os, signal, sys, time
    from pathlib import Path

    import jax
    import numpy as np

    scenario, out = sys.argv[1], Path(sys.argv[2])
    if scenario == "stop":
        jax.config.update("jax_enable_recoverability", True)

    from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

    from funcnet import checkpoint, losses, metrics, optim, parallel, train
    from funcnet.data import ArrayDataset, DataLoader, default_collate
    from tests.train._models import MLP, blobs

    parallel.init_distributed(timeout=float(os.environ["TEST_TIMEOUT"]))
    rank = jax.process_index()
    assert jax.process_count() == 2 and len(jax.devices()) == 4, jax.devices()
    assert parallel.is_main_process() == (rank == 0)
    sharding = NamedSharding(Mesh(np.array(jax.devices()), ("data",)), P("data"))


    def fresh():
        state = train.TrainState.create(MLP(), optim.adam(1e-2), jax.random.key(0))
        # batches of 32, 32, 26: each process reads 16 rows of a full batch, and all 26 of
        # the last (replicated: 26 rows do not split over 4 devices)
        loader = DataLoader(ArrayDataset(*blobs(90)), 32, shuffle=True, device=sharding)
        return state, loader


    def train_and_resume():
        state, loader = fresh()
        callbacks = [train.ModelCheckpoint(out / "run"), train.CSVLogger(out / f"log{rank}.csv")]
        kwargs = dict(loss_fn=losses.cross_entropy, metrics={"acc": metrics.accuracy})
        state, _ = train.fit(state, loader, 2, callbacks=callbacks, progress="log", **kwargs)
        # into arrays that span the processes (the key too), each process its own shards
        again = train.restore_training(out / "run", state)
        assert again.key.sharding == state.key.sharding and not again.key.is_fully_addressable
        for a, b in zip(jax.tree.leaves(again.params), jax.tree.leaves(state.params)):
            assert a.sharding == b.sharding
            np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
        state, loader = fresh()  # a restart: every process restores the one checkpoint
        state = train.restore_training(out / "run", state, loader)
        assert int(state.step) == 6 and loader.epoch == 2
        state, _ = train.fit(state, loader, 3, initial_epoch=2, progress="log", **kwargs)
        leaves = jax.tree.leaves(state.params)
        np.savez(out / f"params{rank}.npz", *[np.asarray(a) for a in leaves])


    class SlowStart(train.Callback):
        def on_fit_begin(self, loop):
            if rank == 1:  # process 0 reaches ModelCheckpoint's clean-up first
                time.sleep(1.5)


    def start_over_in_a_used_directory():
        # Every process must see the checkpoints that overwrite=True deletes: one that
        # looked after process 0 deleted them would skip the deletion's barrier.
        kwargs = dict(loss_fn=losses.cross_entropy, progress="quiet")
        state, loader = fresh()
        train.fit(state, loader, 1, callbacks=[train.ModelCheckpoint(out / "again")], **kwargs)
        state, loader = fresh()
        callbacks = [SlowStart(), train.ModelCheckpoint(out / "again", overwrite=True)]
        train.fit(state, loader, 1, callbacks=callbacks, **kwargs)


    def split_array_round_trip():
        local = np.arange(12, dtype=np.float32).reshape(4, 3) + 100 * rank
        x = jax.make_array_from_process_local_data(sharding, local, (8, 3))
        path = checkpoint.save(out / "split", {"x": x}, step=0)
        assert path.exists()  # written by process 0, seen by both after save returns
        back = checkpoint.restore(out / "split", target={"x": x})["x"]
        assert back.sharding == x.sharding
        for mine, restored in zip(x.addressable_shards, back.addressable_shards):
            np.testing.assert_array_equal(np.asarray(mine.data), np.asarray(restored.data))
        whole = checkpoint.restore(out / "split", as_numpy=True)["x"]
        np.testing.assert_array_equal(whole[:, 0], [0, 3, 6, 9, 100, 103, 106, 109])


    def loaders_match_one_process():
        # batches of 32, 32 and 6: with pad_last, process 1's rows of the last are all
        # padding; without, the 6 rows are replicated. Both paths, and a grain source.
        ds = ArrayDataset(*blobs(70))
        sources = [dict(dataset=ds), dict(dataset=ds, collate_fn=default_collate)]
        try:
            import grain
        except ImportError:
            pass
        else:
            x, y = ds.arrays
            grain_ds = grain.MapDataset.source(range(70)).map(lambda i: (x[i], y[i]))
            sources.append(dict(dataset=grain_ds))
        for source, pad_last in itertools.product(sources, (False, True)):
            options = dict(batch_size=32, shuffle=True, seed=3, pad_last=pad_last)
            expected = list(DataLoader(ds, **options))  # NumPy batches, whole
            got = list(DataLoader(**source, **options, device=sharding))
            assert len(got) == len(expected) == 3
            for mine, whole in zip(jax.tree.leaves(got), jax.tree.leaves(expected)):
                assert mine.shape == whole.shape
                for shard in mine.addressable_shards:
                    np.testing.assert_array_equal(np.asarray(shard.data), whole[shard.index])


    def fail(how):
        step = jax.jit(lambda x: x.sum())
        for i in range(10**6):
            x = jax.make_array_from_process_local_data(sharding, np.ones((2, 3)), (4, 3))
            if rank == 1 and i == 3:
                os.kill(os.getpid(), how)  # SIGKILL: dies; SIGSTOP: stops answering
            try:
                jax.block_until_ready(step(x))
            except jax.errors.JaxRuntimeError as e:
                print(f"caught JaxRuntimeError at step {i}: {e}", flush=True)
                sys.exit(3)
            time.sleep(0.05)


    if scenario == "train":
        loaders_match_one_process()
        train_and_resume()
        start_over_in_a_used_directory()
        split_array_round_trip()
    elif scenario == "die":
        fail(signal.SIGKILL)
    else:
        fail(signal.SIGSTOP)
    print(f"process {rank} done", flush=True)
    """
)


def _start(tmp_path: Path, scenario: str, ranks: list[int], timeout: float) -> list:
    """Starts the worker as the processes ``ranks`` of a 2-process run on a fresh port."""
    (tmp_path / "worker.py").write_text(WORKER)
    port = free_port()
    runs = []
    for rank in ranks:
        env = {
            **os.environ,
            "FUNCNET_COORDINATOR": f"127.0.0.1:{port}",
            "FUNCNET_NUM_PROCESSES": "2",
            "FUNCNET_PROCESS_ID": str(rank),
            "JAX_PLATFORMS": "cpu",
            "JAX_NUM_CPU_DEVICES": "2",
            "PYTHONUNBUFFERED": "1",
            "PYTHONPATH": str(ROOT),
            "TEST_TIMEOUT": str(timeout),
        }
        out, err = (open(tmp_path / f"{rank}.{name}", "w") for name in ("out", "err"))
        command = [sys.executable, str(tmp_path / "worker.py"), scenario, str(tmp_path)]
        process = subprocess.Popen(
            command, env=env, cwd=ROOT, stdout=out, stderr=err, start_new_session=True
        )
        runs.append((process, out, err))
    return runs


def _finish(runs: list, wait_for: int | None = None) -> list[tuple[int | None, str, str]]:
    """Waits for the first ``wait_for`` processes (default all; at most LIMIT seconds in
    all), SIGKILLs whatever is still running and returns ``(code, stdout, stderr)`` per
    process (the code of one that was killed here is -SIGKILL)."""
    started = time.monotonic()
    try:
        for process, _, _ in runs[:wait_for]:
            process.wait(timeout=max(LIMIT - (time.monotonic() - started), 1))
    finally:
        for process, out, err in runs:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
            out.close()
            err.close()
    return [
        (process.returncode, Path(out.name).read_text(), Path(err.name).read_text())
        for process, out, err in runs
    ]


def _reference_params() -> list[np.ndarray]:
    """The same three epochs in this (single-device) process, with NumPy batches."""
    state = train.TrainState.create(MLP(), optim.adam(1e-2), jax.random.key(0))
    loader = DataLoader(ArrayDataset(*blobs(90)), 32, shuffle=True)
    kwargs = dict(loss_fn=losses.cross_entropy, metrics={"acc": metrics.accuracy})
    state, _ = train.fit(state, loader, epochs=3, progress="quiet", **kwargs)
    return [np.asarray(a) for a in jax.tree.leaves(state.params)]


def test_two_processes_train_checkpoint_and_resume_like_one(tmp_path):
    results = _finish(_start(tmp_path, "train", [0, 1], timeout=30))
    for rank, (code, out, err) in enumerate(results):
        assert code == 0, f"process {rank}:\n{out[-2000:]}\n{err[-3000:]}"
        assert f"process {rank} done" in out
    # Only process 0 prints progress and writes logs; the checkpoint exists once.
    assert "epoch 2/2 done" in results[0][1] and "epoch" not in results[1][1]
    assert (tmp_path / "log0.csv").exists() and not (tmp_path / "log1.csv").exists()
    assert sorted(p.name for p in (tmp_path / "run").iterdir()) == [
        "step_000000003",
        "step_000000006",
    ]
    params = [np.load(tmp_path / f"params{rank}.npz") for rank in (0, 1)]
    both = [[p[f"arr_{i}"] for i in range(len(p.files))] for p in params]
    for a, b in zip(*both):
        np.testing.assert_array_equal(a, b)  # one program: the same parameters everywhere
    # Float32 on both sides: the 4 devices of 2 processes sum the gradient in another order
    # than one device (gloo all-reduce), which changes the last bits, as on one process
    # with 4 devices (tests/parallel/test_sharded_loader.py measures 3e-8).
    for a, b in zip(both[0], _reference_params()):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


@pytest.fixture(scope="module")
def failures(tmp_path_factory):
    """Three failing runs, started together so that their waits for JAX's timeouts overlap:
    process 1 killed in the middle of training ("die"), process 1 stopped there under
    recoverability ("stop"), process 0 alone ("missing")."""
    runs = {
        "die": _start(tmp_path_factory.mktemp("die"), "die", [0, 1], timeout=5),
        "stop": _start(tmp_path_factory.mktemp("stop"), "stop", [0, 1], timeout=5),
        "missing": _start(tmp_path_factory.mktemp("missing"), "die", [0], timeout=5),
    }
    yield runs
    for run in runs.values():
        _finish(run, wait_for=0)


def test_a_killed_process_ends_the_other_within_the_timeout(failures):
    (code0, out0, err0), (code1, _, _) = _finish(failures["die"])
    assert code1 == -signal.SIGKILL
    # JAX aborts the survivor once the heartbeat timeout passes: an abort, not a hang.
    assert code0 == -signal.SIGABRT, (code0, out0[-2000:], err0[-3000:])
    assert "another task died" in err0, err0[-3000:]


def test_with_recoverability_a_silent_peer_is_a_python_error(failures):
    # Process 1 stops (SIGSTOP) in the middle of training: no error, no heartbeat.
    (code0, out0, err0), _ = _finish(failures["stop"], wait_for=1)
    # init_distributed set the CPU collective timeout: the step raises instead of waiting
    # for ever, and process 0 goes on (here it exits with its own status).
    assert code0 == 3, (code0, out0[-2000:], err0[-3000:])
    assert "caught JaxRuntimeError at step 3" in out0 and "Timed out waiting 5000ms" in out0


def test_a_missing_peer_aborts_after_the_timeout(failures):
    ((code, out, err),) = _finish(failures["missing"])
    assert code == -signal.SIGABRT, (code, out[-2000:], err[-3000:])
    assert "DEADLINE_EXCEEDED" in err, err[-3000:]


def test_one_process_is_a_no_op(monkeypatch):
    for name in (parallel.ENV_COORDINATOR, parallel.ENV_NUM_PROCESSES, parallel.ENV_PROCESS_ID):
        monkeypatch.delenv(name, raising=False)
    script = "from funcnet import parallel; parallel.init_distributed(); import jax; print(jax.process_count())"
    # First thing in a process, with no arguments, launcher or cluster: a single process.
    assert run_with_cpu_devices(script, devices=1).strip() == "1"
    jax.numpy.zeros(1).block_until_ready()  # here JAX has run: it cannot detect a cluster
    with pytest.warns(RuntimeWarning, match="goes on as a single process"):
        parallel.init_distributed()
    parallel.init_distributed(num_processes=1)
    assert not jax.distributed.is_initialized() and parallel.is_main_process()


def test_a_bad_environment_is_named(monkeypatch):
    monkeypatch.setenv(parallel.ENV_NUM_PROCESSES, "two")
    with pytest.raises(ValueError, match="FUNCNET_NUM_PROCESSES='two' is not an integer"):
        parallel.init_distributed()
