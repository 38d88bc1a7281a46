"""Fault injection (issue 13): every way a hostile user or a hostile machine can end a run.

One test (or one parametrised test) per case of the issue. Each asserts the exit code, the one
line on stderr (no traceback), and that nothing already written was lost or mixed: the SHA-256 of
every file under the output roots before and after. Runs are tiny (digits, batch 256: 7 steps per
epoch, --metrics none) and in-process through `kgan.cli.main`, except where a real process is the
point (the lock holder, SIGTERM, kill -9).
"""

import errno
import hashlib
import json
import math
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

from kgan import cli
from tests.test_resume import _weights

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run_main(argv, capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return exit_info.value.code, out, err


def one_line(err, *expected):
    """stderr is exactly one line, with no traceback, containing every `expected` text."""
    assert err.count("\n") == 1 and "Traceback" not in err, err
    for text in expected:
        assert text in err, err
    return err


def train_argv(tmp, run="r", epochs=1, *extra):
    return ["train", "--dataset", "digits", "--epochs", epochs, "--batch-size", 256, "--latent-dim", 4,
            "--metrics", "none", "--precision", "float32", "--run-name", run, "--output", tmp / "sm",
            "--logdir", tmp / "tb", "--checkpoint-dir", tmp / "ck", *extra]


def hashes(*roots):
    """{path: sha256} of every file under `roots` (the lock files, rewritten with each holder's PID,
    and TensorBoard's event files, appended to by design, are left out)."""
    found = {}
    for root in roots:
        for folder, _, names in os.walk(root):
            for name in names:
                path = os.path.join(folder, name)
                if name.endswith(".lock") or "tfevents" in name:
                    continue
                with open(path, "rb") as handle:
                    found[os.path.relpath(path, root.parent)] = hashlib.sha256(handle.read()).hexdigest()
    return found


def temporaries(*roots):
    return [os.path.join(folder, name) for root in roots for folder, dirs, files in os.walk(root)
            for name in dirs + files if ".kgan-tmp-" in name or ".tmp-" in name]


def listing(root):
    return sorted(os.path.relpath(os.path.join(f, n), root) for f, d, fs in os.walk(root) for n in d + fs)


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """A finished one-epoch run `r` (checkpoint epoch-000001, the run folder), to copy per test."""
    tmp = tmp_path_factory.mktemp("finished")
    with pytest.raises(SystemExit) as exit_info:
        cli.main([str(a) for a in train_argv(tmp)])
    assert exit_info.value.code == 0
    return tmp


@pytest.fixture
def run1(finished, tmp_path):
    for name in ("sm", "ck", "tb"):
        shutil.copytree(finished / name, tmp_path / name)
    return tmp_path


def report(tmp, run="r"):
    with open(tmp / "sm" / run / "config.json") as handle:
        return json.load(handle)


# 1 ----------------------------------------------------------------------------------------------


def test_1_resume_and_rerun_keep_the_whole_record(run1, capsys):
    first = report(run1)
    before = json.loads((run1 / "ck" / "r" / "epoch-000001" / "state.json").read_text())["train_seconds"]
    assert 0 < before <= first["train_seconds"]  # the checkpoint's clock stops when it is written
    code, out, _ = run_main(train_argv(run1, "r", 3), capsys)
    assert code == 0 and "resuming r from epoch 1" in out
    resumed = report(run1)
    assert resumed["epochs_trained"] == 3 and resumed["epochs_this_fit"] == 2
    assert {name: len(values) for name, values in resumed["history"].items()} == {
        name: 3 for name in first["history"]}
    for name, values in first["history"].items():  # epoch 1 is the first run's, bit for bit
        assert resumed["history"][name][0] == values[0]
        assert resumed["final"][name] == resumed["history"][name][-1]
    assert abs(resumed["train_seconds"] - (before + resumed["train_seconds_this_fit"])) <= 0.11

    code, out, _ = run_main(train_argv(run1, "r", 3), capsys)  # the finished run again: no epoch to train
    assert code == 0
    again = report(run1)
    assert again["epochs_trained"] == 3 and again["epochs_this_fit"] == 0
    assert again["history"] == resumed["history"] and again["final"] == resumed["final"]


# 2 ----------------------------------------------------------------------------------------------


def test_2_resume_identity_comes_from_field_metadata():
    from kgan.config import TrainConfig

    identity = set(TrainConfig.resume_fields())
    assert {"precision", "ema_start", "augment_policy", "augment_p", "ada_target", "unroll", "beta1", "beta2",
            "feature_matching", "clip_grad_norm", "sync_bn", "progressive_steps", "fade_steps", "arch",
            "self_attention", "minibatch_std", "conditional", "ema", "seed", "loss", "p"} <= identity
    assert not identity & {"epochs", "g_lr", "d_lr", "strategy", "devices", "deterministic", "checkpoint_every",
                           "keep_checkpoints", "metrics", "output", "logdir", "checkpoint_dir", "run_name"}


def test_2_a_progressive_run_without_progressive_steps_resumes_only_with_the_same_epochs():
    from kgan import run
    from kgan.config import TrainConfig
    from kgan.errors import UsageError

    saved = {"config": TrainConfig(progressive=True, epochs=10).to_dict()}
    run._check_resumable(TrainConfig(progressive=True, epochs=10), saved, "ck/r/epoch-000001")
    run._check_resumable(TrainConfig(epochs=20), {"config": TrainConfig(epochs=10).to_dict()}, "p")  # not progressive
    with pytest.raises(UsageError, match="its phases are an equal share of those epochs; resume with --epochs 10"):
        run._check_resumable(TrainConfig(progressive=True, epochs=20), saved, "ck/r/epoch-000001")


@pytest.mark.parametrize("extra, expected", [
    (["--precision", "mixed_bfloat16"], "was written with --precision float32, not mixed_bfloat16"),
    (["--ema-start", "3"], "was written --ema-start 0, not --ema-start 3"),
    (["--beta1", "0.6"], "was written --beta1 0.5, not --beta1 0.6"),
    (["--ema", "0.9"], "was written without --ema, not --ema 0.9"),
])
def test_2_a_resume_that_changes_the_identity_exits_2_and_changes_nothing(run1, extra, expected, capsys):
    before = hashes(run1 / "sm", run1 / "ck")
    argv = train_argv(run1, "r", 2)
    if extra[0] == "--precision":
        argv[argv.index("--precision") + 1] = extra[1]
    else:
        argv += extra
    code, _, err = run_main(argv, capsys)
    assert code == 2
    one_line(err, expected, "use another --run-name")
    assert hashes(run1 / "sm", run1 / "ck") == before


# 3 ----------------------------------------------------------------------------------------------


def _hold_lock(path):
    """A real process holding kgan's lock on `path` until killed; returns it once it holds it."""
    code = textwrap.dedent(f"""
        import sys, time
        from kgan import atomic
        atomic.Lock({str(path)!r}, "test").acquire()
        print("locked", flush=True)
        time.sleep(120)
    """)
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True,
                            env=dict(os.environ, PYTHONPATH=ROOT))
    assert proc.stdout.readline().strip() == "locked"
    return proc


