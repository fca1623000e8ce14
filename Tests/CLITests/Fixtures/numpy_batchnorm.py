"""The numpy softmax learner with a BatchNorm-like input layer, as a PyTorch
state_dict has it: Float32 running statistics (`bn.running_mean`) and an int64
counter (`bn.num_batches_tracked`, 0-d) updated by training. It also checks
that the peer names the plan's rounds (FLPEER_ROUNDS) and trains within them."""

import os
import runpy

import numpy as np

here = os.path.dirname(os.path.abspath(__file__))
example = runpy.run_path(os.path.join(here, "..", "..", "..", "examples", "learners", "numpy_softmax.py"), run_name="example")
Softmax, serve = example["Softmax"], example["serve"]


class Normalised(Softmax):
    def init(self, seed):
        state = super().init(seed)
        state["bn.running_mean"] = np.zeros(self.features, dtype=np.float32)
        state["bn.num_batches_tracked"] = np.asarray(0, dtype=np.int64)
        return state

    def train(self, state, round, seed):
        if not 1 <= round <= self.rounds:
            raise ValueError(f"asked to train round {round} of a {self.rounds}-round plan (FLPEER_ROUNDS)")
        mean, count = state["bn.running_mean"].astype(np.float64), int(state["bn.num_batches_tracked"])
        batches = (len(self.y_train) + self.batch_size - 1) // self.batch_size * self.local_epochs
        for _ in range(batches):
            mean = 0.9 * mean + 0.1 * self.x_train.mean(axis=0)
        new, n, metrics = super().train({"weight": state["weight"], "bias": state["bias"]}, round, seed)
        new["bn.running_mean"] = mean.astype(np.float32)
        new["bn.num_batches_tracked"] = np.asarray(count + batches, dtype=np.int64)
        return new, n, metrics


if __name__ == "__main__":
    serve(Normalised())
