"""Small models at the speed of the hardware: `kgan train`'s step against its own floor (and PyTorch).

Two small networks, the CLI's defaults otherwise (Minkowski p = 4, Adam 2e-4 / 0.5 / 0.999,
latent 100, the precision `--precision auto` picks on the machine; `--other-precision` also
times the floor in the other one, float32 or mixed_bfloat16):

- mixture: ring8, kgan.networks' PacGAN-sized MLP pair (G 4 x 400 + batch norm, D 3 x 200),
  batch 100 (1000 steps per epoch);
- digits: the main job's 8x8 DCGAN on the embedded digits, batch 64 (28 steps per epoch).

Variants, each built and warmed up first, then run in interleaved rounds in ONE process
(each number is the median over rounds of the round's mean step time, so ratios compare like
with like while the shared machine's load drifts):

- floor: the GAN's own `train_step`, K steps in one `tf.function` (`tf.range` loop) on one
  in-memory batch: no `fit`, no callbacks, no tf.data;
- cli: `GAN.fit` exactly as `kgan train` configures it (`run.build`, `run.make_fit_callbacks`:
  StepLog, DivergenceGuard, MetricsCallback, TensorBoard, SampleGrid, CheckpointCallback, and
  its default `steps_per_execution`), on the real pipeline. The step time is the time spent in
  the blocks (Keras' batch hooks of every callback included, timed from the first callback's
  `on_train_batch_begin` to the last one's `on_train_batch_end`); the per-epoch work
  (metrics, pictures, checkpoints) is reported beside it, per epoch;
- fit_k1: `GAN.fit` with no callbacks and `steps_per_execution=1` (what `kgan train` did
  before, minus its callbacks), the same with `sys.setswitchinterval(1e-4)` (the 6.37 ms /
  12.76 ms quantisation: Keras dispatches batch hooks to a thread when no callback has one);
- torch: the same networks, loss and optimiser in PyTorch eager (float32, its default threads,
  and 1 thread), when `torch` is importable (`pip install -e ".[bench]"`).

Ratios: `mixture_cli_vs_floor`, `digits_cli_vs_floor` (CLI step / floor step) and, with
torch, `torch_vs_kgan_mixture`, `torch_vs_kgan_digits` (torch step / CLI step). The main
job's whole-run split (import, build + trace, train, metrics, checkpoints, export) is
measured in a subprocess running `kgan.run.train` on the main job's config (`--quick`: 2
epochs).

    python benchmarks/bench_small.py --json small.json --markdown small.md   # about 7 minutes
    python benchmarks/bench_small.py --quick                                 # smoke run (tests do this)
"""

import time

_PROCESS_START = time.perf_counter()

import argparse  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import platform  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from kgan.quiet import without_keras_extras  # noqa: E402

with without_keras_extras():  # as the CLI imports them (the main job's split times that import)
    import keras  # noqa: E402
    import tensorflow as tf  # noqa: E402

from kgan import checkpoint, data, distribute, run  # noqa: E402
from kgan import config as kconfig  # noqa: E402

try:  # optional: the [bench] extra
    import torch
except ImportError:  # pragma: no cover - depends on the environment
    torch = None

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NETWORKS = {
    "mixture": {"dataset": "ring8", "batch_size": 100},
    "digits": {"dataset": "digits", "batch_size": 64},
}


def make_config(name, workdir, **overrides):
    values = dict(NETWORKS[name], output=os.path.join(workdir, "out"), logdir=os.path.join(workdir, "logs"),
                  checkpoint_dir=os.path.join(workdir, "ckpt"), run_name=f"bench-{name}")
    values.update(overrides)
    return kconfig.TrainConfig(**values).resolved()


def build_gan(config, dataset):
    """`run.build` under the precision `config.precision` picks and with the XLA choice `config.xla`
    makes (`auto`: as `kgan train` does, one replica)."""
    keras.utils.set_random_seed(config.seed)
    previous = keras.mixed_precision.global_policy()
    distribute.set_precision(config.precision, dataset.shape)
    xla, _ = distribute.resolve_xla(config.xla, dataset.shape, deterministic=config.deterministic)
    try:  # the layers keep their policy, the global one is restored (as in run.train)
        return run.build(config, dataset.shape, dataset.num_classes, jit_compile=xla)
    finally:
        keras.mixed_precision.set_global_policy(previous)


