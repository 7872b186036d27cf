"""The benchmark suite (``benchmarks/``): its arithmetic, its workloads and its command.

Nothing here times anything (speed is the suite's job, not the tests'). These tests make
sure the suite keeps measuring what it claims: every workload's funcnet version computes
the same losses as its raw-JAX reference, ratios are taken within a repetition, targets
are reported as met or missed correctly, and the compiled funcnet programs move no more
memory than raw JAX's (a figure that does not depend on the machine's load).
"""

from __future__ import annotations

import json

import jax.numpy as jnp
import pytest

from benchmarks import ab, compile, cpu_devices, harness, hlo, run, run_one
from benchmarks.workloads import CPU_WORKLOADS, load

# The harness is version-independent Python; CI's newest-jax pass skips it (pyproject).
pytestmark = pytest.mark.one_version


def _result(impl: str, rep: int, step_s: float, first_s: float, n_params: int = 10) -> dict:
    return {
        "impl": impl,
        "workload": "mlp",
        "rep": rep,
        "step_s": step_s,
        "first_step_s": first_s,
        "first_step_cpu_s": first_s,
        "peak_rss_mib": 300.0,
        "n_params": n_params,
    }


def test_ratios_are_taken_against_raw_jax_of_the_same_repetition():
    # The machine got 2x slower in repetition 1: the ratios must not see it.
    results = [
        _result("raw", 0, 1.0, 1.0),
        _result("funcnet", 0, 1.02, 1.1),
        _result("raw", 1, 2.0, 2.0),
        _result("funcnet", 1, 2.04, 2.2),
    ]
    summary = run.summarise(results, ["raw", "funcnet"], ["mlp"], peak_flops=1.0)
    assert summary["mlp"]["funcnet"]["ratio"] == pytest.approx([1.02, 1.02])
    assert summary["mlp"]["funcnet"]["first_step_ratio"] == pytest.approx([1.1, 1.1])
    assert summary["mlp"]["funcnet"]["step_s"] == pytest.approx(1.53)  # median of the two


def test_targets_say_met_or_missed():
    results = [
        _result("raw", 0, 1.0, 1.0),
        _result("funcnet", 0, 1.05, 1.1),
        _result("haiku", 0, 1.01, 1.0),
    ]
    summary = run.summarise(results, ["raw", "funcnet", "haiku"], ["mlp"], peak_flops=1.0)
    lines = "\n".join(run.targets(summary))
    assert "step time 1.05 (target ≤ 1.03): MISSED" in lines
    assert "time to first step 1.10" in lines and "target ≤ 1.2): met" in lines
    assert "fastest of haiku, step time in the same repetition: funcnet / haiku 1.04" in lines
    assert lines.rstrip().endswith("MISSED")


def test_funcnet_is_compared_with_other_libraries_within_a_repetition():
    # Repetition 2 ran on a slower machine for funcnet than repetition 1 did for Linen:
    # across repetitions funcnet's median (1.5) is above Linen's (1.4), but within each
    # repetition funcnet is faster twice out of three, so the target is met.
    results = []
    for rep, (raw, fn, linen) in enumerate([(1.0, 1.0, 1.02), (2.0, 2.0, 2.04), (1.5, 1.5, 1.4)]):
        results += [_result("raw", rep, raw, 1.0), _result("funcnet", rep, fn, 1.0)]
        results.append(_result("linen", rep, linen, 1.0))
    summary = run.summarise(results, ["raw", "funcnet", "linen"], ["mlp"], peak_flops=1.0)
    (line,) = [x for x in run.targets(summary) if "fastest" in x]
    assert "funcnet / linen 0.98 [0.98–1.07]" in line and line.endswith("met")


def test_funcnet_against_pytorch_takes_the_faster_cpu_mode_in_each_repetition():
    # One device is faster in repetition 0, the CPU devices in repetition 1; against
    # PyTorch the faster of the two counts, paired within the repetition.
    results = []
    for rep, (fn, cpus, torch) in enumerate([(1.0, 1.2, 1.1), (2.0, 1.4, 1.5)]):
        results += [_result("raw", rep, 1.0, 1.0), _result("funcnet", rep, fn, 1.0)]
        results += [_result("funcnet-cpus", rep, cpus, 1.0), _result("torch", rep, torch, 1.0)]
    impls = ["raw", "funcnet", "funcnet-cpus", "torch"]
    summary = run.summarise(results, impls, ["mlp"], peak_flops=1.0)
    (line,) = [x for x in run.targets(summary) if "PyTorch" in x]
    assert "funcnet (funcnet or funcnet-cpus, the faster in each repetition)" in line
    assert "0.92 [0.91–0.93]" in line and line.endswith("met")
    results[-1]["step_s"] = 1.2  # PyTorch far faster than both in repetition 1
    summary = run.summarise(results, impls, ["mlp"], peak_flops=1.0)
    (line,) = [x for x in run.targets(summary) if "PyTorch" in x]
    assert line.endswith("MISSED")
    assert not [x for x in run.targets(summary, "gpu") if "PyTorch" in x]