@pytest.mark.parametrize("root", ["ck", "sm"])
def test_3_a_second_run_on_a_locked_run_name_exits_2_naming_the_holder(run1, root, capsys):
    import socket

    before = hashes(run1 / "sm", run1 / "ck")
    holder = _hold_lock(run1 / root / ".r.lock")
    try:
        code, _, err = run_main(train_argv(run1, "r", 2), capsys)
        assert code == 2
        one_line(err, f"run 'r' ({run1 / 'ck' / 'r'}) is in use by PID {holder.pid} on {socket.gethostname()}")
        assert hashes(run1 / "sm", run1 / "ck") == before
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    # kill -9 released it (the OS drops a flock with its process): the same command now runs.
    code, out, _ = run_main(train_argv(run1, "r", 2), capsys)
    assert code == 0 and "resuming r from epoch 1" in out


def test_3_kgan_export_takes_the_same_lock(run1, capsys):
    holder = _hold_lock(run1 / "sm" / ".r.lock")
    try:
        before = hashes(run1 / "sm")
        code, _, err = run_main(["export", "--run", "r", "--output", run1 / "sm"], capsys)
        assert code == 2
        one_line(err, f"is in use by PID {holder.pid}")
        assert hashes(run1 / "sm") == before
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()


# 4 ----------------------------------------------------------------------------------------------


