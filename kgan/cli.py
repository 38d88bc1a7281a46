"""The `kgan` command line: `kgan train` (also `python train.py`).

Parsing happens before TensorFlow is imported, so `--help` and flag errors are instant. Errors
the user can cause end with one line on stderr and exit code 2; nothing written before is lost.
TensorFlow's start-up log lines are silenced unless TF_CPP_MIN_LOG_LEVEL is set by the user.
"""

import argparse
import os
import sys

from kgan import __version__
from kgan.config import DATASETS, LOSSES, TrainConfig
from kgan.quiet import import_tensorflow_quietly


class _Parser(argparse.ArgumentParser):
    """ArgumentParser whose errors are one line: `kgan train: error: ... (see --help)`."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _optional_number(const):
    """kwargs for a flag usable bare (`--gp`, meaning `const`) or with a value (`--gp 5`)."""
    return {"type": float, "nargs": "?", "const": const, "default": None}


def _int_list(text):
    """argparse type: "3" or "0,1,2" -> [ints] (>= 0)."""
    try:
        values = [int(v) for v in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated class ids, e.g. 0,1,2; got {text!r}") from None
    if not values or min(values) < 0:
        raise argparse.ArgumentTypeError(f"class ids must be >= 0; got {text!r}")
    return values


def add_train_arguments(parser):
    d = TrainConfig()
    group = parser.add_argument_group("loss")
    group.add_argument("--loss", default=d.loss, metavar="NAME", help=f"one of {', '.join(LOSSES)} (default: {d.loss})")
    group.add_argument("--p", type=float, default=d.p, help=f"Minkowski order, finite and >= 1 (default: {d.p:g})")
    group.add_argument("--minkowski-activation", choices=("sigmoid", "linear"), default=d.minkowski_activation,
                       help="sigmoid: D is a probability (the paper); linear: D's raw output (default: %(default)s)")
    group = parser.add_argument_group("data")
    group.add_argument("--dataset", default=d.dataset, metavar="NAME",
                       help=f"one of {', '.join(DATASETS)}, or folder:PATH (default: {d.dataset}, embedded)")
    group.add_argument("--data-dir", default=d.data_dir, help="TensorFlow Datasets directory with prepared data")
    group.add_argument("--image-size", type=int, choices=(8, 16, 32, 64), default=d.image_size,
                       help="resize images to this size (default: the dataset's size rounded up)")
    group = parser.add_argument_group("optimisation (defaults: the paper's Table 1)")
    group.add_argument("--epochs", type=int, default=d.epochs, help="default: %(default)s")
    group.add_argument("--steps-per-epoch", type=int, default=d.steps_per_epoch, metavar="N",
                       help="generator steps per epoch; default: one pass over the data")
    group.add_argument("--batch-size", type=int, default=d.batch_size, help="global batch per D update (default: %(default)s)")
    group.add_argument("--latent-dim", type=int, default=d.latent_dim, help="default: %(default)s")
    group.add_argument("--g-lr", type=float, default=d.g_lr, help="generator Adam learning rate (default: %(default)s)")
    group.add_argument("--d-lr", type=float, default=d.d_lr, help="discriminator Adam learning rate (default: %(default)s)")
    group.add_argument("--beta1", type=float, default=d.beta1, help="default: %(default)s")
    group.add_argument("--beta2", type=float, default=d.beta2, help="default: %(default)s")
    group.add_argument("--d-steps", type=int, default=d.d_steps, help="D updates per G update (default: %(default)s)")
    group = parser.add_argument_group("stabilisation")
    group.add_argument("--clip", metavar="C", help="clip D weights to [-C, C] (bare: 0.01)", **_optional_number(0.01))
    group.add_argument("--gp", metavar="LAMBDA", help="WGAN-GP gradient penalty weight (bare: 10)", **_optional_number(10.0))
    group.add_argument("--r1", metavar="GAMMA", help="R1 penalty on real data (bare: 10)", **_optional_number(10.0))
    group.add_argument("--label-smoothing", type=float, default=d.label_smoothing,
                       help="one-sided: D's real target becomes 1 - this (default: %(default)s)")
    group.add_argument("--instance-noise", type=float, default=d.instance_noise,
                       help="std of Gaussian noise on D's inputs (default: %(default)s)")
    group.add_argument("--spectral-norm", action="store_true", help="spectral normalisation in D")
    group = parser.add_argument_group("toolbox (README: Stabilisation techniques)")
    group.add_argument("--arch", choices=("dcgan", "resnet"), default=d.arch,
                       help="image networks: DCGAN, or SNGAN's ResNet (spectral norm in D) (default: %(default)s)")
    group.add_argument("--self-attention", type=int, default=d.self_attention, metavar="RES",
                       help="a SAGAN self-attention block where the feature maps are RES x RES, in G and D")
    group.add_argument("--minibatch-std", action="store_true", help="ProGAN minibatch standard deviation feature in D")
    group.add_argument("--conditional", action="store_true",
                       help="class-conditional GAN (conditional batch norm in G, projection D); labelled datasets")
    group.add_argument("--ema", metavar="DECAY", help="exponential moving average of G's weights, exported and "
                       "evaluated (bare: 0.999)", **_optional_number(0.999))
    group.add_argument("--ema-start", type=int, default=d.ema_start, metavar="STEP",
                       help="generator step from which the average starts (default: %(default)s)")
    group.add_argument("--feature-matching", type=float, default=d.feature_matching, metavar="WEIGHT",
                       help="feature matching term in G's loss, Salimans et al. 2016 (default: %(default)s)")
    group.add_argument("--augment", choices=("diffaugment", "ada"), default=d.augment,
                       help="differentiable augmentation of D's inputs: DiffAugment (fixed p) or ADA (adaptive p)")
    group.add_argument("--augment-policy", default=d.augment_policy, metavar="OPS",
                       help="comma list of color, translation, cutout (default: %(default)s)")
    group.add_argument("--augment-p", type=float, default=d.augment_p, metavar="P",
                       help="augmentation probability (default: 1 for diffaugment, ADA's start value 0)")
    group.add_argument("--ada-target", type=float, default=d.ada_target,
                       help="ADA's target for E[sign(D(real) - threshold)] (default: %(default)s)")
    group.add_argument("--unroll", type=int, default=d.unroll, metavar="K",
                       help="unrolled GAN: G's loss through K simulated D updates (default: %(default)s)")
    group.add_argument("--unroll-optimizer", choices=("discriminator", "sgd"), default=d.unroll_optimizer,
                       help="the optimizer the unrolling simulates: D's own, with its state, or plain SGD "
                            "at --unroll-lr (default: %(default)s)")
    group.add_argument("--unroll-lr", type=float, default=d.unroll_lr, metavar="LR",
                       help="learning rate of --unroll-optimizer sgd")
    group.add_argument("--progressive", action="store_true",
                       help="progressive growing from 4x4 to the image size (DCGAN family)")
    group.add_argument("--progressive-steps", type=int, default=d.progressive_steps, metavar="N",
                       help="generator steps per resolution (default: an equal share of training)")
    group.add_argument("--fade-steps", type=int, default=d.fade_steps, metavar="N",
                       help="steps of each new resolution's fade-in (default: half a phase)")
    group.add_argument("--clip-grad-norm", type=float, default=d.clip_grad_norm, metavar="NORM",
                       help="clip each player's global gradient norm")
    group.add_argument("--historical-averaging", type=float, default=d.historical_averaging, metavar="WEIGHT",
                       help="penalty WEIGHT * ||theta - mean of past theta||^2 for both players (default: %(default)s)")
    group = parser.add_argument_group("scale and survive")
    group.add_argument("--strategy", choices=("default", "mirrored", "multiworker", "tpu"), default=d.strategy,
                       help="default: one device; mirrored: all GPUs (or --devices); multiworker: from TF_CONFIG; "
                            "tpu (default: %(default)s)")
    group.add_argument("--devices", type=int, default=d.devices, metavar="N",
                       help="mirrored: N replicas; without N GPUs the CPU is split into N logical devices")
    group.add_argument("--sync-bn", action="store_true", help="batch norm statistics over all replicas")
    group.add_argument("--precision", choices=("float32", "mixed_bfloat16", "mixed_float16", "auto"),
                       default=d.precision, help="auto: what is fastest on this hardware (default: %(default)s)")
    group.add_argument("--checkpoint-every", type=int, default=d.checkpoint_every, metavar="EPOCHS",
                       help="epochs between checkpoints; 0: none (default: %(default)s)")
    group.add_argument("--keep-checkpoints", type=int, default=d.keep_checkpoints, metavar="K",
                       help="keep the last K checkpoints (default: %(default)s)")
    group.add_argument("--checkpoint-dir", default=d.checkpoint_dir,
                       help="root of checkpoints; a run with the same --run-name resumes (default: %(default)s)")
    group.add_argument("--deterministic", action="store_true",
                       help="deterministic TensorFlow ops: the same command gives the same weights (slower)")
    group.add_argument("--steps-per-execution", type=int, default=d.steps_per_execution, metavar="K",
                       help="train steps run in the graph per call (NaN checks and TensorBoard writes happen per "
                            "block, still for every step); default: the largest divisor of the epoch <= 100")
    group.add_argument("--log-every", type=int, default=d.log_every, metavar="STEPS",
                       help="TensorBoard batch_* scalars of every N-th step (default: %(default)s, every step)")
    group = parser.add_argument_group("metrics during training (TensorBoard <logdir>/<run>/metrics, history, config.json)")
    group.add_argument("--metrics", default=d.metrics, metavar="LIST",
                       help="comma-separated fid|fcd|kid|is|pr|dc|modes, or none (default: the dataset's; digits: "
                            "fcd,kid; stacked_digits, ring8, grid25: modes; others: none)")
    group.add_argument("--metrics-every", type=int, default=d.metrics_every, metavar="EPOCHS",
                       help="epochs between evaluations, plus the first and last epoch (default: %(default)s)")
    group.add_argument("--metrics-samples", type=int, default=d.metrics_samples, metavar="N",
                       help="generated samples per evaluation (default: ring8, grid25 2500; stacked_digits 25600; "
                            "else 1000)")
    group.add_argument("--features", default=d.features, metavar="NAME",
                       help="feature network: inception | keras_inception | classifier:<dataset> (default: "
                            "classifier:digits for digits, raw coordinates for 2-D points, else inception)")
    group = parser.add_argument_group("run")
    group.add_argument("--seed", type=int, default=d.seed, help="default: %(default)s")
    group.add_argument("--run-name", default=d.run_name, help="default: <dataset>-<loss>[-p<p>]-s<seed>")
    group.add_argument("--output", default=d.output, help="root of exported models (default: %(default)s)")
    group.add_argument("--logdir", default=d.logdir, help="root of TensorBoard logs (default: %(default)s)")
    group.add_argument("--dry-run", action="store_true", help="print the resolved config as JSON and exit")


def config_from_args(args):
    return TrainConfig.from_dict(vars(args))


def run_train(args):
    config = config_from_args(args).resolved()
    import_tensorflow_quietly()
    from kgan import distribute, run

    if not args.dry_run:  # first: it configures TensorFlow's devices (--devices, multi-worker)
        distribute.get_strategy(config.strategy, config.devices)
    run.validate(config)
    if args.dry_run:
        print(config.to_json())
        return 0
    run.train(config)
    return 0


def add_generate_arguments(parser):
    parser.add_argument("--model", required=True, help="an exported generator (saved_models/<run>/generator)")
    parser.add_argument("--out", required=True, help="NAME.png (a picture) or NAME.npz (the arrays)")
    parser.add_argument("--num", type=int, default=64, help="number of samples (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=0, help="the same seed gives the same samples (default: %(default)s)")
    parser.add_argument("--truncation", type=float, default=0.0,
                        help="truncation trick: latent components within [-T, T]; 0: none (default: %(default)s)")
    parser.add_argument("--labels", type=_int_list, metavar="LIST",
                        help="conditional generators: class ids, e.g. 3 or 0,1,2, repeated to --num samples "
                             "(default: 0, 1, ..., K-1 in turn)")
    parser.add_argument("--interpolate", type=int, metavar="K",
                        help="write latent interpolations of K steps instead: a linear and a spherical row per pair")
    parser.add_argument("--pairs", type=int, default=4, help="pairs of endpoints for --interpolate (default: %(default)s)")


def run_generate(args):
    import_tensorflow_quietly()
    from kgan import generate

    generate.generate(args.model, args.out, num=args.num, seed=args.seed, truncation=args.truncation,
                      interpolate_steps=args.interpolate, pairs=args.pairs, labels=args.labels)
    print(f"kgan: wrote {os.path.abspath(args.out)}")
    return 0


def add_export_arguments(parser):
    parser.add_argument("--run", required=True, metavar="NAME", help="run name (a folder under --output)")
    parser.add_argument("--output", default=TrainConfig().output, help="root of exported models (default: %(default)s)")


def run_export(args):
    import_tensorflow_quietly()
    from kgan import run

    path = run.export_run(args.run, args.output)
    print(f"kgan: exported {args.run} to {path}")
    return 0


def add_evaluate_arguments(parser):
    from kgan.evaluate import DEFAULT_NUM_REAL  # no TensorFlow import
    from kgan.names import METRICS

    parser.add_argument("--model", required=True, help="an exported generator (saved_models/<run>/generator)")
    parser.add_argument("--dataset", required=True, help="the real data to compare with (e.g. digits)")
    parser.add_argument("--metrics", default=None, metavar="LIST",
                        help=f"comma-separated: {', '.join(METRICS)} (default: the dataset's, e.g. digits: "
                             "fcd,kid; else fid,kid)")
    parser.add_argument("--num-samples", type=int, default=None,
                        help="generated samples (default: ring8, grid25 2500; stacked_digits 25600; else 10000)")
    parser.add_argument("--num-real", type=int, default=DEFAULT_NUM_REAL,
                        help="real examples, at most (default: %(default)s)")
    parser.add_argument("--features", default=None, metavar="NAME",
                        help="inception | keras_inception | classifier:<dataset> (default: classifier:<dataset> "
                             "where kgan has one, else inception)")
    parser.add_argument("--seed", type=int, default=0, help="latent seed (default: %(default)s)")
    parser.add_argument("--data-dir", default=None, help="TensorFlow Datasets directory with prepared data")
    parser.add_argument("--json", default=None, metavar="OUT", help="also write the report to this JSON file")


def _check_json_path(path):
    """Raises UsageError unless `--json PATH` names a file kgan can write."""
    from kgan.errors import UsageError

    parent = os.path.dirname(os.path.abspath(path))
    if os.path.isdir(path):
        raise UsageError(f"--json {path} is a directory: name a file, e.g. {os.path.join(path, 'report.json')}")
    if not os.path.isdir(parent):
        raise UsageError(f"--json: directory {parent} does not exist")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise UsageError(f"--json: directory {parent} is not writable")


def run_evaluate(args):
    from kgan import evaluate

    evaluate.check_arguments(args.num_samples, args.num_real, args.seed)  # before anything is done
    if args.json is not None:
        _check_json_path(args.json)
    import_tensorflow_quietly()
    report = evaluate.evaluate(args.model, args.dataset, metrics=args.metrics, num_samples=args.num_samples,
                               features=args.features, seed=args.seed, num_real=args.num_real,
                               data_dir=args.data_dir, progress=os.isatty(1))
    for name, value in report["metrics"].items():
        print(f"{name:>12s} {value:.6g}")
    for name, label in report["labels"].items():
        print(f"  {name}: {label}")
    features = report["features"]
    if "feature_label" in features:
        print(f"  {features['feature_network']}: {features['feature_label']}")
    if "mode_classifier" in features:
        print(f"  mode classifier: {features['mode_classifier']}")
    if args.json:
        from kgan import atomic

        atomic.write_json(report, args.json)
        print(f"kgan: wrote {os.path.abspath(args.json)}")
    return 0


def add_compare_arguments(parser):
    from kgan import compare

    compare.add_arguments(parser)


def run_compare(args):
    import_tensorflow_quietly()
    from kgan import compare

    return compare.main(args)


COMMANDS = {
    "train": ("train a GAN (the paper's defaults; embedded digits data)", add_train_arguments, run_train),
    "generate": ("samples or latent interpolations from an exported generator", add_generate_arguments, run_generate),
    "export": ("export a run's generator again from its saved weights", add_export_arguments, run_export),
    "evaluate": ("FID/FCD, KID, IS, precision/recall, density/coverage, modes of an exported generator",
                 add_evaluate_arguments, run_evaluate),
    "compare": ("train a grid of losses x datasets x seeds; tables and plots", add_compare_arguments, run_compare),
}


def build_parser():
    parser = _Parser(prog="kgan", description="Train, evaluate and export GANs with Keras 3.")
    parser.add_argument("--version", action="version", version=f"kgan {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    subparsers.required = True
    for name, (help_text, add_arguments, handler) in COMMANDS.items():
        sub = subparsers.add_parser(name, help=help_text, description=help_text)
        add_arguments(sub)
        sub.set_defaults(handler=handler)
    return parser


def main(argv=None):
    """Entry point of the `kgan` console script. Returns (and exits with) the exit code."""
    args = build_parser().parse_args(argv)
    try:
        code = args.handler(args)
    except KeyboardInterrupt:
        print(f"kgan {args.command}: interrupted", file=sys.stderr)
        code = 130
    except Exception as error:  # noqa: BLE001 - user errors become one line, the rest re-raise
        from kgan import atomic
        from kgan.errors import KganError, TerminatedError

        if not isinstance(error, KganError):
            if not atomic.is_disk_full(error):
                raise
            # A full disk outside kgan's own writers (TensorBoard, a cache): still one line.
            error = atomic.disk_full_error(getattr(error, "filename", None) or os.getcwd())
        line = str(error) if isinstance(error, TerminatedError) else f"error: {error}"
        print(f"kgan {args.command}: {line}", file=sys.stderr)
        code = error.exit_code
    sys.exit(code)


if __name__ == "__main__":
    main()
