"""Training-step speed: kgan's `GAN.fit` path against a hand-written reference step, in one run.

DCGAN 32x32x3 (kgan.networks' DCGAN pair: G 100 -> 4x4x256 -> 8 -> 16 -> 32, D 64-128-256),
batch 64, one discriminator + one generator update per step. Every number is the median
over timed steps after warm-up, measured in this process, so ratios compare like with like:

- reference: a plain float32 step written here (tf.function, two GradientTapes, Adam,
  non-saturating loss with reduce_mean; no kgan training code; the same networks);
- kgan: `GAN.fit` (per-batch wall time from a callback) for non_saturating, minkowski p=4,
  WGAN-GP (wasserstein + GradientPenalty(10), no batch norm in D) and WGAN with d_steps=5 and
  clipping, in float32 and mixed_bfloat16, with and without XLA (`jit_compile`);
- pipeline: the kgan default step fed by the real tf.data pipeline (kgan.data.pipeline over
  uint8 images decoded on the fly) against the same step on one in-memory tensor;
- peak: a 2048x2048 matmul in float32 and bfloat16.

Achieved GFLOP/s use an analytic count of the step's multiply-adds (2 FLOPs each) in every
Conv/Dense layer: forward passes count 1x, a backward pass 2x (input and weight gradients).
A D update: G forward (1x) + D forward and backward on real and fake (2 x 3x). A G update:
G forward and backward (3x) + D forward and backward (3x). A WGAN-GP critic update adds a D
forward + backward for the input gradient and its double backward (about 3x + 3x more).

    python benchmarks/bench_step.py            # full table (several minutes on 2 cores)
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

from kgan import data, gan, networks, penalties  # noqa: E402

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
    d_update = g + 2 * 3 * d + (6 * d if gradient_penalty else 0)
    g_update = 3 * g + 3 * d
    return batch * (d_steps * d_update + g_update)


# ---- timing ---------------------------------------------------------------------------------


class BatchTimer(keras.callbacks.Callback):
    def __init__(self):
        super().__init__()
        self.times = []

    def on_train_batch_begin(self, batch, logs=None):
        self._start = time.perf_counter()

    def on_train_batch_end(self, batch, logs=None):
        self.times.append(time.perf_counter() - self._start)


def median_ms(times, warmup):
    return 1e3 * statistics.median(times[warmup:])


def set_precision(precision):
    keras.mixed_precision.set_global_policy(precision)


def make_pair(shape, latent, batch_norm=True):
    keras.utils.set_random_seed(0)
    return networks.build(shape, latent, batch_norm=batch_norm)


def time_reference(shape, latent, batch, steps, warmup):
    """A float32 non-saturating step written without kgan's training code."""
    set_precision("float32")
    generator, discriminator = make_pair(shape, latent)
    g_opt = keras.optimizers.Adam(2e-4, beta_1=0.5)
    d_opt = keras.optimizers.Adam(2e-4, beta_1=0.5)
    g_opt.build(generator.trainable_variables)
    d_opt.build(discriminator.trainable_variables)
    real = tf.random.uniform((batch, *shape), -1, 1)

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

    times = []
    for _ in range(steps):
        start = time.perf_counter()
        d_loss, _ = step(real)
        d_loss.numpy()
        times.append(time.perf_counter() - start)
    return median_ms(times, warmup), step_flops(generator, discriminator, batch)


def time_kgan(shape, latent, batch, steps, warmup, loss="non_saturating", precision="float32",
              jit_compile=False, d_steps=1, gp=False, clip=None, dataset=None):
    set_precision(precision)
    try:
        generator, discriminator = make_pair(shape, latent, batch_norm=not gp)
        model = gan.GAN(generator, discriminator, d_steps=d_steps, seed=0)
        model.compile(
            keras.optimizers.Adam(2e-4, beta_1=0.5), keras.optimizers.Adam(2e-4, beta_1=0.5),
            loss=loss, penalty=penalties.GradientPenalty(10.0, seed=0) if gp else None,
            weight_clip=clip, jit_compile=jit_compile,
        )
        if dataset is None:
            dataset = tf.data.Dataset.from_tensors(tf.random.uniform((batch * d_steps, *shape), -1, 1)).repeat()
        timer = BatchTimer()
        model.fit(dataset, steps_per_epoch=steps, epochs=1, verbose=0, callbacks=[timer], shuffle=False)
        return median_ms(timer.times, warmup), step_flops(generator, discriminator, batch, d_steps, gp)
    finally:
        set_precision("float32")


def real_pipeline(shape, batch, num_examples=6400):
    """kgan.data.pipeline over uint8 images converted to [-1, 1] on the fly (like tfds data)."""
    images = np.random.default_rng(0).integers(0, 256, (num_examples, *shape), dtype=np.uint8)
    source = tf.data.Dataset.from_tensor_slices(images).map(
        lambda x: tf.cast(x, tf.float32) / 127.5 - 1.0, num_parallel_calls=tf.data.AUTOTUNE
    )
    dataset = data.Dataset("bench", source, shape, num_examples)
    return data.pipeline(dataset, batch, seed=0).repeat()


