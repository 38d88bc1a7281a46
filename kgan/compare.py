"""`kgan compare`: a grid of losses x datasets x seeds, one JSON line per finished run, tables and plots.

Every run of a grid trains for the same number of generator updates (`steps`; a WGAN step
holds its 5 critic updates), evaluates every `eval_every` steps, and appends one JSON line with
its settings, final metrics and curves to the results file as soon as it finishes. A compare
that is interrupted picks up where it stopped: runs whose key is already in the results file
are skipped. Aggregation (mean +- standard error over seeds) and plots read only that file.

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

Presets:
    recommended      per dataset: ring8/grid25 PacGAN's (Adam 1e-4, beta1 0.8, batch 100,
                     latent 2), digits/stacked_digits DCGAN's (Adam 2e-4, beta1 0.5, batch 64,
                     latent 100)
    paper            the Minkowski paper's for every loss and dataset: Adam 2e-4 / 0.5 / 0.999,
                     batch 64, latent 100, and D weight clipping 0.01 for every loss
"""

import collections
import csv
import dataclasses
import json
import math
import os
import sys
import time

import numpy as np

from kgan import stats
from kgan.config import TrainConfig
from kgan.errors import UsageError
from kgan.presets import DATASETS, LOSS_SETTINGS, MIXTURES, PRESETS, TECHNIQUES, minkowski_p  # noqa: F401 - the tables live with the config

#: Generated samples per evaluation, per dataset (the literature's sizes where affordable).
EVAL_SAMPLES = {"ring8": 2500, "grid25": 2500, "stacked_digits": 10000, "digits": 1797}
#: The metric each dataset's curves and p-ablation use, and whether higher is better.
MAIN_METRIC = {"ring8": ("modes_captured", True), "grid25": ("modes_captured", True), "stacked_digits": ("modes_captured", True), "digits": ("fcd", False)}


@dataclasses.dataclass(frozen=True)
class RunSpec:
    """One run of a compare grid."""

    setting: str  # a LOSS_SETTINGS name, minkowski as "minkowski_p<p>", "+<technique>" if any
    dataset: str
    seed: int
    preset: str = "recommended"
    steps: int = 2000
    eval_every: int = 500

    @property
    def key(self):
        return f"{self.preset}/{self.dataset}/{self.setting}/{self.steps}/s{self.seed}"

    def config(self):
        """The TrainConfig of this run (dataset preset + loss setting + seed)."""
        overrides = dict(PRESETS[self.preset][self.dataset])
        loss, _, technique = self.setting.partition("+")
        if minkowski_p(loss) is not None:
            overrides.update(LOSS_SETTINGS["minkowski"], p=minkowski_p(loss))
        else:
            overrides.update(LOSS_SETTINGS[loss])
        overrides.update(TECHNIQUES[technique or "none"][0])
        if self.preset == "paper":
            overrides["clip"] = 0.01  # the paper clips D for every loss
        name = self.key.replace("/", "-")
        return TrainConfig(dataset=self.dataset, seed=self.seed, run_name=name, **overrides)


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
        RunSpec(name, dataset, seed, preset, steps, min(eval_every, steps))
        for seed in range(seeds)
        for dataset in datasets
        for name in names
        if _applies(name, dataset)  # image-only techniques skip the 2-D mixtures
    ]


# ---- one run ------------------------------------------------------------------------------------


class Evaluator:
    """compare's scoring: `kgan.evaluate.Evaluator` with each dataset's protocol, reporting under
    the column names of the results files (modes_captured, high_quality_percent, reverse_kl;
    fcd, kid on the digits classifier)."""

    _COLUMNS = {"modes": "modes_captured", "hq_percent": "high_quality_percent"}

    def __init__(self, dataset_name, cache_dir=None):
        from kgan import data, evaluate

        self.dataset = dataset_name
        if dataset_name == "digits":
            images, _ = data.digits_arrays()
            self._evaluator = evaluate.Evaluator(("fcd", "kid"), images, features="classifier:digits",
                                                 cache_dir=cache_dir)
        else:
            self._evaluator = evaluate.Evaluator(("modes",), None, dataset=dataset_name, cache_dir=cache_dir)

    @property
    def label(self):
        if self.dataset in MIXTURES:
            return f"mode metrics on {EVAL_SAMPLES[self.dataset]} samples (PacGAN protocol)"
        network = self._evaluator.features or self._evaluator.classifier
        return f"{EVAL_SAMPLES[self.dataset]} samples; features: {network.label}"

    def __call__(self, samples):
        results = self._evaluator(samples)
        results.pop("kid_std", None)
        return {self._COLUMNS.get(name, name): value for name, value in results.items()}