def _enospc(path):
    return OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))


def _inject(monkeypatch, point):
    """Makes the writer of `point` write a few bytes (a partial file) and then fail with ENOSPC."""
    import keras
    from PIL import Image

    from kgan import atomic

    def partial(path):
        with open(path, "wb") as handle:
            handle.write(b"partial")

    if point in ("checkpoint weights", "run weights"):
        from kgan import checkpoint

        def fail(*args, **kwargs):  # (model, filepath) or (writer, model, filepath)
            partial(args[-1])
            raise _enospc(args[-1])

        # Checkpoints write their weights with kgan.checkpoint.WeightsWriter, the run folder with save_weights.
        owner, name = (checkpoint.WeightsWriter, "__call__") if point == "checkpoint weights" else (
            keras.Model, "save_weights")
        monkeypatch.setattr(owner, name, fail)
    elif point in ("checkpoint state.json", "config.json"):
        wanted = "state.json" if point == "checkpoint state.json" else "config.json"

        class Full:  # a file on a full disk: the first write gets one byte out, then ENOSPC
            def __init__(self, handle):
                self._handle, self.name = handle, handle.name

            def write(self, text):
                self._handle.write(text[:1])
                raise _enospc(self.name)

            def __getattr__(self, name):
                return getattr(self._handle, name)

            def __enter__(self):
                return self

            def __exit__(self, *error):
                self._handle.close()

        def opened(file, mode="r", *args, **kwargs):
            handle = open(file, mode, *args, **kwargs)
            return Full(handle) if "w" in mode and str(file).endswith(wanted) else handle

        monkeypatch.setattr(atomic, "open", opened, raising=False)  # atomic.write_json's open
    elif point == "samples.png":
        original_save = Image.Image.save

        def save(self, path, *args, **kwargs):
            if not isinstance(path, (str, os.PathLike)):  # in memory: SampleGrid's TensorBoard pictures
                return original_save(self, path, *args, **kwargs)
            partial(path)
            raise _enospc(path)

        monkeypatch.setattr(Image.Image, "save", save)
    elif point == "SavedModel":
        archive_class = type(keras.export.ExportArchive())  # the backend's subclass (its __new__ picks it)

        def write_out(self, filepath, *args, **kwargs):
            os.makedirs(filepath, exist_ok=True)
            partial(os.path.join(filepath, "saved_model.pb"))
            raise _enospc(filepath)

        monkeypatch.setattr(archive_class, "write_out", write_out)
    else:
        raise AssertionError(point)


WRITE_POINTS = ("checkpoint weights", "checkpoint state.json", "samples.png", "config.json", "run weights",
                "SavedModel")


@pytest.mark.parametrize("point", WRITE_POINTS)
def test_4_disk_full_at_each_write_point_exits_1_on_one_line_and_keeps_one_consistent_run(
        run1, point, monkeypatch, capsys):
    before = hashes(run1 / "sm", run1 / "ck")
    with monkeypatch.context() as patch:
        _inject(patch, point)
        code, _, err = run_main(train_argv(run1, "r", 2), capsys)
    assert code == 1
    one_line(err, "no space left on device writing", " free on ", " needed; free some space")
    after = hashes(run1 / "sm", run1 / "ck")
    # Nothing that existed changed: the run folder is still the one-epoch run, whole.
    assert {k: v for k, v in after.items() if k in before} == before
    assert not temporaries(run1 / "sm", run1 / "ck"), temporaries(run1 / "sm", run1 / "ck")
    new = sorted(set(after) - set(before))
    if point.startswith("checkpoint"):
        assert new == []  # no epoch-000002: the checkpoint is whole or absent
    else:
        assert all(k.startswith(os.path.join("ck", "r", "epoch-000002")) for k in new), new
    assert report(run1)["epochs_trained"] == 1  # config.json, weights and export: all epoch 1's
    # With space again, the same command completes the run.
    code, _, _ = run_main(train_argv(run1, "r", 2), capsys)
    assert code == 0 and report(run1)["epochs_trained"] == 2


