"""Re-run one row's recorded `kgan train` command, outside `kgan compare`, and check that it gives
the row's final metrics and every logged curve exactly (docs/results/README.md, "Rows reproduce").

    python docs/results/scripts/replay_row.py protocol/ring8/non_saturating/100000/s9 \
        [docs/results/mixtures/results.jsonl]

Trains in a temporary folder (a 100,000-step stand-in row takes ~15 minutes of one core), prints
both, and exits 1 if anything differs. The same check on a small grid is
tests/test_compare.py::test_each_row_records_the_kgan_train_command_that_reproduces_it_exactly.
"""

import glob
import json
import os
import shlex
import subprocess
import sys
import tempfile

from kgan.compare import load_results


def main(key, path="docs/results/mixtures/results.jsonl"):
    row = next(row for row in load_results(path) if row["key"] == key)
    curves = row["curves"]
    with tempfile.TemporaryDirectory() as tmp:
        argv = shlex.split(row["command"])[1:] + [
            "--output", os.path.join(tmp, "m"), "--logdir", os.path.join(tmp, "l"),
            "--checkpoint-dir", os.path.join(tmp, "c")]
        env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
        subprocess.run([sys.executable, "-m", "kgan.cli", *argv], check=True, env=env, stdout=subprocess.DEVNULL)
        (config_json,) = glob.glob(os.path.join(tmp, "m", "*", "config.json"))
        report = json.load(open(config_json))
    final = json.dumps(report["metrics"]["values"], sort_keys=True)
    print(f"row:    {json.dumps(row['final'], sort_keys=True)}\nreplay: {final}")
    differ = [name for name, values in curves.items() if name != "step" and report["history"].get(name) != values]
    print(f"{len(curves) - 1} curves x {len(curves['step'])} evaluations: "
          f"{'differ in ' + ', '.join(differ) if differ else 'equal'}")
    return 0 if final == json.dumps(row["final"], sort_keys=True) and not differ else 1


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:]))
