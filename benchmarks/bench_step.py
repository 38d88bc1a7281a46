"""Training-step speed: kgan's `GAN.fit` path against a hand-written reference step, in one run.

DCGAN 32x32x3 (kgan.networks' DCGAN pair: G 100 -> 4x4x256 -> 8 -> 16 -> 32, D 64-128-256),
batch 64, one discriminator + one generator update per step. Every variant is built and warmed
up first, then all run in interleaved rounds (A, B, C, ..., A, B, C, ...); each number is the
median over all its timed steps, so ratios of one run compare like with like even when the
machine's load drifts:

- reference: a plain float32 step written here (tf.function, two GradientTapes, Adam,
  non-saturating loss with reduce_mean; no kgan training code; the same networks);
- kgan: `GAN.fit` (per-batch wall time from a callback) for non_saturating, minkowski p=4,
  WGAN-GP (wasserstein + GradientPenalty(10), no batch norm in D) and WGAN with d_steps=5 and
  clipping, in float32 and mixed_bfloat16, with and without XLA (`jit_compile`);
- pipeline: kgan's default configuration (the precision `--precision auto` picks on this
  machine, no XLA) fed by the real tf.data pipeline (kgan.data.pipeline over uint8 images
  decoded on the fly) against the same step on one in-memory tensor;
- peak: 8 chained 2048x2048 matmuls in one tf.function, float32 and bfloat16 (best of 7).

Achieved GFLOP/s use an analytic count of the step's multiply-adds (2 FLOPs each) in every
Conv/Dense layer: forward passes count 1x, a backward pass 2x (input and weight gradients).
A D update: G forward (1x) + D forward and backward on real and fake (2 x 3x). A G update:
G forward and backward (3x) + D forward and backward (3x). A WGAN-GP critic update adds a D
forward on the interpolates (1x), their input gradient (1x: no weight gradients), and its
double backward (2x: per layer, the input-gradient convolution's gradient with respect to its
upstream and to its weights). kgan's discriminators do not back-propagate the activations'
exactly-zero second derivative (`kgan.networks.LeakyReLU`); with Keras's activations that
path would add the forward's input and weight gradients again (2x more).

    python benchmarks/bench_step.py            # full table (about 6 minutes on 2 idle cores)
    python benchmarks/bench_step.py --quick    # smoke run: tiny networks, few steps
    python benchmarks/bench_step.py --json out.json
"""

import argparse
import json
import os
import platform
import statistics
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from kgan import data, distribute, gan, networks, penalties  # noqa: E402

# ---- FLOPs ----------------------------------------------------------------------------------


def forward_flops(model):
    """2 x multiply-adds of one example's forward pass through the Conv/Dense layers."""
    total = 0
    for layer in model.layers:
        inner = getattr(layer, "layer", layer)  # SpectralNormalization wraps a layer
        if isinstance(inner, keras.layers.Dense):
            total += 2 * inner.kernel.shape[0] * inner.kernel.shape[1]
        elif isinstance(inner, keras.layers.Conv2DTranspose):
            _, h, w, _ = layer.input.shape  # each input pixel scatters a k x k x c_out patch
            kh, kw, c_out, c_in = inner.kernel.shape
            total += 2 * h * w * kh * kw * c_in * c_out
        elif isinstance(inner, keras.layers.Conv2D):
            _, h, w, _ = layer.output.shape
            kh, kw, c_in, c_out = inner.kernel.shape
            total += 2 * h * w * kh * kw * c_in * c_out
    return total


def step_flops(generator, discriminator, batch, d_steps=1, gradient_penalty=False):
    g, d = forward_flops(generator), forward_flops(discriminator)
    d_update = g + 2 * 3 * d + (4 * d if gradient_penalty else 0)
    g_update = 3 * g + 3 * d
    return batch * (d_steps * d_update + g_update)


# ---- timing ---------------------------------------------------------------------------------
#
# Every variant is built and warmed up first; then all variants run in ROUNDS (variant A, B, C,
# ..., then A, B, C again), and each variant's number is the median over all its timed steps.
# Interleaving spreads any drift of the machine's load over every variant alike, so the ratios
# of one run stay meaningful on a shared machine.


