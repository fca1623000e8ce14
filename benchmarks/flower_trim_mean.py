#!/usr/bin/env python3
"""Anchor for the aggregation benchmark: Flower's trimmed mean.

Times flwr.serverapp.strategy.fedtrimmedavg.trim_mean (flwr 1.42) on N inputs
of D float32 values and prints one JSON object (median of --runs).
"""
import argparse
import json
import resource
import statistics
import time

import numpy as np
import flwr
from flwr.serverapp.strategy.fedtrimmedavg import trim_mean


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--n", type=int, default=10)
    p.add_argument("--d", type=int, default=10_000_000)
    p.add_argument("--beta", type=float, default=0.2)
    p.add_argument("--runs", type=int, default=3)
    a = p.parse_args()
    rng = np.random.default_rng(42)
    # The stacked (N, D) array Flower's FedTrimmedAvg builds from the client updates.
    array = rng.standard_normal((a.n, a.d), dtype=np.float32)
    times = []
    for _ in range(a.runs):
        t0 = time.perf_counter()
        out = trim_mean(array, a.beta)
        times.append(time.perf_counter() - t0)
        assert out.shape == (a.d,)
    print(json.dumps({
        "benchmark": "flower_trim_mean", "flwr": flwr.__version__, "numpy": np.__version__,
        "n": a.n, "d": a.d, "beta": a.beta, "runs": a.runs,
        "median_s": statistics.median(times), "times_s": times,
        "peak_rss_MB": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / 1e6,
    }))


if __name__ == "__main__":
    main()
