"""The measurements behind two of kgan's speed choices, each an interleaved A/B in one process.

- `--gp-activations`: the DCGAN 32x32 WGAN-GP step and plain step with the discriminator's
  activations from Keras (`keras.layers.LeakyReLU`) against kgan's (`kgan.networks.LeakyReLU`,
  which does not back-propagate the exactly-zero second derivative of its mask); float32 and
  mixed_bfloat16. Why kgan's discriminators use their own activations.
- `--bf16-sizes`: kgan's DCGAN non-saturating step (batch 64, latent 100) in float32 and
  mixed_bfloat16 at 8x8x1, 16x16x1, 32x32x1 and 32x32x3. Where `--precision auto` switches to
  bfloat16 on CPUs with avx512_bf16 but no AMX (`kgan.distribute.AVX512_BF16_MIN_IMAGE_SIZE`).
- `--xla-sizes`: the same step at 8x8x1, 16x16x1 and 32x32x1, float32 and mixed_bfloat16, with and
  without XLA (`jit_compile`). Where `--xla auto` turns XLA on (`kgan.distribute.auto_xla`).

The timing (warm-up, interleaved rounds, median) is bench_step's.

    python benchmarks/bench_choices.py --gp-activations   # about 4 minutes on 2 idle cores
    python benchmarks/bench_choices.py --bf16-sizes       # about 3 minutes
    python benchmarks/bench_choices.py --xla-sizes        # about 5 minutes
"""

import argparse
import os
import statistics
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import bench_step  # noqa: E402
import keras  # noqa: E402

from kgan.networks import dcgan  # noqa: E402
from kgan.networks import layers as kgan_layers  # noqa: E402


def with_activation(activation, build):
    """`build()` with DCGAN's discriminator stages using `activation` (a LeakyReLU class)."""
    saved = dcgan.LeakyReLU
    dcgan.LeakyReLU = activation
    try:
        return build()
    finally:
        dcgan.LeakyReLU = saved


def gp_activations(steps, rounds):
    shape, latent, batch = (32, 32, 3), 100, 64
    variants = {}
    for precision in ("float32", "mixed_bfloat16"):
        for name, activation in (("keras", keras.layers.LeakyReLU), ("kgan", kgan_layers.LeakyReLU)):
            for step, kwargs in (("plain", {}), ("WGAN-GP", {"loss": "wasserstein", "gp": True})):
                variants[(precision, name, step)] = with_activation(
                    activation, lambda kw=kwargs, p=precision: bench_step.KganFit(shape, latent, batch, precision=p, **kw))
    ms = bench_step.time_interleaved(variants, steps, 5, rounds)
    print(f"DCGAN {shape}, batch {batch}: ms/step (median of {rounds} interleaved rounds x {steps} steps)")
    print(f"{'precision':15} {'activations':12} {'plain':>8} {'WGAN-GP':>8} {'GP/plain':>9}")
    for precision in ("float32", "mixed_bfloat16"):
        for name in ("keras", "kgan"):
            plain, gp = ms[(precision, name, "plain")], ms[(precision, name, "WGAN-GP")]
            print(f"{precision:15} {name:12} {plain:8.1f} {gp:8.1f} {gp / plain:9.3f}")


# Timed steps per round by image shape: about the same time per variant.
SIZES = {(8, 8, 1): 40, (16, 16, 1): 20, (32, 32, 1): 10, (32, 32, 3): 10}


def bf16_sizes(rounds):
    variants = {(shape, precision): bench_step.KganFit(shape, 100, 64, precision=precision)
                for shape in SIZES for precision in ("float32", "mixed_bfloat16")}
    for variant in variants.values():
        variant.run(5)
    times = {key: [] for key in variants}
    for _ in range(rounds):
        for (shape, precision), variant in variants.items():
            times[(shape, precision)] += variant.run(SIZES[shape])
    print(f"kgan DCGAN non_saturating step, batch 64: ms/step (median of {rounds} interleaved rounds)")
    print(f"{'images':10} {'float32':>8} {'bf16':>8} {'bf16 speed-up':>14}")
    for shape in SIZES:
        f32, bf16 = (1e3 * statistics.median(times[(shape, p)]) for p in ("float32", "mixed_bfloat16"))
        print(f"{'x'.join(map(str, shape)):10} {f32:8.2f} {bf16:8.2f} {f32 / bf16:14.2f}")


def xla_sizes(rounds):
    shapes = [shape for shape in SIZES if shape[-1] == 1]
    variants = {(shape, precision, jit): bench_step.KganFit(shape, 100, 64, precision=precision, jit_compile=jit)
                for shape in shapes for precision in ("float32", "mixed_bfloat16") for jit in (False, True)}
    for variant in variants.values():
        variant.run(5)  # traces and compiles
    times = {key: [] for key in variants}
    for _ in range(rounds):
        for key, variant in variants.items():
            times[key] += variant.run(SIZES[key[0]])
    print(f"kgan DCGAN non_saturating step, batch 64: ms/step (median of {rounds} interleaved rounds)")
    print(f"{'images':10} {'precision':>15} {'no XLA':>8} {'XLA':>8} {'XLA speed-up':>13}")
    for shape in shapes:
        for precision in ("float32", "mixed_bfloat16"):
            off, on = (1e3 * statistics.median(times[(shape, precision, jit)]) for jit in (False, True))
            print(f"{'x'.join(map(str, shape)):10} {precision:>15} {off:8.2f} {on:8.2f} {off / on:13.2f}")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gp-activations", action="store_true", help="Keras vs kgan activations under a GP")
    parser.add_argument("--bf16-sizes", action="store_true", help="float32 vs bfloat16 by image size")
    parser.add_argument("--xla-sizes", action="store_true", help="with and without XLA by image size and precision")
    parser.add_argument("--rounds", type=int, default=4, help="interleaved rounds (default 4)")
    parser.add_argument("--steps", type=int, default=10, help="timed steps per round for --gp-activations")
    args = parser.parse_args(argv)
    if not (args.gp_activations or args.bf16_sizes or args.xla_sizes):
        parser.error("choose --gp-activations, --bf16-sizes and/or --xla-sizes")
    if args.gp_activations:
        gp_activations(args.steps, args.rounds)
    if args.bf16_sizes:
        bf16_sizes(args.rounds)
    if args.xla_sizes:
        xla_sizes(args.rounds)


if __name__ == "__main__":
    main(sys.argv[1:])
