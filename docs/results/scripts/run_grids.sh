#!/usr/bin/env bash
# The mixture grids of issue 18 in their order (docs/results/README.md, "Compute, and the order of
# the grids"), one mixture per process, one thread each: on a 2-core machine run both at once,
#
#     bash docs/results/scripts/run_grids.sh ring8  > ring8.log  2>&1 &
#     bash docs/results/scripts/run_grids.sh grid25 > grid25.log 2>&1 &
#
# from the checkout whose code should train (`python -m` imports kgan from the current folder:
# run it from a `git worktree` to keep the grids' code fixed while main changes). Every
# `kgan compare` skips the rows already in results.jsonl and resumes a killed row from its last
# checkpoint, so running this again continues where the last run stopped.
set -euo pipefail
dataset=${1:?usage: run_grids.sh ring8|grid25 [out folder, default docs/results/mixtures]}
out=${2:-docs/results/mixtures}
export TF_CPP_MIN_LOG_LEVEL=3 TF_NUM_INTRAOP_THREADS=1 TF_NUM_INTEROP_THREADS=1
mix=(--preset protocol --datasets "$dataset" --seeds 10 --steps 200000 --eval-every 5000
     --deterministic --checkpoint-every 4 --out "$out")
run() { python -m kgan.compare "$@" "${mix[@]}"; }
run --losses minimax                                   # A2: the acceptance's minimax baseline
run --losses non_saturating                            # A: the stand-in's deciding gate baseline
run --losses minkowski --p 4                           # B: Minkowski p = 4 on the stand-in
run --losses non_saturating --techniques maxout        # A': PacGAN's networks' baseline (GAN)
run --losses non_saturating --techniques maxout_pack4  # PacGAN4 on PacGAN's networks
run --losses minkowski --p 4 --techniques maxout_pack4 # B: Minkowski p = 4 + pack 4
