"""Reproducibility at scale (docs/results/README.md, "Rows reproduce"): every row of N steps
whose shorter row (same preset, dataset, setting, seed, evaluation interval; fewer steps) is in
the same results file must repeat the shorter row's every logged value over its first evaluations,
bit for bit (`--deterministic`). A row trained from step 0, in another session on another machine,
is an independent re-run of the shorter row; a row extended from the shorter row's checkpoint
(`extended_from`) only checks that resuming is exact.

    python docs/results/scripts/prefix_check.py docs/results/mixtures/results.jsonl

Prints one line a pair and exits 1 if any pair differs.
"""

import itertools
import sys

from kgan.compare import load_results


def pairs(rows):
    """(longer row, shorter row) for each row with a shorter row of the same run."""
    by_run = {}
    for row in rows:
        run = (row["preset"], row["dataset"], row["setting"], row["seed"], row["eval_every"])
        by_run.setdefault(run, []).append(row)
    for runs in by_run.values():
        runs.sort(key=lambda row: row["steps"])
        for shorter, longer in itertools.pairwise(runs):
            yield longer, shorter


def main(path):
    rows = load_results(path)
    failed = 0
    for longer, shorter in pairs(rows):
        a, b = shorter["curves"], longer["curves"]
        n = len(a["step"])
        names = sorted(name for name in a if name in b)
        differ = [name for name in names if a[name][:n] != b[name][:n]]
        how = "extended" if longer.get("extended_from") else "from step 0"
        print(f"{longer['key']} ({how}): first {n} evaluations x {len(names)} curves "
              f"{'differ in ' + ', '.join(differ) if differ else 'bit-equal'} to {shorter['key']}")
        failed += bool(differ)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1] if len(sys.argv) > 1 else "docs/results/mixtures/results.jsonl"))