def test_differing_parameter_counts_are_an_error():
    results = [_result("raw", 0, 1.0, 1.0, n_params=10), _result("funcnet", 0, 1.0, 1.0, 11)]
    summary = run.summarise(results, ["raw", "funcnet"], ["mlp"], peak_flops=1.0)
    assert run.check_params(summary) == [
        "mlp: parameter counts differ: {'raw': [10], 'funcnet': [11]}"
    ]


@pytest.mark.parametrize(
    ("name", "overrides"),
    [*((w, []) for w in CPU_WORKLOADS), ("gpt", []), ("gpt", ["loss_chunks=4", "remat=full"])],
)
def test_funcnet_and_raw_jax_compute_the_same_losses(name, overrides):
    cfg = run_one.config(load(name), quick=True, overrides=overrides)  # a tiny GPT
    result = run_one.verify(name, cfg, steps=2)
    assert result["n_params_funcnet"] == result["n_params_raw"]
    assert result["ok"], result


def test_measure_reports_every_figure():
    calls = []
    bench = harness.Bench(
        step=lambda: calls.append(1), sync=lambda: None, loss=lambda: 0.5, n_params=3
    )
    out = harness.measure(bench, harness.Timing(warmup=2, rounds=3, round_s=0.001))
    assert out["rounds_s"] and len(out["rounds_s"]) == 3
    assert out["first_step_s"] >= 0 and out["step_s"] >= 0 and out["peak_rss_mib"] > 0
    assert len(calls) == 1 + 2 + 3 * out["steps_per_round"]
    assert out["n_params"] == 3 and float(jnp.asarray(out["last_loss"])) == 0.5


def test_funcnet_mlp_program_moves_no_more_memory_than_raw_jax():
    """The compiled programs compared (load-independent): the default non-finite guard
    and funcnet's layers, loss and Adam add no bytes and no temporaries to the MLP step."""
    cfg = load("mlp").config(False)
    raw = hlo.analyse("raw", "mlp", cfg, dump=None)
    fn = hlo.analyse("funcnet", "mlp", cfg, dump=None)
    assert fn["temp_bytes"] <= raw["temp_bytes"]
    assert fn["bytes_accessed"] <= 1.01 * raw["bytes_accessed"]
    assert fn["counts"].get("copy", 0) <= raw["counts"].get("copy", 0)


def test_funcnet_transformer_program_moves_no_more_memory_than_raw_jax():
    """The transformer step (load-independent): funcnet's attention, LayerNorm, loss and
    AdamW move no more bytes than the hand-written reference (465 against 531 MB on jax
    0.10.2; JAX's own XLA attention path, which scales the logits, would move 535)."""
    cfg = load("transformer").config(False)
    raw = hlo.analyse("raw", "transformer", cfg, dump=None)
    fn = hlo.analyse("funcnet", "transformer", cfg, dump=None)
    assert fn["bytes_accessed"] <= raw["bytes_accessed"]


def test_ab_times_the_three_steps_in_one_process():
    summary = ab.main(["--workload", "mlp", "--steps", "2", "--rounds", "2"])
    assert set(summary) == {"raw", "funcnet", "funcnet-noguard"}
    assert summary["raw"]["ratio"] == 1.0
    assert all(s["step_s"] > 0 and s["ratio"] > 0 for s in summary.values())
    assert summary["funcnet"]["vs"] == {}  # no other library asked for


def test_ab_pairs_funcnet_with_each_library_within_a_round():
    # Round 1 ran 2x slower for everyone: the paired ratios must not see it.
    times = {"raw": [1.0, 2.0], "funcnet": [1.1, 2.2], "linen": [1.0, 2.4], "torch": [0.5, 1.0]}
    summary = ab.summarise(times)
    assert summary["funcnet"]["ratio"] == pytest.approx(1.1)
    assert summary["linen"]["ratio"] == pytest.approx(1.1)
    assert summary["funcnet"]["vs"] == {"linen": [pytest.approx(1.1), pytest.approx(2.2 / 2.4)]}


