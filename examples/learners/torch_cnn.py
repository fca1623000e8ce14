"""A small PyTorch CNN on the digits as 1x8x8 images: an flpeer learner.

    pip install torch
    flpeer demo --learner-command "python3 examples/learners/torch_cnn.py"

Each CSV row holds 64 pixel values (0-16) and a label; the model sees them
as one 8x8 channel. Add `--batchnorm` for the same network with BatchNorm
after each convolution: its running statistics are Float32 tensors that are
aggregated unless the plan lists them in `local_parameters` (e.g.
"*.running_*"); its int64 `num_batches_tracked` counters always stay local.
"""

import itertools
import math
import os
import sys

import numpy as np
import torch
from torch import nn

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "learners", "python"))
from flpeer_learner import CSVLearner, serve  # noqa: E402

torch.set_num_threads(int(os.environ.get("FLPEER_TORCH_THREADS", "1")))


def keep_freed_memory():
    """Keeps freed activations in the heap (glibc): without this, every
    evaluation maps and unmaps its megabyte-sized buffers, and the page
    faults double an evaluation's time (credits evaluate 32 models a round)."""
    try:
        import ctypes
        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt(-3, 256 << 20)  # M_MMAP_THRESHOLD
        libc.mallopt(-1, 512 << 20)  # M_TRIM_THRESHOLD
    except (OSError, AttributeError):
        pass  # not glibc: the default allocator


keep_freed_memory()


def network(classes, batchnorm):
    norm = (lambda c: nn.BatchNorm2d(c)) if batchnorm else (lambda c: nn.Identity())
    return nn.Sequential(
        nn.Conv2d(1, 8, 3, padding=1), norm(8), nn.ReLU(inplace=True),
        # A strided convolution instead of max-pooling: the same 4x4 maps,
        # at a fifth of the evaluation time (credits evaluate many models).
        nn.Conv2d(8, 16, 3, stride=2, padding=1), norm(16), nn.ReLU(inplace=True),
        nn.Flatten(), nn.Linear(16 * 4 * 4, 64), nn.ReLU(inplace=True), nn.Linear(64, classes),
    )


def stacked_forward(net, states, x):
    """Log-probabilities of the network `net` (its Sequential of Conv2d,
    BatchNorm2d in eval mode, ReLU, Flatten and Linear) under each parameter
    set of `states`, in one pass: the models' convolutions become one
    grouped convolution and their linear layers one batched product."""
    m, n = len(states), len(x)
    h, grouped = x, False  # grouped: h holds every model's channels side by side
    for i, layer in enumerate(net):
        p = [{k[len(f"{i}."):]: v for k, v in s.items() if k.startswith(f"{i}.")} for s in states]
        if isinstance(layer, nn.Conv2d):
            h = nn.functional.conv2d(h, torch.cat([q["weight"] for q in p]), torch.cat([q["bias"] for q in p]),
                                     stride=layer.stride, padding=layer.padding, groups=m if grouped else 1)
            grouped = True
        elif isinstance(layer, nn.BatchNorm2d):
            scale = [q["weight"] / torch.sqrt(q["running_var"] + layer.eps) for q in p]
            shift = [q["bias"] - q["running_mean"] * a for q, a in zip(p, scale)]
            h = h * torch.cat(scale).view(1, -1, 1, 1) + torch.cat(shift).view(1, -1, 1, 1)
        elif isinstance(layer, nn.ReLU):
            h = torch.relu_(h)
        elif isinstance(layer, nn.Flatten):
            h = h.reshape(n, m, -1).transpose(0, 1) if grouped else h.flatten(1).expand(m, n, -1)
        elif isinstance(layer, nn.Linear):
            h = torch.baddbmm(torch.stack([q["bias"] for q in p]).unsqueeze(1), h, torch.stack([q["weight"] for q in p]).transpose(1, 2))
        elif not isinstance(layer, nn.Identity):
            raise TypeError(f"stacked_forward has no rule for {type(layer).__name__}")
    return torch.log_softmax(h, dim=2)