def test_4_a_checkpoint_that_cannot_fit_is_refused_before_hdf5_starts_writing(run1, monkeypatch, capsys):
    # On a really full disk (a 900 KiB tmpfs) HDF5 crashed the process with SIGSEGV inside
    # save_weights; so the free space is checked against the last checkpoint's size first.
    import collections

    from kgan import atomic, checkpoint

    usage = collections.namedtuple("usage", "total used free")
    monkeypatch.setattr(atomic.shutil, "disk_usage", lambda path: usage(2**30, 2**30 - 1000, 1000))
    calls = []
    original = checkpoint.WeightsWriter.__call__
    monkeypatch.setattr(checkpoint.WeightsWriter, "__call__", lambda self, model, path: calls.append(path) or original(
        self, model, path))
    before = hashes(run1 / "sm", run1 / "ck")
    code, _, err = run_main(train_argv(run1, "r", 2), capsys)
    assert code == 1 and calls == []
    size = sum(os.path.getsize(run1 / "ck" / "r" / "epoch-000001" / n) for n in ("gan.weights.h5", "state.json"))
    one_line(err, "epoch-000002: 1000 B free on", f"about {size / 1024:.1f} KiB needed")
    assert hashes(run1 / "sm", run1 / "ck") == before and not temporaries(run1 / "sm", run1 / "ck")


def test_4_disk_full_in_generate_and_evaluate_json_exits_1_and_leaves_no_temporary(run1, monkeypatch, capsys):
    import numpy

    from kgan import atomic

    model = run1 / "sm" / "r" / "generator"

    def savez(path, **arrays):
        with open(path, "wb") as handle:
            handle.write(b"PK")
        raise _enospc(path)

    monkeypatch.setattr(numpy, "savez", savez)
    (run1 / "g.npz").write_bytes(b"previous")
    code, _, err = run_main(["generate", "--model", model, "--num", 4, "--out", run1 / "g.npz"], capsys)
    assert code == 1
    one_line(err, "no space left on device writing")
    assert (run1 / "g.npz").read_bytes() == b"previous" and not temporaries(run1)
    assert atomic.is_disk_full(RuntimeError("Write failed: No space left on device"))  # TensorFlow's wording


def test_4_stale_temporaries_of_killed_runs_are_removed_at_the_next_start(run1, capsys):
    dead = 4_000_000  # beyond the default pid_max: never a running process
    with pytest.raises(ProcessLookupError):
        os.kill(dead, 0)
    stale = [run1 / "ck" / "r" / f".kgan-tmp-{dead}-ab12-epoch-000002", run1 / "sm" / f".kgan-tmp-{dead}-cd34-r",
             run1 / "ck" / "r" / f".tmp-epoch-000002-{dead}"]  # the last: kgan before the atomic module
    for path in stale:
        path.mkdir()
        (path / "gan.weights.h5").write_bytes(b"half")
    live = run1 / "sm" / f".kgan-tmp-{os.getpid()}-ef56-other"  # another run's, still being written
    live.mkdir()
    code, _, _ = run_main(train_argv(run1, "r", 2), capsys)
    assert code == 0
    assert not any(path.exists() for path in stale) and live.exists()


def test_4_a_directory_moved_aside_by_a_killed_swap_is_moved_back(run1):
    from kgan import atomic

    aside = run1 / "sm" / ".kgan-tmp-4000000-0a0b.old-r"
    os.rename(run1 / "sm" / "r", aside)  # killed between the swap's two renames
    before = hashes(run1 / "sm")
    atomic.clean_stale(str(run1 / "sm"), names=("r",))
    assert (run1 / "sm" / "r" / "config.json").exists() and not aside.exists()
    assert sorted(v for v in hashes(run1 / "sm").values()) == sorted(before.values())


