"""How often a claim would call two equal settings different (docs/results/README.md, "Protocol",
and kgan/stats.py): draws null paired differences, N(0, 1) per seed, and counts how often the 95%
percentile bootstrap interval leaves out 0, how often the exact sign-flip test gives p < 0.05, and
how often both do (kgan's "better" / "worse"), for 2-10 seeds.

    python docs/results/scripts/claims_level.py [draws]
"""

import sys

import numpy as np

from kgan import stats


def main(draws=2000):
    rng = np.random.default_rng(0)
    print("seeds | interval leaves out 0 | sign-flip p < 0.05 | both (kgan's verdict)")
    for n in (2, 3, 5, 8, 10):
        counts = np.zeros(3)
        for i in range(draws):
            d = rng.standard_normal(n)
            result = stats.paired_bootstrap(d, np.zeros(n), resamples=2000, seed=i)
            excludes = result["low"] > 0 or result["high"] < 0
            counts += [excludes, result["p"] < 0.05, result["significant"]]
        print(f"{n} | " + " | ".join(f"{c / draws:.3f}" for c in counts))


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 2000)
