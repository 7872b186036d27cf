"""python -m funcnet.launch: starts N processes on a fresh loopback port, relays their output
prefixed by process, returns the first failure's status and kills the others."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[2]
LIMIT = 60  # seconds for any launch: far above what one takes

SCRIPT = textwrap.dedent(
    """
    import sys

    import jax
    import numpy as np
    from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

    from funcnet import parallel

    parallel.init_distributed()
    rank = jax.process_index()
    sharding = NamedSharding(Mesh(np.array(jax.devices()), ("data",)), P("data"))
    x = jax.make_array_from_process_local_data(sharding, np.full((2,), rank + 1.0), (4,))
    total = float(jax.jit(lambda x: x.sum())(x))  # 1 + 1 + 2 + 2 over the 4 devices
    print(f"process {rank} of {jax.process_count()}: {len(jax.devices())} devices, sum {total}")
    print(f"stderr of {rank}", file=sys.stderr)
    sys.exit(int(sys.argv[1]))
    """
)

# No JAX here: the launcher's handling of failures and Ctrl-C, quickly.
PLAIN = textwrap.dedent(
    """
    import os, sys, time

    rank = int(os.environ["FUNCNET_PROCESS_ID"])
    count = int(os.environ["FUNCNET_NUM_PROCESSES"])
    here = os.path.dirname(os.path.abspath(__file__))
    print(f"pid {os.getpid()}", flush=True)
    open(os.path.join(here, f"ready.{rank}"), "w").close()
    if rank == int(sys.argv[1]):
        # fail once every process has printed its pid: a loaded machine starts them slowly
        while sum(name.startswith("ready.") for name in os.listdir(here)) < count:
            time.sleep(0.01)
        sys.exit(7)
    time.sleep(600)
    """
)


def _launch(tmp_path: Path, script: str, options: list[str], arg: str) -> subprocess.Popen:
    """``python -m funcnet.launch <options> script.py <arg>``, in a session of its own."""
    (tmp_path / "script.py").write_text(script)
    return subprocess.Popen(
        [sys.executable, "-m", "funcnet.launch", *options, str(tmp_path / "script.py"), arg],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )


def _result(launcher: subprocess.Popen) -> tuple[int, str, str]:
    try:
        out, err = launcher.communicate(timeout=LIMIT)
    finally:
        if launcher.poll() is None:
            os.killpg(launcher.pid, signal.SIGKILL)
            launcher.communicate()  # reaps it and closes the pipes (no ResourceWarning later)
    return launcher.returncode, out, err


def _gone(out: str, count: int) -> None:
    """The ``count`` processes whose pids the script printed no longer exist."""
    pids = [int(line.split("pid ")[1]) for line in out.splitlines() if "] pid " in line]
    assert len(pids) == count, out
    for pid in pids:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)


def test_runs_a_script_as_two_processes_of_one_jax_run(tmp_path):
    code, out, err = _result(_launch(tmp_path, SCRIPT, ["--nproc", "2", "--cpu-devices", "2"], "0"))
    assert code == 0, err[-3000:]
    assert "[0] process 0 of 2: 4 devices, sum 6.0" in out.splitlines()
    assert "[1] process 1 of 2: 4 devices, sum 6.0" in out.splitlines()
    assert "[0] stderr of 0" in err and "[1] stderr of 1" in err


def test_returns_the_failing_status_and_kills_the_others(tmp_path):
    code, out, err = _result(_launch(tmp_path, PLAIN, ["--nproc", "3"], "1"))
    assert code == 7, err[-3000:]
    assert "funcnet.launch: process 1 failed with exit status 7; killed the other 2" in err
    _gone(out, 3)


def test_ctrl_c_kills_every_process(tmp_path):
    launcher = _launch(tmp_path, PLAIN, ["--nproc", "2"], "-1")  # no process exits
    lines = []
    while len(lines) < 2:  # both processes run (each printed its pid)
        lines.append(launcher.stdout.readline())
    launcher.send_signal(signal.SIGINT)
    code, _, err = _result(launcher)
    assert code == 130 and "stopped; killed every process" in err
    _gone("".join(lines), 2)


def test_a_process_ended_by_a_signal_gives_128_plus_its_number(tmp_path):
    script = "import os, signal\nos.kill(os.getpid(), signal.SIGABRT)\n"
    code, _, err = _result(_launch(tmp_path, script, ["--nproc", "1"], "x"))
    assert code == 128 + signal.SIGABRT
    assert "failed with signal SIGABRT (SIGABRT: JAX's distributed runtime aborts" in err