# 5 ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("damage", ["truncated weights", "invalid state.json"])
def test_5_an_unreadable_newest_checkpoint_falls_back_on_one_line_and_is_kept(run1, damage, capsys):
    assert run_main(train_argv(run1, "r", 2), capsys)[0] == 0
    newest = run1 / "ck" / "r" / "epoch-000002"
    if damage == "truncated weights":
        data = (newest / "gan.weights.h5").read_bytes()
        (newest / "gan.weights.h5").write_bytes(data[: len(data) // 2])
    else:
        (newest / "state.json").write_text('{"epoch": 2, "seeds": ')
    bad = hashes(newest)
    code, out, err = run_main(train_argv(run1, "r", 3), capsys)
    assert code == 0 and "Traceback" not in err
    lines = [line for line in out.splitlines() if "is unreadable" in line]
    assert len(lines) == 1 and lines[0].startswith("kgan: checkpoint epoch-000002 is unreadable (")
    assert lines[0].endswith("); resuming from epoch-000001 (kept as epoch-000002.unreadable)"), lines[0]
    kept = run1 / "ck" / "r" / "epoch-000002.unreadable"
    assert {k.replace("epoch-000002.unreadable", "epoch-000002"): v for k, v in hashes(kept).items()} == bad
    assert report(run1)["epochs_trained"] == 3


def test_5_when_no_checkpoint_is_readable_the_run_exits_2(run1, capsys):
    (run1 / "ck" / "r" / "epoch-000001" / "gan.weights.h5").write_bytes(b"not hdf5")
    before = hashes(run1 / "sm", run1 / "ck")
    code, _, err = run_main(train_argv(run1, "r", 2), capsys)
    assert code == 2
    one_line(err, "no checkpoint in", "can be read", "epoch-000001")
    assert hashes(run1 / "sm", run1 / "ck") == before


# 6 ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("flag, at, expected", [
    ("--output", "file", "--output"), ("--logdir", "file", "--logdir"), ("--checkpoint-dir", "file", "--checkpoint-dir"),
    ("--output", "file/sub", "is not a directory"), ("--run-name", "", "--run-name must be a plain folder name"),
    ("--run-name", "a/b", "--run-name must be a plain folder name"),
])
def test_6_output_paths_are_checked_before_anything_is_built(tmp_path, flag, at, expected, capsys):
    (tmp_path / "file").write_text("mine")
    argv = train_argv(tmp_path, "r", 1)
    value = at if flag == "--run-name" else tmp_path / at
    argv[argv.index(flag) + 1] = value
    code, _, err = run_main(argv, capsys)
    assert code == 2
    one_line(err, expected)
    assert listing(tmp_path) == ["file"] and (tmp_path / "file").read_text() == "mine"


