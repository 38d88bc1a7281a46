"""DCGAN 32x32 (batch 64) training-step time: float32 vs mixed_bfloat16, 1 vs 2 replicas.

    python benchmarks/bench_distribute.py [--steps 10]

Measures, never gates: the numbers depend on the machine and on what else runs on it. Two
replicas on a CPU are two logical devices sharing the same cores (for testing equivalence,
not for speed). Prints one JSON line per setting and what `--precision auto` picks here.
"""

import argparse
import json
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=3)
    args = parser.parse_args()

    from kgan import distribute

    two = distribute.get_strategy("mirrored", devices=2)  # before TensorFlow initialises
    import keras
    import numpy as np
    import tensorflow as tf

    from kgan import gan, networks

    images = np.random.default_rng(0).uniform(-1, 1, (64 * (args.steps + args.warmup), 32, 32, 3)).astype("float32")
    results = []
    for precision in ("float32", "mixed_bfloat16"):
        for strategy in (tf.distribute.get_strategy(), two):
            keras.mixed_precision.set_global_policy(precision)
            try:
                keras.utils.set_random_seed(0)
                with strategy.scope():
                    generator, discriminator = networks.build((32, 32, 3), 100)
                    model = gan.GAN(generator, discriminator, seed=0)
                    model.compile(keras.optimizers.Adam(2e-4, beta_1=0.5), keras.optimizers.Adam(2e-4, beta_1=0.5),
                                  loss="minkowski")
            finally:
                keras.mixed_precision.set_global_policy("float32")
            data = tf.data.Dataset.from_tensor_slices(images).batch(64, drop_remainder=True).repeat()
            model.fit(data, steps_per_epoch=args.warmup, epochs=1, verbose=0)  # trace + warm up
            start = time.perf_counter()
            model.fit(data, steps_per_epoch=args.steps, epochs=1, verbose=0)
            ms = 1000 * (time.perf_counter() - start) / args.steps
            results.append({"precision": precision, "replicas": strategy.num_replicas_in_sync, "ms_per_step": round(ms, 1)})
            print(json.dumps(results[-1]), flush=True)
    base = results[0]["ms_per_step"]
    for r in results:
        print(f"{r['precision']:>15} x {r['replicas']} replica(s): {r['ms_per_step']:7.1f} ms/step  (speed-up {base / r['ms_per_step']:.2f})")
    policy, reason = distribute.auto_precision((32, 32, 3))
    print(f"--precision auto picks: {policy} ({reason})")


if __name__ == "__main__":
    main()