class DigitsCNN(CSVLearner):
    def __init__(self, batchnorm=False):
        super().__init__()
        self.batchnorm = batchnorm
        self.net = network(len(self.classes), batchnorm)
        self.images = {name: torch.from_numpy(x / 16.0).float().reshape(-1, 1, 8, 8) for name, x in
                       [("train", self.x_train), ("validation", self.x_validation), ("assessment", self.x_assessment), ("test", self.x_test)]}
        # PyTorch initialises its kernels lazily (about a second): pay it at start-up, not in round 1.
        warm = network(len(self.classes), batchnorm)
        step = torch.optim.Adam(warm.parameters(), lr=self.learning_rate, fused=True)
        nn.functional.cross_entropy(warm(self.images["train"][:2]), torch.zeros(2, dtype=torch.long)).backward()
        step.step()
        list(self.evaluate_many([{k: v.detach().numpy() for k, v in warm.state_dict().items()}] * self.chunk, "validation"))

    def init(self, seed):
        torch.manual_seed(seed)
        return {k: v.numpy().copy() for k, v in network(len(self.classes), self.batchnorm).state_dict().items()}

    def load(self, state):
        self.net.load_state_dict({k: torch.from_numpy(np.array(v)) for k, v in state.items()})

    def train(self, state, round, seed):
        self.load(state)
        generator = torch.Generator().manual_seed(seed)
        x, y = self.images["train"], torch.from_numpy(self.training_labels())
        optimiser = torch.optim.Adam(self.net.parameters(), lr=self.rate(round), fused=True)
        self.net.train()
        losses = []
        # Training uses PyTorch's own convolutions: on kernels this small
        # oneDNN's backward is slower (a sixth of a step), and NNPACK's
        # forward (chosen once oneDNN is off) costs a fifth of a round more
        # than im2col and a matrix product. Evaluation keeps oneDNN, whose
        # forward is the fastest.
        with torch.backends.mkldnn.flags(enabled=False), torch.backends.nnpack.flags(enabled=False):
            self.fit(x, y, generator, optimiser, losses)
        return {k: v.detach().numpy().copy() for k, v in self.net.state_dict().items()}, len(y), {"train_loss": float(np.mean(losses[-10:]))}

    def rate(self, round):
        """The learning rate of `round`: cosine decay from the plan's rate to
        a tenth of it at the last round (FLPEER_ROUNDS; constant without it).
        A smaller step in the last rounds steadies the final aggregate,
        which constant-rate rounds of several local epochs leave jittering."""
        if self.rounds < 2:
            return self.learning_rate
        progress = min(1.0, (round - 1) / (self.rounds - 1))
        return self.learning_rate * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress)))

    def fit(self, x, y, generator, optimiser, losses):
        for _ in range(self.local_epochs):
            order = torch.randperm(len(y), generator=generator)
            for start in range(0, len(y), self.batch_size):
                rows = order[start:start + self.batch_size]
                if self.batchnorm and len(rows) < 2:
                    continue
                optimiser.zero_grad()
                loss = nn.functional.cross_entropy(self.net(x[rows]), y[rows])
                loss.backward()
                optimiser.step()
                losses.append(loss.item())

    # Models per batched forward pass: a chunk's convolutions run as one
    # grouped convolution; 8 was fastest on 100-550 rows (fewer calls, while
    # the activations still fit the cache).
    chunk = 8

    def evaluate_many(self, states, rows):
        x, labels = self.images[rows], self.split(rows)[1]
        states = iter(states)
        while chunk := list(itertools.islice(states, self.chunk)):
            with torch.inference_mode():
                log_probs = stacked_forward(self.net, [{k: torch.from_numpy(v) for k, v in s.items()} for s in chunk], x)
            yield from ((p.numpy(), labels) for p in log_probs)

    def evaluate(self, state, rows):
        # The file's tensors as the network's, without copying them into it.
        tensors = {k: torch.from_numpy(v) for k, v in state.items()}
        if self.net.training:
            self.net.eval()
        with torch.inference_mode():
            log_probs = torch.log_softmax(torch.func.functional_call(self.net, tensors, (self.images[rows],)), dim=1).numpy()
        return log_probs, self.split(rows)[1]


if __name__ == "__main__":
    serve(DigitsCNN(batchnorm="--batchnorm" in sys.argv[1:]))