# 7 ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("bad", ["truncated", "text"])
def test_7_a_folder_with_an_undecodable_image_exits_2_naming_it_before_writing(tmp_path, bad, capsys):
    from PIL import Image

    folder = tmp_path / "images"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(3):
        Image.fromarray(rng.integers(0, 255, (8, 8, 3), dtype=np.uint8)).save(folder / f"{i}.png")
    data = (folder / "0.png").read_bytes()
    (folder / "bad.png").write_bytes(data[: len(data) // 2] if bad == "truncated" else b"hello, not a picture\n")
    argv = train_argv(tmp_path, "r", 1)
    argv[argv.index("--dataset") + 1] = f"folder:{folder}"
    argv[argv.index("--batch-size") + 1] = 2
    code, _, err = run_main(argv, capsys)
    assert code == 2
    one_line(err, "1 of 4 files cannot be decoded", str(folder / "bad.png"))
    assert listing(tmp_path) == sorted(["images", *(f"images/{n}" for n in ("0.png", "1.png", "2.png", "bad.png"))])


# 8 ----------------------------------------------------------------------------------------------


def _conditional_export(path, num_classes=10, latent=4):
    import keras

    from kgan import export, networks

    keras.utils.set_random_seed(0)
    generator, _ = networks.build((8, 8, 1), latent, num_classes=num_classes)
    return export.export_generator(generator, str(path), num_classes=num_classes)


@pytest.fixture
def quick_classifier(tmp_path, monkeypatch):
    """"classifier:digits" trains for 1 epoch (instead of 30) into a temporary cache."""
    from kgan.metrics import classifier as classifier_module

    monkeypatch.setitem(classifier_module._DATASETS, "digits", (classifier_module.load_digits_split, 1, 10))
    monkeypatch.setenv("KGAN_FEATURE_EXTRACTORS_DIR", str(tmp_path / "features"))


def test_8_evaluate_scores_a_conditional_export_with_the_classes_in_turn(tmp_path, quick_classifier, capsys):
    import tensorflow as tf

    from kgan import evaluate, generate

    path = _conditional_export(tmp_path / "cond")
    model = tf.saved_model.load(path)
    assert generate.num_classes(model) == 10  # no config asset: found by probing the signature
    samples = evaluate.generate_samples(model, 25, seed=3, progress=False)
    expected = generate.sample(model, 25, seed=3)  # one sampling convention (classes 0..9, 0, ...)
    np.testing.assert_array_equal(samples, expected["images"].astype(np.float32) / 127.5 - 1.0)
    labelled = generate.sample(model, 25, seed=3, labels=list(np.arange(25) % 10))
    np.testing.assert_array_equal(expected["images"], labelled["images"])
    code, out, err = run_main(["evaluate", "--model", path, "--dataset", "digits", "--metrics", "kid",
                               "--num-samples", 50, "--num-real", 100, "--json", tmp_path / "r.json"], capsys)
    assert code == 0, err
    scored = json.loads((tmp_path / "r.json").read_text())
    assert math.isfinite(scored["metrics"]["kid"]) and scored["num_samples"] == 50


# 9 ----------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def conditional(tmp_path_factory):
    return _conditional_export(tmp_path_factory.mktemp("cond") / "generator", num_classes=3)


@pytest.mark.parametrize("argv, expected", [
    (["--labels", "99"], "--labels: class ids must be in [0, 3)"),
    (["--truncation", "nan"], "--truncation must be >= 0 (0: none) and finite; got nan"),
    (["--truncation", "inf"], "--truncation must be >= 0 (0: none) and finite; got inf"),
    (["--seed", "100000000000000000000"], "--seed must be a 64-bit integer"),
    (["--seed", "1e20"], "invalid int value: '1e20'"),
    (["--out", "DIR"], "is a directory: name a file"),
    (["--num", "10000000"], "--num 10000000 is too many for one PNG grid (at most 10000): write NAME.npz"),
    (["--interpolate", "100000", "--pairs", "4"], "--interpolate x --pairs must be <= 10000"),
])
def test_9_generate_validates_its_arguments_up_front(conditional, tmp_path, argv, expected, capsys):
    (tmp_path / "DIR.png").mkdir()
    argv = [a.replace("DIR", str(tmp_path / "DIR.png")) for a in argv]
    if "--out" not in argv:
        argv += ["--out", str(tmp_path / "x.png")]
    code, _, err = run_main(["generate", "--model", conditional, *argv], capsys)
    assert code == 2
    one_line(err, expected)
    assert listing(tmp_path) == ["DIR.png"]


def test_9_a_large_num_is_generated_and_written_in_bounded_batches(conditional, tmp_path, monkeypatch, capsys):
    import tensorflow as tf

    from kgan import generate

    sizes = []
    original = generate.sample
    monkeypatch.setattr(generate, "sample", lambda model, num, *a, **k: sizes.append(num) or original(model, num, *a, **k))
    monkeypatch.setattr(generate, "BATCH", 7)
    code, _, _ = run_main(["generate", "--model", conditional, "--num", 20, "--seed", 5, "--out", tmp_path / "s.npz"],
                          capsys)
    assert code == 0 and sizes == [7, 7, 6]  # never more than a batch in memory
    arrays = np.load(tmp_path / "s.npz")
    assert sorted(arrays.files) == ["images", "labels", "latents"]
    assert arrays["images"].shape == (20, 8, 8, 1) and arrays["latents"].shape == (20, 4)
    np.testing.assert_array_equal(arrays["labels"], np.arange(20) % 3)  # the classes in turn across batches
    first = original(tf.saved_model.load(conditional), 7, 5, 0.0, list(range(3)) * 2 + [0])
    np.testing.assert_array_equal(arrays["images"][:7], first["images"])  # batch 0 is the one-call sample
    assert len({arrays["latents"][i].tobytes() for i in range(20)}) == 20  # the batches' latents differ
    assert listing(tmp_path) == ["s.npz"]


# 10 ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("argv, expected", [
    (["--num-real", "0"], "--num-real must be >= 10; got 0"),
    (["--num-real", "-5"], "--num-real must be >= 10; got -5"),
    (["--num-samples", "3"], "--num-samples must be >= 10"),
    (["--json", "DIR"], "--json DIR is a directory"),
])
def test_10_evaluate_validates_its_arguments_before_loading_anything(tmp_path, argv, expected, capsys):
    (tmp_path / "DIR").mkdir()
    argv = [a.replace("DIR", str(tmp_path / "DIR")) for a in argv]
    expected = expected.replace("DIR", str(tmp_path / "DIR"))
    # The model does not exist: the arguments are checked first, before anything is loaded.
    code, _, err = run_main(["evaluate", "--model", tmp_path / "none", "--dataset", "digits", *argv], capsys)
    assert code == 2
    one_line(err, expected)


