"""The numpy softmax learner, misbehaving as FLPEER_HOSTILE says from round
FLPEER_HOSTILE_ROUND on (0: from the start): crash, hang, silent (never
answers hello), garbage (prints on stdout), names, shapes, nan, big, and
symlink, hardlink, fifo: the next file the peer writes for it (candidate
slot 1) becomes a symbolic link or a second name of FLPEER_HOSTILE_VICTIM,
or a FIFO."""

import os
import runpy
import sys
import time

import numpy as np

here = os.path.dirname(os.path.abspath(__file__))
repository = os.path.join(here, "..", "..", "..")
example = runpy.run_path(os.path.join(repository, "examples", "learners", "numpy_softmax.py"), run_name="example")
Softmax, serve = example["Softmax"], example["serve"]
mode = os.environ.get("FLPEER_HOSTILE", "")
when = int(os.environ.get("FLPEER_HOSTILE_ROUND", "2"))

if mode == "silent":
    time.sleep(3600)


class Hostile(Softmax):
    def train(self, state, round, seed):
        new, n, metrics = super().train(state, round, seed)
        if round < when:
            return new, n, metrics
        if mode == "crash":
            os._exit(3)
        if mode == "hang":
            time.sleep(3600)
        if mode == "garbage":
            os.write(int(os.environ["FLPEER_PROTOCOL_FD"]), b"epoch 1 loss 0.3\n")
        if mode == "names":
            new["weights"] = new.pop("weight")
        if mode == "shapes":
            new["bias"] = np.zeros(3, dtype=np.float32)
        if mode == "nan":
            new["weight"][0, 0] = np.nan
        if mode == "big":
            new["padding"] = np.zeros(1 << 20, dtype=np.float32)
        if mode in ("symlink", "hardlink", "fifo"):
            slot = os.path.join(os.environ["FLPEER_EXCHANGE_DIR"], "candidate-1.safetensors")
            if os.path.lexists(slot):
                os.remove(slot)
            victim = os.environ["FLPEER_HOSTILE_VICTIM"]
            if mode == "symlink":
                os.symlink(victim, slot)
            elif mode == "hardlink":
                os.link(victim, slot)
            else:
                os.mkfifo(slot)
        return new, n, metrics


if __name__ == "__main__":
    learner = Hostile()
    # The helper moves stdout to stderr; the garbage case writes to the real one.
    os.environ["FLPEER_PROTOCOL_FD"] = str(os.dup(1))
    serve(learner)
