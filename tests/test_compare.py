"""kgan compare: aggregation maths, resume after a kill, and the quick grid's outputs."""

import argparse
import contextlib
import dataclasses
import json
import os
import shlex
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from PIL import Image

from kgan import compare
from kgan.config import PATH_FIELDS, TrainConfig, train_command
from kgan.errors import UsageError


def record(setting, dataset, seed, final, steps=100, preset="recommended"):
    spec = compare.RunSpec(setting, dataset, seed, preset, steps, 50)
    curves = {"step": [50, 100], "d_loss": [1.0 + seed, 2.0], "g_loss": [0.5, 0.5], "d_grad_norm": [3.0, 1.0]}
    return {"setting": setting, "dataset": dataset, "seed": seed, "preset": preset, "steps": steps,
            "eval_every": 50, "key": spec.key, "final": final, "curves": curves, "diverged": False, "seconds": 1.0}


def test_aggregation_means_and_standard_errors():
    records = [
        record("minimax", "ring8", 0, {"modes_captured": 6, "high_quality_percent": 90.0, "reverse_kl": 0.3}),
        record("minimax", "ring8", 1, {"modes_captured": 7, "high_quality_percent": 95.0, "reverse_kl": 0.2}),
        record("minimax", "ring8", 2, {"modes_captured": 8, "high_quality_percent": 100.0, "reverse_kl": float("nan")}),
        record("minkowski_p4", "ring8", 0, {"modes_captured": 8, "high_quality_percent": 50.0, "reverse_kl": 0.1}),
        record("minkowski_p2", "ring8", 0, {"modes_captured": 5, "high_quality_percent": 40.0, "reverse_kl": 0.5}),
    ]
    table = compare.aggregate(records)
    # legacy names (modes_captured, high_quality_percent) aggregate under the runner's (modes, hq_percent)
    mean, stderr, n = table[("recommended", "ring8", "minimax", 100)]["modes"]
    # modes 6, 7, 8: mean 7, sample std 1, stderr 1 / sqrt(3)
    assert (mean, n) == (7.0, 3) and stderr == pytest.approx(1 / np.sqrt(3))
    # the NaN reverse KL (no high-quality sample) is left out, not averaged in: (0.3 + 0.2) / 2
    mean, stderr, n = table[("recommended", "ring8", "minimax", 100)]["reverse_kl"]
    assert (n, mean) == (2, pytest.approx(0.25)) and stderr == pytest.approx(0.05)
    header, rows = compare.tables(records)["mixtures-recommended-100steps"]
    assert header[1] == "ring8 modes /8"
    assert rows[0] == ["minimax", "7.00+-0.58", "95.0+-2.9", "0.250+-0.050", "-", "-", "-", "3/0"]
    assert rows[1][0] == "minkowski_p2" and rows[2][:2] == ["minkowski_p4", "8.00"]  # one seed: no stderr
    assert rows[-1][0] == "PacGAN4 (PacGAN paper)"
    header, rows = compare.tables(records)["p-ablation-recommended-100steps"]
    assert rows[0][:2] == ["2", "5.00"] and rows[1][:2] == ["4", "8.00"]


def test_table_files(tmp_path):
    records = [record("hinge", "digits", s, {"fcd": 10.0 + s, "kid": 0.01}) for s in range(2)]
    paths = compare.write_tables(records, tmp_path)
    md = (tmp_path / "digits-recommended-100steps.md").read_text()
    assert "| hinge | 10.50+-0.50 | 0.010+-0.000 | 2 | 0 |" in md
    with open(tmp_path / "digits-recommended-100steps.csv") as handle:
        assert handle.read().splitlines()[1] == "hinge,10.50+-0.50,0.010+-0.000,2,0"
    assert sorted(map(os.path.basename, paths)) == ["compute.csv", "compute.md", "digits-recommended-100steps.csv",
                                                    "digits-recommended-100steps.md", "stability.csv",
                                                    "stability.md"]  # no gate or claim on one setting


