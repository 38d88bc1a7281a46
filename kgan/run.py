"""One training run from a `TrainConfig`: data, networks, compile, fit, export.

    config -> dataset (tf.data) -> generator + discriminator -> GAN.compile -> GAN.fit
           -> <output>/<run>/{generator/, config.json, samples.png}, <logdir>/<run>/

Everything that can fail because of the user's input (names, numbers, files, downloads) is
checked before anything is written, and raised as `kgan.errors.UsageError`.
"""

import contextlib
import dataclasses
import json
import os
import signal
import tempfile
import threading
import time

import keras
import numpy as np
import tensorflow as tf

import kgan
import kgan.augment
from kgan import (
    atomic,
    callbacks,
    checkpoint,
    data,
    distribute,
    evaluate,
    export,
    hparams,
    losses,
    networks,
    penalties,
    plots,
    progressive,
)
from kgan import config as config_lib
from kgan.config import TrainConfig
from kgan.errors import DivergedError, TerminatedError, UsageError
from kgan.gan import GAN
from kgan.networks import progressive as progressive_networks


def make_loss(config):
    """The `Loss` a config asks for. Raises UsageError for impossible combinations."""
    if config.loss not in kgan.names.LOSSES:
        raise UsageError(f"unknown loss {config.loss!r}: choose one of {', '.join(kgan.names.LOSSES)}")
    cls = losses.get(config.loss).__class__
    kwargs = {}
    if config.label_smoothing:
        if not cls.supports_label_smoothing:
            raise UsageError(
                f"--label-smoothing does not apply to the {config.loss} loss (it has no target labels)"
            )
        kwargs["label_smoothing"] = config.label_smoothing
    if config.loss == "minkowski":
        kwargs.update(p=config.p, activation=config.minkowski_activation)
    try:
        return cls(**kwargs)
    except ValueError as error:
        raise UsageError(str(error)) from None


def make_penalty(config):
    """The gradient penalty a config asks for (or None)."""
    if config.gp is not None and config.r1 is not None:
        raise UsageError("choose one penalty: --gp or --r1, not both")
    try:
        if config.gp is not None:
            return penalties.GradientPenalty(weight=config.gp, seed=config.seed)
        if config.r1 is not None:
            return penalties.R1(gamma=config.r1)
    except ValueError as error:
        raise UsageError(str(error)) from None
    return None


def _validate_toolbox(config):
    """The stabilisation-toolbox flags' cross-field rules (README: Stabilisation techniques)."""
    points = config.dataset in data.MIXTURES
    image_only = {"--arch resnet": config.arch == "resnet", "--self-attention": config.self_attention is not None,
                  "--augment": config.augment is not None, "--progressive": config.progressive}
    for flag, used in image_only.items():
        if used and points:
            raise UsageError(f"{flag} needs an image dataset; {config.dataset} is 2-D points")
    if config.arch == "pacgan" and not points:
        raise UsageError(f"--arch pacgan is PacGAN's MLP pair for 2-D points; {config.dataset} is images "
                         "(use --arch dcgan or resnet)")
    if config.conditional and config.dataset not in data.NUM_CLASSES:
        raise UsageError(f"--conditional needs a dataset with one class label per example "
                         f"({', '.join(data.NUM_CLASSES)}); {config.dataset!r} has none")
    if config.augment == "ada" and config.loss == "wasserstein":
        raise UsageError("--augment ada needs a loss with a decision threshold: a Wasserstein critic is defined "
                         "up to a constant, so sign(D(real)) carries no overfitting signal (use diffaugment)")
    if (config.unroll_optimizer == "sgd") != (config.unroll_lr is not None):
        raise UsageError("--unroll-lr (> 0) goes with --unroll-optimizer sgd, and only with it; "
                         f"got --unroll-optimizer {config.unroll_optimizer} --unroll-lr {config.unroll_lr}")
    if config.progressive and config.arch != "dcgan":
        raise UsageError("--progressive grows DCGAN networks: it cannot be combined with --arch resnet")
    if config.pack > 1 and config.conditional:
        raise UsageError(f"--pack {config.pack} cannot be combined with --conditional: D's labels are per sample, "
                         "a packed example holds several (use --pack 1)")


