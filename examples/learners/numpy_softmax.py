"""Softmax regression in numpy on one member's CSV rows: an flpeer learner.

    flpeer demo --learner-command "python3 examples/learners/numpy_softmax.py"

The peer starts it with FLPEER_DATA (this member's CSV) and the plan's
settings in the environment (docs/learner-protocol.md). Features are divided
by a fixed scale (FLPEER_FEATURE_SCALE, default 16: the digits' pixel range)
so that every member's inputs mean the same.
"""

import os
import sys

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "learners", "python"))
from flpeer_learner import CSVLearner, serve  # noqa: E402


class Softmax(CSVLearner):
    def __init__(self):
        super().__init__()
        self.scale = float(os.environ.get("FLPEER_FEATURE_SCALE", "16"))
        self.features = self.x_train.shape[1]

    def init(self, seed):
        rng = np.random.default_rng(seed)
        k = len(self.classes)
        return {"weight": (rng.standard_normal((k, self.features)) * 0.01).astype(np.float32), "bias": np.zeros(k, dtype=np.float32)}

    def log_probs(self, state, x):
        logits = (x / self.scale) @ state["weight"].T.astype(np.float64) + state["bias"]
        logits -= logits.max(axis=1, keepdims=True)
        return logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))

    def train(self, state, round, seed):
        w, b = state["weight"].astype(np.float64), state["bias"].astype(np.float64)
        vw, vb = np.zeros_like(w), np.zeros_like(b)
        x, y = self.x_train / self.scale, self.training_labels()
        k, n = len(self.classes), len(y)
        rng = np.random.default_rng(seed)
        lr, l2, losses = self.learning_rate, 3e-3, []
        for _ in range(self.local_epochs):
            order = rng.permutation(n)
            for start in range(0, n, self.batch_size):
                rows = order[start:start + self.batch_size]
                logits = x[rows] @ w.T + b
                logits -= logits.max(axis=1, keepdims=True)
                p = np.exp(logits)
                p /= p.sum(axis=1, keepdims=True)
                losses.append(-np.log(p[np.arange(len(rows)), y[rows]] + 1e-15).mean())
                p[np.arange(len(rows)), y[rows]] -= 1
                gw = p.T @ x[rows] / len(rows) + l2 * w
                gb = p.mean(axis=0)
                vw, vb = 0.9 * vw + gw, 0.9 * vb + gb
                w, b = w - lr * vw, b - lr * vb
        return {"weight": w.astype(np.float32), "bias": b.astype(np.float32)}, n, {"train_loss": float(np.mean(losses[-max(1, n // self.batch_size):]))}

    def evaluate(self, state, rows):
        x, y = self.split(rows)
        return self.log_probs(state, x), y


if __name__ == "__main__":
    serve(Softmax())
