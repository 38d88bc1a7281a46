"""The `kgan` command line: `kgan train` (also `python train.py`).

Parsing happens before TensorFlow is imported, so `--help` and flag errors are instant. Errors
the user can cause end with one line on stderr and exit code 2; nothing written before is lost.
TensorFlow's start-up log lines are silenced unless TF_CPP_MIN_LOG_LEVEL is set by the user.
"""

import argparse
import dataclasses
import os
import sys

from kgan import __version__, config, presets
from kgan.config import TrainConfig
from kgan.errors import UsageError
from kgan.quiet import import_tensorflow_quietly


class _Parser(argparse.ArgumentParser):
    """ArgumentParser whose errors are one line: `kgan train: error: ... (see --help)`."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _int_list(text):
    """argparse type: "3" or "0,1,2" -> [ints] (>= 0)."""
    try:
        values = [int(v) for v in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated class ids, e.g. 0,1,2; got {text!r}") from None
    if not values or min(values) < 0:
        raise argparse.ArgumentTypeError(f"class ids must be >= 0; got {text!r}")
    return values


def _default_text(value):
    return f"{value:g}" if isinstance(value, float) else str(value)


def _train_flag(group, field):
    """One `kgan train` flag from a `TrainConfig` field's metadata (`kgan.config._field`).

    The flag's argparse default is SUPPRESS: the parsed namespace holds only the flags given, so
    `config_from_args` can tell them from a --preset's values (the field's default is in the help).
    """
    meta, default = field.metadata, field.default
    help_text = meta["help"]
    if meta["choices"] is not None:
        help_text = f"{help_text}; " if help_text else ""
        help_text += "one of " + ", ".join(str(c) for c in meta["choices"])
    kwargs = {"metavar": meta["metavar"]}
    if field.type in (bool, "bool"):
        kwargs = {"action": "store_true"}
    elif meta["bare"] is not None:
        kwargs.update(type=float, nargs="?", const=meta["bare"])
        help_text += f" (bare: {_default_text(meta['bare'])})"
    else:
        kwargs["type"] = {"int": int, "float": float}.get(getattr(field.type, "__name__", field.type), str)
    if default not in (None, False, ""):
        help_text += f" (default: {_default_text(default)})"
    group.add_argument(config.flag(field.name), help=help_text.strip() or None, default=argparse.SUPPRESS, **kwargs)


def add_train_arguments(parser):
    """`kgan train`'s flags: --preset, then one per `TrainConfig` field, in the fields' groups and order."""
    parser.add_argument("--preset", choices=sorted(presets.PRESETS), default=None,
                        help="a named setting of the optimiser and batch for the dataset (kgan/presets.py; "
                             "protocol: PacGAN's on ring8/grid25, DCGAN's on the images, for every loss; "
                             "recommended: that batch with the loss's own paper's optimiser and critic steps; "
                             "paper: the Minkowski paper's, D clipped at 0.01); the flags given override it")
    groups = {}
    for field in dataclasses.fields(TrainConfig):
        group = field.metadata["group"]
        if group not in groups:
            groups[group] = parser.add_argument_group(group)
        _train_flag(groups[group], field)
    groups[config.RUN].add_argument("--dry-run", action="store_true",
                                    help="print the resolved config as JSON and exit")


def config_from_args(args):
    """The `TrainConfig` of parsed `kgan train` flags: the defaults, then the --preset's values
    for the dataset, then the flags given (stylegan2-ada style: a named preset that flags override)."""
    given = {name: value for name, value in vars(args).items() if name in TrainConfig.field_names()}
    preset = getattr(args, "preset", None)
    if preset is None:
        return TrainConfig(**given)
    dataset = given.get("dataset", TrainConfig().dataset)
    if dataset not in presets.PRESETS[preset]:
        raise UsageError(f"--preset {preset} has settings for {', '.join(presets.PRESETS[preset])}, not {dataset}")
    return TrainConfig(**{**presets.train_fields(preset, dataset, given), **given})


def run_train(args):
    train_config = config_from_args(args).resolved()  # before TensorFlow: a bad --preset is instant
    import_tensorflow_quietly()
    from kgan import run

    if args.dry_run:
        run.validate(train_config)
        print(train_config.to_json())
        return 0
    run.train(train_config)  # validates once, after the strategy has configured the devices
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