def test_grid_and_settings():
    specs = compare.grid(["wasserstein", "minkowski"], [1, 4], ["ring8"], seeds=2, steps=100, eval_every=50)
    assert [s.setting for s in specs[:3]] == ["wasserstein", "minkowski_p1", "minkowski_p4"] and len(specs) == 6
    config = specs[0].config()
    assert (config.loss, config.clip, config.d_steps, config.batch_size, config.g_lr, config.optimizer) == (
        "wasserstein", 0.01, 5, 100, 5e-5, "rmsprop")  # recommended: WGAN's own RMSProp
    protocol = compare.RunSpec("wasserstein", "ring8", 0, "protocol").config()
    assert (protocol.clip, protocol.d_steps, protocol.g_lr, protocol.beta1, protocol.optimizer) == (
        0.01, 5, 1e-4, 0.8, "adam")  # protocol: PacGAN's Adam for every loss
    assert specs[2].config().p == 4.0 and specs[2].config().loss == "minkowski"
    gp = compare.RunSpec("wgan_gp", "digits", 0).config()
    assert (gp.gp, gp.d_steps, gp.clip) == (10.0, 5, None)
    paper = compare.RunSpec("hinge", "ring8", 0, "paper").config()
    assert (paper.clip, paper.batch_size, paper.latent_dim, paper.beta1) == (0.01, 64, 100, 0.5)
    with pytest.raises(UsageError):
        compare.grid(["nope"], [4], ["ring8"], 1)
    with pytest.raises(UsageError):
        compare.grid(["minkowski"], [0.5], ["ring8"], 1)


@pytest.fixture(scope="module")
def quick_compare(tmp_path_factory):
    """`kgan compare --quick --deterministic --datasets ring8 --out DIR`, in a child process (op
    determinism is process-wide: it must not leak into the other tests)."""
    out = tmp_path_factory.mktemp("quick")
    command = [sys.executable, "-m", "kgan.cli", "compare", "--quick", "--deterministic", "--datasets", "ring8",
               "--out", str(out)]
    result = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    return out


def test_quick_compare_writes_tables_and_plots(quick_compare):
    tmp_path = quick_compare
    records = compare.load_results(tmp_path / "results.jsonl")
    assert {r["setting"] for r in records} == {"non_saturating", "minkowski_p4"}
    assert all(len(r["curves"]["step"]) == 2 and "d_grad_norm" in r["curves"] for r in records)
    assert (tmp_path / "mixtures-recommended-40steps.md").exists()
    pngs = sorted(p.name for p in tmp_path.glob("*.png"))
    assert pngs == ["fig1-3-recommended-ring8-40steps.png", "high_quality_percent-over-training-recommended-ring8-40steps.png",
                    "modes_captured-over-training-recommended-ring8-40steps.png", "samples-recommended-ring8-40steps.png"]
    for name in pngs:
        with Image.open(tmp_path / name) as image:
            image.load()
            assert image.size[0] > 100


def test_each_row_records_the_kgan_train_command_that_reproduces_it_exactly(quick_compare, tmp_path):
    records = compare.load_results(quick_compare / "results.jsonl")
    assert len(records) == 2
    for r in records:  # the runner's metric names, evaluation protocol and run folder (models dropped)
        assert set(r["final"]) == {"modes", "hq_percent", "reverse_kl"} and not r["diverged"]
        assert r["evaluation"]["num_samples"] == 2500 and r["curves"]["step"] == [20, 40]
        assert r["command"].startswith("kgan train ") and "--deterministic" in r["command"]
        assert "--steps-per-epoch 20 --batch-size 100" in r["command"] and "--metrics-every 1" in r["command"]
        assert f"--precision {r['precision_policy']}" in r["command"]
        assert sorted(os.listdir(r["run_dir"])) == ["config.json", "samples.png"]
    children = []
    for i, r in enumerate(records):  # both reproductions at once, each in its own folders
        argv = shlex.split(r["command"])[1:] + [
            "--output", str(tmp_path / f"m{i}"), "--logdir", str(tmp_path / f"l{i}"),
            "--checkpoint-dir", str(tmp_path / f"c{i}")]
        children.append(subprocess.Popen([sys.executable, "-m", "kgan.cli", *argv], stdout=subprocess.DEVNULL,
                                         stderr=subprocess.PIPE, text=True))
    for i, (r, child) in enumerate(zip(records, children, strict=True)):
        _, stderr = child.communicate(timeout=600)
        assert child.returncode == 0, stderr[-2000:]
        (config_json,) = (tmp_path / f"m{i}").glob("*/config.json")
        report = json.loads(config_json.read_text())
        # Exactly equal: the same floats (JSON text, so that NaN equals NaN).
        assert json.dumps(report["metrics"]["values"], sort_keys=True) == json.dumps(r["final"], sort_keys=True)
        assert json.dumps(report["history"], sort_keys=True) == json.dumps(
            {k: v for k, v in r["curves"].items() if k != "step"}, sort_keys=True)
        assert report["precision_policy"] == r["precision_policy"]