def run_one(spec, cache_dir=None, keep_samples=None):
    """Trains one RunSpec and returns its result record (a JSON-serialisable dict)."""
    import keras

    from kgan import data, run

    config = spec.config()
    keras.utils.set_random_seed(config.seed)
    dataset = data.load(config.dataset, seed=config.seed, with_labels=config.conditional)
    pipeline = data.pipeline(dataset, config.batch_size, config.d_steps, seed=config.seed).repeat()
    gan = run.build(config, dataset.shape, dataset.num_classes, total_steps=spec.steps)
    evaluator = Evaluator(spec.dataset, cache_dir)
    curves = collections.defaultdict(list)

    class Evaluate(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            curves["step"].append((epoch + 1) * spec.eval_every)
            for name, value in (logs or {}).items():
                curves[name].append(float(value))
            samples = gan.generate(EVAL_SAMPLES[spec.dataset], seed=10_000 + spec.seed)
            finite = bool(np.all(np.isfinite(samples)))
            for name, value in (evaluator(samples) if finite else {}).items():
                curves[name].append(value)

    start = time.time()
    gan.fit(pipeline, steps_per_epoch=spec.eval_every, epochs=spec.steps // spec.eval_every,
            verbose=0, callbacks=[*run.toolbox_callbacks(gan), Evaluate()], shuffle=False)
    seconds = time.time() - start
    samples = gan.generate(EVAL_SAMPLES[spec.dataset], seed=10_000 + spec.seed)
    finite = bool(np.all(np.isfinite(samples)))
    final = evaluator(samples) if finite else {}
    if keep_samples:
        os.makedirs(keep_samples, exist_ok=True)
        np.savez_compressed(os.path.join(keep_samples, spec.key.replace("/", "-") + ".npz"),
                            samples=samples[: 2500 if samples.ndim == 2 else 64].astype("float32"))
    record = dataclasses.asdict(spec)
    record.update(
        key=spec.key,
        config=config.to_dict(),
        evaluation=evaluator.label,
        final=final,
        diverged=not finite,
        final_losses={k: curves[k][-1] for k in ("d_loss", "g_loss") if curves.get(k)},
        curves=dict(curves),
        seconds=round(seconds, 2),
    )
    return record


# ---- the grid -------------------------------------------------------------------------------------


def finished_keys(results_path):
    """Keys of the runs already in a results file (a torn last line is ignored)."""
    keys = set()
    if not os.path.exists(results_path):
        return keys
    with open(results_path) as handle:
        for line in handle:
            try:
                keys.add(json.loads(line)["key"])
            except (json.JSONDecodeError, KeyError):
                continue
    return keys


def append_result(results_path, record):
    """Appends one JSON line and fsyncs it: a finished run is never lost."""
    with open(results_path, "a") as handle:
        handle.write(json.dumps(record) + "\n")
        handle.flush()
        os.fsync(handle.fileno())


def _worker(args):
    spec, cache_dir, keep_samples = args
    from kgan.quiet import import_tensorflow_quietly

    import_tensorflow_quietly()
    return run_one(spec, cache_dir, keep_samples)


def run_grid(specs, results_path, workers=1, cache_dir=None, keep_samples=None, print_fn=print):
    """Runs every spec not yet in `results_path`, appending each result when it finishes."""
    os.makedirs(os.path.dirname(os.path.abspath(results_path)), exist_ok=True)
    done = finished_keys(results_path)
    todo = [s for s in specs if s.key not in done]
    print_fn(f"kgan compare: {len(specs)} runs in the grid, {len(specs) - len(todo)} already in "
             f"{results_path}, {len(todo)} to run with {workers} worker(s)")
    if not todo:
        return 0
    if workers > 1:
        # Prepare the shared digits classifier once, so workers do not train it concurrently.
        if any(s.dataset in ("digits", "stacked_digits") for s in todo):
            from kgan import metrics

            metrics.get_feature_extractor("classifier:digits", **({"cache_dir": cache_dir} if cache_dir else {}))
        import concurrent.futures
        import multiprocessing

        context = multiprocessing.get_context("spawn")
        with concurrent.futures.ProcessPoolExecutor(workers, mp_context=context) as pool:
            futures = {pool.submit(_worker, (s, cache_dir, keep_samples)): s for s in todo}
            for i, future in enumerate(concurrent.futures.as_completed(futures), 1):
                record = future.result()
                append_result(results_path, record)
                print_fn(f"  [{i}/{len(todo)}] {record['key']}: {_summary(record)}")
    else:
        for i, spec in enumerate(todo, 1):
            record = run_one(spec, cache_dir, keep_samples)
            append_result(results_path, record)
            print_fn(f"  [{i}/{len(todo)}] {record['key']}: {_summary(record)}")
    return len(todo)


def _summary(record):
    final = ", ".join(f"{k} {v:.3g}" for k, v in record["final"].items())
    return f"{final or 'diverged'} ({record['seconds']:.0f} s)"


# ---- aggregation ------------------------------------------------------------------------------------


def load_results(results_path):
    records = []
    with open(results_path) as handle:
        for line in handle:
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError:
                continue
    return records


def aggregate(records):
    """{(preset, dataset, setting, steps): {metric: (mean, stderr, n)}, plus 'seeds' and 'diverged'}."""
    groups = collections.defaultdict(list)
    for record in records:
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
MIXTURE_COLUMNS = ("modes_captured", "high_quality_percent", "reverse_kl")


def _fmt(cell, digits=2):
    mean, stderr, n = cell
    if n == 0:
        return "-"
    if not np.isfinite(stderr):
        return f"{mean:.{digits}f}"
    return f"{mean:.{digits}f}+-{stderr:.{digits}f}"


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
                    cells += [_fmt(row.get(c, (0, 0, 0)), 2 if c != "high_quality_percent" else 1) for c in MIXTURE_COLUMNS]
                rows.append([s, *cells, "/".join(seeds)])
            rows += [[name, *cells, "10"] for name, *cells in PACGAN_PUBLISHED]
            out[f"mixtures-{suffix}"] = (header, rows)
        # Image datasets.
        for dataset, columns in (("stacked_digits", ("modes_captured", "reverse_kl")), ("digits", ("fcd", "kid"))):
            if not any(k[1] == dataset for k in table if k[0] == preset and k[3] == steps):
                continue
            header = ["setting", *columns, "seeds", "diverged"]
            rows = []
            for s in settings:
                row = table.get((preset, dataset, s, steps))
                if row:
                    rows.append([s, *[_fmt(row.get(c, (0, 0, 0)), 3 if c == "kid" else 2) for c in columns],
                                 str(row["seeds"]), str(row["diverged"])])
            out[f"{dataset}-{suffix}"] = (header, rows)
        # p ablation, like the paper's Table 3.
        ps = sorted({minkowski_p(s) for s in settings if minkowski_p(s) is not None and "+" not in s})
        if len(ps) > 1:
            datasets = [d for d in DATASETS if any(k[1] == d for k in table if k[0] == preset and k[3] == steps)]
            header = ["p", *[f"{d} {MAIN_METRIC[d][0]}" for d in datasets]]
            rows = []
            for p in ps:
                s = f"minkowski_p{p:g}"
                rows.append([f"{p:g}", *[_fmt(table.get((preset, d, s, steps), {}).get(MAIN_METRIC[d][0], (0, 0, 0))) for d in datasets]])
            rows.append(["paper (CIFAR-10 FID)", *["p=1..8: 128.4, 123.6, 105.8, 99.6, 108.5, 114.8, 137.4, 149.6" if i == 0 else "" for i in range(len(datasets))]])
            out[f"p-ablation-{suffix}"] = (header, rows)
    return out


def _ordered_settings(records):
    seen = []
    for r in records:
        if r["setting"] not in seen:
            seen.append(r["setting"])
    order, techniques = list(LOSS_SETTINGS), list(TECHNIQUES)

    def key(setting):
        loss, _, technique = setting.partition("+")
        p = minkowski_p(loss)
        return techniques.index(technique or "none"), order.index("minkowski" if p is not None else loss), p or 0

    return sorted(seen, key=key)


def markdown(header, rows):
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def write_tables(records, out_dir):
    """Writes <name>.md and <name>.csv for every table; returns the paths."""
    os.makedirs(out_dir, exist_ok=True)
    paths = []
    for name, (header, rows) in tables(records).items():
        md = os.path.join(out_dir, f"{name}.md")
        with open(md, "w") as handle:
            handle.write(markdown(header, rows))
        csv_path = os.path.join(out_dir, f"{name}.csv")
        with open(csv_path, "w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(header)
            writer.writerows(rows)
        paths += [md, csv_path]
    return paths


# ---- plots ------------------------------------------------------------------------------------


def _mean_curve(records, name):
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
    for r in records:
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
        metric, _ = MAIN_METRIC[dataset]
        figure, ax = plt.subplots(figsize=(7, 4.5))
        for s in _ordered_settings([groups[k][0] for k in groups if k[:3] == (preset, dataset, steps)]):
            x, y = _mean_curve(groups[(preset, dataset, steps, s)], metric)
            if x is not None:
                ax.plot(x, y, label=s)
        ax.set_title(f"{dataset}: {metric} over training ({preset})")
        ax.set_xlabel("generator step")
        if ax.lines:
            ax.legend(fontsize="x-small", ncol=2)
        path = os.path.join(out_dir, f"{metric}-over-training-{suffix}.png")
        figure.tight_layout()
        figure.savefig(path, dpi=80)
        plt.close(figure)
        paths.append(path)
        if samples_dir:
            paths += _sample_panels(groups, preset, dataset, steps, samples_dir, out_dir, suffix, plt)
    return paths


def _sample_panels(groups, preset, dataset, steps, samples_dir, out_dir, suffix, plt):
    from kgan import data, plots

    settings = _ordered_settings([groups[k][0] for k in groups if k[:3] == (preset, dataset, steps)])
    found = []
    for s in settings:
        key = RunSpec(s, dataset, 0, preset, steps).key.replace("/", "-")
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
    parser.add_argument("--workers", type=int, default=1, help="parallel processes (default: %(default)s)")
    parser.add_argument("--out", default="compare", help="directory for results.jsonl, tables, plots, samples (default: %(default)s)")
    parser.add_argument("--quick", action="store_true", help="tiny grid for a smoke test: 2 losses, ring8, 1 seed, 40 steps")
    parser.add_argument("--report-only", action="store_true", help="only rebuild tables and plots from the results file")


def _split(text, cast=str):
    try:
        return [cast(x.strip()) for x in text.split(",") if x.strip()]
    except ValueError:
        raise UsageError(f"cannot parse {text!r} as a comma-separated list") from None


def main(args, print_fn=print):
    if args.quick:
        losses, ps, datasets, seeds, steps, eval_every = (QUICK[k] for k in ("losses", "ps", "datasets", "seeds", "steps", "eval_every"))
    else:
        losses, ps, datasets = _split(args.losses), _split(args.p, float), _split(args.datasets)
        seeds, steps, eval_every = args.seeds, args.steps, args.eval_every
    techniques = _split(getattr(args, "techniques", "none")) or ["none"]
    if args.workers < 1 or seeds < 1:
        raise UsageError("--workers and --seeds must be >= 1")
    specs = grid(losses, ps, datasets, seeds, args.preset, steps, eval_every, techniques)
    results = os.path.join(args.out, "results.jsonl")
    samples_dir = os.path.join(args.out, "samples")
    start = time.time()
    if not args.report_only:
        run_grid(specs, results, args.workers, keep_samples=samples_dir, print_fn=print_fn)
    if not os.path.exists(results):
        raise UsageError(f"no results file at {results}")
    records = load_results(results)
    written = write_tables(records, args.out) + write_plots(records, args.out, samples_dir)
    print_fn(f"kgan compare: {len(records)} runs in {results}; wrote {len(written)} tables and plots to "
             f"{os.path.abspath(args.out)} ({time.time() - start:.0f} s)")
    for path in written:
        if path.endswith(".md"):
            print_fn(f"\n{os.path.basename(path)}:\n" + open(path).read())
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main(sys.argv[1:]))
