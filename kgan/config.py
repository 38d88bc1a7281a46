"""`TrainConfig`: every default of `kgan train` in one place.

The defaults are the Minkowski-GAN paper's setting (shared/PAPER.md, Table 1): 200 epochs,
batch 64, Adam lr 2e-4 with beta1 0.5 and beta2 0.999 for both networks, latent size 100; the
loss is the paper's Minkowski loss with p = 4. The default dataset is scikit-learn's 8x8
digits, embedded, so `python train.py` needs no download.
"""

import dataclasses
import json
import math

from kgan import names
from kgan.names import DATASETS, LOSSES  # noqa: F401 - re-exported (the choice lists live in kgan.names)

LOSS = "loss"
DATA = "data"
OPTIMISATION = "optimisation (defaults: the paper's Table 1)"
STABILISATION = "stabilisation"
TOOLBOX = "toolbox (README: Stabilisation techniques)"
SCALE = "scale and survive"
METRICS = "metrics during training (TensorBoard <logdir>/<run>/metrics, history, config.json)"
RUN = "run"


def _field(default, group, help, resume=False, choices=None, low=None, high=None, low_open=False,
           high_open=False, bare=None, metavar=None, gan=False):
    """A `TrainConfig` field whose metadata is everything the command line, `validate` and the
    resume check need, so that adding an option is one line here.

    Args:
        group: the argparse group of its flag.
        help: the flag's help (the default is appended by the CLI).
        resume: in the RESUME IDENTITY: it shapes the variables or the maths of a training step,
            so a checkpoint written with another value cannot be continued (`resume_fields`).
        choices: the allowed values (a kgan.names list).
        low, high: bounds of a number (when set); `low_open` / `high_open`: the bound itself is
            excluded. Floats must also be finite.
        bare: a flag usable bare (`--gp` means `bare`) or with a number (`--gp 5`).
        metavar: the flag's value name in --help.
        gan: passed to `GAN(...)` under its own name (`TrainConfig.gan_kwargs`).
    """
    metadata = {"group": group, "help": help, "resume": resume, "choices": choices, "low": low, "high": high,
                "low_open": low_open, "high_open": high_open, "bare": bare, "metavar": metavar, "gan": gan}
    return dataclasses.field(default=default, metadata=metadata)