def test_a_diverged_run_is_a_row_with_its_message_and_the_grid_goes_on(tmp_path, monkeypatch):
    config = compare.RunSpec.config

    def absurd_rates(spec, *args, **kwargs):  # the first step is NaN
        rates = {"d_lr": 1e30, "g_lr": 1e30} if spec.setting == "hinge" else {}
        return dataclasses.replace(config(spec, *args, **kwargs), **rates)

    monkeypatch.setattr(compare.RunSpec, "config", absurd_rates)
    specs = compare.grid(["hinge", "least_squares"], [4], ["ring8"], 1, steps=20, eval_every=10)
    assert compare.run_grid(specs, tmp_path / "results.jsonl", print_fn=lambda *a: None) == 2
    diverged, fine = compare.load_results(tmp_path / "results.jsonl")
    assert diverged["diverged"] and "training diverged at step 1 (epoch 1)" in diverged["error"]
    assert diverged["final"] == {} and "--d-lr 1e+30" in diverged["command"]
    assert diverged["curves"]["step"] == [10] and len(diverged["curves"]["d_loss"]) == 1
    assert not fine["diverged"] and set(fine["final"]) == {"modes", "hq_percent", "reverse_kl"}
    assert "--deterministic" not in fine["command"] and "--checkpoint-every 0" in fine["command"]


def test_the_command_parses_back_to_the_rows_config():
    from kgan.cli import build_parser, config_from_args

    paths = {name: getattr(TrainConfig(), name) for name in PATH_FIELDS}
    specs = [compare.RunSpec("wgan_gp", "ring8", 0, steps=100, eval_every=50),
             compare.RunSpec("hinge", "digits", 3, "paper", 40, 20),
             compare.RunSpec("minkowski_p2.5+ema", "stacked_digits", 1),
             compare.RunSpec("wasserstein+unroll5", "grid25", 2),
             compare.RunSpec("least_squares+minibatch_std", "digits", 0)]
    for spec in specs:
        for deterministic, checkpoint_every in ((True, 0), (False, 2)):
            config = spec.config("some/out", deterministic, checkpoint_every)
            argv = train_command(config, precision="float32")
            parsed = config_from_args(build_parser().parse_args(argv))
            assert parsed == dataclasses.replace(config, precision="float32", **paths), argv
    argv = train_command(specs[0].config())
    assert argv[:3] == ["train", "--loss", "wasserstein"] and "--precision" not in argv  # auto: the default
    assert argv[argv.index("--gp") + 1] == "10.0" and argv[argv.index("--g-lr") + 1] == "0.0001"
    assert not set(argv) & {"--run-name", "--output", "--logdir", "--checkpoint-dir"}
    with pytest.raises(ValueError, match="--arch"):
        train_command(TrainConfig(arch=None))