class BatchTimer(keras.callbacks.Callback):
    def __init__(self):
        super().__init__()
        self.times = []

    def on_train_batch_begin(self, batch, logs=None):
        self._start = time.perf_counter()

    def on_train_batch_end(self, batch, logs=None):
        self.times.append(time.perf_counter() - self._start)


def set_precision(precision):
    keras.mixed_precision.set_global_policy(precision)


def make_pair(shape, latent, batch_norm=True):
    keras.utils.set_random_seed(0)
    return networks.build(shape, latent, batch_norm=batch_norm)


class Reference:
    """A float32 non-saturating step written without kgan's training code."""

    precision = "float32"

    def __init__(self, shape, latent, batch):
        set_precision("float32")
        generator, discriminator = make_pair(shape, latent)
        g_opt = keras.optimizers.Adam(2e-4, beta_1=0.5)
        d_opt = keras.optimizers.Adam(2e-4, beta_1=0.5)
        g_opt.build(generator.trainable_variables)
        d_opt.build(discriminator.trainable_variables)
        self.real = tf.random.uniform((batch, *shape), -1, 1)
        self.flops = step_flops(generator, discriminator, batch)

        @tf.function
        def step(real):
            z = tf.random.normal((batch, latent))
            with tf.GradientTape() as tape:
                fake = generator(z, training=True)
                real_logits = discriminator(real, training=True)
                fake_logits = discriminator(fake, training=True)
                d_loss = tf.reduce_mean(tf.nn.softplus(-real_logits) + tf.nn.softplus(fake_logits))
            d_opt.apply(tape.gradient(d_loss, discriminator.trainable_variables), discriminator.trainable_variables)
            z = tf.random.normal((batch, latent))
            with tf.GradientTape() as tape:
                g_loss = tf.reduce_mean(tf.nn.softplus(-discriminator(generator(z, training=True), training=True)))
            g_opt.apply(tape.gradient(g_loss, generator.trainable_variables), generator.trainable_variables)
            return d_loss, g_loss

        self.step = step

    def run(self, steps):
        times = []
        for _ in range(steps):
            start = time.perf_counter()
            d_loss, _ = self.step(self.real)
            d_loss.numpy()
            times.append(time.perf_counter() - start)
        return times


class KganFit:
    """kgan's `GAN.fit` path, timed per batch by a callback."""

    def __init__(self, shape, latent, batch, loss="non_saturating", precision="float32", jit_compile=False,
                 d_steps=1, gp=False, clip=None, dataset=None):
        self.precision = precision
        set_precision(precision)
        try:
            generator, discriminator = make_pair(shape, latent, batch_norm=not gp)
            self.model = gan.GAN(generator, discriminator, d_steps=d_steps, seed=0)
            self.model.compile(
                keras.optimizers.Adam(2e-4, beta_1=0.5), keras.optimizers.Adam(2e-4, beta_1=0.5),
                loss=loss, penalty=penalties.GradientPenalty(10.0, seed=0) if gp else None,
                weight_clip=clip, jit_compile=jit_compile,
            )
        finally:
            set_precision("float32")
        if dataset is None:
            dataset = tf.data.Dataset.from_tensors(tf.random.uniform((batch * d_steps, *shape), -1, 1)).repeat()
        self.iterator_source = dataset
        self.flops = step_flops(generator, discriminator, batch, d_steps, gp)

    def run(self, steps):
        set_precision(self.precision)
        try:
            timer = BatchTimer()
            self.model.fit(self.iterator_source, steps_per_epoch=steps, epochs=1, verbose=0, callbacks=[timer],
                           shuffle=False)
            return timer.times
        finally:
            set_precision("float32")


def time_interleaved(variants, steps, warmup, rounds):
    """{name: median ms} over `rounds` interleaved rounds of `steps` steps, after a warm-up."""
    for variant in variants.values():
        variant.run(warmup)  # traces, compiles, and warms the caches
    times = {name: [] for name in variants}
    for _ in range(rounds):
        for name, variant in variants.items():
            times[name] += variant.run(steps)
    return {name: 1e3 * statistics.median(t) for name, t in times.items()}


