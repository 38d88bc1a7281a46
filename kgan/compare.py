"""`kgan compare`: a grid of losses x datasets x seeds, one JSON line per finished run, tables and plots.

Every run of a grid trains for the same number of generator updates (`steps`; a WGAN step
holds its 5 critic updates), evaluates every `eval_every` steps, and appends one JSON line with
its settings, final metrics and curves to the results file as soon as it finishes. A compare
that is interrupted picks up where it stopped: runs whose key is already in the results file
are skipped (failed rows are run again). Aggregation (mean +- standard error over seeds), plots
and the TensorBoard HParams view (`<out>/tensorboard/`, `write_tensorboard`) read only that file.

Rows run on one of two backends behind one loop (`run_grid`: submit the rows, take finished
records in completion order, this process alone appends them): "local" (this process, or
`--workers` spawned processes) or "ray" (a Ray task a row on a local Ray or the cluster at
`--ray-address`; a task that raises or whose worker dies is retried once, then becomes a row
with `status` "failed" and its error line). One line is printed a finished row (`Progress`).

Every row trains through `run.train`, the runner of `kgan train`: the same callbacks
(divergence guard, metrics, checkpoints with `--checkpoint-every`), precision and strategy
set-up, metric names and evaluation protocol (`kgan.evaluate.PROTOCOL_SAMPLES`, else 1,000
samples). A row's TrainConfig is `presets.config(preset, dataset, setting, seed)` with
`--steps-per-epoch eval_every --epochs steps/eval_every --metrics-every 1`, and the row records
`command`, the `kgan train` line that trains it again (`config.train_command`, with the
precision the run resolved); with `--deterministic` that command gives the row's final metrics
exactly. A run that diverges is a row with `diverged` true and the runner's message in `error`.
Each run's folders go to `<out>/runs/{models,logs,checkpoints}/<preset>-<dataset>-<setting>-<steps>-s<seed>/`
(models/ keeps config.json and samples.png; the exported generator and weights only with
`--keep-models`); they are scratch, not results: do not commit them.

Loss settings (named in every table):

    minimax          original GAN, saturating G loss log(1 - D(G(z)))
    non_saturating   original GAN D loss, G loss -log D(G(z))
    wasserstein      WGAN: weight clipping 0.01, d_steps 5
    wgan_gp          WGAN-GP: wasserstein + gradient penalty 10, d_steps 5, no batch norm in D
    least_squares    LSGAN (a=0, b=1, c=1)
    hinge            hinge loss (SNGAN)
    minkowski_p<p>   Minkowski loss of order p, sigmoid output (the paper's)

Techniques (`--techniques`, kgan's stabilisation toolbox, each applied on top of every loss
setting; the setting is then named `<loss>+<technique>`; `none` is the loss alone):

    ema                   EMA of G's weights, decay 0.999 (the EMA generator is evaluated)
    feature_matching      feature matching term in G's loss, weight 1
    diffaugment           DiffAugment color,translation,cutout, p = 1 (images)
    ada                   adaptive augmentation, target 0.6 (images)
    unroll5               unrolled GAN, 5 simulated D steps
    minibatch_std         minibatch standard deviation feature in D
    spectral_norm         spectral normalisation in D
    resnet                SNGAN ResNet networks (images)
    self_attention        SAGAN block at 4x4 feature maps (8x8 images)
    conditional           class-conditional G and projection D (digits)
    progressive           progressive growing 4x4 -> 8x8 (images)
    clip_grad_norm        gradient norms clipped to 1
    historical_averaging  historical averaging penalty, weight 0.01
    pack2, pack4          PacGAN: D judges 2 (4) samples at once, the batch counted in packed
                          examples (PacGAN2/PacGAN4 are minimax+pack2, minimax+pack4)
    maxout, maxout_pack2, maxout_pack4
                          PacGAN's own 2-D networks (maxout D; --arch pacgan), alone and packed
    simultaneous          PacGAN's update rule: D's and G's gradients from one forward pass at
                          the same weights (--updates simultaneous); maxout_simultaneous with
                          PacGAN's networks

Presets (kgan/presets.py):
    protocol         the controlled comparison, one optimiser for every loss, per dataset:
                     ring8/grid25 PacGAN's (Adam 1e-4, beta1 0.8, batch 100, latent 2),
                     digits/stacked_digits DCGAN's (Adam 2e-4, beta1 0.5, batch 64, latent 100);
                     a loss setting keeps what defines it (clipping, penalty, 5 critic steps)
    recommended      the dataset's batch geometry with each loss's own paper's optimiser and
                     critic steps (`presets.LOSS_OPTIMISERS`, each with its citation):
                     wasserstein RMSProp 5e-5, n_critic 5 (Arjovsky et al. 2017); wgan_gp Adam
                     1e-4, betas (0, 0.9), n_critic 5 (Gulrajani et al. 2017); least_squares Adam
                     2e-4, beta1 0.5 (Mao et al. 2017); hinge Adam 2e-4, betas (0, 0.9), n_dis 5
                     (Miyato et al. 2018); minkowski Adam 2e-4, beta1 0.5 (the paper); the
                     original GAN keeps the protocol's (PacGAN's and DCGAN's are its own)
    paper            the Minkowski paper's for every loss and dataset: Adam 2e-4 / 0.5 / 0.999,
                     batch 64, latent 100, and D weight clipping 0.01 for every loss
"""

import argparse
import collections
import contextlib
import csv
import dataclasses
import json
import math
import os
import shlex
import shutil
import sys
import time

import numpy as np

from kgan import presets, stats, verdict
from kgan.config import train_command
from kgan.errors import KganError, UsageError
from kgan.presets import DATASETS, LOSS_SETTINGS, MIXTURES, PRESETS, TECHNIQUES, minkowski_p  # noqa: F401 - the tables live with the config

#: The metric each dataset's curves and p-ablation use, and whether higher is better.
MAIN_METRIC = {"ring8": ("modes", True), "grid25": ("modes", True), "stacked_digits": ("modes", True), "digits": ("fcd", False)}
#: Results files written before compare ran on `run.train` name two metrics differently.
LEGACY_METRIC_NAMES = {"modes_captured": "modes", "high_quality_percent": "hq_percent"}
#: How table headers and figure file names spell a metric (the names the published tables and
#: docs/results' links use).
METRIC_LABELS = {"modes": "modes_captured", "hq_percent": "high_quality_percent"}


