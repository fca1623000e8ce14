"""The worker side of flpeer's learner protocol (docs/learner-protocol.md).

Subclass `Learner`, define `init`, `train` and `evaluate`, and call
`serve(YourLearner())`. The helper speaks the protocol: JSON lines on
stdin/stdout, models as safetensors files in the folder the peer owns.
It needs numpy and safetensors only.

Anything the learner prints goes to stderr (the peer's learner log):
stdout carries the protocol alone.
"""

import csv
import gc
import json
import math
import os
import sys
import traceback

import numpy as np
from safetensors.numpy import load_file, save_file

PROTOCOL = 1

_DTYPES = {
    np.dtype("float64"): "F64", np.dtype("float32"): "F32", np.dtype("float16"): "F16",
    np.dtype("int64"): "I64", np.dtype("int32"): "I32", np.dtype("int16"): "I16", np.dtype("int8"): "I8",
    np.dtype("uint64"): "U64", np.dtype("uint32"): "U32", np.dtype("uint16"): "U16", np.dtype("uint8"): "U8",
    np.dtype("bool"): "BOOL",
}

# A row whose loss is not finite counts as this (JSON has no NaN).
LOSS_CAP = 1000.0


class Learner:
    """One member's model and data. Override `init`, `train`, `evaluate`
    and `rows`; the settings the peer passes are attributes:

    - `data`, `validation`, `test`: paths (FLPEER_DATA, FLPEER_VALIDATION, FLPEER_TEST; the last two may be None)
    - `classes`: class names in the plan's order (FLPEER_CLASSES); labels are indices into it
    - `label`: the label column (FLPEER_LABEL)
    - `seed`: the plan's seed (FLPEER_SEED)
    - `rounds`: the plan's number of rounds (FLPEER_ROUNDS; 0 when not set)
    - `local_epochs`, `batch_size`, `learning_rate`: the plan's settings
    - `label_map`: during `train`, None or a list mapping each true class to the
      class to train on (a label-flip attack, for robustness experiments)
    """

    def __init__(self):
        env = os.environ
        self.data = env.get("FLPEER_DATA")
        self.validation = env.get("FLPEER_VALIDATION")
        self.test = env.get("FLPEER_TEST")
        self.classes = [c for c in env.get("FLPEER_CLASSES", "").split(",") if c]
        self.label = env.get("FLPEER_LABEL", "label")
        self.seed = int(env.get("FLPEER_SEED", "0"))
        self.member = env.get("FLPEER_MEMBER", "")
        self.rounds = int(env.get("FLPEER_ROUNDS", "0"))
        self.local_epochs = int(env.get("FLPEER_LOCAL_EPOCHS", "1"))
        self.batch_size = int(env.get("FLPEER_BATCH_SIZE", "32"))
        self.learning_rate = float(env.get("FLPEER_LEARNING_RATE", "0.01"))
        self.label_map = None

    # -- to override -------------------------------------------------------

    def init(self, seed):
        """The initial model from `seed`: a dict of numpy arrays. Every member
        must return the same bytes for the same seed."""
        raise NotImplementedError

    def train(self, state, round, seed):
        """Trains from `state` (a dict of numpy arrays) for one round; returns
        (new state, rows trained on, {metric: number})."""
        raise NotImplementedError

    def evaluate(self, state, rows):
        """`rows` is "validation", "assessment" (every local row) or "test";
        returns (log-probabilities [n, classes], true labels [n])."""
        raise NotImplementedError

    def rows(self):
        """Row counts: {"train": n, "validation": n, "assessment": n, "test": n}."""
        raise NotImplementedError

    def evaluate_many(self, states, rows):
        """`evaluate` for every state of the iterator `states` (each loaded
        from its file as it is drawn); yields one (log-probabilities, labels)
        per state, in order. Override to evaluate several models at once
        (credits evaluate up to 32 per request); draw states lazily, so a
        large model is not held 32 times."""
        for state in states:
            yield self.evaluate(state, rows)

    # -- the protocol ------------------------------------------------------

    def hello(self):
        layout = self.init(self.seed)
        tensors = [{"name": k, "dtype": _dtype(v), "shape": list(v.shape)} for k, v in sorted(layout.items())]
        return {"protocol": PROTOCOL, "tensors": tensors, "classes": self.classes, "rows": self.rows()}

    def scores(self, states, rows):
        """Per-class results of each state of the iterator `states`."""
        k = len(self.classes)
        return [class_results(np.asarray(log_probs, dtype=np.float64), np.asarray(labels, dtype=np.int64), k)
                for log_probs, labels in self.evaluate_many(states, rows)]


def class_results(log_probs, labels, k):
    """Per-class mean losses, counts and the confusion matrix."""
    n = len(labels)
    losses = -log_probs[np.arange(n), labels] if n else np.zeros(0)
    losses = np.where(np.isfinite(losses), np.minimum(losses, LOSS_CAP), LOSS_CAP)
    predicted = np.argmax(np.nan_to_num(log_probs, nan=-np.inf), axis=1) if n else np.zeros(0, dtype=np.int64)
    counts = np.bincount(labels, minlength=k)[:k]
    sums = np.bincount(labels, weights=losses, minlength=k)[:k]
    confusion = np.bincount(labels * k + predicted, minlength=k * k)[:k * k].reshape(k, k)
    class_losses = np.divide(sums, counts, out=np.zeros(k), where=counts > 0)
    return {"class_losses": class_losses.tolist(), "class_counts": counts.tolist(), "confusion": confusion.tolist()}