class _Start(keras.callbacks.Callback):
    def __init__(self, clock):
        super().__init__()
        self.clock = clock

    def on_train_batch_begin(self, batch, logs=None):
        self.clock["start"] = time.perf_counter()


class _End(keras.callbacks.Callback):
    def __init__(self, clock):
        super().__init__()
        self.clock = clock

    def on_train_batch_end(self, batch, logs=None):
        self.clock["last_end"] = time.perf_counter()
        self.clock["blocks"] += self.clock["last_end"] - self.clock["start"]

    def on_epoch_end(self, epoch, logs=None):  # last in the list: after every callback's epoch work
        self.clock["epoch_work"] += time.perf_counter() - self.clock["last_end"]


class _EpochClock(keras.callbacks.Callback):
    """Sums the epochs' wall time (no batch hooks: Keras keeps its asynchronous dispatch)."""

    def __init__(self):
        super().__init__()
        self.seconds = 0.0

    def on_epoch_begin(self, epoch, logs=None):
        self._start = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        self.seconds += time.perf_counter() - self._start


class Cli:
    """`GAN.fit` as `kgan train` runs it (callbacks, block size, pipeline)."""

    def __init__(self, name, workdir, steps_per_epoch=None):
        self.config = config = make_config(name, workdir)
        self.dataset = dataset = data.load(config.dataset, seed=config.seed)
        full = data.steps_per_epoch(dataset, config.batch_size, config.d_steps)
        self.steps_per_epoch = steps_per_epoch or full
        self.gan = gan = build_gan(config, dataset)
        strategy = tf.distribute.get_strategy()
        toolbox = run.toolbox_callbacks(gan)
        gan.steps_per_execution = run._steps_per_execution(config, self.steps_per_epoch, strategy, toolbox)
        logdir = os.path.join(config.logdir, config.run_name)
        metrics_callback = run.callbacks.metrics_callback_for_run(config, dataset, logdir)
        checkpoints = checkpoint.Checkpoints(os.path.join(config.checkpoint_dir, config.run_name),
                                             keep=config.keep_checkpoints)
        reference = next(iter(dataset.data.batch(1000))).numpy() if dataset.kind == "points" else None
        fit_callbacks, self.guard, _ = run.make_fit_callbacks(
            config, gan, dataset, logdir, self.steps_per_epoch, strategy, toolbox,
            lambda guard: run._checkpoint_callback(config, checkpoints, guard, None, {}, 0.0),
            metrics_callback, reference)
        self.clock = {"start": 0.0, "blocks": 0.0, "last_end": 0.0, "epoch_work": 0.0}
        self.callbacks = [_Start(self.clock), *fit_callbacks, _End(self.clock)]
        self.pipeline = data.pipeline(dataset, config.batch_size, config.d_steps, seed=config.seed).repeat()
        self.epochs_done = 0
        self.per_epoch = []

    def run(self, epochs):
        self.clock.update(blocks=0.0, epoch_work=0.0)
        self.gan.fit(self.pipeline, epochs=self.epochs_done + epochs, initial_epoch=self.epochs_done,
                     steps_per_epoch=self.steps_per_epoch, callbacks=self.callbacks, verbose=0, shuffle=False)
        self.epochs_done += epochs
        self.per_epoch.append(self.clock["epoch_work"] / epochs)
        return self.clock["blocks"] / (epochs * self.steps_per_epoch)


class FitPlain:
    """`GAN.fit`, no callbacks, `steps_per_execution` k, optionally another switch interval."""

    def __init__(self, name, workdir, steps_per_epoch, k=1, switch_interval=None):
        config = make_config(name, workdir)
        dataset = data.load(config.dataset, seed=config.seed)
        self.gan = build_gan(config, dataset)
        self.gan.steps_per_execution = k
        self.steps_per_epoch = steps_per_epoch
        self.switch_interval = switch_interval
        self.pipeline = data.pipeline(dataset, config.batch_size, config.d_steps, seed=config.seed).repeat()

    def run(self, epochs):
        previous = sys.getswitchinterval()
        if self.switch_interval:
            sys.setswitchinterval(self.switch_interval)
        try:
            clock = _EpochClock()
            self.gan.fit(self.pipeline, epochs=epochs, steps_per_epoch=self.steps_per_epoch, verbose=0, shuffle=False,
                         callbacks=[clock])
            return clock.seconds / (epochs * self.steps_per_epoch)
        finally:
            sys.setswitchinterval(previous)


