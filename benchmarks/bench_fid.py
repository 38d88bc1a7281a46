"""Benchmark: FID statistics + distance, kgan's route against the scipy.linalg.sqrtm route.

Both routes get the same two activation arrays (default 10,000 x 2048 float32, ReLU features
of a random linear map, so the covariances are full and correlated) and compute mean,
covariance (n - 1) and the Frechet distance:

- kgan: `ActivationStatistics` (float64, streamed in 2048-row batches) and
  `frechet_distance_from_statistics` with the default method="eigh" (Tr sqrt via eigh of S1,
  then eigvalsh of the symmetric sqrt(S1) S2 sqrt(S1)); also reported: method="cholesky"
  (eigvalsh of L^T S2 L with S1 = L L^T, no eigenvectors).
- reference: `np.mean` / `np.cov` and `scipy.linalg.sqrtm(S1 @ S2)`, as in pytorch-fid and
  TTUR's fid.py.

Prints both times, the speed-up and the two FID values (they must agree). A benchmark, not a
test: timings depend on the machine and its load.

    python benchmarks/bench_fid.py [--num-samples 10000] [--dim 2048] [--repeats 3] [--json]
"""

import argparse
import json
import os
import platform
import time

import numpy as np
import scipy
import scipy.linalg

from kgan import metrics


def make_activations(num_samples, dim, seed):
    """Two correlated, non-negative activation sets, float32 `[num_samples, dim]`."""
    rng = np.random.default_rng(seed)
    mixing = (rng.standard_normal((dim, dim)) / np.sqrt(dim)).astype(np.float32)
    a = np.maximum(rng.standard_normal((num_samples, dim), np.float32) @ mixing, 0.0)
    b = np.maximum(rng.standard_normal((num_samples, dim), np.float32) @ mixing * 1.1 + 0.05, 0.0)
    return a, b


def kgan_route(a, b, method="eigh"):
    start = time.perf_counter()
    s1 = metrics.ActivationStatistics.from_activations(a)
    s2 = metrics.ActivationStatistics.from_activations(b)
    mu1, sigma1, mu2, sigma2 = s1.mean, s1.cov, s2.mean, s2.cov
    stats_seconds = time.perf_counter() - start
    fid = metrics.frechet_distance_from_statistics(mu1, sigma1, mu2, sigma2, method=method)
    return fid, stats_seconds, time.perf_counter() - start


def sqrtm_route(a, b):
    """pytorch-fid's calculate_frechet_distance on np.mean / np.cov statistics."""
    start = time.perf_counter()
    mu1, sigma1 = np.mean(a, axis=0, dtype=np.float64), np.cov(a, rowvar=False)
    mu2, sigma2 = np.mean(b, axis=0, dtype=np.float64), np.cov(b, rowvar=False)
    stats_seconds = time.perf_counter() - start
    diff = mu1 - mu2
    covmean = scipy.linalg.sqrtm(sigma1.dot(sigma2))
    if not np.isfinite(covmean).all():
        offset = np.eye(sigma1.shape[0]) * 1e-6
        covmean = scipy.linalg.sqrtm((sigma1 + offset).dot(sigma2 + offset))
    covmean = np.real(covmean)
    fid = float(diff.dot(diff) + np.trace(sigma1) + np.trace(sigma2) - 2 * np.trace(covmean))
    return fid, stats_seconds, time.perf_counter() - start


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--num-samples", type=int, default=10_000)
    parser.add_argument("--dim", type=int, default=2048)
    parser.add_argument("--repeats", type=int, default=3, help="best of N runs per route")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args(argv)

    a, b = make_activations(args.num_samples, args.dim, args.seed)
    load_before = os.getloadavg()[0]
    runs = {"eigh": [], "cholesky": [], "sqrtm": []}
    for _ in range(args.repeats):  # interleaved, so changes in machine load hit every route
        runs["eigh"].append(kgan_route(a, b, "eigh"))
        runs["cholesky"].append(kgan_route(a, b, "cholesky"))
        runs["sqrtm"].append(sqrtm_route(a, b))
    best = {name: min(results, key=lambda r: r[2]) for name, results in runs.items()}
    kgan_fid, kgan_stats, kgan_total = best["eigh"]
    chol_fid, chol_stats, chol_total = best["cholesky"]
    ref_fid, ref_stats, ref_total = best["sqrtm"]
    result = {
        "num_samples": args.num_samples,
        "dim": args.dim,
        "repeats": args.repeats,
        "kgan_seconds": round(kgan_total, 3),
        "kgan_statistics_seconds": round(kgan_stats, 3),
        "kgan_distance_seconds": round(kgan_total - kgan_stats, 3),
        "kgan_cholesky_seconds": round(chol_total, 3),
        "kgan_cholesky_distance_seconds": round(chol_total - chol_stats, 3),
        "sqrtm_seconds": round(ref_total, 3),
        "sqrtm_statistics_seconds": round(ref_stats, 3),
        "sqrtm_distance_seconds": round(ref_total - ref_stats, 3),
        "speedup": round(ref_total / kgan_total, 2),
        "distance_speedup": round((ref_total - ref_stats) / (kgan_total - kgan_stats), 2),
        "cholesky_speedup": round(ref_total / chol_total, 2),
        "kgan_fid": kgan_fid,
        "kgan_cholesky_fid": chol_fid,
        "sqrtm_fid": ref_fid,
        "relative_difference": max(abs(kgan_fid - ref_fid), abs(chol_fid - ref_fid)) / abs(ref_fid),
        "load_average_before": load_before,
        "cpu_count": os.cpu_count(),
        "numpy": np.__version__,
        "scipy": scipy.__version__,
        "python": platform.python_version(),
    }
    if args.json:
        print(json.dumps(result))
        return result
    n, d = args.num_samples, args.dim
    print(f"FID statistics + distance, 2 x {n} x {d} float32 activations (best of {args.repeats})")
    print(
        f"  kgan  (streamed float64 stats + eigh route): {kgan_total:7.2f} s "
        f"(statistics {kgan_stats:.2f} s, distance {kgan_total - kgan_stats:.2f} s)"
    )
    print(
        f"  kgan, method='cholesky':                     {chol_total:7.2f} s "
        f"(statistics {chol_stats:.2f} s, distance {chol_total - chol_stats:.2f} s)"
    )
    print(
        f"  scipy (np.cov + linalg.sqrtm(S1 S2)):        {ref_total:7.2f} s "
        f"(statistics {ref_stats:.2f} s, distance {ref_total - ref_stats:.2f} s)"
    )
    print(
        f"  speed-up (statistics + distance): eigh {result['speedup']:.1f}x, cholesky "
        f"{result['cholesky_speedup']:.1f}x; distance step alone (eigh): "
        f"{result['distance_speedup']:.1f}x"
    )
    print(
        f"  FID: kgan {kgan_fid:.6f}, kgan cholesky {chol_fid:.6f}, sqrtm {ref_fid:.6f} "
        f"(max relative difference {result['relative_difference']:.1e})"
    )
    print(f"  load average before the run: {load_before:.2f} on {os.cpu_count()} CPUs")
    return result


if __name__ == "__main__":
    main()