def test_legacy_result_names_and_report_only_ignores_the_grid_flags(tmp_path):
    legacy = record("minimax", "ring8", 0, {"modes_captured": 6, "high_quality_percent": 90.0, "reverse_kl": 0.3})
    legacy["curves"]["modes_captured"] = [5, 6]
    new = record("minimax", "ring8", 1, {"modes": 8, "hq_percent": 80.0, "reverse_kl": 0.1})
    new["curves"]["modes"] = [7, 8]
    with open(tmp_path / "results.jsonl", "w") as handle:
        handle.write(json.dumps(legacy) + "\n" + json.dumps(new) + "\n")
    records = compare.load_results(tmp_path / "results.jsonl")
    assert records[0]["final"] == {"modes": 6, "hq_percent": 90.0, "reverse_kl": 0.3}
    assert records[0]["curves"]["modes"] == [5, 6]
    parser = argparse.ArgumentParser()
    compare.add_arguments(parser)
    args = parser.parse_args(["--report-only", "--datasets", "nope", "--eval-every", "7", "--out", str(tmp_path)])
    assert compare.main(args, print_fn=lambda *a: None) == 0
    header, *rows = (tmp_path / "mixtures-recommended-100steps.csv").read_text().splitlines()
    assert rows[0] == "minimax,7.00+-1.00,85.0+-5.0,0.200+-0.100,-,-,-,2/0"
    assert (tmp_path / "modes_captured-over-training-recommended-ring8-100steps.png").exists()
    assert_tensorboard_is_the_results(tmp_path / "tensorboard", records)  # --report-only rebuilds the view too


def test_steps_must_be_a_multiple_of_eval_every():
    with pytest.raises(UsageError, match="multiple of --eval-every"):
        compare.grid(["hinge"], [4], ["ring8"], 1, steps=100, eval_every=30)
    assert compare.grid(["hinge"], [4], ["ring8"], 1, steps=100, eval_every=500)[0].eval_every == 100


@pytest.mark.slow
def test_killed_compare_resumes_without_redoing_finished_runs(tmp_path):
    command = [sys.executable, "-m", "kgan.cli", "compare", "--losses", "non_saturating,hinge", "--datasets", "ring8",
               "--seeds", "2", "--steps", "20", "--eval-every", "10", "--out", str(tmp_path)]
    results = tmp_path / "results.jsonl"
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.time() + 240
        while time.time() < deadline and not (results.exists() and results.read_text().count("\n") >= 1):
            time.sleep(0.2)
        os.killpg(process.pid, signal.SIGKILL)
    finally:
        process.wait()
    first = results.read_text().splitlines()
    assert 1 <= len(first) < 4, "the kill must land mid-grid"
    rerun = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    assert f"{len(first)} already in" in rerun.stdout
    lines = results.read_text().splitlines()
    keys = [json.loads(line)["key"] for line in lines]
    assert len(keys) == 4 == len(set(keys))  # every run once, none redone
    assert lines[: len(first)] == first  # finished runs kept as written


