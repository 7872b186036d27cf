"""``python -m benchmarks.growth``: its command line, its pairing and its memory section.

No timing: the timed sections' tables are checked on made-up results, and the memory
section (deterministic) runs in this process for the mlp.
"""

from __future__ import annotations

import pytest

from benchmarks import growth, run_one
from benchmarks.workloads import load

# The harness is version-independent Python; CI's newest-jax pass skips it (pyproject).
pytestmark = pytest.mark.one_version


def test_sections_and_timing_come_from_the_command_line():
    args = growth.parse_args(["--sections", "memory,depth", "--quick"])
    assert args.sections == ["memory", "depth"]
    assert args.reps == 1 and args.timing == growth.harness.Timing.quick()
    args = growth.parse_args(["--round-s", "0.5"])
    assert args.sections == list(growth.SECTIONS) and args.reps == 3
    assert (args.timing.warmup, args.timing.rounds, args.timing.round_s) == (20, 5, 0.5)
    with pytest.raises(SystemExit):
        growth.parse_args(["--sections", "batch,speed"])


def test_points_set_the_swept_field_last():
    (deep,) = [p for p in growth.points("compile") if p.variant == "LayerStack" and p.value == 48]
    assert deep.sets[-2:] == ("scan_layers=true", "layers=48")
    assert [p.value for p in growth.points("batch") if p.workload == "mlp"] == [32, 128, 512, 2048]


def _run(point: str, impl: str, rep: int, step_s: float, first_s: float = 1.0) -> dict:
    return {"point": point, "impl": impl, "rep": rep, "step_s": step_s,
            "first_step_s": first_s, "first_step_cpu_s": first_s}  # fmt: skip


def test_ratios_are_paired_within_a_repetition():
    # Repetition 1 ran 2x slower for both: the ratio must stay 1.10.
    p = growth.Point("batch", "mlp", "batch", 32)
    runs = [_run(p.key, "raw", 0, 1e-3), _run(p.key, "funcnet", 0, 1.1e-3),
            _run(p.key, "raw", 1, 2e-3), _run(p.key, "funcnet", 1, 2.2e-3),
            {"point": p.key, "impl": "raw", "rep": 2, "error": "exit 1"},
            _run(p.key, "funcnet", 2, 9e-3)]  # fmt: skip
    assert growth.step_table(runs, [p]).splitlines()[2] == (
        "| mlp | batch 32 | 1.5 ms | 2.2 ms | 1.10 [1.10–1.10] |"
    )


def test_compile_growth_is_the_deep_model_over_the_shallow_one():
    low, high = [p for p in growth.points("compile") if p.variant == "LayerStack"]
    runs = [_run(low.key, "raw", 0, 0, 2.0), _run(high.key, "raw", 0, 0, 3.0),
            _run(low.key, "funcnet", 0, 0, 2.0), _run(high.key, "funcnet", 0, 0, 2.2)]  # fmt: skip
    table = growth.compile_table(runs, [low, high])
    assert "- LayerStack, 48 layers / 2 layers, time to first step: raw JAX 1.50" in table
    assert "funcnet 1.10 (CPU time 1.10)" in table


def test_memory_section_reports_the_compiled_mlp_steps_buffers():
    rows = growth.memory_section(["mlp"], quick=False)["mlp"]
    assert set(rows) == {"raw", "funcnet", "funcnet-noguard"}
    params = 101_770 * 4  # float32
    for row in rows.values():
        # The state (parameters and Adam's two moments) is an argument and, donated, the
        # output's buffer: the peak counts it once.
        assert row["argument_bytes"] >= 3 * params and row["alias_bytes"] >= 3 * params
        assert row["peak_bytes"] == (
            row["argument_bytes"] + row["output_bytes"] - row["alias_bytes"] + row["temp_bytes"]
        )
    table = growth.memory_table({"mlp": rows})
    assert f"| mlp | raw JAX | {rows['raw']['argument_bytes']:,} |" in table
    (line,) = growth.memory_targets({"mlp": rows})
    assert line.startswith("- mlp: funcnet / raw JAX peak bytes")


def test_mlp_depth_adds_hidden_layers_to_both_implementations():
    cfg = run_one.config(load("mlp"), quick=False, overrides=["depth=3"])
    result = run_one.verify("mlp", cfg, steps=2)
    assert result["n_params_raw"] == 101_770 + 2 * (128 * 128 + 128)
    assert result["ok"], result