class Floor:
    """The GAN's `train_step`, `steps_per_epoch` times in one tf.function, on one in-memory batch
    (the step XLA-compiled when the GAN is: the floor of the step `kgan train` runs)."""

    def __init__(self, name, workdir, steps_per_epoch, precision="auto", xla="auto"):
        config = make_config(name, workdir, precision=precision, xla=xla)
        dataset = data.load(config.dataset, seed=config.seed)
        self.gan = gan = build_gan(config, dataset)
        self.real = next(iter(data.pipeline(dataset, config.batch_size, config.d_steps, seed=0)))
        self.steps_per_epoch = steps_per_epoch
        step = tf.function(gan.train_step, jit_compile=True) if gan.jit_compile else gan.train_step

        @tf.function
        def loop(real, steps):
            logs = step(real)
            for _ in tf.range(steps - 1):
                logs = step(real)
            return logs["d_loss"]

        self.loop = loop

    def run(self, epochs):
        steps = epochs * self.steps_per_epoch
        start = time.perf_counter()
        self.loop(self.real, tf.constant(steps)).numpy()
        return (time.perf_counter() - start) / steps


# ---- PyTorch eager --------------------------------------------------------------------------


def _torch_networks(name, latent):
    nn = torch.nn
    if name == "mixture":  # kgan.networks.mlp: G 4 x 400 (no bias, BN, ReLU), D 3 x 200 LeakyReLU(0.2)
        g_layers, width = [], latent
        for _ in range(4):
            g_layers += [nn.Linear(width, 400, bias=False), nn.BatchNorm1d(400, eps=1e-3, momentum=0.01), nn.ReLU()]
            width = 400
        generator = nn.Sequential(*g_layers, nn.Linear(400, 2))
        d_layers, width = [], 2
        for _ in range(3):
            d_layers += [nn.Linear(width, 200), nn.LeakyReLU(0.2)]
            width = 200
        discriminator = nn.Sequential(*d_layers, nn.Linear(200, 1))
        return generator, discriminator, (2,)
    # kgan.networks.dcgan at 8x8x1: Dense 4x4x64 (BN, ReLU) -> ConvT 4/2 -> tanh; D Conv 64 4/2 -> Dense 1
    generator = nn.Sequential(
        nn.Linear(latent, 1024, bias=False), nn.BatchNorm1d(1024, eps=1e-3, momentum=0.01), nn.ReLU(),
        nn.Unflatten(1, (64, 4, 4)), nn.ConvTranspose2d(64, 1, 4, stride=2, padding=1), nn.Tanh())
    discriminator = nn.Sequential(nn.Conv2d(1, 64, 4, stride=2, padding=1), nn.LeakyReLU(0.2), nn.Flatten(),
                                  nn.Linear(1024, 1))
    return generator, discriminator, (1, 8, 8)


class Torch:
    """The same networks, Minkowski p=4 (sigmoid, log space) and Adam in PyTorch eager."""

    def __init__(self, name, batch, latent=100, p=4.0, threads=None):
        self.threads = threads
        torch.manual_seed(0)
        self.generator, self.discriminator, shape = _torch_networks(name, latent)
        adam = {"lr": 2e-4, "betas": (0.5, 0.999), "eps": 1e-7}
        self.g_opt = torch.optim.Adam(self.generator.parameters(), **adam)
        self.d_opt = torch.optim.Adam(self.discriminator.parameters(), **adam)
        self.real = torch.rand((batch, *shape)) * 2 - 1
        self.batch, self.latent, self.p = batch, latent, p

    def _term(self, logits, target):  # |target - sigmoid(x)|^p / p for targets 0, 1 (log space)
        log = torch.nn.functional.logsigmoid(-logits if target == 1 else logits)
        return torch.exp(self.p * log) / self.p

    def step(self):
        z = torch.randn(self.batch, self.latent)
        fake = self.generator(z).detach()
        d_loss = (self._term(self.discriminator(self.real), 1) + self._term(self.discriminator(fake), 0)).mean()
        self.d_opt.zero_grad(set_to_none=True)
        d_loss.backward()
        d_norm = torch.linalg.vector_norm(torch.stack([p.grad.norm() for p in self.discriminator.parameters()]))
        self.d_opt.step()
        z = torch.randn(self.batch, self.latent)
        g_loss = self._term(self.discriminator(self.generator(z)), 1).mean()
        self.g_opt.zero_grad(set_to_none=True)
        g_loss.backward()
        g_norm = torch.linalg.vector_norm(torch.stack([p.grad.norm() for p in self.generator.parameters()]))
        self.g_opt.step()
        return d_loss, g_loss, d_norm, g_norm

    def run(self, epochs, steps_per_epoch):
        # At most 200 steps a round: with 2 threads on a busy 2-core machine torch's steps of the
        # MLP swing from 9 to 400 ms (its OpenMP threads wait for a descheduled one).
        steps = min(epochs * steps_per_epoch, 200)
        previous = torch.get_num_threads()
        if self.threads:
            torch.set_num_threads(self.threads)
        try:
            start = time.perf_counter()
            for _ in range(steps):
                logged = self.step()  # noqa: F841 - like kgan: losses and norms computed, read once per block
            return (time.perf_counter() - start) / steps
        finally:
            torch.set_num_threads(previous)