def test_a_longer_row_starts_from_the_shorter_rows_checkpoint_and_ends_as_a_fresh_longer_row(tmp_path):
    def rows(out, steps):  # in a process of its own: --deterministic turns on op determinism for good
        command = [sys.executable, "-m", "kgan.cli", "compare", "--losses", "non_saturating", "--datasets", "ring8",
                   "--seeds", "1", "--steps", str(steps), "--eval-every", "10", "--preset", "protocol",
                   "--deterministic", "--checkpoint-every", "1", "--out", str(out)]
        done = subprocess.run(command, capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, done.stderr[-2000:]
        return {r["steps"]: r for r in compare.load_results(out / "results.jsonl")}

    rows(tmp_path / "extended", 20)
    shorter, longer = rows(tmp_path / "extended", 30).values()
    (fresh,) = rows(tmp_path / "fresh", 30).values()
    assert "extended_from" not in shorter and "extended_from" not in fresh
    assert longer["extended_from"] == {"key": "protocol/ring8/non_saturating/20/s0", "epoch": 2}
    # what each row's `seconds` timed: the extended row trained only its last epoch (verdict.compute)
    assert (shorter["epochs_this_fit"], longer["epochs_this_fit"], fresh["epochs_this_fit"]) == (2, 1, 3)
    for name in ("final", "curves", "final_losses", "command"):  # the same floats (JSON text: NaN equals NaN)
        assert json.dumps(longer[name], sort_keys=True) == json.dumps(fresh[name], sort_keys=True), name
    assert longer["curves"]["step"] == [10, 20, 30]
    assert json.dumps(longer["curves"]["d_loss"][:2]) == json.dumps(shorter["curves"]["d_loss"])


def test_techniques_are_settings_on_top_of_every_loss():
    names = compare.setting_names(["minimax", "minkowski"], [2, 4], ["none", "ema"])
    assert names == ["minimax", "minkowski_p2", "minkowski_p4", "minimax+ema", "minkowski_p2+ema", "minkowski_p4+ema"]
    config = compare.RunSpec("minkowski_p4+ema", "digits", 1).config()
    assert (config.loss, config.p, config.ema, config.seed) == ("minkowski", 4.0, 0.999, 1)
    config = compare.RunSpec("wgan_gp+unroll5", "ring8", 0).config()
    assert (config.gp, config.d_steps, config.unroll, config.batch_size) == (10.0, 5, 5, 100)
    assert compare.minkowski_p("minkowski_p2.5+ada") == 2.5 and compare.minkowski_p("hinge+ada") is None
    # Image-only techniques skip the 2-D mixtures; on mixtures alone they are an error.
    specs = compare.grid(["hinge"], [4], ["ring8", "digits"], 1, techniques=["none", "diffaugment"])
    assert [(s.dataset, s.setting) for s in specs] == [("ring8", "hinge"), ("digits", "hinge"), ("digits", "hinge+diffaugment")]
    with pytest.raises(UsageError, match="applies only to"):
        compare.grid(["hinge"], [4], ["ring8"], 1, techniques=["resnet"])
    with pytest.raises(UsageError, match="unknown technique"):
        compare.grid(["hinge"], [4], ["ring8"], 1, techniques=["dropout"])
    assert {s for s in compare.TECHNIQUES if s != "none"} >= {
        "ema", "conditional", "resnet", "self_attention", "minibatch_std", "feature_matching", "diffaugment", "ada",
        "unroll5", "progressive", "clip_grad_norm", "historical_averaging"}


# ---- TensorBoard, failed rows, progress, backends (#17) -----------------------------------------------


def _tensorboard_readers():
    from tests.gan_helpers import read_scalars
    from tests.test_hparams import read_hparams

    return read_hparams, read_scalars


def assert_tensorboard_is_the_results(directory, records):
    """The HParams experiment and sessions under `directory` hold exactly the rows of `records`:
    their hyperparameters, final metrics (`final/<metric>`) and curves (`curves/<name>`)."""
    read_hparams, read_scalars = _tensorboard_readers()
    experiment = read_hparams(str(directory))["experiment"]
    assert set(experiment["hparams"]["setting"]) == {r["setting"] for r in records}
    assert {tag for _, tag in experiment["metrics"]} == {f"final/{m}" for r in records for m in r["final"]}
    sessions = sorted(p.name for p in directory.iterdir() if p.is_dir())
    assert sessions == sorted(r["key"].replace("/", "-") for r in records)
    for r in records:
        session_dir = directory / r["key"].replace("/", "-")
        (hparams,) = read_hparams(str(session_dir))["sessions"]
        assert hparams == compare.session_hparams(r)
        assert (hparams["setting"], hparams["dataset"], hparams["seed"], hparams["steps"]) == (
            r["setting"], r["dataset"], r["seed"], r["steps"])
        scalars = read_scalars(str(session_dir))
        finals = {tag[len("final/"):]: values for tag, values in scalars.items() if tag.startswith("final/")}
        assert set(finals) == set(r["final"])
        for name, value in r["final"].items():
            (step, written), = finals[name]
            assert step == r["steps"]
            assert written == pytest.approx(value, rel=1e-6, nan_ok=True)  # float32 in the event file
        for name, values in r["curves"].items():
            if name != "step":
                written = scalars[f"curves/{name}"]
                assert [s for s, _ in written] == r["curves"]["step"]
                assert [v for _, v in written] == pytest.approx(values, rel=1e-6, nan_ok=True)


def test_the_tensorboard_view_is_the_results_file_and_rebuilding_it_adds_no_session(tmp_path):
    records = [record("minkowski_p4", "ring8", s, {"modes": 6 + s, "hq_percent": 90.0, "reverse_kl": 0.3})
               for s in range(2)]
    records.append(record("hinge+ema", "ring8", 0, {"modes": 8, "hq_percent": 99.5, "reverse_kl": float("nan")}))
    failed = compare.failed_record(compare.RunSpec("hinge", "ring8", 0, steps=100, eval_every=50), "boom", 3.0)
    directory = tmp_path / "tensorboard"
    assert compare.write_tensorboard(records + [failed], directory) == 3
    assert compare.write_tensorboard(records + [failed], directory) == 3  # rebuilt, not appended
    assert_tensorboard_is_the_results(directory, records)
    hparams = compare.session_hparams(records[2])
    assert (hparams["loss"], hparams["technique"], "p" not in hparams) == ("hinge", "ema", True)
    assert (compare.session_hparams(records[0])["loss"], compare.session_hparams(records[0])["p"]) == ("minkowski", 4.0)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".kgan-tmp-")]
    # An extended grid: its new rows join the same experiment.
    more = records + [record("minimax", "ring8", 0, {"modes": 5, "hq_percent": 80.0, "reverse_kl": 0.5})]
    assert compare.write_tensorboard(more, directory) == 4
    assert_tensorboard_is_the_results(directory, more)