def real_pipeline(shape, batch, num_examples=6400):
    """kgan.data.pipeline over uint8 images converted to [-1, 1] on the fly (like tfds data)."""
    images = np.random.default_rng(0).integers(0, 256, (num_examples, *shape), dtype=np.uint8)
    source = tf.data.Dataset.from_tensor_slices(images).map(
        lambda x: tf.cast(x, tf.float32) / 127.5 - 1.0, num_parallel_calls=tf.data.AUTOTUNE
    )
    dataset = data.Dataset("bench", source, shape, num_examples)
    return data.pipeline(dataset, batch, seed=0).repeat()


def matmul_peak(dtype, n=2048, chain=8, repeats=7):
    """GFLOP/s of `chain` dependent n x n matmuls in one tf.function (one scalar copied out)."""
    a = tf.cast(tf.random.normal((n, n)) / n**0.5, dtype)  # keeps the chained product's scale

    @tf.function
    def chained(x):
        for _ in range(chain):
            x = tf.linalg.matmul(x, a)
        return tf.reduce_sum(tf.cast(x[:1, :1], tf.float32))

    chained(a).numpy()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        chained(a).numpy()
        times.append(time.perf_counter() - start)
    return chain * 2 * n**3 / min(times) / 1e9


def cpu_flags():
    try:
        with open("/proc/cpuinfo") as handle:
            flags = next((line for line in handle if line.startswith("flags")), "")
        return sorted(f for f in flags.split() if "amx" in f or "bf16" in f)
    except OSError:
        return []


# ---- main -----------------------------------------------------------------------------------


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny networks and few steps (a smoke run)")
    parser.add_argument("--steps", type=int, default=None, help="timed steps per variant and round (default 10; quick 3)")
    parser.add_argument("--rounds", type=int, default=None, help="interleaved rounds (default 5; quick 1)")
    parser.add_argument("--json", metavar="PATH", help="also write the results as JSON")
    parser.add_argument("--markdown", metavar="PATH", help="also write the table as Markdown (docs/performance.md's)")
    args = parser.parse_args(argv)

    shape, latent, batch = ((8, 8, 1), 16, 16) if args.quick else ((32, 32, 3), 100, 64)
    steps = args.steps or (3 if args.quick else 10)
    rounds = args.rounds or (1 if args.quick else 5)
    warmup = 2 if args.quick else 5
    default_precision, why = distribute.auto_precision(shape)

    peak = {"float32": matmul_peak(tf.float32, 256 if args.quick else 2048),
            "mixed_bfloat16": matmul_peak(tf.bfloat16, 256 if args.quick else 2048)}

    losses = {
        "non_saturating": {},
        "minkowski p=4": {"loss": {"class_name": "Minkowski", "config": {"p": 4.0}}},
        "WGAN-GP": {"loss": "wasserstein", "gp": True},
        "WGAN d_steps=5 + clip": {"loss": "wasserstein", "d_steps": 5, "clip": 0.01},
    }
    variants = {("reference (plain TF step)", "float32", False): Reference(shape, latent, batch)}
    for precision in ("float32", "mixed_bfloat16"):
        for jit in (False, True):
            for name, kwargs in losses.items():
                if jit and name != "non_saturating" and not args.quick:
                    continue  # XLA: one loss is enough to see whether it pays
                variants[(f"kgan {name}", precision, jit)] = KganFit(
                    shape, latent, batch, precision=precision, jit_compile=jit, **kwargs)
    # The default configuration (what --precision auto picks here, no XLA) fed by the real pipeline.
    pipeline_key = ("kgan non_saturating + tf.data pipeline", default_precision, False)
    variants[pipeline_key] = KganFit(shape, latent, batch, precision=default_precision,
                                     dataset=real_pipeline(shape, batch))

    ms = time_interleaved(variants, steps, warmup, rounds)
    rows = []
    ref_ms = ms[("reference (plain TF step)", "float32", False)]
    for key, variant in variants.items():
        name, precision, xla = key
        row = {"name": name, "precision": precision, "xla": xla, "ms": ms[key], "flops": variant.flops}
        row["images_per_s"] = batch / row["ms"] * 1e3
        row["speedup_vs_reference"] = ref_ms / row["ms"]
        row["gflops"] = row["flops"] / row["ms"] / 1e6
        row["fraction_of_peak"] = row["gflops"] / peak[row["precision"]]
        rows.append(row)

    def ms_of(name, precision, xla=False):
        return ms[(name, precision, xla)]

    default_ms = ms_of("kgan non_saturating", default_precision)
    pipeline_row = {"in_memory_ms": default_ms, "pipeline_ms": ms[pipeline_key], "overhead": ms[pipeline_key] / default_ms - 1}
    ratios = {
        "kgan_default_vs_reference": ref_ms / default_ms,
        "kgan_bfloat16_vs_reference": ref_ms / ms_of("kgan non_saturating", "mixed_bfloat16"),
        "kgan_xla_vs_no_xla_float32": ms_of("kgan non_saturating", "float32") / ms_of("kgan non_saturating", "float32", True),
        "wgan_gp_vs_plain_float32": ms_of("kgan WGAN-GP", "float32") / ms_of("kgan non_saturating", "float32"),
        "wgan_gp_vs_plain_bfloat16": ms_of("kgan WGAN-GP", "mixed_bfloat16") / ms_of("kgan non_saturating", "mixed_bfloat16"),
        "pipeline_overhead": pipeline_row["overhead"],
    }
    result = {
        "machine": {"platform": platform.platform(), "processor": platform.processor(), "cpu_count": os.cpu_count(),
                    "cpu_flags": cpu_flags(), "load_average": os.getloadavg(), "tensorflow": tf.__version__,
                    "keras": keras.__version__},
        "setup": {"shape": shape, "latent_dim": latent, "batch": batch, "steps_per_round": steps, "rounds": rounds,
                  "warmup": warmup},
        "matmul_peak_gflops": peak,
        "rows": rows,
        "pipeline": pipeline_row,
        "default": {"precision": default_precision, "why": why, "xla": False},
        "ratios": ratios,
    }

    print(f"DCGAN {shape[0]}x{shape[1]}x{shape[2]}, batch {batch}, median of {rounds} interleaved rounds x {steps} steps; "
          f"matmul peak fp32 {peak['float32']:.0f} GFLOP/s, bf16 {peak['mixed_bfloat16']:.0f} GFLOP/s; "
          f"load average {os.getloadavg()[0]:.2f}")
    print(f"kgan default here: {default_precision} ({why}), no XLA")
    print(f"{'variant':40} {'precision':15} {'xla':5} {'ms/step':>8} {'img/s':>7} {'x ref':>6} {'GFLOP/s':>8} {'% peak':>7}")
    for r in rows:
        print(f"{r['name']:40} {r['precision']:15} {str(r['xla']):5} {r['ms']:8.1f} {r['images_per_s']:7.0f} "
              f"{r['speedup_vs_reference']:6.2f} {r['gflops']:8.1f} {100 * r['fraction_of_peak']:6.1f}%")
    for key, value in ratios.items():
        print(f"{key}: {value:.3f}")
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(result, handle, indent=2)
    if args.markdown:
        with open(args.markdown, "w") as handle:
            handle.write(markdown(result))
    return result


