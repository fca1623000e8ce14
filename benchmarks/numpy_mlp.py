#!/usr/bin/env python3
"""Anchor for the training benchmark: the same MLP step in numpy.

Digits, standardised; MLP 64-64-10 with ReLU; softmax cross-entropy with
L2 1e-4 on weights; minibatch SGD (lr 0.01, momentum 0.9), batch 32,
shuffled each epoch: the same forward pass, backward pass and update that
`flbench train` runs. Prints one JSON object (median of 5 runs).
"""
import argparse
import json
import statistics
import time

import numpy as np


def load(path):
    raw = np.genfromtxt(path, delimiter=",", skip_header=1, dtype=np.float32)
    x, y = raw[:, :-1], raw[:, -1].astype(np.int64)
    std = x.std(axis=0)
    std[std < 1e-12] = 1
    return ((x - x.mean(axis=0)) / std).astype(np.float32), y


def train(x, y, hidden, batch, epochs, seed):
    rng = np.random.default_rng(seed)
    n, f = x.shape
    c = int(y.max()) + 1
    l1 = np.sqrt(6 / f)
    l2 = np.sqrt(6 / (hidden + c))
    w1 = rng.uniform(-l1, l1, (hidden, f)).astype(np.float32)
    b1 = np.zeros(hidden, np.float32)
    w2 = rng.uniform(-l2, l2, (c, hidden)).astype(np.float32)
    b2 = np.zeros(c, np.float32)
    params = [w1, b1, w2, b2]
    vel = [np.zeros_like(p) for p in params]
    lr, mu, lam = np.float32(0.01), np.float32(0.9), np.float32(1e-4)
    samples = 0
    loss = 0.0
    for _ in range(epochs):
        order = rng.permutation(n)
        for s in range(0, n, batch):
            idx = order[s:s + batch]
            xb, yb = x[idx], y[idx]
            b = len(idx)
            h = xb @ w1.T + b1
            a = np.maximum(h, 0)
            z = a @ w2.T + b2
            z -= z.max(axis=1, keepdims=True)
            e = np.exp(z)
            p = e / e.sum(axis=1, keepdims=True)
            loss = -np.log(np.maximum(p[np.arange(b), yb], 1e-12)).mean()
            d2 = p
            d2[np.arange(b), yb] -= 1
            d2 /= b
            g_w2 = d2.T @ a + lam * w2
            g_b2 = d2.sum(axis=0)
            d1 = (d2 @ w2) * (h > 0)
            g_w1 = d1.T @ xb + lam * w1
            g_b1 = d1.sum(axis=0)
            for prm, v, g in zip(params, vel, (g_w1, g_b1, g_w2, g_b2)):
                v *= mu
                v += g
                prm -= lr * v
            samples += b
    return samples, float(loss)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default="data/digits.csv")
    ap.add_argument("--hidden", type=int, default=64)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--epochs", type=int, default=20)
    a = ap.parse_args()
    x, y = load(a.data)
    times = []
    for run in range(5):
        t0 = time.perf_counter()
        samples, loss = train(x, y, a.hidden, a.batch, a.epochs, run)
        times.append(time.perf_counter() - t0)
    t = statistics.median(times)
    print(json.dumps({
        "benchmark": "numpy_mlp", "numpy": np.__version__, "hidden": a.hidden, "batch": a.batch,
        "epochs": a.epochs, "samples_per_run": samples, "median_s": t, "samples_per_s": samples / t,
        "final_loss": loss,
    }))


if __name__ == "__main__":
    main()