# ---- main job split -------------------------------------------------------------------------


def main_job_split(epochs, workdir):
    """Runs the main job's config (`kgan.run.train`) in a subprocess, timing its parts (seconds)."""
    # A fresh directory per run (no resume), one classifier cache for all of them.
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""),
               KGAN_FEATURE_EXTRACTORS_DIR=os.path.join(workdir, "feature_extractors"))
    rundir = tempfile.mkdtemp(prefix=f"main-job-{epochs}-", dir=workdir)
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, os.path.abspath(__file__), "--split-worker", str(epochs)], cwd=rundir,
                          env=env, capture_output=True, text=True, timeout=900)
    wall = time.perf_counter() - start
    if proc.returncode:
        raise RuntimeError(proc.stderr[-3000:])
    split = json.loads(proc.stdout.strip().splitlines()[-1])
    split["process_wall"] = wall
    return split


def _split_worker(epochs):  # pragma: no cover - runs in the subprocess
    """Inside the subprocess: time the parts of `kgan.run.train` on the main job's config."""
    begin = time.perf_counter()
    from kgan import callbacks, export, plots
    from kgan import gan as kgan_gan

    parts = {"import": begin - _PROCESS_START, "build": 0.0, "metrics_setup": 0.0, "metrics": 0.0, "checkpoints": 0.0, "sample_grid": 0.0,
             "export": 0.0}
    blocks = []

    def timed(owner, attribute, part, outside_fit=False):
        original = getattr(owner, attribute)

        def wrapper(*args, **kwargs):
            if outside_fit and parts.get("fit_running"):
                return original(*args, **kwargs)
            t = time.perf_counter()
            try:
                return original(*args, **kwargs)
            finally:
                parts[part] += time.perf_counter() - t

        setattr(owner, attribute, wrapper)

    timed(run, "build", "build")
    timed(callbacks, "metrics_callback_for_run", "metrics_setup")
    timed(callbacks.MetricsCallback, "on_epoch_end", "metrics")
    timed(callbacks.SampleGrid, "on_epoch_end", "sample_grid")
    timed(checkpoint.Checkpoints, "save", "checkpoints")
    for name in ("save_gan_weights", "export_generator"):
        timed(export, name, "export")
    timed(plots, "save_png", "export")
    timed(kgan_gan.GAN, "generate", "export", outside_fit=True)  # the final samples.png
    begin_block, end_block = callbacks.StepLog.on_train_batch_begin, callbacks.StepLog.on_train_batch_end

    def on_begin(self, batch, logs=None):
        self._bench_start = time.perf_counter()
        begin_block(self, batch, logs)

    def on_end(self, batch, logs=None):
        end_block(self, batch, logs)
        blocks.append(time.perf_counter() - self._bench_start)

    callbacks.StepLog.on_train_batch_begin, callbacks.StepLog.on_train_batch_end = on_begin, on_end
    fit = kgan_gan.GAN.fit

    def timed_fit(self, *args, **kwargs):
        t = time.perf_counter()
        parts["fit_running"] = True
        try:
            return fit(self, *args, **kwargs)
        finally:
            parts["fit"] = time.perf_counter() - t
            parts["fit_running"] = False

    kgan_gan.GAN.fit = timed_fit
    t = time.perf_counter()
    result = run.train(kconfig.TrainConfig(epochs=epochs), verbose=0, print_fn=lambda *a: None)
    parts["train_call"] = time.perf_counter() - t
    steady = statistics.median(blocks[1:]) if len(blocks) > 1 else blocks[0]
    parts["trace"] = max(blocks[0] - steady, 0.0)
    parts["train_steps"] = sum(blocks) - parts["trace"]
    parts["blocks"] = len(blocks)
    parts["steps"] = epochs * 28  # digits, batch 64
    parts["epochs_trained"] = len(result["gan"].history.epoch)
    parts["fit_other"] = parts["fit"] - sum(blocks) - parts["checkpoints"] - parts["sample_grid"] - (
        parts["metrics"])  # Keras' epoch loop, TensorBoard's epoch scalars, ...
    parts["other"] = parts["train_call"] - parts["fit"] - parts["build"] - parts["export"] - parts["metrics_setup"]
    parts["train_seconds_reported"] = result["seconds"]
    print(json.dumps(parts))