def test_failed_rows_are_run_again_and_the_reports_show_each_keys_last_finished_row(tmp_path):
    spec = compare.RunSpec("hinge", "ring8", 1, steps=100, eval_every=50)
    ok = record("minimax", "ring8", 0, {"modes": 6})
    failed = compare.failed_record(spec, "WorkerCrashedError: The worker died unexpectedly", 12.345)
    assert (failed["status"], failed["final"], failed["seconds"], failed["key"]) == ("failed", {}, 12.35, spec.key)
    results = tmp_path / "results.jsonl"
    for r in (ok, failed):
        compare.append_result(results, r)
    assert compare.finished_keys(results) == {ok["key"]}  # the failed row is run again
    assert compare.current(compare.load_results(results)) == [ok]
    rerun = {**record("hinge", "ring8", 1, {"modes": 7}), "status": "ok"}
    compare.append_result(results, rerun)
    assert compare.finished_keys(results) == {ok["key"], spec.key}
    assert compare.current(compare.load_results(results)) == [ok, rerun]
    assert compare.status({"diverged": True}) == "diverged" and compare.status({"diverged": False}) == "ok"
    assert compare.row_line(failed) == "hinge ring8 seed 1: failed: WorkerCrashedError: The worker died unexpectedly (12 s)"


class _Terminal:
    def __init__(self):
        self.text = ""

    def isatty(self):
        return True

    def write(self, text):
        self.text += text

    def flush(self):
        pass


def test_progress_prints_a_line_per_row_and_on_a_terminal_a_bar_with_the_eta():
    lines, terminal = [], _Terminal()
    progress = compare.Progress(3, lines.append, stream=terminal)
    progress.begin()
    assert terminal.text == "[..............................] 0/3 runs, 0m00s elapsed, ETA -"
    terminal.text = ""
    progress.start -= 60  # the first row took a minute: two more take about two
    progress.row(record("minkowski_p4", "ring8", 2, {"modes": 7, "hq_percent": 90.0}))
    assert lines == ["  [1/3] minkowski_p4 ring8 seed 2: modes_captured 7 (1 s)"]
    assert terminal.text.startswith("\r\033[K[##########....................] 1/3 runs, 1m00s elapsed, ETA 2m00s")
    progress.row({**record("hinge", "digits", 0, {"fcd": 21.25}), "diverged": True})
    progress.row(record("hinge", "digits", 1, {"fcd": 21.25, "kid": 0.01}))
    assert lines[1:] == ["  [2/3] hinge digits seed 0: diverged (1 s)", "  [3/3] hinge digits seed 1: fcd 21.25 (1 s)"]
    assert terminal.text.endswith("\r\033[K")  # the bar is gone once the grid is done
    plain = []
    compare.Progress(1, plain.append, stream=_Pipe()).row(record("hinge", "ring8", 0, {"modes": 8}))
    assert plain == ["  [1/1] hinge ring8 seed 0: modes_captured 8 (1 s)"]


class _Pipe(_Terminal):
    def isatty(self):
        return False

    def write(self, text):
        raise AssertionError("no bar when the output is not a terminal")