def markdown(result):
    """The result as a Markdown table plus the ratios (what docs/performance.md quotes)."""
    setup, peak = result["setup"], result["matmul_peak_gflops"]
    shape = "x".join(str(v) for v in setup["shape"])
    lines = [
        f"DCGAN {shape}, batch {setup['batch']}, median of {setup['rounds']} interleaved rounds x "
        f"{setup['steps_per_round']} steps after {setup['warmup']} warm-up steps; load average at the end "
        f"{result['machine']['load_average'][0]:.2f}; matmul peak (8 chained 2048^2) fp32 {peak['float32']:.0f} "
        f"GFLOP/s, bf16 {peak['mixed_bfloat16']:.0f} GFLOP/s; CPU flags {', '.join(result['machine']['cpu_flags']) or 'none'}; "
        f"kgan's default here: {result['default']['precision']} ({result['default']['why']}), no XLA.",
        "",
        "| variant | precision | XLA | ms/step | images/s | x reference | GFLOP/s | % of peak |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in result["rows"]:
        lines.append(f"| {r['name']} | {r['precision']} | {'yes' if r['xla'] else 'no'} | {r['ms']:.1f} | "
                     f"{r['images_per_s']:.0f} | {r['speedup_vs_reference']:.2f} | {r['gflops']:.0f} | "
                     f"{100 * r['fraction_of_peak']:.0f}% |")
    lines += ["", "| ratio | value |", "|---|---|"]
    lines += [f"| {name} | {value:.3f} |" for name, value in result["ratios"].items()]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main(sys.argv[1:])