@dataclasses.dataclass
class TrainConfig:
    """Every setting of a training run; each field's metadata (`_field`) carries its flag's help,
    group, choices and bounds, and whether it is in the resume identity (`resume_fields()`): the
    loss, data, batch geometry, networks, optimiser betas, penalties, toolbox, precision and seed.
    The others may change between a run and its resume: --epochs, the learning rates (lowering
    them is how a diverged run is continued), the strategy and devices (a step on R replicas
    equals one on one replica), determinism, checkpoints, metrics and the output paths."""

    # --- loss -------------------------------------------------------------------------------
    loss: str = _field("minkowski", LOSS, resume=True, choices=names.LOSSES, metavar="NAME", help="the GAN loss")
    p: float = _field(4.0, LOSS, resume=True, low=1, help="Minkowski order, finite and >= 1; the paper's best is 4")
    minkowski_activation: str = _field("sigmoid", LOSS, resume=True, choices=names.MINKOWSKI_ACTIVATIONS,
                                       help="sigmoid: D is a probability (the paper); linear: D's raw output")
    # --- data ---------------------------------------------------------------------------------
    dataset: str = _field("digits", DATA, resume=True, metavar="NAME",
                          help=f"one of {', '.join(names.DATASETS)}, or folder:PATH (digits is embedded)")
    data_dir: str = _field(None, DATA, help="TensorFlow Datasets directory with prepared data (and downloads)")
    image_size: int = _field(None, DATA, resume=True, choices=names.IMAGE_SIZES,
                             help="resize images to this size (default: the dataset's size rounded up)")
    # --- optimisation (paper, Table 1) -----------------------------------------------------------
    epochs: int = _field(200, OPTIMISATION, low=1, help="")
    steps_per_epoch: int = _field(None, OPTIMISATION, resume=True, low=1, metavar="N",
                                  help="generator steps per epoch; default: one pass over the data. Set, the data "
                                       "repeats (epoch-deterministically): a compare row of N steps evaluated every "
                                       "E is --steps-per-epoch E --epochs N/E --metrics-every 1. In the resume "
                                       "identity: it says which batches an epoch holds")
    batch_size: int = _field(64, OPTIMISATION, resume=True, low=1, help="global batch per D update")
    latent_dim: int = _field(100, OPTIMISATION, resume=True, gan=True, low=1, help="")
    optimizer: str = _field("adam", OPTIMISATION, resume=True, choices=names.OPTIMIZERS,
                            help="both players' optimiser: adam (--beta1, --beta2), or rmsprop (rho 0.99, "
                                 "epsilon 1e-8: the WGAN reference code's, PyTorch's RMSprop defaults)")
    g_lr: float = _field(2e-4, OPTIMISATION, low=0, low_open=True,
                         help="generator learning rate (different G and D rates: TTUR)")
    d_lr: float = _field(2e-4, OPTIMISATION, low=0, low_open=True, help="discriminator learning rate")
    beta1: float = _field(0.5, OPTIMISATION, resume=True, low=0, high=1, high_open=True, help="Adam's")
    beta2: float = _field(0.999, OPTIMISATION, resume=True, low=0, high=1, high_open=True, help="Adam's")
    d_steps: int = _field(1, OPTIMISATION, resume=True, gan=True, low=1, help="D updates per G update (WGAN: 5)")
    updates: str = _field("alternating", OPTIMISATION, resume=True, gan=True, choices=names.UPDATES,
                          help="alternating: D's update, then G's against the new D; simultaneous: both "
                               "from one forward pass at the same weights (PacGAN's code; needs --d-steps 1)")
    # --- stabilisation --------------------------------------------------------------------------
    clip: float = _field(None, STABILISATION, resume=True, bare=0.01, low=0, low_open=True, metavar="C",
                         help="clip every D weight to [-C, C] (WGAN: 0.01)")
    gp: float = _field(None, STABILISATION, resume=True, bare=10.0, low=0, metavar="LAMBDA",
                       help="WGAN-GP gradient penalty weight (10 in the paper)")
    r1: float = _field(None, STABILISATION, resume=True, bare=10.0, low=0, metavar="GAMMA",
                       help="R1 penalty on real data")
    label_smoothing: float = _field(0.0, STABILISATION, resume=True, low=0, high=1, high_open=True,
                                    help="one-sided: D's real target becomes 1 - this")
    instance_noise: float = _field(0.0, STABILISATION, resume=True, gan=True, low=0,
                                   help="std of Gaussian noise added to every D input")
    spectral_norm: bool = _field(False, STABILISATION, resume=True, help="spectral normalisation in D")
    # --- toolbox (README "Stabilisation techniques") -------------------------------------------
    arch: str = _field("dcgan", TOOLBOX, resume=True, choices=names.ARCHS,
                       help="networks: DCGAN (images; 2-D points: the MLP pair with a LeakyReLU D), "
                            "SNGAN's ResNet (images; spectral norm in D), or pacgan (2-D points: "
                            "PacGAN's MLP pair, maxout D, N(0, 0.02) weights)")
    self_attention: int = _field(None, TOOLBOX, resume=True, metavar="RES",
                                 help="a SAGAN self-attention block where the feature maps are RES x RES, in G and D")
    minibatch_std: bool = _field(False, TOOLBOX, resume=True, help="ProGAN minibatch standard deviation feature in D")
    conditional: bool = _field(False, TOOLBOX, resume=True,
                               help="class-conditional GAN (conditional batch norm in G, projection D); "
                                    "labelled datasets")
    ema: float = _field(None, TOOLBOX, resume=True, gan=True, bare=0.999, low=0, high=1, low_open=True, high_open=True, metavar="DECAY",
                        help="exponential moving average of G's weights, exported and evaluated")
    ema_start: int = _field(0, TOOLBOX, resume=True, gan=True, low=0, metavar="STEP",
                            help="generator step from which the average starts (before: a copy)")
    feature_matching: float = _field(0.0, TOOLBOX, resume=True, gan=True, low=0, metavar="WEIGHT",
                                     help="feature matching term in G's loss, Salimans et al. 2016")
    augment: str = _field(None, TOOLBOX, resume=True, choices=names.AUGMENTS,
                          help="differentiable augmentation of D's inputs: DiffAugment (fixed p) or ADA (adaptive p)")
    augment_policy: str = _field("color,translation,cutout", TOOLBOX, resume=True, metavar="OPS",
                                 help="comma list of color, translation, cutout")
    augment_p: float = _field(None, TOOLBOX, resume=True, low=0, high=1, metavar="P",
                              help="augmentation probability (default: 1 for diffaugment, ADA's start value 0)")
    ada_target: float = _field(0.6, TOOLBOX, resume=True, low=0, high=1, low_open=True, high_open=True,
                               help="ADA's target for E[sign(D(real) - the loss's decision threshold)]")
    unroll: int = _field(0, TOOLBOX, resume=True, gan=True, low=0, metavar="K",
                         help="unrolled GAN: G's loss through K simulated D updates (Metz et al.)")
    unroll_optimizer: str = _field("discriminator", TOOLBOX, resume=True, gan=True, choices=names.UNROLL_OPTIMIZERS,
                                   help="the optimizer the unrolling simulates: D's own, with its state, or plain "
                                        "SGD at --unroll-lr")
    unroll_lr: float = _field(None, TOOLBOX, resume=True, gan=True, low=0, low_open=True, metavar="LR",
                              help="learning rate of --unroll-optimizer sgd (never D's)")
    progressive: bool = _field(False, TOOLBOX, resume=True,
                               help="progressive growing from 4x4 to the image size (DCGAN family)")
    progressive_steps: int = _field(None, TOOLBOX, resume=True, low=1, metavar="N",
                                    help="generator steps per resolution (default: an equal share of training)")
    fade_steps: int = _field(None, TOOLBOX, resume=True, low=0, metavar="N",
                             help="steps of each new resolution's fade-in (default: half a phase)")
    clip_grad_norm: float = _field(None, TOOLBOX, resume=True, gan=True, low=0, low_open=True, metavar="NORM",
                                   help="clip each player's global gradient norm")
    historical_averaging: float = _field(0.0, TOOLBOX, resume=True, gan=True, low=0, metavar="WEIGHT",
                                         help="penalty WEIGHT * ||theta - mean of past theta||^2 for both players")
    pack: int = _field(1, TOOLBOX, resume=True, gan=True, low=1, metavar="M",
                       help="PacGAN (Lin et al. 2018): D judges M samples at once (points joined along the feature "
                            "axis, images along the channels); --batch-size counts packed examples, so each D update "
                            "sees batch x M real and batch x M generated samples; G is unchanged")
    # --- scale and survive (kgan/distribute.py) ----------------------------------------------------
    strategy: str = _field("default", SCALE, choices=names.STRATEGIES,
                           help="default: one device; mirrored: all GPUs (or --devices); multiworker: from "
                                "TF_CONFIG; tpu")
    devices: int = _field(None, SCALE, low=1, metavar="N",
                          help="mirrored: N replicas; without N GPUs the CPU is split into N logical devices")
    sync_bn: bool = _field(False, SCALE, resume=True, help="batch norm statistics over all replicas")
    precision: str = _field("auto", SCALE, resume=True, choices=names.PRECISIONS,
                            help="auto: what is fastest on this hardware (bfloat16 on AMX CPUs and Ampere+ GPUs, "
                                 "float16 on Volta/Turing, else float32; docs/performance.md)")
    xla: str = _field("auto", SCALE, choices=names.XLA,
                      help="compile the train step with XLA (Keras jit_compile); auto: on where it was measured "
                           "faster: on a CPU, one replica, images up to 16x16, runs of >= 2000 steps "
                           "(docs/performance.md)")
    checkpoint_every: int = _field(1, SCALE, low=0, metavar="EPOCHS", help="epochs between checkpoints; 0: none")
    keep_checkpoints: int = _field(3, SCALE, low=1, metavar="K", help="keep the last K checkpoints")
    checkpoint_dir: str = _field("checkpoints", SCALE,
                                 help="root of checkpoints (<checkpoint_dir>/<run>/); a run with the same "
                                      "--run-name resumes")
    deterministic: bool = _field(False, SCALE, help="deterministic TensorFlow ops: the same command gives the same "
                                                    "weights (slower)")
    steps_per_execution: int = _field(None, SCALE, low=1, metavar="K",
                                      help="train steps run in the graph per call (NaN checks and TensorBoard writes "
                                           "happen per block, still for every step); default: the largest divisor "
                                           "of the epoch <= 100 (1 with several replicas or --progressive)")
    log_every: int = _field(1, SCALE, low=1, metavar="STEPS", help="TensorBoard batch_* scalars of every N-th step")
    # --- metrics during training (kgan/callbacks.py MetricsCallback, kgan/evaluate.py) ------------
    metrics: str = _field(None, METRICS, metavar="LIST",
                          help=f"comma-separated {'|'.join(names.METRICS)}, or none (default: the dataset's; "
                               "digits: fcd,kid; stacked_digits, ring8, grid25: modes; others: none)")
    metrics_every: int = _field(20, METRICS, low=1, metavar="EPOCHS",
                                help="epochs between evaluations, plus the first and last epoch")
    metrics_samples: int = _field(None, METRICS, low=10, metavar="N",
                                  help="generated samples per evaluation (default: ring8, grid25 2500; "
                                       "stacked_digits 25600; else 1000)")
    features: str = _field(None, METRICS, metavar="NAME",
                           help="feature network: inception | keras_inception | classifier:<dataset> (default: "
                                "classifier:digits for digits, raw coordinates for 2-D points, else inception)")
    # --- run ------------------------------------------------------------------------------------
    seed: int = _field(0, RUN, resume=True, gan=True, help="seeds Python, NumPy and TensorFlow")
    run_name: str = _field(None, RUN, help="default: <dataset>-<loss>[-p<p>]-s<seed>")
    output: str = _field("saved_models", RUN, help="root of exported models (<output>/<run>/)")
    logdir: str = _field("logs", RUN, help="root of TensorBoard logs (<logdir>/<run>/)")

    @classmethod
    def resume_fields(cls):
        """Names of the fields a checkpoint must agree on to be resumed (field metadata "resume")."""
        return tuple(f.name for f in dataclasses.fields(cls) if f.metadata.get("resume"))

    @classmethod
    def field_names(cls):
        return tuple(f.name for f in dataclasses.fields(cls))

    @classmethod
    def gan_fields(cls):
        """Names of the fields passed to `GAN(...)` as they are (field metadata "gan")."""
        return tuple(f.name for f in dataclasses.fields(cls) if f.metadata.get("gan"))

    def gan_kwargs(self):
        """The `GAN(...)` keyword arguments this config sets directly (`gan_fields`)."""
        return {name: getattr(self, name) for name in self.gan_fields()}

    def check_fields(self):
        """The one check of every field against its metadata: a choice from its list, a finite
        number within its bounds. Cross-field rules (a flag that needs another, a dataset that
        must exist) are `kgan.run.validate`'s.

        Raises:
            ValueError: naming the flag, the rule and the value, e.g.
                "--ema must be in (0, 1); got 1.5".
        """
        for field in dataclasses.fields(self):
            value, meta = getattr(self, field.name), field.metadata
            if value is None or isinstance(value, bool) or not meta:
                continue
            if meta["choices"] is not None and value not in meta["choices"]:
                choices = ", ".join(str(c) for c in meta["choices"])
                raise ValueError(f"unknown {field.name.replace('_', ' ')} {value!r}: choose one of {choices} "
                                 f"({flag(field.name)})")
            if field.type in (float, "float", int, "int"):
                _check_number(field.name, value, meta)

    @classmethod
    def float_fields(cls):
        """Names of the float-valued fields (each must be finite when set)."""
        return tuple(f.name for f in dataclasses.fields(cls) if f.type in (float, "float"))

    def resolved(self):
        """A copy with derived defaults filled in (the run name)."""
        config = dataclasses.replace(self)
        if config.run_name is None:
            loss = f"{config.loss}-p{config.p:g}" if config.loss == "minkowski" else config.loss
            config.run_name = f"{config.dataset.replace(':', '_').replace('/', '_')}-{loss}-s{config.seed}"
        return config

    def to_dict(self):
        return dataclasses.asdict(self)

    def to_json(self):
        return json.dumps(self.to_dict(), indent=2, sort_keys=False)

    @classmethod
    def from_dict(cls, values):
        return cls(**{k: v for k, v in values.items() if k in cls.field_names()})