def test_cpu_devices_speed_up_is_paired_within_a_repetition():
    """``python -m benchmarks.cpu_devices``: repetition 1 ran 2x slower for both device
    counts, so the paired speed-up stays 2.00 while the median step times move."""
    runs = [
        {"workload": "cnn", "devices": 1, "rep": 0, "step_s": 0.010},
        {"workload": "cnn", "devices": 2, "rep": 0, "step_s": 0.005},
        {"workload": "cnn", "devices": 1, "rep": 1, "step_s": 0.020},
        {"workload": "cnn", "devices": 2, "rep": 1, "step_s": 0.010},
        {"workload": "mlp", "devices": 1, "rep": 0, "error": "exit 1"},
    ]
    rows = cpu_devices.table(runs, ["cnn", "mlp"], [1, 2]).splitlines()[2:]
    assert rows == [
        "| cnn | 1 | 15.00 | 1.00 [1.00–1.00] |",
        "| cnn | 2 | 7.50 | 2.00 [2.00–2.00] |",
        "| mlp | 1 | failed | |",
        "| mlp | 2 | failed | |",
    ]


_CPU_LOG = """\
I1204 cpu_compiler.cc:2091] Compiling: jit_init
I1204 ir_compiler.cc:293] Compiled LLVM module: __compute_module_iota_kernel_module time: 3 ms (3000 us)
I1204 cpu_compiler.cc:2091] Compiling: jit_step
I1204 ir_compiler.cc:293] Compiled LLVM module: __compute_module_add_fusion.2_kernel_module time: 8.5 ms (8500 us) (cumulative: 1 s)
I1204 ir_compiler.cc:293] Compiled LLVM module: __compute_module___compute_module_wrapped_add time: 950 us (950 us)
I1204 ir_compiler.cc:293] Compiled LLVM module: __compute_module_pad_transpose_fusion_kernel_module time: 1.25 s (1250000 us)
I1204 cpu_compiler.cc:2094] Compiling [jit_step] for CPU using JIT time: 1.3 s (1300000 us)
I1204 cpu_compiler.cc:2091] Compiling: jit_other
I1204 ir_compiler.cc:293] Compiled LLVM module: __compute_module_copy_kernel_module time: 2 ms (2000 us)
"""


def test_compile_log_gives_the_steps_kernels_only():
    assert compile.parse_cpu_log(_CPU_LOG) == [
        ("add_fusion.2", 8.5), ("wrapped_add", pytest.approx(0.95)), ("pad_transpose_fusion", 1250.0)
    ]  # fmt: skip
    assert compile.parse_cpu_log(_CPU_LOG, "jit_init") == [("iota", 3.0)]
    assert compile.parse_cpu_log("no compiler log here") == []


@pytest.mark.slow
def test_compile_splits_the_first_step_and_reads_the_kernels():
    """``python -m benchmarks.compile``: phases timed in one process, and XLA:CPU's log read
    from a child process (this fails if the installed XLA stops printing it as parsed)."""
    out = compile.main(["--workload", "mlp", "--impls", "raw,funcnet", "--reps", "1"])
    assert set(out["phases"]) == {"raw", "funcnet"}
    assert all(len(t["compile"]) == 1 and t["compile"][0] > 0 for t in out["phases"].values())
    kernels = out["kernels"]
    assert len(kernels["raw"]) >= 10 and len(kernels["funcnet"]) >= 10
    assert all(ms > 0 for _, ms in kernels["funcnet"])


@pytest.mark.slow
def test_the_command_writes_tables_and_json(tmp_path):
    """``python -m benchmarks.run --quick`` end to end: fresh processes, verification,
    a Markdown table and a JSON file."""
    code = run.main(
        ["--quick", "--verify", "--workloads", "mlp", "--impls", "raw,funcnet",
         "--out", str(tmp_path)]
    )  # fmt: skip
    assert code == 0
    (data,) = tmp_path.glob("*-quick.json")
    report = json.loads(data.read_text())
    assert report["verify"]["mlp"]["ok"]
    assert set(report["summary"]["mlp"]) == {"raw", "funcnet"}
    assert report["summary"]["mlp"]["funcnet"]["n_params"] == [101_770]
    (latest,) = tmp_path.glob("latest-*.md")
    table = latest.read_text()
    assert "| funcnet (`make_train_step`, default non-finite guard) |" in table
    assert "time to first step" in table


def test_precision_quick_reports_the_fp16_row(tmp_path):
    """``python -m benchmarks.precision --quick``: one tiny float16 row (loss scale on)
    trained, timed and written as a table; its compiled program computes in float16."""
    from benchmarks import precision

    argv = ["--quick", "--workloads", "transformer", "--precisions", "fp16", "--warmup", "1",
            "--rounds", "1", "--round-s", "0.01", "--out", str(tmp_path)]  # fmt: skip
    assert precision.main(argv) == 0
    (row,) = json.loads((tmp_path / "precision-cpu-quick.json").read_text())["rows"]
    assert row["skipped"] == 0 and row["sixteen_bit"] == ["f16"] and row["step_s"] > 0
    table = (tmp_path / "precision-cpu-quick.md").read_text()
    assert "| transformer | fp16 |" in table and "| f16 |" in table