def matmul_peak(dtype, n=2048, repeats=10):
    a = tf.cast(tf.random.normal((n, n)), dtype)
    matmul = tf.function(tf.linalg.matmul)
    matmul(a, a).numpy()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        matmul(a, a).numpy()
        times.append(time.perf_counter() - start)
    return 2 * n**3 / statistics.median(times) / 1e9


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
    parser.add_argument("--steps", type=int, default=None, help="timed steps per variant (default 40; quick 6)")
    parser.add_argument("--json", metavar="PATH", help="also write the results as JSON")
    args = parser.parse_args(argv)

    shape, latent, batch = ((8, 8, 1), 16, 16) if args.quick else ((32, 32, 3), 100, 64)
    steps = args.steps or (6 if args.quick else 40)
    warmup = 2 if args.quick else 5
    steps += warmup

    peak = {"float32": matmul_peak(tf.float32, 256 if args.quick else 2048),
            "mixed_bfloat16": matmul_peak(tf.bfloat16, 256 if args.quick else 2048)}
    ref_ms, ref_flops = time_reference(shape, latent, batch, steps, warmup)
    rows = [{"name": "reference (plain TF step)", "precision": "float32", "xla": False, "ms": ref_ms, "flops": ref_flops}]

    variants = [
        ("non_saturating", {}),
        ("minkowski p=4", {"loss": {"class_name": "Minkowski", "config": {"p": 4.0}}}),
        ("WGAN-GP", {"loss": "wasserstein", "gp": True}),
        ("WGAN d_steps=5 + clip", {"loss": "wasserstein", "d_steps": 5, "clip": 0.01}),
    ]
    for precision in ("float32", "mixed_bfloat16"):
        for jit in (False, True):
            for name, kwargs in variants:
                if jit and name != "non_saturating" and not args.quick:
                    continue  # XLA: one loss is enough to see whether it pays
                ms, flops = time_kgan(shape, latent, batch, steps, warmup, precision=precision, jit_compile=jit, **kwargs)
                rows.append({"name": f"kgan {name}", "precision": precision, "xla": jit, "ms": ms, "flops": flops})

    best = min((r for r in rows if r["name"] == "kgan non_saturating"), key=lambda r: r["ms"])
    pipe_ms, _ = time_kgan(shape, latent, batch, steps, warmup, precision=best["precision"],
                           jit_compile=best["xla"], dataset=real_pipeline(shape, batch))
    pipeline_row = {"in_memory_ms": best["ms"], "pipeline_ms": pipe_ms, "overhead": pipe_ms / best["ms"] - 1}

    for row in rows:
        row["images_per_s"] = batch / row["ms"] * 1e3
        row["speedup_vs_reference"] = ref_ms / row["ms"]
        row["gflops"] = row["flops"] / row["ms"] / 1e6
        row["fraction_of_peak"] = row["gflops"] / peak[row["precision"]]

    def ms_of(name, precision, xla=False):
        return next(r["ms"] for r in rows if r["name"] == name and r["precision"] == precision and r["xla"] == xla)

    ratios = {
        "best_kgan_non_saturating_vs_reference": ref_ms / best["ms"],
        "wgan_gp_vs_plain_float32": ms_of("kgan WGAN-GP", "float32") / ms_of("kgan non_saturating", "float32"),
        "wgan_gp_vs_plain_bfloat16": ms_of("kgan WGAN-GP", "mixed_bfloat16") / ms_of("kgan non_saturating", "mixed_bfloat16"),
        "pipeline_overhead": pipeline_row["overhead"],
    }
    result = {
        "machine": {"platform": platform.platform(), "processor": platform.processor(), "cpu_count": os.cpu_count(),
                    "cpu_flags": cpu_flags(), "tensorflow": tf.__version__, "keras": keras.__version__},
        "setup": {"shape": shape, "latent_dim": latent, "batch": batch, "timed_steps": steps - warmup, "warmup": warmup},
        "matmul_peak_gflops": peak,
        "rows": rows,
        "pipeline": pipeline_row,
        "best_default": {"precision": best["precision"], "xla": best["xla"]},
        "ratios": ratios,
    }

    print(f"DCGAN {shape[0]}x{shape[1]}x{shape[2]}, batch {batch}, median of {steps - warmup} steps; "
          f"matmul peak fp32 {peak['float32']:.0f} GFLOP/s, bf16 {peak['mixed_bfloat16']:.0f} GFLOP/s")
    print(f"{'variant':34} {'precision':15} {'xla':5} {'ms/step':>8} {'img/s':>7} {'x ref':>6} {'GFLOP/s':>8} {'% peak':>7}")
    for r in rows:
        print(f"{r['name']:34} {r['precision']:15} {str(r['xla']):5} {r['ms']:8.1f} {r['images_per_s']:7.0f} "
              f"{r['speedup_vs_reference']:6.2f} {r['gflops']:8.1f} {100 * r['fraction_of_peak']:6.1f}%")
    print(f"pipeline: {pipe_ms:.1f} ms/step with kgan.data.pipeline vs {best['ms']:.1f} in memory "
          f"({100 * pipeline_row['overhead']:+.1f}%)")
    for key, value in ratios.items():
        print(f"{key}: {value:.3f}")
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(result, handle, indent=2)
    return result


if __name__ == "__main__":
    main(sys.argv[1:])