def test_backend_ray_without_ray_is_one_line_and_exit_2(tmp_path, monkeypatch, capsys):
    from kgan import cli

    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` raises ImportError
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["compare", "--quick", "--backend", "ray", "--out", str(tmp_path)])
    assert exit_info.value.code == 2
    assert capsys.readouterr().err == 'kgan compare: error: --backend ray needs Ray: pip install -e ".[ray]"\n'
    assert not (tmp_path / "results.jsonl").exists()
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["compare", "--quick", "--ray-address", "head:6379", "--out", str(tmp_path)])
    assert exit_info.value.code == 2 and "--ray-address needs --backend ray" in capsys.readouterr().err


def test_the_quick_compares_tensorboard_view_holds_its_rows(quick_compare):
    records = compare.load_results(quick_compare / "results.jsonl")
    assert_tensorboard_is_the_results(quick_compare / "tensorboard", records)


def _compare(out, *flags, env=None):
    command = [sys.executable, "-m", "kgan.cli", "compare", *flags, "--out", str(out)]
    result = subprocess.run(command, capture_output=True, text=True, timeout=900, env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


def test_the_ray_backend_gives_the_local_backends_rows(quick_compare, tmp_path):
    """The acceptance test of #17: `--backend ray` on a local Ray (2 CPUs, started by the command)."""
    pytest.importorskip("ray")
    # RAY_ADDRESS (or another cluster on this machine) is not joined without --ray-address.
    stdout = _compare(tmp_path, "--quick", "--deterministic", "--datasets", "ring8", "--backend", "ray",
                      "--workers", "2", env={**os.environ, "RAY_ADDRESS": "127.0.0.1:1"})
    assert "to run with a local Ray (2 CPUs)" in stdout and "[2/2] " in stdout
    local = {r["key"]: r for r in compare.load_results(quick_compare / "results.jsonl")}
    ray_rows = compare.load_results(tmp_path / "results.jsonl")
    assert sorted(r["key"] for r in ray_rows) == sorted(local)
    for r in ray_rows:
        mine = local[r["key"]]
        for field in ("final", "curves", "command", "status", "evaluation", "precision_policy"):
            assert json.dumps(r[field], sort_keys=True) == json.dumps(mine[field], sort_keys=True), field
        config = {k: v for k, v in r["config"].items() if k not in PATH_FIELDS}  # the paths are under --out
        assert config == {k: v for k, v in mine["config"].items() if k not in PATH_FIELDS}
    assert_tensorboard_is_the_results(tmp_path / "tensorboard", ray_rows)


@pytest.mark.slow
def test_a_ray_row_whose_worker_dies_is_retried_and_one_that_keeps_failing_is_a_failed_row(tmp_path):
    pytest.importorskip("ray")
    flags = ["--losses", "hinge,least_squares", "--datasets", "ring8", "--seeds", "1", "--steps", "20",
             "--eval-every", "10", "--backend", "ray", "--workers", "2"]
    dies, fails = (compare.RunSpec(s, "ring8", 0, steps=20, eval_every=10).key for s in ("hinge", "least_squares"))
    marker = tmp_path / "died"
    env = {**os.environ, compare.FAULT_VARIABLE: f"{dies}=exit-once:{marker};{fails}=raise"}
    stdout = _compare(tmp_path, *flags, env=env)
    assert marker.exists()  # the worker of `dies` did end once
    rows = {r["key"]: r for r in compare.load_results(tmp_path / "results.jsonl")}
    assert rows[dies]["status"] == "ok" and set(rows[dies]["final"]) == {"modes", "hq_percent", "reverse_kl"}
    assert rows[fails]["status"] == "failed" and rows[fails]["final"] == {}
    assert rows[fails]["error"] == f"RuntimeError: injected failure of {fails} ({compare.FAULT_VARIABLE})"
    assert "least_squares ring8 seed 0: failed: RuntimeError" in stdout and "run the same command again" in stdout
    assert (tmp_path / "mixtures-recommended-20steps.md").read_text().count("| least_squares |") == 0
    # The same command again runs the failed row only.
    stdout = _compare(tmp_path, *flags)
    assert "1 already in" in stdout and "1 to run" in stdout
    lines = compare.load_results(tmp_path / "results.jsonl")
    assert [compare.status(r) for r in lines] in (["ok", "failed", "ok"], ["failed", "ok", "ok"])
    assert [r["key"] for r in compare.current(lines)] == [r["key"] for r in lines[:2]]
    assert "| least_squares |" in (tmp_path / "mixtures-recommended-20steps.md").read_text()


def _free_port():
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.slow
def test_ray_address_joins_a_cluster_started_with_ray_start(tmp_path):
    """`ray start --head` (token authentication, Ray's default), then `kgan compare --ray-address`
    with RAY_AUTH_MODE=token, as the README says; the grid leaves the cluster running."""
    pytest.importorskip("ray")
    port = _free_port()
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [os.getcwd(), os.environ.get("PYTHONPATH")]))}
    head = subprocess.Popen(["ray", "start", "--head", "--block", "--port", str(port), "--num-cpus", "2",
                             "--include-dashboard=false", "--disable-usage-stats",
                             "--ray-client-server-port", str(_free_port())],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        for line in head.stdout:
            if "ray start --address=" in line:
                address = line.split("--address=")[1].strip().strip("'")
                break
        else:
            pytest.fail("ray start --head did not start")
        # Without the token: one line naming the fix, exit 2.
        refused = subprocess.run([sys.executable, "-m", "kgan.cli", "compare", "--quick", "--backend", "ray",
                                  "--ray-address", address, "--out", str(tmp_path / "refused")],
                                 capture_output=True, text=True, timeout=300, env={**env, "RAY_AUTH_MODE": "disabled"})
        assert refused.returncode == 2 and "RAY_AUTH_MODE=token" in refused.stderr.splitlines()[-1], refused.stderr[-2000:]
        stdout = _compare(tmp_path, "--losses", "hinge", "--datasets", "ring8", "--seeds", "2", "--steps", "20",
                          "--eval-every", "10", "--backend", "ray", "--ray-address", address,
                          env={**env, "RAY_AUTH_MODE": "token"})
        assert f"to run with Ray at {address}" in stdout
        assert head.poll() is None  # the grid left the cluster it joined running
        rows = compare.load_results(tmp_path / "results.jsonl")
        assert sorted(r["seed"] for r in rows) == [0, 1] and {compare.status(r) for r in rows} == {"ok"}
    finally:
        head.terminate()  # ray start --block drains (up to 30 s), then stops the processes it started
        try:
            head.wait(timeout=60)
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(head.pid, signal.SIGKILL)


def _append_many(path, worker):
    for i in range(150):
        compare.append_result(path, {"key": f"w{worker}/{i}", "curves": {"step": list(range(3000))}})


def test_two_processes_appending_to_one_results_file_never_tear_a_line(tmp_path):
    """Two compares on disjoint grids may share a results file: each row is one O_APPEND write."""
    import multiprocessing

    path = str(tmp_path / "results.jsonl")
    context = multiprocessing.get_context("spawn")
    workers = [context.Process(target=_append_many, args=(path, w)) for w in (0, 1)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(120)
    rows = [json.loads(line) for line in open(path)]  # every line parses
    assert sorted(r["key"] for r in rows) == sorted(f"w{w}/{i}" for w in (0, 1) for i in range(150))
    assert all(len(r["curves"]["step"]) == 3000 for r in rows)  # ~17 KB a line, more than a pipe's atomic write


def test_settings_order_puts_what_this_version_does_not_know_last():
    """A results file shared with a newer kgan may hold settings this version does not know:
    the tables order them last (by name) instead of failing after the grid has run."""
    from kgan import compare

    records = [{"setting": s} for s in ("minkowski_p4+ema", "non_saturating+fancy_new", "hinge",
                                        "newloss", "minimax", "minkowski_p2", "non_saturating+ema")]
    # Grouped by technique (none first), then the loss's order; unknown names last in their group.
    assert compare._ordered_settings(records) == ["minimax", "hinge", "minkowski_p2", "newloss", "non_saturating+ema",
                                                  "minkowski_p4+ema", "non_saturating+fancy_new"]
