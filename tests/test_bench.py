"""The step benchmark's FLOP count and a smoke run (speed itself is never asserted)."""

import importlib.util
import os

import keras
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("bench_step", os.path.join(ROOT, "benchmarks", "bench_step.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_forward_flops_hand_counted(bench):
    model = keras.Sequential([
        keras.Input((8, 8, 3)),
        keras.layers.Conv2D(4, 3, strides=2, padding="same"),   # out 4x4x4: 2*16*9*3*4 = 3456
        keras.layers.Flatten(),
        keras.layers.Dense(5),                                   # 2*64*5 = 640
    ])
    assert bench.forward_flops(model) == 3456 + 640
    up = keras.Sequential([keras.Input((4, 4, 2)), keras.layers.Conv2DTranspose(3, 4, strides=2, padding="same")])
    assert bench.forward_flops(up) == 2 * 16 * 16 * 2 * 3  # each input pixel scatters 4x4x3 per channel


def test_step_flops_composition(bench):
    g = keras.Sequential([keras.Input((2,)), keras.layers.Dense(3)])  # 12
    d = keras.Sequential([keras.Input((3,)), keras.layers.Dense(1)])  # 6
    assert bench.step_flops(g, d, batch=10) == 10 * ((12 + 6 * 6) + (3 * 12 + 3 * 6))
    assert bench.step_flops(g, d, batch=1, d_steps=5, gradient_penalty=True) == 5 * (12 + 36 + 24) + 54


@pytest.mark.slow
def test_quick_run_produces_every_row_and_ratio(bench, tmp_path):
    result = bench.main(["--quick", "--steps", "2", "--rounds", "2", "--json", str(tmp_path / "out.json"),
                         "--markdown", str(tmp_path / "out.md")])
    assert len(result["rows"]) == 18 and all(r["ms"] > 0 for r in result["rows"])
    assert set(result["ratios"]) == {"kgan_default_vs_reference", "kgan_bfloat16_vs_reference",
                                     "kgan_xla_vs_no_xla_float32", "wgan_gp_vs_plain_float32",
                                     "wgan_gp_vs_plain_bfloat16", "pipeline_overhead"}
    assert (tmp_path / "out.json").exists()
    table = (tmp_path / "out.md").read_text()
    assert table.count("\n| kgan ") == 17 and "| pipeline_overhead |" in table
    assert keras.mixed_precision.global_policy().name == "float32"  # restored