def _dtype(array):
    try:
        return _DTYPES[np.asarray(array).dtype]
    except KeyError:
        raise TypeError(f"dtype {np.asarray(array).dtype} has no safetensors name")


def _finite(metrics):
    return {k: float(v) for k, v in metrics.items() if isinstance(v, (int, float)) and math.isfinite(float(v))}


def serve(learner, stdin=None):
    """Answers the peer's requests until `shutdown` or the end of stdin."""
    # The learner's start-up (framework imports, data) made most of the
    # objects this process will ever hold: the cyclic garbage collector
    # stops scanning them (it spent a fifth of a PyTorch worker's time
    # doing so; what train and evaluate allocate is still collected).
    gc.collect()
    gc.freeze()
    # stdout is the protocol's: everything else anyone prints goes to stderr.
    protocol_out = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    stdin = stdin or sys.stdin
    for line in stdin:
        if not line.strip():
            continue
        try:
            request = json.loads(line)
            verb = request.get("verb")
            if verb == "hello":
                answer = learner.hello()
            elif verb == "init":
                state = learner.init(int(request["seed"]))
                save_file({k: np.asarray(v, order="C") for k, v in state.items()}, request["out"])
                answer = {}
            elif verb == "train":
                learner.label_map = request.get("label_map")
                state, samples, metrics = learner.train(load_file(request["model"]), int(request["round"]), int(request["seed"]))
                learner.label_map = None
                save_file({k: np.asarray(v, order="C") for k, v in state.items()}, request["out"])
                answer = {"samples": int(samples), "metrics": _finite(metrics or {})}
            elif verb == "evaluate":
                answer = {"results": learner.scores((load_file(path) for path in request["models"]), request["rows"])}
            elif verb == "shutdown":
                protocol_out.write(json.dumps({"ok": True}) + "\n")
                break
            else:
                raise ValueError(f"unknown verb {verb!r}")
            answer["ok"] = True
        except Exception as error:  # the peer gets the reason; the traceback goes to the log
            traceback.print_exc(file=sys.stderr)
            answer = {"ok": False, "error": f"{type(error).__name__}: {error}"}
        protocol_out.write(json.dumps(answer, allow_nan=False) + "\n")
    protocol_out.flush()


# -- data helpers ---------------------------------------------------------

def load_csv(path, label, classes):
    """Features (float32 [n, d]) and labels (indices into `classes`) of a CSV
    file with a header row."""
    with open(path, newline="") as f:
        reader = csv.reader(f)
        header = next(reader)
        column = header.index(label)
        index = {c: i for i, c in enumerate(classes)}
        features, labels = [], []
        for row in reader:
            if not row:
                continue
            labels.append(index[row[column]])
            features.append([float(v) for j, v in enumerate(row) if j != column])
    return np.asarray(features, dtype=np.float32).reshape(len(labels), -1), np.asarray(labels, dtype=np.int64)


def stratified_split(labels, fraction, seed):
    """(kept, set aside) row indices: `fraction` of each class (rounded) set aside."""
    rng = np.random.default_rng(seed)
    kept, aside = [], []
    for c in np.unique(labels):
        rows = np.flatnonzero(labels == c)
        rng.shuffle(rows)
        n = int(round(fraction * len(rows)))
        aside.extend(rows[:n])
        kept.extend(rows[n:])
    return np.sort(np.asarray(kept, dtype=np.int64)), np.sort(np.asarray(aside, dtype=np.int64))


class CSVLearner(Learner):
    """A learner on CSV files: loads FLPEER_DATA (and FLPEER_VALIDATION,
    FLPEER_TEST) once; without a validation file, 10 % of each class of the
    data is set aside (seeded by the plan). Provides `rows()` and the arrays
    `x_train, y_train, x_validation, y_validation, x_assessment, y_assessment,
    x_test, y_test`; `split(rows)` returns the arrays for an `evaluate` call."""

    def __init__(self):
        super().__init__()
        x, y = load_csv(self.data, self.label, self.classes)
        if self.validation:
            self.x_train, self.y_train = x, y
            self.x_validation, self.y_validation = load_csv(self.validation, self.label, self.classes)
        else:
            kept, aside = stratified_split(y, 0.1, self.seed)
            self.x_train, self.y_train = x[kept], y[kept]
            self.x_validation, self.y_validation = x[aside], y[aside]
        self.x_assessment = np.concatenate([self.x_train, self.x_validation])
        self.y_assessment = np.concatenate([self.y_train, self.y_validation])
        if self.test:
            self.x_test, self.y_test = load_csv(self.test, self.label, self.classes)
        else:
            self.x_test, self.y_test = np.zeros((0, x.shape[1]), dtype=np.float32), np.zeros(0, dtype=np.int64)

    def rows(self):
        return {"train": len(self.y_train), "validation": len(self.y_validation), "assessment": len(self.y_assessment), "test": len(self.y_test)}

    def split(self, rows):
        return {"validation": (self.x_validation, self.y_validation), "assessment": (self.x_assessment, self.y_assessment),
                "test": (self.x_test, self.y_test)}[rows]

    def training_labels(self):
        """The training labels, remapped by a label-flip attack when one is set."""
        if self.label_map is None:
            return self.y_train
        return np.asarray(self.label_map, dtype=np.int64)[self.y_train]