def flag(name):
    """The command-line flag of a field: "g_lr" -> "--g-lr"."""
    return "--" + name.replace("_", "-")


def _check_number(name, value, meta):
    """Raises ValueError unless `value` is a finite number within the field's bounds."""
    if not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(f"{flag(name)} must be a finite number; got {value}")
    low, high = meta["low"], meta["high"]
    too_low = low is not None and (value <= low if meta["low_open"] else value < low)
    too_high = high is not None and (value >= high if meta["high_open"] else value > high)
    if too_low or too_high:
        if high is None:
            bound = f"{'>' if meta['low_open'] else '>='} {low:g}"
        else:
            bound = f"in {'(' if meta['low_open'] else '['}{low:g}, {high:g}{')' if meta['high_open'] else ']'}"
        raise ValueError(f"{flag(name)} must be {bound}; got {value}")


#: Fields that say where a run writes, not what it computes: left out of `train_command`.
PATH_FIELDS = ("run_name", "output", "logdir", "checkpoint_dir")


def train_command(config, precision=None, xla=None):
    """The `kgan` argv (`["train", "--flag", "value", ...]`) that trains `config` again.

    Every field that differs from `TrainConfig()`'s default becomes `--flag value` (the field's
    name with `-` for `_`; a True bool is a bare `--flag`; floats in `repr` precision, so they
    parse back to the same number), in field order. `PATH_FIELDS` are left out: a reproduction
    writes where its own command says. `kgan.cli.build_parser().parse_args(argv)` gives back
    `config` (with `precision`, paths at their defaults).

    Args:
        config: a `TrainConfig`.
        precision: the policy the run resolved (e.g. "float32" for a run made with "auto"):
            carried as `--precision`, so the command computes the same on another machine.
        xla: the XLA choice the run resolved ("on" or "off"), carried as `--xla` likewise.

    Raises:
        ValueError: a value no flag can express (None or False where the default is set or True).
    """
    if precision is not None:
        config = dataclasses.replace(config, precision=precision)
    if xla is not None:
        config = dataclasses.replace(config, xla=xla)
    default = TrainConfig()
    argv = ["train"]
    for field in dataclasses.fields(TrainConfig):
        value = getattr(config, field.name)
        if field.name in PATH_FIELDS or value == getattr(default, field.name):
            continue
        option = flag(field.name)
        if value is True:
            argv.append(option)
        elif value is None or value is False:
            raise ValueError(f"no {option} value gives {value!r} (its default is {getattr(default, field.name)!r})")
        elif field.type in (float, "float"):
            argv += [option, repr(float(value))]
        else:
            argv += [option, str(value)]
    return argv