def check_output_paths(config):
    """Raises UsageError unless --output, --logdir and --checkpoint-dir (and their <run> folders)
    are directories or can be created as directories; writes nothing."""
    name = config.run_name
    if name is not None and (not str(name).strip() or name in (".", "..") or "/" in name or "\0" in name):
        raise UsageError(f"--run-name must be a plain folder name (not empty, no '/'); got {name!r}")
    for flag, root in (("--output", config.output), ("--logdir", config.logdir),
                       ("--checkpoint-dir", config.checkpoint_dir)):
        if not root:
            raise UsageError(f"{flag} must name a directory; got {root!r}")
        for path in (root, os.path.join(root, name or "")):
            if os.path.lexists(path) and not os.path.isdir(path):
                raise UsageError(f"{flag} {root}: {path} exists and is not a directory")
        existing = os.path.abspath(root)
        while not os.path.lexists(existing):
            existing = os.path.dirname(existing)
        if not os.path.isdir(existing):
            raise UsageError(f"{flag} {root}: {existing} is not a directory")
        if not os.access(existing, os.W_OK | os.X_OK):
            raise UsageError(f"{flag} {root}: {existing} is not writable")


def validate(config):
    """The one validation pass of a run's config, before anything is built or written: every
    field against its metadata (`TrainConfig.check_fields`: choices, finite numbers, bounds),
    then the rules between fields, the dataset name, the metrics, the loss and penalty, and the
    output paths. Raises UsageError naming the flag."""
    try:
        config.check_fields()
    except ValueError as error:
        raise UsageError(str(error)) from None
    if config.xla == "on" and config.deterministic:
        raise UsageError("--xla on cannot be combined with --deterministic: Keras compiles nothing with XLA under "
                         "op determinism (use --xla off or auto)")
    if config.devices is not None and config.strategy != "mirrored":
        raise UsageError(f"--devices must be >= 1 and needs --strategy mirrored; got --devices {config.devices} "
                         f"--strategy {config.strategy}")
    data.validate_name(config.dataset)
    _validate_toolbox(config)
    evaluate.parse_metrics(config.metrics, config.dataset)
    make_loss(config)
    make_penalty(config)
    check_output_paths(config.resolved())


