"""Where the non-high-quality samples of ring8 rows are (docs/results/README.md, "What a low ring8
evaluation is"): for each setting, the share of samples within 3 std of a mode (high quality),
3-10 std, and beyond 10 std, and how far G's mode centres sit from the true ones (std units).

    python docs/results/scripts/ring8_offsets.py docs/results/mixtures/samples

Reads the `<preset>-ring8-<setting>-<steps>-s<seed>.npz` files `kgan compare` writes (the final
evaluation's 2,500 samples; not committed: a row's `command` regenerates them).
"""

import collections
import glob
import os
import re
import sys

import numpy as np

from kgan.data.mixtures import mixture_modes

MEANS, STD = mixture_modes("ring8")


def split(samples):
    """(HQ %, 3-10 std %, > 10 std %, mean offset of the mode centres G populates, in std)."""
    distance = np.linalg.norm(samples[:, None, :] - MEANS[None], axis=2)
    nearest, d = distance.argmin(1), distance.min(1) / STD
    offsets = [np.linalg.norm(samples[(nearest == m) & (d < 10)].mean(0) - MEANS[m]) / STD
               for m in range(len(MEANS)) if ((nearest == m) & (d < 10)).sum() >= 20]
    return 100 * (d < 3).mean(), 100 * ((d >= 3) & (d < 10)).mean(), 100 * (d >= 10).mean(), float(np.mean(offsets))


def main(folder):
    rows = collections.defaultdict(list)
    for path in sorted(glob.glob(os.path.join(folder, "*-ring8-*.npz"))):
        setting, steps = re.match(r".*-ring8-(.*)-(\d+)-s\d+\.npz$", os.path.basename(path)).groups()
        rows[f"{setting}, {steps} steps"].append(split(np.load(path)["samples"]))
    print("| setting | seeds | HQ % | 3-10 std % | > 10 std % | mode offset (std) | corr(HQ, offset) |")
    print("|---|---|---|---|---|---|---|")
    for setting, values in rows.items():
        v = np.array(values)
        corr = f"{np.corrcoef(v[:, 0], v[:, 3])[0, 1]:.2f}" if len(v) > 2 else "-"
        print(f"| {setting} | {len(v)} | {v[:, 0].mean():.1f} | {v[:, 1].mean():.1f} ({v[:, 1].min():.1f}-"
              f"{v[:, 1].max():.1f}) | {v[:, 2].mean():.1f} ({v[:, 2].min():.1f}-{v[:, 2].max():.1f}) | "
              f"{v[:, 3].mean():.2f} | {corr} |")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "docs/results/mixtures/samples")