# ---- main -----------------------------------------------------------------------------------


def cpu_flags():
    return sorted(f for f in distribute._cpu_flags() if "amx" in f or "bf16" in f)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="few steps and rounds (a smoke run)")
    parser.add_argument("--rounds", type=int, default=None, help="interleaved rounds (default 5; quick 1)")
    parser.add_argument("--json", metavar="PATH", help="also write the results as JSON")
    parser.add_argument("--markdown", metavar="PATH", help="also write the tables as Markdown")
    parser.add_argument("--no-split", action="store_true", help="skip the main job's whole-run split")
    parser.add_argument("--other-precision", action="store_true",
                        help="also time the floor in the precision `auto` does not pick (float32 / mixed_bfloat16)")
    args = parser.parse_args(argv)
    rounds = args.rounds or (1 if args.quick else 5)
    workdir = tempfile.mkdtemp(prefix="kgan-bench-small-")
    # Steps per epoch of the timed fits and epochs per round: the CLI's epochs (quick: shorter).
    shape = {"mixture": (50 if args.quick else 1000, 1),
             "digits": (28, 1 if args.quick else 8)}
    auto = {name: distribute.auto_precision((2,) if name == "mixture" else (8, 8, 1))[0] for name in shape}
    variants = {}
    for name, (steps_per_epoch, _) in shape.items():
        variants[(name, "floor")] = Floor(name, workdir, steps_per_epoch)
        variants[(name, "cli")] = Cli(name, workdir, steps_per_epoch)
        variants[(name, "fit_k1")] = FitPlain(name, workdir, steps_per_epoch)
        variants[(name, "fit_k1_switch_1e-4")] = FitPlain(name, workdir, steps_per_epoch, switch_interval=1e-4)
        if args.other_precision:
            other = "float32" if auto[name] != "float32" else "mixed_bfloat16"
            variants[(name, f"floor_{other}")] = Floor(name, workdir, steps_per_epoch, precision=other)
        if variants[(name, "floor")].gan.jit_compile:  # what XLA gives: the floor without it
            variants[(name, "floor_no_xla")] = Floor(name, workdir, steps_per_epoch, xla="off")
        if torch is not None:
            variants[(name, "torch")] = Torch(name, NETWORKS[name]["batch_size"])
            variants[(name, "torch_1_thread")] = Torch(name, NETWORKS[name]["batch_size"], threads=1)

    def once(key, epochs):
        variant = variants[key]
        if isinstance(variant, Torch):
            return variant.run(epochs, shape[key[0]][0])
        return variant.run(epochs)

    for key in variants:  # build, trace and warm up
        once(key, 1)
    times = {key: [] for key in variants}
    for _ in range(rounds):
        for key in variants:
            times[key].append(once(key, shape[key[0]][1]))
    ms = {key: 1e3 * statistics.median(t) for key, t in times.items()}
    ms_min = {key: 1e3 * min(t) for key, t in times.items()}

    rows = []
    for (name, variant), value in ms.items():
        row = {"network": name, "variant": variant, "ms_per_step": value,
               "x_floor": value / ms[(name, "floor")], "ms_per_step_min": ms_min[(name, variant)],
               "ms_per_round": [1e3 * t for t in times[(name, variant)]]}
        if variant == "cli":
            cli = variants[(name, variant)]
            row["steps_per_execution"] = int(cli.gan.steps_per_execution)
            row["per_epoch_work_ms"] = 1e3 * statistics.median(cli.per_epoch[1:] or cli.per_epoch)
            row["steps_per_epoch"] = cli.steps_per_epoch
        rows.append(row)
    ratios = {f"{name}_cli_vs_floor": ms[(name, "cli")] / ms[(name, "floor")] for name in shape}
    ratios_min = {f"{name}_cli_vs_floor": ms_min[(name, "cli")] / ms_min[(name, "floor")] for name in shape}
    if torch is not None:
        ratios_min.update({f"torch_vs_kgan_{name}": ms_min[(name, "torch")] / ms_min[(name, "cli")] for name in shape})
    if torch is not None:
        for name in shape:
            ratios[f"torch_vs_kgan_{name}"] = ms[(name, "torch")] / ms[(name, "cli")]
    for name in shape:
        ratios[f"{name}_fit_k1_vs_cli"] = ms[(name, "fit_k1")] / ms[(name, "cli")]
        if (name, "floor_no_xla") in ms:
            ratios[f"{name}_floor_no_xla_vs_xla"] = ms[(name, "floor_no_xla")] / ms[(name, "floor")]
        if args.other_precision:
            other = "float32" if auto[name] != "float32" else "mixed_bfloat16"
            ratios[f"{name}_floor_{other}_vs_{auto[name]}"] = ms[(name, f"floor_{other}")] / ms[(name, "floor")]
    result = {
        "machine": {"platform": platform.platform(), "processor": platform.processor(), "cpu_count": os.cpu_count(),
                    "cpu_flags": cpu_flags(), "load_average_end_of_timing": os.getloadavg(),
                    "tensorflow": tf.__version__, "keras": keras.__version__,
                    "torch": None if torch is None else torch.__version__,
                    "switch_interval": sys.getswitchinterval()},
        "setup": {"rounds": rounds, "steps_per_epoch_and_epochs_per_round": shape, "quick": args.quick,
                  "precision_auto": auto,
                  "xla_auto": {name: distribute.resolve_xla("auto", (2,) if name == "mixture" else (8, 8, 1))
                               for name in shape},
                  "precision_auto_why": {name: distribute.auto_precision((2,) if name == "mixture" else (8, 8, 1))[1]
                                         for name in shape}},
        "rows": rows,
        "ratios": ratios,
        "ratios_of_minima": ratios_min,
    }
    if not args.no_split:
        if not args.quick:  # a first, 1-epoch run trains and caches the digits classifier (once per machine)
            result["main_job_split_first_run_1_epoch"] = main_job_split(1, workdir)
        result["main_job_split"] = main_job_split(2 if args.quick else 200, workdir)
        result["machine"]["load_average_end"] = os.getloadavg()
    print(markdown(result))
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(result, handle, indent=2)
    if args.markdown:
        with open(args.markdown, "w") as handle:
            handle.write(markdown(result))
    return result