def make_networks(config, data_shape, num_classes=None, total_steps=None, batch_norm=True):
    """`(generator, discriminator)` for `config` (arch, toolbox layers, curriculum; D takes
    `--pack` samples per example).

    `batch_norm`: batch norm in a DCGAN-family D (off with a penalty: penalties are per example).
    """
    try:
        if config.progressive:
            if num_classes or config.self_attention is not None or config.minibatch_std:
                raise ValueError("--progressive cannot be combined with --conditional, --self-attention or "
                                 "--minibatch-std")
            phases = progressive_networks.num_phases(tuple(data_shape))
            steps = config.progressive_steps or max(1, int(total_steps or phases) // phases)
            fade = config.fade_steps if config.fade_steps is not None else steps // 2
            if fade > steps:
                raise ValueError(f"--fade-steps ({fade}) must be <= the steps of a phase ({steps})")
            curriculum = progressive.Curriculum(phases, steps, fade)
            return (progressive_networks.progressive_generator(config.latent_dim, data_shape, curriculum),
                    progressive_networks.progressive_discriminator(networks.packed_shape(data_shape, config.pack),
                                                                   curriculum, batch_norm=batch_norm,
                                                                   spectral_norm=config.spectral_norm))
        return networks.build(
            data_shape,
            config.latent_dim,
            batch_norm=batch_norm,
            spectral_norm=config.spectral_norm or None,  # None: the architecture's default (ResNet: on)
            arch=config.arch,
            self_attention=config.self_attention,
            minibatch_std=config.minibatch_std,
            num_classes=num_classes,
            pack=config.pack,
        )
    except ValueError as error:
        raise UsageError(str(error)) from None


#: `--optimizer rmsprop`'s constants: PyTorch's RMSprop defaults, which the WGAN reference code
#: (Arjovsky et al. 2017, `optim.RMSprop(lr=5e-5)`) trains with. Keras adds epsilon inside the
#: square root (lr * g / sqrt(v + eps)), PyTorch outside; at 1e-8 they differ only where v ~ 1e-16.
RMSPROP_RHO, RMSPROP_EPSILON = 0.99, 1e-8


def make_optimizer(config, learning_rate):
    """One player's optimiser: `--optimizer` at `learning_rate` (wrapped for loss scaling under
    mixed_float16; GAN applies `scale_loss`)."""
    if config.optimizer == "rmsprop":
        optimizer = keras.optimizers.RMSprop(learning_rate, rho=RMSPROP_RHO, epsilon=RMSPROP_EPSILON)
    else:
        optimizer = keras.optimizers.Adam(learning_rate, beta_1=config.beta1, beta_2=config.beta2)
    if keras.mixed_precision.global_policy().name == "mixed_float16":
        optimizer = keras.optimizers.LossScaleOptimizer(optimizer)
    return optimizer


def build(config, data_shape, num_classes=None, total_steps=None, jit_compile=False):
    """A compiled `GAN` for data of shape `data_shape`, following `config`.

    Args:
        config: a `TrainConfig`.
        data_shape: shape of one example.
        num_classes: classes of a conditional GAN (`--conditional`; from the dataset).
        total_steps: generator steps of the whole run (sizes the progressive curriculum's
            phases when `--progressive-steps` is not given).
        jit_compile: compile the train step with XLA (`--xla`, resolved).
    """
    if config.conditional and not num_classes:
        raise UsageError("--conditional needs the dataset's number of classes")
    penalty = make_penalty(config)
    generator, discriminator = make_networks(config, data_shape, num_classes if config.conditional else None,
                                             total_steps, batch_norm=penalty is None)
    if config.sync_bn:
        distribute.synchronize_batch_norm(generator)
        distribute.synchronize_batch_norm(discriminator)
    try:
        augment = kgan.augment.from_flag(config.augment, config.augment_policy, config.augment_p, config.ada_target,
                                         seed=config.seed)
        gan = GAN(
            generator,
            discriminator,
            **config.gan_kwargs(),  # the fields marked `gan` in TrainConfig, under their own names
            track_gradient_norms=True,  # d_grad_norm / g_grad_norm in the history and TensorBoard
            num_classes=num_classes if config.conditional else None,
            augment=augment,
        )
    except ValueError as error:
        raise UsageError(str(error)) from None

    gan.compile(
        d_optimizer=make_optimizer(config, config.d_lr),
        g_optimizer=make_optimizer(config, config.g_lr),
        loss=make_loss(config),
        penalty=penalty,
        weight_clip=config.clip,
        jit_compile=jit_compile,
    )
    return gan


def toolbox_callbacks(gan):
    """Callbacks some toolbox options need (the progressive curriculum's schedule); put them first."""
    try:
        curriculum = gan.generator.get_layer(progressive.CURRICULUM_LAYER)
    except ValueError:
        return []
    return [progressive.ProgressiveCallback(curriculum)]


#: Config fields a checkpoint must agree on to be resumed (the others may change, e.g. --epochs):
#: the fields marked `resume` in `TrainConfig` (kgan/config.py says why each is or is not).
RESUME_FIELDS = TrainConfig.resume_fields()


def _as_flag(name, value):
    """How a config value reads as a command line: "--ema 0.999", "without --ema", "with --spectral-norm"."""
    if value is None or value is False:
        return f"without {config_lib.flag(name)}"
    if value is True:
        return f"with {config_lib.flag(name)}"
    return f"{config_lib.flag(name)} {value}"


def _check_resumable(config, state, path, policy=None):
    """Raises UsageError unless the checkpoint at `path` was written with the same resume identity.

    `policy`: the precision policy this run resolved (`--precision auto` is compared by what it
    chose; a checkpoint records its own in `precision_policy`).
    """
    saved = state.get("config", {})
    for name in RESUME_FIELDS:
        if name == "precision":
            continue
        if name in saved and saved[name] != getattr(config, name):
            raise UsageError(
                f"{path} was written {_as_flag(name, saved[name])}, not {_as_flag(name, getattr(config, name))}: "
                "use another --run-name, or delete that directory to start again"
            )
    if config.progressive and config.progressive_steps is None and saved.get("epochs", config.epochs) != config.epochs:
        # The phases are an equal share of the whole run: another --epochs moves them.
        raise UsageError(f"{path} was written with --progressive over --epochs {saved['epochs']}: its phases are "
                         f"an equal share of those epochs; resume with --epochs {saved['epochs']}, or pass the "
                         "same --progressive-steps to both runs")
    before = state.get("precision_policy") or (saved.get("precision") if saved.get("precision") != "auto" else None)
    if policy is not None and before is not None and before != policy:
        chose = f" (--precision {config.precision} chose {policy})" if config.precision == "auto" else ""
        raise UsageError(f"{path} was written with --precision {before}, not {policy}{chose}: the optimizers' "
                         "state would not load; resume with --precision " + before + ", or use another --run-name")


def _resume(checkpoints, gan, config, policy, print_fn):
    """Restores the newest readable checkpoint of the run; returns (initial_epoch, state or {})."""
    path, state = checkpoints.restore_newest(
        gan, check=lambda state, path: _check_resumable(config, state, path, policy), print_fn=print_fn)
    if path is None:
        return 0, {}
    # The learning rates are the command's (they may be changed to resume, e.g. after divergence).
    gan.d_optimizer.learning_rate = config.d_lr
    gan.g_optimizer.learning_rate = config.g_lr
    print_fn(f"kgan: resuming {config.run_name} from epoch {state['epoch']} ({path})")
    return state["epoch"], state


def _previous_record(state, run_dir, initial_epoch):
    """(history, seconds, metrics) of the epochs before this `fit`: from the checkpoint resumed,
    else (checkpoints of older kgan versions) from the run's config.json when it covers them."""
    history, seconds = state.get("history"), state.get("train_seconds")
    report = {}
    with contextlib.suppress(OSError, ValueError):
        with open(os.path.join(run_dir, "config.json")) as handle:
            report = json.load(handle)
    if history is None and report.get("epochs_trained") == initial_epoch:
        history, seconds = report.get("history"), report.get("train_seconds")
    history = {name: list(values)[:initial_epoch] for name, values in (history or {}).items()} if initial_epoch else {}
    return history, float(seconds or 0.0) if initial_epoch else 0.0, report.get("metrics")


def _checkpoint_callback(config, checkpoints, guard, policy, history, seconds):
    """The `CheckpointCallback` of a run: its state.json carries the config, the resolved precision
    and the run's record so far (so a resumed run reports every epoch)."""
    if not config.checkpoint_every:
        return None
    return checkpoint.CheckpointCallback(
        checkpoints, every=config.checkpoint_every, guard=guard, history=history, seconds=seconds,
        extra={"config": config.to_dict(), "precision_policy": policy})


def _lock_and_clean(config, chief):
    """Takes the run's locks (checkpoints and export) for the whole run, then removes what killed
    runs of it left (temporaries). Returns the ExitStack that releases the locks."""
    if not chief:
        return contextlib.ExitStack()
    what = f"run {config.run_name!r} ({os.path.join(config.checkpoint_dir, config.run_name)})"
    locks = atomic.lock_run((config.checkpoint_dir, config.output), config.run_name, what)
    atomic.clean_stale(os.path.join(config.checkpoint_dir, config.run_name))
    atomic.clean_stale(config.output, names=(config.run_name,))
    atomic.clean_stale(os.path.join(config.output, config.run_name))
    return locks


@contextlib.contextmanager
def _stop_on_sigterm(gan, checkpoint_callback):
    """While training: SIGTERM stops `fit` after the current step (a checkpoint being written is
    finished first); the incomplete epoch is not checkpointed. Yields a dict with "terminated"."""
    state = {"terminated": False}
    if threading.current_thread() is not threading.main_thread():
        yield state
        return

    def stop(signum, frame):
        state["terminated"] = True
        gan.stop_training = True
        if checkpoint_callback is not None:
            checkpoint_callback.interrupted = True

    previous = signal.signal(signal.SIGTERM, stop)
    try:
        yield state
    finally:
        signal.signal(signal.SIGTERM, previous)


def _run_folder_bytes(gan, run_dir):
    """What the run folder is expected to need: its previous size, else the GAN's weights file,
    the generator's export and 256 KiB for its graph, config.json and samples.png."""
    if os.path.isdir(run_dir):
        return atomic.size(run_dir)
    generator = sum(int(np.prod(v.shape)) * np.dtype(v.dtype).itemsize for v in gan.sampler.weights)
    return checkpoint.weights_bytes(gan) + generator + 2**18


def _terminated_message(checkpoints):
    found = checkpoints.list()
    if not found:
        return "terminated; there was no checkpoint yet, nothing was kept"
    epoch, path = found[-1]
    return f"terminated; checkpoint {path} (epoch {epoch}) kept: run the same command to resume from it"


def _diverged_message(config, diverged, checkpoints, gan):
    """Restores the last good checkpoint into `gan` and says what happened (DivergedError's text)."""
    message = (
        f"training diverged at step {diverged['step']} (epoch {diverged['epoch']}): "
        f"{diverged['what']} is {diverged['value']}"
    )
    try:
        latest, state = checkpoints.restore_newest(gan)  # an unreadable one is skipped, and said so
    except UsageError:
        latest = state = None
    if latest is not None:
        message += f"; restored the last good checkpoint {latest} (epoch {state['epoch']})"
    else:
        message += "; there was no readable checkpoint yet"
    return message + "; nothing was exported. Try lower --g-lr/--d-lr, --gp or --clip"


def _steps_per_execution(config, steps_per_epoch, strategy, toolbox):
    """Steps per call of the train function: --steps-per-execution, else `callbacks.block_size`.

    A block must divide the epoch (Keras does not cut blocks at epoch ends). 1 under several
    replicas (StepLog is single-replica) and with toolbox callbacks that act every step
    (the progressive curriculum).
    """
    k = config.steps_per_execution
    if k is not None and steps_per_epoch % int(k):  # k >= 1: TrainConfig.check_fields
        raise UsageError(f"--steps-per-execution must be >= 1 and divide the {steps_per_epoch} steps of an epoch; "
                         f"got {k}")
    if k is None:
        k = 1 if toolbox or strategy.num_replicas_in_sync > 1 else callbacks.block_size(steps_per_epoch)
    return int(k)


def _memoize_keras_saving_skipsets():
    """Works around a Keras 3.15 cache miss that made every checkpoint ~2x slower.

    `keras.src.saving.saving_lib.get_attr_skipset` looks its result up under
    `saving_attr_skiplist_<type>` but stores it under `saving_attr_skipset_<type>`, so every
    object of every `save_weights` builds a reference Layer/Optimizer and takes its `dir()`
    (a checkpoint of the main job's GAN: 50 ms, 27 ms with the cache hitting). Storing the
    (identical) sets under the looked-up key makes the cache hit; harmless once Keras fixes it.
    """
    try:
        from keras.src.backend.common import global_state
        from keras.src.saving import saving_lib
    except ImportError:  # pragma: no cover - another Keras layout
        return
    for kind in ("Operation", "Layer", "Functional", "Sequential", "Metric", "Optimizer", "Loss"):
        key = f"saving_attr_skiplist_{kind}"
        if global_state.get_global_attribute(key) is None:
            try:
                global_state.set_global_attribute(key, saving_lib.get_attr_skipset(kind))
            except Exception:  # pragma: no cover - a Keras without this kind
                pass


def make_fit_callbacks(config, gan, dataset, logdir, steps_per_epoch, strategy, toolbox, checkpoint_callback_for,
                       metrics_callback=None, reference=None):
    """The callbacks `train` gives `fit`, in order, its `DivergenceGuard` and `CheckpointCallback`.

    `checkpoint_callback_for(guard)`: the run's `CheckpointCallback` (or None: no checkpoints).

    Every step's losses and gradient norms stay in the graph (`callbacks.StepLog`'s buffer)
    and are checked and written to TensorBoard once per block of `gan.steps_per_execution`
    steps; `callbacks.EpochLog` writes Keras' epoch scalars. With several replicas (no StepLog,
    one step per call) the guard reads Keras' logs and `callbacks.BatchLog` writes them, with
    StepLog's tags and step numbers.
    """
    _memoize_keras_saving_skipsets()
    step_log = None
    if strategy.num_replicas_in_sync == 1:
        step_log = callbacks.StepLog(steps_per_epoch, logdir=logdir, every=config.log_every)
    guard = checkpoint.DivergenceGuard(steps_per_epoch, step_log=step_log)
    fit_callbacks = [
        *toolbox,  # first: they set state the step and the logs use
        *([step_log] if step_log is not None else []),
        guard,
        *([metrics_callback] if metrics_callback is not None else []),  # adds the metrics to `logs`
        *([] if step_log is not None else [callbacks.BatchLog(steps_per_epoch, logdir, every=config.log_every)]),
        callbacks.EpochLog(logdir),
        callbacks.SampleGrid(logdir, num_samples=64 if dataset.kind == "images" else 1000, seed=config.seed,
                             reference=reference),
    ]
    checkpoint_callback = checkpoint_callback_for(guard)
    if checkpoint_callback is not None:
        fit_callbacks.append(checkpoint_callback)
    return fit_callbacks, guard, checkpoint_callback


def train(config, verbose="auto", print_fn=print):
    """Trains, exports and reports one run: `kgan train`'s path and every `kgan compare` row's.

    Args:
        config: a `TrainConfig`.
        verbose: Keras `fit` verbosity ("auto": progress bar on a terminal, a line per epoch
            otherwise).
        print_fn: where the final summary goes.

    Returns:
        A dict: the paths written ("outputs"), the final epoch logs ("final"), the seconds of
        this fit, the trained "gan" and the run's "report" (what config.json holds).
    """
    with contextlib.ExitStack() as resources:  # the run's locks, released when it ends
        return _train(config, verbose, print_fn, resources)


def _train(config, verbose, print_fn, resources):
    """The stages of a run, in order; each one's docstring says what it owns."""
    config, strategy = _setup(config)
    dataset, steps_per_epoch = _load_data(config)
    gan, policy, xla = _build_gan(config, dataset, steps_per_epoch, strategy, print_fn)
    # Checked before the run's folders and locks exist (a bad --steps-per-execution writes nothing).
    toolbox = toolbox_callbacks(gan)
    gan.steps_per_execution = _steps_per_execution(config, steps_per_epoch, strategy, toolbox)
    chief = distribute.is_chief(strategy)
    resources.enter_context(_lock_and_clean(config, chief))
    checkpoints = checkpoint.Checkpoints(
        os.path.join(config.checkpoint_dir, config.run_name), keep=config.keep_checkpoints, write=chief,
        background=True,  # fsyncs off the training thread; complete on disk when fit returns
    )
    initial_epoch, resumed = _resume(checkpoints, gan, config, policy, print_fn)
    previous = _previous_record(resumed, os.path.join(config.output, config.run_name), initial_epoch)
    pipeline = _pipeline(config, dataset, initial_epoch, steps_per_epoch)
    logdir = os.path.join(config.logdir, config.run_name)
    # Before anything is written: a feature network that cannot be had is a UsageError.
    metrics_callback = callbacks.metrics_callback_for_run(config, dataset, logdir)
    reference = next(iter(dataset.data.batch(1000))).numpy() if dataset.kind == "points" else None
    fit_callbacks, guard, checkpoint_callback = make_fit_callbacks(
        config, gan, dataset, logdir, steps_per_epoch, strategy, toolbox,
        lambda guard: _checkpoint_callback(config, checkpoints, guard, policy, previous[0], previous[1]),
        metrics_callback, reference)
    # The run as an HParams session next to its scalars (the dashboard compares runs of one --logdir).
    hparams.write_session(logdir, hparams.run_hparams(config, config.epochs * steps_per_epoch, precision=policy,
                                                   xla=xla),
                          trial_id=config.run_name)
    history, seconds = _fit(gan, pipeline, config, initial_epoch, steps_per_epoch, fit_callbacks, verbose,
                            checkpoint_callback, checkpoints)
    report = _report(config, dataset, steps_per_epoch, initial_epoch, history, seconds, previous, metrics_callback,
                     policy, xla)
    if guard.diverged is not None:
        error = DivergedError(_diverged_message(config, guard.diverged, checkpoints, gan))
        error.report = report  # the epochs before the divergence (kgan compare records their curves)
        raise error
    outputs = _write_run_folder(config, gan, report, reference, logdir)
    _print_summary(config, report, initial_epoch, seconds, metrics_callback, outputs, print_fn)
    return {"outputs": outputs, "final": report["final"], "seconds": seconds, "gan": gan, "report": report}


def _setup(config):
    """The resolved config and the strategy; worker scratch dirs, determinism and the seeds."""
    config = config.resolved()
    # First, before anything makes a TensorFlow op or variable: --devices splits the CPU, and
    # multi-worker collectives must be configured at start-up.
    strategy = distribute.get_strategy(config.strategy, config.devices)
    validate(config)
    if config.batch_size % strategy.num_replicas_in_sync:
        raise UsageError(f"--batch-size {config.batch_size} must be a multiple of the number of replicas "
                         f"({strategy.num_replicas_in_sync})")
    if not distribute.is_chief(strategy):
        # Multi-worker: every worker runs this same program (exports save collectively), but
        # only the chief's outputs are kept; the others write to a scratch directory.
        scratch = tempfile.mkdtemp(prefix="kgan-worker-")
        config = dataclasses.replace(config, output=scratch, logdir=scratch)
    if config.deterministic:
        tf.config.experimental.enable_op_determinism()
    keras.utils.set_random_seed(config.seed)
    return config, strategy


def _load_data(config):
    """The dataset and the steps of an epoch (--steps-per-epoch, else one pass over the data)."""
    dataset = data.load(config.dataset, data_dir=config.data_dir, image_size=config.image_size, seed=config.seed,
                        with_labels=config.conditional)
    # A step's batch counts packed examples (--pack M): M samples each.
    steps_per_epoch = config.steps_per_epoch or data.steps_per_epoch(dataset, config.batch_size * config.pack,
                                                                     config.d_steps)
    return dataset, int(steps_per_epoch)


def _build_gan(config, dataset, steps_per_epoch, strategy, print_fn):
    """The GAN, built under the strategy with the resolved precision policy and XLA choice;
    returns (gan, policy, "on" or "off")."""
    previous_policy = keras.mixed_precision.global_policy()
    policy, reason = distribute.set_precision(config.precision, dataset.shape)
    if reason:
        print_fn(f"kgan: --precision auto chose {policy}: {reason}")
    xla, reason = distribute.resolve_xla(config.xla, dataset.shape, strategy.num_replicas_in_sync,
                                         config.deterministic, steps=config.epochs * steps_per_epoch)
    if reason:
        print_fn(f"kgan: --xla auto chose {'on' if xla else 'off'}: {reason}")
    try:  # the layers keep their dtype policy; the global one is restored for the caller
        with strategy.scope():
            gan = build(config, dataset.shape, dataset.num_classes, total_steps=config.epochs * steps_per_epoch,
                        jit_compile=xla)
    finally:
        keras.mixed_precision.set_global_policy(previous_policy)
    return gan, policy, "on" if gan.jit_compile else "off"  # what Keras compiles (it may refuse a layer)


def _pipeline(config, dataset, initial_epoch, steps_per_epoch):
    """The epoch-deterministic input: epoch e has the same batches whether or not the run was
    interrupted; multi-worker shards it by example (the same batches as one worker). With
    --pack M a batch holds M samples per packed example (the GAN packs them in its step)."""
    pipeline = data.pipeline(dataset, config.batch_size * config.pack, config.d_steps, seed=config.seed,
                             initial_epoch=initial_epoch, epochs=config.epochs,
                             steps_per_epoch=config.steps_per_epoch and steps_per_epoch)
    if config.strategy == "multiworker":  # shard by example, not by file
        options = tf.data.Options()
        options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
        pipeline = pipeline.with_options(options)
    return pipeline


def _fit(gan, pipeline, config, initial_epoch, steps_per_epoch, fit_callbacks, verbose, checkpoint_callback,
         checkpoints):
    """Runs `fit` (SIGTERM stops it after the current step: TerminatedError); (history, seconds)."""
    if verbose == "auto":
        verbose = 1 if os.isatty(1) else 2
    start = time.time()
    with _stop_on_sigterm(gan, checkpoint_callback) as stopped:
        try:
            history = gan.fit(
                pipeline, epochs=config.epochs, initial_epoch=initial_epoch, steps_per_epoch=steps_per_epoch,
                callbacks=fit_callbacks, verbose=verbose, shuffle=False,
            )
        except BaseException:
            with contextlib.suppress(Exception):  # the saves under way end complete; fit's error is reported
                checkpoints.wait()
            raise
    checkpoints.wait()  # (CheckpointCallback's on_train_end waited already, when fit ended normally)
    if stopped["terminated"]:
        raise TerminatedError(_terminated_message(checkpoints))
    return history, time.time() - start


def _report(config, dataset, steps_per_epoch, initial_epoch, history, seconds, previous, metrics_callback,
            policy=None, xla=None):
    """config.json's content: the whole run's record (the epochs before this fit, from the
    checkpoint resumed, and its own), versions, the precision policy and XLA choice the run
    resolved (what `--precision auto` and `--xla auto` chose) and the last evaluation."""
    previous_history, previous_seconds, previous_metrics = previous
    record = {name: list(values) for name, values in previous_history.items()}
    for name, values in history.history.items():
        record.setdefault(name, []).extend(float(v) for v in values)
    report = {
        "config": config.to_dict(),
        "precision_policy": policy,
        "xla": xla,
        "kgan_version": kgan.__version__,
        "tensorflow_version": tf.__version__,
        "keras_version": keras.__version__,
        "dataset": {"name": dataset.name, "shape": list(dataset.shape), "num_examples": dataset.num_examples},
        "epochs_trained": initial_epoch + len(history.epoch),
        "epochs_this_fit": len(history.epoch),
        "steps_per_epoch": steps_per_epoch,
        "train_seconds": round(previous_seconds + seconds, 1),
        "train_seconds_this_fit": round(seconds, 1),
        "final": {name: float(values[-1]) for name, values in record.items() if values},
        "history": record,
    }
    if metrics_callback is not None and metrics_callback.last is None and previous_metrics:
        report["metrics"] = previous_metrics  # no epoch ran (a finished run again): the last evaluation
    elif metrics_callback is not None:  # the last evaluation (the last epoch's generator)
        report["metrics"] = _metrics_report(metrics_callback)
    return report


def _metrics_report(metrics_callback):
    """config.json's "metrics": the last evaluation, its protocol and its cost."""
    return {
        "values": metrics_callback.last,
        "epoch": metrics_callback.last_epoch,
        "num_samples": metrics_callback.num_samples,
        "labels": metrics_callback.evaluator.labels(),
        "features": metrics_callback.evaluator.describe(),
        "evaluations": len(metrics_callback.seconds),
        "seconds_per_evaluation": {k: round(v, 4) for k, v in metrics_callback.mean_seconds().items()},
        "seconds_real_features": round(metrics_callback.evaluator.seconds.get("real_features", 0.0), 4),
    }


def _write_run_folder(config, gan, report, reference, logdir):
    """Writes <output>/<run>/ whole to a temporary and swaps it in (it is always one run's):
    samples.png, config.json, the GAN's weights and the exported generator. Returns the paths."""
    run_dir = os.path.join(config.output, config.run_name)
    samples = gan.generate(64 if report["dataset"]["shape"][1:] else 2500, seed=config.seed)
    expected = _run_folder_bytes(gan, run_dir)
    with atomic.path(run_dir, directory=True, expected_bytes=expected) as staging:
        plots.save_png(plots.sample_picture(samples, reference), os.path.join(staging, "samples.png"))
        atomic.write_json(report, os.path.join(staging, "config.json"))
        # The weights let `kgan export --run` rebuild the GAN; the export carries config.json.
        export.save_gan_weights(gan, staging)
        # The exported generator is the one sampled from: the EMA copy with --ema.
        export.export_generator(gan.sampler, os.path.join(staging, "generator"),
                                config_path=os.path.join(staging, "config.json"), num_classes=gan.num_classes)
    return {
        "generator": os.path.abspath(os.path.join(run_dir, "generator")),
        "config": os.path.abspath(os.path.join(run_dir, "config.json")),
        "samples": os.path.abspath(os.path.join(run_dir, "samples.png")),
        "tensorboard": os.path.abspath(logdir),
    }


def _print_summary(config, report, initial_epoch, seconds, metrics_callback, outputs, print_fn):
    """The lines `kgan train` ends with: losses, the metrics' networks and where everything is."""
    losses_line = ", ".join(f"{k} {v:.4f}" for k, v in report["final"].items())
    in_all = f" ({report['epochs_trained']} in all)" if initial_epoch else ""
    print_fn(f"\nkgan: trained {config.run_name} for {report['epochs_this_fit']} epochs{in_all} in {seconds:.0f} s "
             f"({losses_line})")
    if metrics_callback is not None:
        for name, label in metrics_callback.evaluator.labels().items():
            print_fn(f"  {name}: {label}")
        for name, label in metrics_callback.evaluator.describe().items():
            if name in ("feature_label", "mode_classifier"):
                print_fn(f"  {'features' if name == 'feature_label' else 'mode classifier'}: {label}")
    print_fn(f"  generator (SavedModel): {outputs['generator']}")
    print_fn(f"  config and metrics:     {outputs['config']}")
    print_fn(f"  samples:                {outputs['samples']}")
    print_fn(f"  TensorBoard:            tensorboard --logdir {outputs['tensorboard']}")


def export_run(run, output="saved_models"):
    """What `kgan export` does: rebuilds a run's GAN from its config.json and saved weights, and
    exports the generator again to `<output>/<run>/generator`. Returns the export path."""
    run_dir = os.path.join(output, run)
    config_path = os.path.join(run_dir, export.CONFIG_FILE)
    weights_path = os.path.join(run_dir, export.WEIGHTS_FILE)
    for path in (config_path, weights_path):
        if not os.path.isfile(path):
            raise UsageError(f"no {os.path.basename(path)} in {run_dir}: is --run the name of a finished run "
                             f"under --output {output}?")
    try:
        with open(config_path) as handle:
            report = json.load(handle)
        config = TrainConfig.from_dict(report["config"])
        shape = tuple(report["dataset"]["shape"])
    except (ValueError, KeyError, TypeError) as error:
        raise UsageError(f"cannot read {config_path}: {error}") from None

    num_classes = data.NUM_CLASSES.get(config.dataset) if config.conditional else None
    gan = build(config, shape, num_classes)
    if not gan.built:  # the GAN is built with its networks; this is a fallback
        gan(keras.ops.zeros((1, config.latent_dim)))
    try:
        gan.load_weights(weights_path)
    except Exception as error:  # noqa: BLE001 - a mismatched or truncated weights file
        detail = " ".join(str(error).split())[:200]
        raise UsageError(f"cannot load {weights_path} into the network {config_path} describes ({detail})") from None
    with atomic.lock_run((output,), run, f"run {run!r} ({run_dir})"):  # not while it trains or exports
        return export.export_generator(gan.sampler, os.path.join(run_dir, "generator"), config_path=config_path,
                                       num_classes=gan.num_classes)