def _label(metric):
    return METRIC_LABELS.get(metric, metric)


@dataclasses.dataclass(frozen=True)
class RunSpec:
    """One run of a compare grid: `steps` generator updates, evaluated every `eval_every`."""

    setting: str  # a LOSS_SETTINGS name, minkowski as "minkowski_p<p>", "+<technique>" if any
    dataset: str
    seed: int
    preset: str = "recommended"
    steps: int = 2000
    eval_every: int = 500

    @property
    def key(self):
        return f"{self.preset}/{self.dataset}/{self.setting}/{self.steps}/s{self.seed}"

    @property
    def run_name(self):
        return self.key.replace("/", "-")

    def config(self, out="compare", deterministic=False, checkpoint_every=0):
        """The `TrainConfig` `run.train` trains for this row: preset + loss setting + technique
        (`presets.config`), `steps` as epochs of `eval_every` steps over repeated data with the
        metrics after every epoch, and the run's folders under `<out>/runs/`."""
        runs = os.path.join(out, "runs")
        return presets.config(
            self.preset, self.dataset, self.setting, self.seed,
            epochs=max(1, self.steps // self.eval_every), steps_per_epoch=self.eval_every, metrics_every=1,
            deterministic=deterministic, checkpoint_every=checkpoint_every, run_name=self.run_name,
            output=os.path.join(runs, "models"), logdir=os.path.join(runs, "logs"),
            checkpoint_dir=os.path.join(runs, "checkpoints"),
        )


def setting_names(losses, ps, techniques=("none",)):
    """Loss names (with `minkowski` expanded over `ps`) x techniques -> setting names, in order."""
    names = []
    for loss in losses:
        if loss not in LOSS_SETTINGS:
            raise UsageError(f"unknown loss setting {loss!r}: choose from {', '.join(LOSS_SETTINGS)}")
        names += [f"minkowski_p{p:g}" for p in ps] if loss == "minkowski" else [loss]
    for technique in techniques:
        if technique not in TECHNIQUES:
            raise UsageError(f"unknown technique {technique!r}: choose from {', '.join(TECHNIQUES)}")
    return [name if t == "none" else f"{name}+{t}" for t in techniques for name in names]


def _applies(setting, dataset):
    datasets = TECHNIQUES[setting.partition("+")[2] or "none"][1]
    return datasets is None or dataset in datasets


def grid(losses, ps, datasets, seeds, preset="recommended", steps=2000, eval_every=500, techniques=("none",)):
    """All RunSpecs of a grid, seeds innermost-last so early results cover every setting."""
    for dataset in datasets:
        if dataset not in DATASETS:
            raise UsageError(f"unknown compare dataset {dataset!r}: choose from {', '.join(DATASETS)}")
    if preset not in PRESETS:
        raise UsageError(f"unknown preset {preset!r}: choose from {', '.join(PRESETS)}")
    if steps < 1 or eval_every < 1:
        raise UsageError("--steps and --eval-every must be >= 1")
    eval_every = min(eval_every, steps)
    if steps % eval_every:
        raise UsageError(f"--steps ({steps}) must be a multiple of --eval-every ({eval_every}): a row is "
                         "--epochs steps/eval_every of --steps-per-epoch eval_every")
    for p in ps:
        if not (math.isfinite(p) and p >= 1):
            raise UsageError(f"Minkowski p must be a finite number >= 1; got {p}")
    names = setting_names(losses, ps, techniques)
    for name in names:
        if not any(_applies(name, d) for d in datasets):
            technique = name.partition("+")[2]
            raise UsageError(f"technique {technique!r} applies only to {', '.join(TECHNIQUES[technique][1])}; "
                             f"--datasets is {','.join(datasets)}")
    return [
        RunSpec(name, dataset, seed, preset, steps, eval_every)
        for seed in range(seeds)
        for dataset in datasets
        for name in names
        if _applies(name, dataset)  # image-only techniques skip the 2-D mixtures
    ]


# ---- one run ------------------------------------------------------------------------------------


def _quiet(*args, **kwargs):
    pass


def _drop_models(run_dir):
    """Removes a finished row's exported generator and GAN weights (megabytes a row)."""
    from kgan import export

    shutil.rmtree(os.path.join(run_dir, "generator"), ignore_errors=True)
    with contextlib.suppress(FileNotFoundError):
        os.remove(os.path.join(run_dir, export.WEIGHTS_FILE))


def run_one(spec, out="compare", deterministic=False, checkpoint_every=0, keep_samples=None, keep_models=False):
    """Trains one RunSpec through `run.train` (the runner `kgan train` uses) and returns its
    result record (a JSON-serialisable dict).

    The record's `command` is the `kgan train` line that trains the same config (with
    `--deterministic`, to the same final metrics). A run that diverges (`DivergedError`) is a
    record with `diverged` true, its message in `error` and its curves up to the divergence.

    Args:
        spec: the `RunSpec`.
        out: the compare's output directory; the run's folders go to `<out>/runs/`.
        deterministic: `--deterministic` for the run (deterministic TensorFlow ops).
        checkpoint_every: epochs (evaluations) between checkpoints; 0: none.
        keep_samples: a directory for `<run name>.npz` with the final samples (2,500 points or
            64 images; the plots' sample panels), or None.
        keep_models: keep the run folder's exported generator and GAN weights (by default only
            its config.json and samples.png stay: the row's `command` trains the model again).
    """
    import keras

    from kgan import run
    from kgan.errors import DivergedError

    config = spec.config(out, deterministic, checkpoint_every)
    record = dataclasses.asdict(spec)
    record["key"] = spec.key
    extended = _start_from_a_shorter_row(spec, config)
    if extended:
        record["extended_from"] = extended
    start = time.time()
    try:
        result = run.train(config, verbose=0, print_fn=_quiet)
        report, error = result["report"], None
    except DivergedError as diverged:
        result, report, error = None, getattr(diverged, "report", None) or {}, " ".join(str(diverged).split())
    policy = report.get("precision_policy")
    metrics = report.get("metrics") or {}
    history = report.get("history", {})
    epochs = len(next(iter(history.values()), []))
    record.update(
        config=report.get("config", config.resolved().to_dict()),
        precision_policy=policy,
        xla=report.get("xla"),
        command="kgan " + shlex.join(train_command(config, policy, report.get("xla"))),
        run_dir=os.path.join(config.output, config.run_name),
        evaluation={k: metrics[k] for k in ("num_samples", "labels", "features") if k in metrics},
        final={} if error else dict(metrics.get("values", {})),
        diverged=error is not None,
        final_losses={k: report["final"][k] for k in ("d_loss", "g_loss") if k in report.get("final", {})},
        curves={"step": [(i + 1) * spec.eval_every for i in range(epochs)], **history},
        seconds=round(time.time() - start, 2),
        epochs_this_fit=report.get("epochs_this_fit"),  # fewer than the row's epochs: it was resumed
    )
    record["status"] = "diverged" if error else "ok"
    if error:
        record["error"] = error
    if keep_samples and result is not None:
        samples = result["gan"].generate(2500 if spec.dataset in MIXTURES else 64, seed=spec.seed)
        os.makedirs(keep_samples, exist_ok=True)
        np.savez_compressed(os.path.join(keep_samples, spec.run_name + ".npz"), samples=samples.astype("float32"))
    del result
    if not keep_models:
        _drop_models(record["run_dir"])
    keras.backend.clear_session()  # a long grid in one process does not accumulate graphs
    return record


# ---- the grid -------------------------------------------------------------------------------------


def status(record):
    """A row's status: "ok", "diverged" or "failed" (rows written before the field: from `diverged`)."""
    return record.get("status") or ("diverged" if record.get("diverged") else "ok")


def finished_keys(results_path):
    """Keys of the runs already in a results file that need no rerun: rows that finished, or
    diverged (a deterministic outcome). Failed rows (an error, a dead worker) are run again. A
    torn last line is ignored."""
    keys = set()
    if not os.path.exists(results_path):
        return keys
    with open(results_path) as handle:
        for line in handle:
            try:
                record = json.loads(line)
                if status(record) != "failed":
                    keys.add(record["key"])
            except (json.JSONDecodeError, KeyError):
                continue
    return keys


def current(records):
    """The rows tables, plots and TensorBoard show: each key's last row that did not fail, in
    the order keys first appear (a failed row that a rerun finished shows the finished one)."""
    rows = {}
    for record in records:
        if status(record) != "failed":
            rows[record["key"]] = record
        else:
            rows.setdefault(record["key"], None)
    return [record for record in rows.values() if record is not None]


def append_result(results_path, record):
    """Appends one JSON line in one `write` to a file opened O_APPEND, and fsyncs it: a finished
    run is never lost, and compares on disjoint grids may share one results file (the kernel
    does not interleave one append with another)."""
    data = (json.dumps(record) + "\n").encode()
    fd = os.open(results_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        written = os.write(fd, data)
        if written != len(data):  # a full disk: the torn line is skipped when the file is read
            raise OSError(f"{results_path}: wrote {written} of {len(data)} bytes")
        os.fsync(fd)
    finally:
        os.close(fd)


def failed_record(spec, error, seconds):
    """The row of a run that failed (an exception, or its worker died) after its retry."""
    return {**dataclasses.asdict(spec), "key": spec.key, "status": "failed", "diverged": False, "final": {},
            "curves": {"step": []}, "error": error, "seconds": round(seconds, 2)}


def _start_from_a_shorter_row(spec, config):
    """A row of more steps whose run has no checkpoint yet starts from the newest checkpoint of the
    same row trained for fewer steps (same preset, dataset, setting, seed and `eval_every`), copied
    into its own checkpoint folder: training from there is the same as from the start (resume is
    exact; with `--deterministic` a row's history is a prefix of a longer one's). Returns
    {"key", "epoch"} of the row it starts from, or None."""
    from kgan import atomic, checkpoint

    own = os.path.join(config.checkpoint_dir, config.run_name)
    if not config.checkpoint_every or not os.path.isdir(config.checkpoint_dir) or checkpoint.Checkpoints(own).list():
        return None
    prefix, suffix = f"{spec.preset}-{spec.dataset}-{spec.setting}-", f"-s{spec.seed}"
    best = None
    for name in os.listdir(config.checkpoint_dir):
        steps = name[len(prefix):-len(suffix)] if name.startswith(prefix) and name.endswith(suffix) else ""
        if not steps.isdigit() or int(steps) >= spec.steps:
            continue
        shorter = dataclasses.replace(spec, steps=int(steps))
        for epoch, path in reversed(checkpoint.Checkpoints(os.path.join(config.checkpoint_dir, name)).list()):
            try:
                state = checkpoint.Checkpoints.read_state(path)
            except (OSError, ValueError):
                continue
            if state.get("config", {}).get("steps_per_epoch") == spec.eval_every and (
                    best is None or epoch > best[0]) and epoch * spec.eval_every <= spec.steps:
                best = (epoch, path, shorter.key)
            break
    if best is None:
        return None
    epoch, path, key = best
    with atomic.path(os.path.join(own, os.path.basename(path)), directory=True) as staging:
        shutil.copytree(path, staging, dirs_exist_ok=True)
    return {"key": key, "epoch": epoch}


def _worker(args):
    from kgan.quiet import import_tensorflow_quietly

    import_tensorflow_quietly()
    return run_one(*args)


def _local_rows(jobs, workers):
    """Runs jobs in this process (workers 1) or a pool of spawned processes; yields their
    records in completion order. An exception ends the grid (rows written so far stay)."""
    if workers <= 1:
        for job in jobs:
            yield run_one(*job)
        return
    import concurrent.futures
    import multiprocessing

    context = multiprocessing.get_context("spawn")
    with concurrent.futures.ProcessPoolExecutor(workers, mp_context=context) as pool:
        futures = [pool.submit(_worker, job) for job in jobs]
        for future in concurrent.futures.as_completed(futures):
            yield future.result()


BACKENDS = ("local", "ray")
#: For tests only: `KGAN_COMPARE_FAULT="<row key>=exit-once:<marker file>"` makes that row's Ray
#: task end its worker process (`os._exit`) the first time (until the marker file exists);
#: `"<row key>=raise"` makes it raise every time. Items are separated by ";".
FAULT_VARIABLE = "KGAN_COMPARE_FAULT"


def _inject_fault(key):
    for item in os.environ.get(FAULT_VARIABLE, "").split(";"):
        target, _, action = item.partition("=")
        if target != key:
            continue
        if action == "raise":
            raise RuntimeError(f"injected failure of {key} ({FAULT_VARIABLE})")
        marker = action.partition("exit-once:")[2]
        if marker and not os.path.exists(marker):
            open(marker, "w").close()
            os._exit(1)


def _ray_row(job):
    """One row as a Ray task (in a Ray worker process)."""
    from kgan.quiet import import_tensorflow_quietly

    import_tensorflow_quietly()
    _inject_fault(job[0].key)
    return run_one(*job)


def import_ray():
    """`ray`, or UsageError when it is not installed."""
    try:
        import ray
    except ImportError:
        raise UsageError('--backend ray needs Ray: pip install -e ".[ray]"') from None
    return ray


def _error_line(error):
    """One line for a failed Ray task: the task's own exception, else Ray's (a dead worker)."""
    cause = getattr(error, "cause", None)
    text = f"{type(cause).__name__}: {cause}" if isinstance(cause, BaseException) else f"{type(error).__name__}: {error}"
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[0] if lines else type(error).__name__


def _ray_rows(jobs, address=None, num_cpus=None, gpus_per_run=0):
    """Runs each job as a Ray task (1 CPU, `gpus_per_run` GPUs) on the cluster at `address`, or
    on a local Ray started here (`num_cpus`: its CPUs; None: all) and stopped at the end.
    Yields records in completion order. A task that raises or whose worker dies is retried once
    by Ray, then yields a failed row (`failed_record`) with its error line."""
    import logging

    ray = import_ray()
    started = not ray.is_initialized()
    if started:
        # "local": a new Ray of our own, even when another cluster runs on this machine (plain
        # ray.init() would join that one, through /tmp/ray/ray_current_cluster or RAY_ADDRESS).
        options = {} if address else {"num_cpus": num_cpus}
        try:
            ray.init(address=address or "local", include_dashboard=False, log_to_driver=False, logging_level=logging.ERROR,
                     **options)
        except (ConnectionError, RuntimeError) as error:
            if not address:
                raise
            raise UsageError(f"cannot join the Ray cluster at {address} ({_error_line(error)}): is `ray start --head` "
                             "running there, and, as `ray start` uses token authentication, is RAY_AUTH_MODE=token set "
                             "here with the cluster's token (~/.ray/auth_token or RAY_AUTH_TOKEN)?") from None
    task = ray.remote(num_cpus=1, num_gpus=gpus_per_run, max_retries=1, retry_exceptions=True)(_ray_row)
    try:
        submitted = time.time()
        pending = {task.remote(job): job[0] for job in jobs}
        while pending:
            (ref,), _ = ray.wait(list(pending), num_returns=1)
            spec = pending.pop(ref)
            try:
                record = ray.get(ref)
            except ray.exceptions.RayError as error:
                record = failed_record(spec, _error_line(error), time.time() - submitted)
            yield record
    finally:
        if started:
            ray.shutdown()


class Progress:
    """A grid's progress: one line per finished row (setting, dataset, seed, main metric,
    seconds) through `print_fn`; on a terminal, a progress bar with the ETA (from the finished
    rows' pace) below them, redrawn in place."""

    def __init__(self, total, print_fn=print, stream=None):
        self.total, self.done, self.print_fn = total, 0, print_fn
        self.stream = stream or sys.stdout
        self.bar = self.stream.isatty()
        self.start = time.time()

    def begin(self):
        """Draws the empty bar (on a terminal) before the first row finishes."""
        if self.bar and self.total:
            self.stream.write(self.bar_text())
            self.stream.flush()

    def row(self, record):
        self.done += 1
        if self.bar:
            self.stream.write("\r\033[K")
        self.print_fn(f"  [{self.done}/{self.total}] {row_line(record)}")
        if self.bar and self.done < self.total:
            self.stream.write(self.bar_text())
            self.stream.flush()

    def bar_text(self, width=30):
        elapsed = time.time() - self.start
        eta = _duration(elapsed / self.done * (self.total - self.done)) if self.done else "-"
        filled = round(width * self.done / self.total)
        return (f"[{'#' * filled}{'.' * (width - filled)}] {self.done}/{self.total} runs, "
                f"{_duration(elapsed)} elapsed, ETA {eta}")


def _duration(seconds):
    seconds = int(round(seconds))
    hours, rest = divmod(seconds, 3600)
    return f"{hours}h{rest // 60:02d}m" if hours else f"{rest // 60}m{rest % 60:02d}s"


def run_grid(specs, results_path, workers=1, keep_samples=None, print_fn=print, out=None, deterministic=False,
             checkpoint_every=0, keep_models=False, backend="local", ray_address=None, gpus_per_run=0):
    """Runs every spec not yet in `results_path` (failed rows included) through `run_one`,
    appending each record as it finishes, in completion order (this process is the file's
    only writer, whatever the backend).

    Args:
        backend: "local": in this process (`workers` 1) or `workers` spawned processes; "ray":
            one Ray task a row (`_ray_rows`: retried once, then a failed row), on the cluster at
            `ray_address` or on a local Ray with `workers` CPUs (None: all).
        out: the compare's directory (the runs go to `<out>/runs/`; default: the results file's
            directory); `deterministic`, `checkpoint_every`, `keep_models`: passed to every `run_one`.

    Returns:
        The number of rows run.
    """
    if backend not in BACKENDS:
        raise UsageError(f"unknown backend {backend!r}: choose from {', '.join(BACKENDS)}")
    out = out if out is not None else os.path.dirname(os.path.abspath(results_path))
    os.makedirs(os.path.dirname(os.path.abspath(results_path)), exist_ok=True)
    done = finished_keys(results_path)
    todo = [s for s in specs if s.key not in done]
    todo = _reuse_equal_rows(todo, results_path, deterministic, keep_samples, print_fn)
    where = (f"{workers} worker(s)" if backend == "local" else
             f"Ray at {ray_address}" if ray_address else f"a local Ray ({workers or 'all'} CPUs)")
    print_fn(f"kgan compare: {len(specs)} runs in the grid, {len(specs) - len(todo)} already in "
             f"{results_path}, {len(todo)} to run with {where}")
    if not todo:
        return 0
    jobs = [(s, out, deterministic, checkpoint_every, keep_samples, keep_models) for s in todo]
    if backend == "ray" or workers > 1:
        # Prepare the shared digits classifier once, so workers do not train it concurrently.
        if any(s.dataset in ("digits", "stacked_digits") for s in todo):
            from kgan import evaluate

            evaluate.get_features("classifier:digits", evaluate.feature_cache_dir(todo[0].config(out).output),
                                  image_size=8)
    if backend == "ray":
        rows = _ray_rows(jobs, ray_address, workers, gpus_per_run)
    else:
        rows = _local_rows(jobs, workers or 1)
    progress = Progress(len(todo), print_fn)
    progress.begin()
    with contextlib.closing(rows):
        for record in rows:
            append_result(results_path, record)
            progress.row(record)
    return len(todo)


def _reuse_equal_rows(todo, results_path, deterministic, keep_samples, print_fn):
    """Appends, for each spec whose training config equals a finished row's under another preset
    (e.g. minimax under `recommended` and `protocol`: the same optimiser), that row under the
    spec's key (`reused_from` names the row; same `command`), and returns the specs left to run."""
    if not os.path.exists(results_path):
        return todo
    rows = [r for r in current(load_results(results_path)) if status(r) == "ok"]
    left = []
    for spec in todo:
        same = next((r for r in rows if _same_training(spec, r, deterministic)), None)
        if same is None:
            left.append(spec)
            continue
        append_result(results_path, {**same, **dataclasses.asdict(spec), "key": spec.key, "reused_from": same["key"]})
        source = os.path.join(keep_samples or "", RunSpec(**{k: same[k] for k in _SPEC_FIELDS}).run_name + ".npz")
        if keep_samples and os.path.exists(source):
            shutil.copyfile(source, os.path.join(keep_samples, spec.run_name + ".npz"))
    if len(left) < len(todo):
        print_fn(f"kgan compare: {len(todo) - len(left)} runs train exactly as finished rows of another preset: "
                 "reused (their rows name the row in `reused_from`)")
    return left


_SPEC_FIELDS = tuple(field.name for field in dataclasses.fields(RunSpec))


def _same_training(spec, record, deterministic):
    if record["preset"] == spec.preset or any(record[k] != getattr(spec, k) for k in _SPEC_FIELDS if k != "preset"):
        return False
    if bool(record.get("config", {}).get("deterministic")) != bool(deterministic):
        return False
    return presets.overrides(record["preset"], spec.dataset, spec.setting) == presets.overrides(
        spec.preset, spec.dataset, spec.setting)


def row_line(record):
    """"<setting> <dataset> seed <seed>: <main metric> <value> (<seconds> s)" for a finished row."""
    what = f"{record['setting']} {record['dataset']} seed {record['seed']}"
    state = status(record)
    if state == "failed":
        return f"{what}: failed: {record.get('error', '')} ({record['seconds']:.0f} s)"
    if state == "diverged":
        return f"{what}: diverged ({record['seconds']:.0f} s)"
    metric = MAIN_METRIC.get(record["dataset"], (None,))[0]
    value = record["final"].get(metric)
    shown = f"{_label(metric)} {value:.4g}" if isinstance(value, (int, float)) else (
        ", ".join(f"{k} {v:.3g}" for k, v in record["final"].items()))
    return f"{what}: {shown} ({record['seconds']:.0f} s)"


# ---- aggregation ------------------------------------------------------------------------------------


def normalise(record):
    """A record with the runner's metric names in `final` and `curves` (results files written
    before compare ran on `run.train` say modes_captured and high_quality_percent)."""
    renamed = {}
    for part in ("final", "curves"):
        values = record.get(part) or {}
        if any(name in LEGACY_METRIC_NAMES for name in values):
            renamed[part] = {LEGACY_METRIC_NAMES.get(name, name): value for name, value in values.items()}
    return {**record, **renamed} if renamed else record


def load_results(results_path):
    """The records of a results file, in order, with the runner's metric names (`normalise`); a
    torn line is skipped."""
    records = []
    with open(results_path) as handle:
        for line in handle:
            try:
                records.append(normalise(json.loads(line)))
            except json.JSONDecodeError:
                continue
    return records


def aggregate(records):
    """{(preset, dataset, setting, steps): {metric: (mean, stderr, n)}, plus 'seeds' and 'diverged'}."""
    groups = collections.defaultdict(list)
    for record in map(normalise, records):
        groups[(record["preset"], record["dataset"], record["setting"], record["steps"])].append(record)
    table = {}
    for key, group in groups.items():
        metrics = sorted({name for r in group for name in r["final"]})
        row = {name: stats.mean_stderr([r["final"].get(name) for r in group]) for name in metrics}
        row["seeds"] = len(group)
        row["diverged"] = sum(bool(r.get("diverged")) for r in group)
        table[key] = row
    return table


PACGAN_PUBLISHED = [  # PacGAN Table 1 (10 trials): ring modes, HQ %, rev-KL; grid modes, HQ %, rev-KL
    ("GAN (PacGAN paper)", "6.3+-0.5", "98.2+-0.2", "0.45+-0.09", "17.3+-0.8", "94.8+-0.7", "0.70+-0.07"),
    ("PacGAN2 (PacGAN paper)", "7.9+-0.1", "95.6+-2.0", "0.07+-0.03", "23.8+-0.7", "91.3+-0.8", "0.13+-0.04"),
    ("PacGAN4 (PacGAN paper)", "7.8+-0.1", "95.9+-1.4", "0.07+-0.02", "24.8+-0.2", "93.6+-0.6", "0.04+-0.01"),
]
MIXTURE_COLUMNS = ("modes", "hq_percent", "reverse_kl")




def tables(records):
    """Markdown and CSV tables: {name: (markdown, csv_rows)} for the mixtures, images and p-ablation."""
    table = aggregate(records)
    out = {}
    by_preset_steps = sorted({(k[0], k[3]) for k in table})
    for preset, steps in by_preset_steps:
        settings = [s for s in _ordered_settings(records) if any(k[0] == preset and k[3] == steps and k[2] == s for k in table)]
        suffix = f"{preset}-{steps}steps"
        # Mode collapse on 2-D mixtures, PacGAN's layout.
        if any(k[1] in MIXTURES for k in table if k[0] == preset and k[3] == steps):
            header = ["setting", "ring8 modes /8", "ring8 HQ %", "ring8 rev-KL", "grid25 modes /25", "grid25 HQ %", "grid25 rev-KL", "seeds"]
            rows = []
            for s in settings:
                cells = []
                seeds = []
                for dataset in MIXTURES:
                    row = table.get((preset, dataset, s, steps), {})
                    seeds.append(str(row.get("seeds", 0)))
                    cells += [stats.format_mean_stderr(row.get(c, (0, 0, 0)), verdict.DIGITS[c]) for c in MIXTURE_COLUMNS]
                rows.append([s, *cells, "/".join(seeds)])
            rows += [[name, *cells, "10"] for name, *cells in PACGAN_PUBLISHED]
            out[f"mixtures-{suffix}"] = (header, rows)
        # Image datasets.
        for dataset, columns in (("stacked_digits", ("modes", "reverse_kl")), ("digits", ("fcd", "kid"))):
            if not any(k[1] == dataset for k in table if k[0] == preset and k[3] == steps):
                continue
            header = ["setting", *map(_label, columns), "seeds", "diverged"]
            rows = []
            for s in settings:
                row = table.get((preset, dataset, s, steps))
                if row:
                    rows.append([s, *[stats.format_mean_stderr(row.get(c, (0, 0, 0)), 3 if c == "kid" else 2) for c in columns],
                                 str(row["seeds"]), str(row["diverged"])])
            out[f"{dataset}-{suffix}"] = (header, rows)
        # p ablation, like the paper's Table 3.
        ps = sorted({minkowski_p(s) for s in settings if minkowski_p(s) is not None and "+" not in s})
        if len(ps) > 1:
            datasets = [d for d in DATASETS if any(k[1] == d for k in table if k[0] == preset and k[3] == steps)]
            header = ["p", *[f"{d} {_label(MAIN_METRIC[d][0])}" for d in datasets]]
            rows = []
            for p in ps:
                s = f"minkowski_p{p:g}"
                rows.append([f"{p:g}", *[stats.format_mean_stderr(table.get((preset, d, s, steps), {}).get(MAIN_METRIC[d][0], (0, 0, 0))) for d in datasets]])
            rows.append(["paper (CIFAR-10 FID)", *["p=1..8: 128.4, 123.6, 105.8, 99.6, 108.5, 114.8, 137.4, 149.6" if i == 0 else "" for i in range(len(datasets))]])
            out[f"p-ablation-{suffix}"] = (header, rows)
    return out


def _ordered_settings(records):
    seen = []
    for r in records:
        if r["setting"] not in seen:
            seen.append(r["setting"])
    order, techniques = list(LOSS_SETTINGS), list(TECHNIQUES)

    def rank(names, name):  # a name this version does not know (a newer kgan's row) goes last
        return (names.index(name), "") if name in names else (len(names), name)

    def key(setting):
        loss, _, technique = setting.partition("+")
        p = minkowski_p(loss)
        return rank(techniques, technique or "none"), rank(order, "minkowski" if p is not None else loss), p or 0

    return sorted(seen, key=key)


def markdown(header, rows):
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def verdict_tables(records):
    """The validity gate, the paired claims, the stability measures and the rows' cost (kgan/verdict.py) as
    {name: (header, rows)}, and {table name: note} marking each mixtures table whose gate failed."""
    gates = verdict.gate(records)
    out = {"gate": verdict.gate_table(gates), "pacgan": verdict.pacgan(records), "claims": verdict.claims(records),
           "stability": verdict.stability(records), "compute": verdict.compute(records)}
    notes = {}
    for row in gates:
        for warning in verdict.gate_warnings([row]):
            name = f"mixtures-{row['preset']}-{row['steps']}steps"
            notes[name] = notes.get(name, "") + f"**NOT VALID**: {warning}\n\n"
    return {name: table for name, table in out.items() if table[1]}, notes


def write_tables(records, out_dir):
    """Writes <name>.md and <name>.csv for every table, the verdict's among them (a mixtures table
    whose validity gate failed says so above it); returns the paths."""
    os.makedirs(out_dir, exist_ok=True)
    paths = []
    extra, notes = verdict_tables(records)
    for name, (header, rows) in {**tables(records), **extra}.items():
        md = os.path.join(out_dir, f"{name}.md")
        with open(md, "w") as handle:
            handle.write(notes.get(name, "") + markdown(header, rows))
        csv_path = os.path.join(out_dir, f"{name}.csv")
        with open(csv_path, "w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(header)
            writer.writerows(rows)
        paths += [md, csv_path]
    return paths


# ---- TensorBoard ------------------------------------------------------------------------------


def session_hparams(record):
    """A row's hyperparameters in the HParams dashboard: the grid's axes (setting = loss [+ p]
    + technique, dataset, preset, seed, steps, eval_every) and its status."""
    loss, _, technique = record["setting"].partition("+")
    p = minkowski_p(loss)
    values = {"setting": record["setting"], "loss": "minkowski" if p is not None else loss,
              "technique": technique or "none", "dataset": record["dataset"], "preset": record["preset"],
              "seed": int(record["seed"]), "steps": int(record["steps"]), "eval_every": int(record["eval_every"]),
              "status": status(record)}
    if p is not None:
        values["p"] = float(p)
    return values


def write_tensorboard(records, directory):
    """Writes the grid as a TensorBoard HParams experiment to `directory`, from the records alone.

    The root holds the experiment (every hyperparameter with its values, the final metrics);
    `<directory>/<row key, "/" -> "-">/` holds each row's session: its hyperparameters
    (`session_hparams`), its final metrics as scalars `final/<metric>` (at its last step) and its
    curves as step scalars `curves/<name>`. Failed rows are left out (`current`). The directory is
    written anew and swapped in (`atomic.path`), so rebuilding it never duplicates a session.
    Returns the number of sessions.
    """
    from kgan import atomic, hparams

    rows = current(records)
    metrics = sorted({name for r in rows for name in r["final"]})
    with atomic.path(directory, directory=True) as staging:
        hparams.write_experiment(staging, [session_hparams(r) for r in rows],
                                 [(f"final/{name}", None, name) for name in metrics])
        for r in rows:
            scalars = [(f"final/{name}", value, r["steps"]) for name, value in r["final"].items() if value is not None]
            steps = r["curves"].get("step", [])
            for name, values in r["curves"].items():
                if name != "step":
                    scalars += [(f"curves/{name}", v, step) for step, v in zip(steps, values, strict=False) if v is not None]
            hparams.write_session(os.path.join(staging, r["key"].replace("/", "-")), session_hparams(r),
                                  trial_id=r["key"], scalars=scalars)
    return len(rows)


# ---- plots ------------------------------------------------------------------------------------


def _mean_curve(records, name):
    records = [normalise(r) for r in records]
    curves = [r["curves"].get(name) for r in records if r["curves"].get(name)]
    if not curves:
        return None, None
    length = min(len(c) for c in curves)
    steps = records[0]["curves"]["step"][:length]
    return np.asarray(steps), np.mean([c[:length] for c in curves], axis=0)


def write_plots(records, out_dir, samples_dir=None):
    """The paper's Figures 1-3 (D gradient norm, D and G losses: minimax vs Minkowski p=4),
    modes over training per loss, and final samples per loss. Returns the PNG paths."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    os.makedirs(out_dir, exist_ok=True)
    paths = []
    groups = collections.defaultdict(list)
    for r in map(normalise, records):
        groups[(r["preset"], r["dataset"], r["steps"], r["setting"])].append(r)
    for preset, dataset, steps in sorted({k[:3] for k in groups}):
        suffix = f"{preset}-{dataset}-{steps}steps"
        pair = [s for s in ("minimax", "minkowski_p4") if (preset, dataset, steps, s) in groups]
        if pair:
            figure, axes = plt.subplots(1, 3, figsize=(15, 4))
            for ax, name, title in zip(axes, ("d_grad_norm", "d_loss", "g_loss"),
                                       ("D gradient norm (Fig. 1)", "D loss (Fig. 2)", "G loss (Fig. 3)"), strict=True):
                for s in pair:
                    x, y = _mean_curve(groups[(preset, dataset, steps, s)], name)
                    if x is not None:
                        ax.plot(x, y, label=f"{s} (mean of {len(groups[(preset, dataset, steps, s)])} seeds)")
                ax.set_title(f"{dataset}: {title}")
                ax.set_xlabel("generator step")
                ax.legend(fontsize="small")
            path = os.path.join(out_dir, f"fig1-3-{suffix}.png")
            figure.tight_layout()
            figure.savefig(path, dpi=80)
            plt.close(figure)
            paths.append(path)
        settings = _ordered_settings([groups[k][0] for k in groups if k[:3] == (preset, dataset, steps)])
        # The main metric over training and, on the mixtures, the high-quality share the gate reads.
        for metric in (MAIN_METRIC[dataset][0], *(("hq_percent",) if dataset in MIXTURES else ())):
            paths.append(_curve_plot(plt, [(s, groups[(preset, dataset, steps, s)]) for s in settings], metric,
                                     f"{dataset}: {_label(metric)} over training ({preset})",
                                     os.path.join(out_dir, f"{_label(metric)}-over-training-{suffix}.png")))
        if samples_dir:
            paths += _sample_panels(groups, preset, dataset, steps, samples_dir, out_dir, suffix, plt)
    return paths


def _curve_plot(plt, groups, metric, title, path):
    """One figure: `metric`'s seed-mean curve of each (setting, records) in `groups`."""
    figure, ax = plt.subplots(figsize=(7, 4.5))
    for setting, records in groups:
        x, y = _mean_curve(records, metric)
        if x is not None:
            ax.plot(x, y, label=setting)
    ax.set_title(title)
    ax.set_xlabel("generator step")
    if ax.lines:
        ax.legend(fontsize="x-small", ncol=2)
    figure.tight_layout()
    figure.savefig(path, dpi=80)
    plt.close(figure)
    return path


def _sample_panels(groups, preset, dataset, steps, samples_dir, out_dir, suffix, plt):
    from kgan import data, plots

    settings = _ordered_settings([groups[k][0] for k in groups if k[:3] == (preset, dataset, steps)])
    found = []
    for s in settings:
        key = RunSpec(s, dataset, 0, preset, steps).run_name
        path = os.path.join(samples_dir, key + ".npz")
        if os.path.exists(path):
            found.append((s, np.load(path)["samples"]))
    if not found:
        return []
    columns = min(4, len(found))
    rows = -(-len(found) // columns)
    figure, axes = plt.subplots(rows, columns, figsize=(3.2 * columns, 3.2 * rows), squeeze=False)
    reference = None
    if dataset in MIXTURES:
        reference, _ = data.mixture_samples(dataset, 1000, seed=0)
    for ax, (s, samples) in zip(axes.ravel(), found, strict=False):
        if samples.ndim == 2:
            ax.scatter(reference[:, 0], reference[:, 1], s=1, c="0.8")
            ax.scatter(samples[:, 0], samples[:, 1], s=1, c="C3")
            ax.set_aspect("equal")
        else:
            ax.imshow(plots.image_grid(samples[:64], min_cell=8, padding=1).squeeze(), cmap="gray")
            ax.axis("off")
        ax.set_title(s, fontsize="small")
    for ax in axes.ravel()[len(found):]:
        ax.axis("off")
    figure.suptitle(f"{dataset}: final samples, seed 0 ({preset}, {steps} steps)")
    figure.tight_layout()
    path = os.path.join(out_dir, f"samples-{suffix}.png")
    figure.savefig(path, dpi=80)
    plt.close(figure)
    return [path]


# ---- command line -------------------------------------------------------------------------------


QUICK = {"losses": ["non_saturating", "minkowski"], "ps": [4.0], "datasets": ["ring8"], "seeds": 1, "steps": 40, "eval_every": 20}


def add_arguments(parser):
    parser.add_argument("--losses", default=",".join(LOSS_SETTINGS), help="comma-separated: " + ", ".join(LOSS_SETTINGS))
    parser.add_argument("--p", default="4", help="Minkowski orders, comma-separated (default: 4)")
    parser.add_argument("--datasets", default="ring8,grid25", help="comma-separated: " + ", ".join(DATASETS))
    parser.add_argument("--techniques", default="none",
                        help="comma-separated toolbox techniques, each on top of every loss: " + ", ".join(TECHNIQUES)
                             + " (default: none: the losses alone)")
    parser.add_argument("--seeds", type=int, default=10, help="seeds 0..N-1 per cell (default: %(default)s)")
    parser.add_argument("--steps", type=int, default=2000, help="generator updates per run, the same for every loss (default: %(default)s)")
    parser.add_argument("--eval-every", type=int, default=500, help="steps between evaluations (default: %(default)s)")
    parser.add_argument("--preset", choices=sorted(PRESETS), default="recommended")
    parser.add_argument("--workers", type=int, default=None,
                        help="parallel runs: processes of the local backend (default: 1), CPUs of the local Ray "
                             "of --backend ray (default: all); ignored with --ray-address")
    parser.add_argument("--backend", choices=BACKENDS, default="local",
                        help="local: this machine's processes; ray: one Ray task a row, retried once, on a local Ray "
                             "or the cluster at --ray-address (pip install -e \".[ray]\"; default: %(default)s)")
    parser.add_argument("--ray-address", default=None, metavar="HOST:PORT",
                        help="join this Ray cluster (ray start --head on its head node); --out must be on a filesystem "
                             "every node shares")
    parser.add_argument("--gpus-per-run", type=float, default=0, help="GPUs of each Ray task (default: %(default)s)")
    parser.add_argument("--out", default="compare", help="directory for results.jsonl, tables, plots, samples (default: %(default)s)")
    parser.add_argument("--quick", action="store_true", help="tiny grid for a smoke test: 2 losses, ring8, 1 seed, 40 steps")
    parser.add_argument("--deterministic", action="store_true",
                        help="every run with --deterministic (deterministic TensorFlow ops, slower): a row's `command` "
                             "then reproduces its final metrics exactly")
    parser.add_argument("--checkpoint-every", type=int, default=0, metavar="EVALS",
                        help="checkpoint each run every N evaluations (epochs of --eval-every steps), under "
                             "<out>/runs/checkpoints, so a killed row resumes mid-run; 0: none (default: %(default)s)")
    parser.add_argument("--keep-models", action="store_true",
                        help="keep each run's exported generator and GAN weights in <out>/runs/models/<run>/ (about "
                             "11 MB a ring8 row); by default only its config.json and samples.png stay")
    parser.add_argument("--report-only", action="store_true",
                        help="only rebuild tables and plots from <out>/results.jsonl (the grid flags are ignored)")


def _split(text, cast=str):
    try:
        return [cast(x.strip()) for x in text.split(",") if x.strip()]
    except ValueError:
        raise UsageError(f"cannot parse {text!r} as a comma-separated list") from None


def specs_from_args(args):
    """The grid's RunSpecs from the command line (`--quick`: the QUICK grid)."""
    if args.quick:
        losses, ps, datasets, seeds, steps, eval_every = (QUICK[k] for k in ("losses", "ps", "datasets", "seeds", "steps", "eval_every"))
    else:
        losses, ps, datasets = _split(args.losses), _split(args.p, float), _split(args.datasets)
        seeds, steps, eval_every = args.seeds, args.steps, args.eval_every
    techniques = _split(getattr(args, "techniques", "none")) or ["none"]
    if (args.workers is not None and args.workers < 1) or seeds < 1:
        raise UsageError("--workers and --seeds must be >= 1")
    backend = getattr(args, "backend", "local")
    if getattr(args, "ray_address", None) and backend != "ray":
        raise UsageError("--ray-address needs --backend ray")
    if getattr(args, "gpus_per_run", 0) < 0:
        raise UsageError(f"--gpus-per-run must be >= 0; got {args.gpus_per_run}")
    if backend == "ray":
        import_ray()
    if getattr(args, "checkpoint_every", 0) < 0:
        raise UsageError(f"--checkpoint-every must be >= 0; got {args.checkpoint_every}")
    return grid(losses, ps, datasets, seeds, args.preset, steps, eval_every, techniques)


def main(args, print_fn=print):
    """`kgan compare` with parsed arguments (`add_arguments`); returns the exit code."""
    results = os.path.join(args.out, "results.jsonl")
    samples_dir = os.path.join(args.out, "samples")
    start = time.time()
    if not args.report_only:
        specs = specs_from_args(args)
        backend = getattr(args, "backend", "local")
        workers = args.workers if args.workers is not None or backend == "ray" else 1
        run_grid(specs, results, workers, keep_samples=samples_dir, print_fn=print_fn,
                 out=args.out, deterministic=getattr(args, "deterministic", False),
                 checkpoint_every=getattr(args, "checkpoint_every", 0), keep_models=getattr(args, "keep_models", False),
                 backend=backend, ray_address=getattr(args, "ray_address", None),
                 gpus_per_run=getattr(args, "gpus_per_run", 0))
    if not os.path.exists(results):
        raise UsageError(f"no results file at {results}")
    all_records = load_results(results)
    records = current(all_records)
    failed = [r["key"] for r in all_records if status(r) == "failed" and r["key"] not in {c["key"] for c in records}]
    written = write_tables(records, args.out) + write_plots(records, args.out, samples_dir)
    sessions = write_tensorboard(records, os.path.join(args.out, "tensorboard"))
    print_fn(f"kgan compare: {len(records)} runs in {results}; wrote {len(written)} tables and plots to "
             f"{os.path.abspath(args.out)} and {sessions} HParams sessions to "
             f"{os.path.join(os.path.abspath(args.out), 'tensorboard')} ({time.time() - start:.0f} s)")
    for warning in verdict.gate_warnings(verdict.gate(records)):
        print_fn(f"kgan compare: warning: {warning}")
    if failed:
        print_fn(f"kgan compare: {len(failed)} runs failed ({', '.join(failed)}): run the same command again to "
                 "retry them")
    for path in written:
        if path.endswith(".md"):
            print_fn(f"\n{os.path.basename(path)}:\n" + open(path).read())
    return 0


def _command_line(argv=None):
    """`python -m kgan.compare ...`: the same flags as `kgan compare` (errors: one line, exit 2)."""
    parser = argparse.ArgumentParser(prog="python -m kgan.compare", description=__doc__.splitlines()[0])
    add_arguments(parser)
    args = parser.parse_args(argv)
    from kgan.quiet import import_tensorflow_quietly

    import_tensorflow_quietly()
    try:
        return main(args)
    except KganError as error:
        print(f"kgan compare: error: {error}", file=sys.stderr)
        return error.exit_code


if __name__ == "__main__":  # pragma: no cover
    sys.exit(_command_line())