# 11 ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("tf_config, expected", [
    ("{not json", "TF_CONFIG is not valid JSON"),
    ('{"task": {"type": "worker", "index": 0}}', 'TF_CONFIG has no "cluster" object'),
    ('{"cluster": {"worker": ["localhost:1"]}, "task": {"type": "worker", "index": 3}}',
     "TF_CONFIG task index 3 is not in [0, 1)"),
    ('{"cluster": {"worker": ["localhost"]}, "task": {"type": "worker", "index": 0}}', '"host:port"'),
    ('{"cluster": {"worker": ["localhost:1"]}, "task": {"type": "ps", "index": 0}}', "must name a job"),
])
def test_11_a_bad_tf_config_exits_2_with_one_line(tmp_path, tf_config, expected, monkeypatch, capsys):
    monkeypatch.setenv("TF_CONFIG", tf_config)
    code, _, err = run_main([*train_argv(tmp_path, "r", 1), "--strategy", "multiworker"], capsys)
    assert code == 2
    one_line(err, expected)
    assert listing(tmp_path) == []


# 12 ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("flag, value", [
    ("--instance-noise", "nan"), ("--gp", "nan"), ("--r1", "inf"), ("--g-lr", "inf"), ("--d-lr", "nan"),
    ("--label-smoothing", "nan"), ("--ema", "nan"), ("--clip", "nan"), ("--clip-grad-norm", "inf"),
    ("--feature-matching", "inf"), ("--historical-averaging", "nan"), ("--p", "inf"), ("--beta1", "nan"),
])
def test_12_every_float_flag_must_be_finite(tmp_path, flag, value, capsys):
    code, _, err = run_main([*train_argv(tmp_path, "r", 1), flag, value], capsys)
    assert code == 2
    one_line(err, flag)
    assert listing(tmp_path) == []


def test_12_the_finite_check_covers_every_float_field():
    from kgan.config import TrainConfig

    for name in TrainConfig.float_fields():
        with pytest.raises(ValueError, match="--" + name.replace("_", "-") + " must be a finite number"):
            TrainConfig(**{name: float("nan")}).check_fields()


# cosmetics --------------------------------------------------------------------------------------


def test_the_export_directory_has_the_usual_mode_not_mkdtemp_s_0700(run1):
    umask = os.umask(0)
    os.umask(umask)
    assert os.stat(run1 / "sm" / "r" / "generator").st_mode & 0o777 == 0o777 & ~umask
    assert os.stat(run1 / "sm" / "r").st_mode & 0o777 == 0o777 & ~umask


# SIGTERM and kill -9: real processes -----------------------------------------------------------

SLOW_SAVE = """
import os, sys, time
from kgan import cli, quiet
quiet.import_tensorflow_quietly()
import keras

marker, where = os.environ["KGAN_TEST_MARKER"], os.environ["KGAN_TEST_PAUSE"]
from kgan import checkpoint as kcheckpoint

count = [0]


def pausing(original, checkpoint):
    def save_weights(self, *args, **kwargs):
        original(self, *args, **kwargs)  # the weights are written, the state.json not yet
        count[0] += checkpoint
        if (where == "checkpoint" and checkpoint and count[0] == 2) or (where == "run folder" and not checkpoint):
            open(marker, "w").close()
            time.sleep(60)
    return save_weights


keras.Model.save_weights = pausing(keras.Model.save_weights, False)  # the run folder's
kcheckpoint.WeightsWriter.__call__ = pausing(kcheckpoint.WeightsWriter.__call__, True)  # the checkpoints'
cli.main(sys.argv[1:])
"""


def _env(**extra):
    env = dict(os.environ, CUDA_VISIBLE_DEVICES="", PYTHONPATH=ROOT, **extra)
    env.pop("TF_CPP_MIN_LOG_LEVEL", None)  # kgan silences TensorFlow's start-up lines itself
    return env


def _kill_argv(tmp, run, epochs):
    return [str(a) for a in train_argv(tmp, run, epochs, "--deterministic")]


