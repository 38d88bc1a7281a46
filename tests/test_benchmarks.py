"""`benchmarks/bench_small.py --quick`: a smoke run of every variant and the main job's split
(speed itself is never asserted)."""

import importlib.util
import json
import os

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.mark.slow
def test_bench_small_quick_writes_every_ratio_and_the_split(tmp_path):
    spec = importlib.util.spec_from_file_location("bench_small", os.path.join(ROOT, "benchmarks", "bench_small.py"))
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    out = tmp_path / "small.json"
    result = bench.main(["--quick", "--json", str(out), "--markdown", str(tmp_path / "small.md")])
    assert json.loads(out.read_text())["ratios"] == pytest.approx(result["ratios"])
    ratios = result["ratios"]
    expected = {"mixture_cli_vs_floor", "digits_cli_vs_floor"}
    if bench.torch is not None:
        expected |= {"torch_vs_kgan_mixture", "torch_vs_kgan_digits"}
    assert expected <= set(ratios) and all(ratios[name] > 0 for name in expected)
    rows = {(r["network"], r["variant"]): r for r in result["rows"]}
    for name in ("mixture", "digits"):
        for variant in ("floor", "cli", "fit_k1"):
            assert rows[(name, variant)]["ms_per_step"] > 0
        # The CLI's variant runs as `kgan train` configures it: blocks that divide the epoch.
        cli = rows[(name, "cli")]
        assert cli["steps_per_epoch"] % cli["steps_per_execution"] == 0 and cli["steps_per_execution"] > 1
        assert ratios[f"{name}_cli_vs_floor"] == pytest.approx(cli["ms_per_step"] / rows[(name, "floor")]["ms_per_step"])
    split = result["main_job_split"]
    for part in ("import", "build", "trace", "train_steps", "metrics", "checkpoints", "export"):
        assert split[part] >= 0, part
    assert split["epochs_trained"] == 2 and split["blocks"] == 2  # 2 epochs of one 28-step block each (no resume)
    assert result["machine"]["load_average_end_of_timing"]
    assert "| digits_cli_vs_floor |" in (tmp_path / "small.md").read_text()