def markdown(result):
    machine = result["machine"]
    lines = [
        f"{result['setup']['rounds']} interleaved rounds, median of each round's mean step time; load average "
        f"after the timing {machine['load_average_end_of_timing'][0]:.2f}; TensorFlow {machine['tensorflow']}, "
        f"Keras {machine['keras']}, torch {machine['torch'] or 'not installed'}.",
        "",
        "| network | variant | ms/step (median) | ms/step (min) | x floor | steps/execution | per-epoch work ms |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in result["rows"]:
        lines.append(f"| {r['network']} | {r['variant']} | {r['ms_per_step']:.2f} | {r['ms_per_step_min']:.2f} | "
                     f"{r['x_floor']:.2f} | "
                     f"{r.get('steps_per_execution', '')} | "
                     f"{'' if 'per_epoch_work_ms' not in r else format(r['per_epoch_work_ms'], '.1f')} |")
    lines += ["", "| ratio | value |", "|---|---|"]
    lines += [f"| {name} | {value:.3f} |" for name, value in result["ratios"].items()]
    lines += ["", "| ratio of the minima | value |", "|---|---|"]
    lines += [f"| {name} | {value:.3f} |" for name, value in result["ratios_of_minima"].items()]
    if "main_job_split" in result:
        split = result["main_job_split"]
        lines += ["", "| main job part | seconds |", "|---|---|"]
        for part in ("import", "build", "metrics_setup", "trace", "train_steps", "metrics", "checkpoints", "sample_grid", "fit_other",
                     "export", "other", "process_wall"):
            lines.append(f"| {part} | {split[part]:.2f} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--split-worker":
        _split_worker(int(sys.argv[2]))
    else:
        main(sys.argv[1:])