def _start(tmp, run, epochs, pause=None):
    env = _env(KGAN_TEST_MARKER=str(tmp / f"{run}.marker"), KGAN_TEST_PAUSE=pause or "none")
    return subprocess.Popen([sys.executable, "-c", SLOW_SAVE, *_kill_argv(tmp, run, epochs)], cwd=tmp, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _wait_for(path, proc, timeout=120):
    deadline = time.time() + timeout
    while not os.path.exists(path) and proc.poll() is None and time.time() < deadline:
        time.sleep(0.01)
    assert os.path.exists(path), proc.communicate()[1][-3000:] if proc.poll() is not None else "timeout"


def test_sigterm_stops_at_a_step_boundary_and_names_the_kept_checkpoint(tmp_path):
    proc = _start(tmp_path, "t", 200)
    _wait_for(tmp_path / "ck" / "t" / "epoch-000001" / "state.json", proc)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 143, err[-3000:]
    lines = [line for line in err.strip().splitlines() if line.startswith("kgan")]
    assert len(lines) == 1 and err.strip().endswith(lines[0]) and "Traceback" not in err, err[-3000:]
    assert lines[0].startswith("kgan train: terminated; checkpoint ") and " kept: run the same command" in lines[0]
    epoch = int(lines[0].split("(epoch ")[1].split(")")[0])
    assert sorted(os.listdir(tmp_path / "ck" / "t"))[-1] == f"epoch-{epoch:06d}"
    assert not temporaries(tmp_path / "ck", tmp_path / "sm") and not (tmp_path / "sm" / "t").exists()


def _max_difference(a, b):
    assert a.keys() == b.keys() and len(a) > 10
    return max(float(np.abs(np.asarray(a[k], "float64") - np.asarray(b[k], "float64")).max())
               for k in a if np.asarray(a[k]).dtype.kind in "fiu")


@pytest.mark.slow
def test_kill_9_at_any_point_resumes_to_the_uninterrupted_weights(tmp_path):
    epochs = 8
    reference = subprocess.run([sys.executable, "-m", "kgan.cli", *_kill_argv(tmp_path, "ref", epochs)], cwd=tmp_path,
                               env=_env(), capture_output=True, text=True, timeout=300)
    assert reference.returncode == 0, reference.stderr[-3000:]
    expected = _weights(tmp_path / "sm" / "ref" / "gan.weights.h5")
    rng = np.random.default_rng(13)
    points = [("checkpoint", None), ("run folder", None), ("random", float(rng.uniform(0.0, 0.3))),
              ("random", float(rng.uniform(0.3, 1.0)))]
    for index, (where, delay) in enumerate(points):
        run = f"k{index}"
        proc = _start(tmp_path, run, epochs, where)
        if where == "random":  # after start-up (the first checkpoint), then a random moment of training
            _wait_for(tmp_path / "ck" / run / "epoch-000001" / "state.json", proc)
            time.sleep(delay)
        else:  # paused inside the write (the weights written, the rest not yet)
            _wait_for(tmp_path / f"{run}.marker", proc)
        proc.send_signal(signal.SIGKILL)
        proc.communicate(timeout=30)
        assert proc.returncode == -signal.SIGKILL, f"{where}: the run ended before it was killed"
        if where == "checkpoint":
            assert temporaries(tmp_path / "ck" / run), "killed inside a checkpoint write: its temporary is there"
        if where == "run folder":
            assert temporaries(tmp_path / "sm"), "killed inside the run folder's write"
        again = subprocess.run([sys.executable, "-m", "kgan.cli", *_kill_argv(tmp_path, run, epochs)], cwd=tmp_path,
                               env=_env(), capture_output=True, text=True, timeout=300)
        assert again.returncode == 0, again.stderr[-3000:]
        assert f"resuming {run} from epoch" in again.stdout
        difference = _max_difference(expected, _weights(tmp_path / "sm" / run / "gan.weights.h5"))
        print(f"kill -9 at {where} {delay or ''}: max abs weight difference vs uninterrupted = {difference:g}")
        assert difference <= 1e-6
        record = report(tmp_path, run)
        assert record["epochs_trained"] == epochs and all(len(v) == epochs for v in record["history"].values())
        assert not temporaries(tmp_path / "ck" / run, tmp_path / "sm")
