#!/usr/bin/env python3
"""Anchor for the federated benchmark: the same digits workload in Flower.

Flower 1.42 simulation (``flwr.simulation.run_simulation`` with a ServerApp and
a ClientApp on the Ray backend) of what ``flpeer demo --model logreg`` (or
``flpeer demo --model mlp``, with ``--model mlp`` here) runs:

* data: ``data/digits.csv`` (64 feature columns, then ``label``); a stratified
  20% test split, the other 80% split among ``--clients`` clients with a
  Dirichlet(``--alpha``) label skew (every client at least 10 rows), all
  seeded by ``--seed``; features standardised with the mean and population
  std of the pooled 80% training rows (std < 1e-12 -> 1);
* model ``logreg`` (default): softmax regression, weights 64x10 + bias 10,
  float32, small seeded random initial weights; local training is minibatch
  SGD (batch 32, momentum 0.9, learning rate 0.05, L2 3e-3 on the weights, not
  the bias) for ``--local-epochs`` epochs per round, in numpy;
* model ``mlp``: flpeer's MLP(64), 64 -> 64 (ReLU) -> 10 (softmax), float32,
  parameters ``layers.0.weight`` [64, 64], ``layers.0.bias`` [64],
  ``layers.1.weight`` [10, 64], ``layers.1.bias`` [10] (PyTorch's [out, in]
  layout, sent under these names); seeded He-uniform weights before the ReLU,
  Glorot-uniform on the output layer, zero biases (flpeer's scheme, not its
  random stream); local training is minibatch Adam (batch 32, learning rate
  0.003, betas 0.9/0.999, eps 1e-8, fresh optimizer state every round) on mean
  cross-entropy + (1e-4/2)||W||^2 over both weight matrices (not the biases)
  for ``--local-epochs`` epochs per round, in numpy;
* federation: every client every round, ``--rounds`` rounds, Flower's
  ``FedAvg`` (weighted by sample count) or ``FedTrimmedAvg`` (beta 0.2);
  the global model is evaluated on the common test split after the last
  round by the server (evaluate_fn); no client-side evaluation.

Timing: ``total_seconds`` is the wall time from the start of the first round
to the end of the last round's aggregation, taken inside the ServerApp (the
strategy calls evaluate_fn(0) right before round 1 and evaluate_fn(R) right
after round R's aggregation; the final accuracy is computed after the clock
stops). Interpreter start-up, imports, data preparation, Ray start-up and
shutdown are excluded. ``seconds_per_round`` = total_seconds / rounds.
Round 1 also carries the start of the Ray actors and the first load of the
ClientApp in them (seconds, and varies a lot from run to run), so the JSON
also gives ``first_round_seconds`` and ``steady_seconds_per_round`` (median
of rounds 2..R). In the steady state a round is mostly Flower's in-memory
grid polling for replies every 0.1 s (``InMemoryGrid.pull_interval``), so it
comes out as a multiple of about 0.1 s.

Prints one JSON line on stdout; Flower's and Ray's logs are quietened and go
to stderr.
"""
import argparse
import json
import logging
import os
import sys
import time
from pathlib import Path

import numpy as np

# Quieten Ray before it is imported (by flwr.simulation).
os.environ.setdefault("RAY_DEDUP_LOGS", "0")
os.environ.setdefault("RAY_DISABLE_IMPORT_WARNING", "1")
os.environ.setdefault("RAY_ACCEL_ENV_VAR_OVERRIDE_ON_ZERO", "0")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import flwr  # noqa: E402
from flwr.app import Array, ArrayRecord, Context, Message, MetricRecord, RecordDict  # noqa: E402
from flwr.clientapp import ClientApp  # noqa: E402
from flwr.serverapp import Grid, ServerApp  # noqa: E402
from flwr.serverapp.strategy import FedAvg, FedTrimmedAvg  # noqa: E402
from flwr.simulation import run_simulation  # noqa: E402

REPO_ROOT = Path(__file__).resolve().parent.parent

LEARNING_RATE = 0.05
MOMENTUM = 0.9
L2 = 3e-3
BATCH = 32
TEST_FRACTION = 0.2
MIN_PART_SIZE = 10
TRIM_BETA = 0.2

MLP_HIDDEN = 64
MLP_LEARNING_RATE = 0.003
ADAM_BETA1 = 0.9
ADAM_BETA2 = 0.999
ADAM_EPS = 1e-8
MLP_L2 = 1e-4
MLP_NAMES = ("layers.0.weight", "layers.0.bias", "layers.1.weight", "layers.1.bias")


# ---------------------------------------------------------------- data

def load_csv(path):
    raw = np.genfromtxt(path, delimiter=",", skip_header=1, dtype=np.float64)
    x = raw[:, :-1].astype(np.float32)
    y = raw[:, -1].astype(np.int64)
    return x, y


def stratified_split(y, fraction, rng):
    """Within every class shuffle the rows; round(fraction * count) go to test."""
    train, test = [], []
    for c in np.unique(y):
        group = np.flatnonzero(y == c)
        rng.shuffle(group)
        take = int(round(fraction * len(group)))
        test.extend(group[:take])
        train.extend(group[take:])
    train, test = np.array(train), np.array(test)
    rng.shuffle(train)
    rng.shuffle(test)
    return train, test


def dirichlet_partition(y, rows, parts, alpha, min_size, rng, attempts=10):
    """Flower Datasets' DirichletPartitioner scheme: per class, proportions
    p ~ Dir(alpha) cut that class's shuffled rows at floor(cumsum(p) * count);
    the whole draw is repeated until every part has at least min_size rows."""
    if len(rows) < parts * min_size:
        raise SystemExit(f"{len(rows)} rows cannot give {parts} parts of at least {min_size} rows")
    by_class = [rows[y[rows] == c] for c in np.unique(y[rows])]
    smallest = 0
    for _ in range(attempts):
        result = [[] for _ in range(parts)]
        for group in by_class:
            group = group.copy()
            rng.shuffle(group)
            p = rng.dirichlet([alpha] * parts)
            cuts = np.floor(np.cumsum(p) * len(group)).astype(int)
            cuts[-1] = len(group)
            start = 0
            for part in range(parts):
                end = max(start, min(len(group), cuts[part]))
                result[part].extend(group[start:end])
                start = end
        smallest = min(len(r) for r in result)
        if smallest >= min_size:
            out = []
            for r in result:
                r = np.array(r)
                rng.shuffle(r)
                out.append(r)
            return out
    raise SystemExit(f"after {attempts} draws some part still had only {smallest} rows "
                     f"(minimum {min_size}); raise --alpha")


def prepare(path, clients, alpha, seed):
    x, y = load_csv(path)
    rng = np.random.default_rng(seed)
    train_rows, test_rows = stratified_split(y, TEST_FRACTION, rng)
    parts = dirichlet_partition(y, train_rows, clients, alpha, MIN_PART_SIZE, rng)
    # Standardise with the pooled statistics of the training rows (population std).
    mean = x[train_rows].astype(np.float64).mean(axis=0)
    std = x[train_rows].astype(np.float64).std(axis=0)
    std[std < 1e-12] = 1.0
    xs = ((x - mean) / std).astype(np.float32)
    client_data = [(xs[r], y[r]) for r in parts]
    classes = int(y.max()) + 1
    return client_data, (xs[test_rows], y[test_rows]), classes


# ---------------------------------------------------------------- model

def initial_weights(features, classes, seed):
    rng = np.random.default_rng([seed, 7])
    w = (0.01 * rng.standard_normal((features, classes))).astype(np.float32)
    b = np.zeros(classes, np.float32)
    return w, b


def train_local(w, b, x, y, epochs, rng):
    """Minibatch SGD with heavy-ball momentum (v <- mu v + g; w <- w - lr v) on
    mean softmax cross-entropy + (L2/2)||W||^2. Momentum starts at zero each round."""
    w, b = w.copy(), b.copy()
    vw, vb = np.zeros_like(w), np.zeros_like(b)
    lr, mu, lam = np.float32(LEARNING_RATE), np.float32(MOMENTUM), np.float32(L2)
    n = len(y)
    loss = 0.0
    for _ in range(epochs):
        order = rng.permutation(n)
        for s in range(0, n, BATCH):
            idx = order[s:s + BATCH]
            xb, yb = x[idx], y[idx]
            m = len(idx)
            z = xb @ w + b
            z -= z.max(axis=1, keepdims=True)
            e = np.exp(z)
            p = e / e.sum(axis=1, keepdims=True)
            loss = float(-np.log(np.maximum(p[np.arange(m), yb], 1e-12)).mean()
                         + 0.5 * lam * np.sum(w * w))
            d = p
            d[np.arange(m), yb] -= 1
            d /= m
            gw = xb.T @ d + lam * w
            gb = d.sum(axis=0)
            vw *= mu
            vw += gw
            vb *= mu
            vb += gb
            w -= lr * vw
            b -= lr * vb
    return w, b, loss


def accuracy(w, b, x, y):
    return float(np.mean(np.argmax(x @ w + b, axis=1) == y))


# MLP(64): parameters in [out, in] layout, as flpeer's Network keeps them.

def mlp_initial_params(features, classes, seed, hidden=MLP_HIDDEN):
    """He-uniform (limit sqrt(6/fan_in)) before the ReLU, Glorot-uniform
    (limit sqrt(6/(fan_in+fan_out))) on the output layer, zero biases."""
    rng = np.random.default_rng([seed, 7])
    lim0 = np.sqrt(6.0 / features)
    lim1 = np.sqrt(6.0 / (hidden + classes))
    w0 = rng.uniform(-lim0, lim0, (hidden, features)).astype(np.float32)
    w1 = rng.uniform(-lim1, lim1, (classes, hidden)).astype(np.float32)
    return [w0, np.zeros(hidden, np.float32), w1, np.zeros(classes, np.float32)]


def train_mlp_local(params, x, y, epochs, rng):
    """Minibatch Adam on mean softmax cross-entropy + (L2/2)(||W0||^2 + ||W1||^2);
    the Adam moments and step count start at zero each round (flpeer makes a
    fresh optimizer for every local training)."""
    params = [p.astype(np.float32, copy=True) for p in params]
    first = [np.zeros_like(p) for p in params]
    second = [np.zeros_like(p) for p in params]
    lr, lam = np.float32(MLP_LEARNING_RATE), np.float32(MLP_L2)
    b1, b2, eps = np.float32(ADAM_BETA1), np.float32(ADAM_BETA2), np.float32(ADAM_EPS)
    n = len(y)
    step = 0
    loss = 0.0
    for _ in range(epochs):
        order = rng.permutation(n)
        for s in range(0, n, BATCH):
            idx = order[s:s + BATCH]
            xb, yb = x[idx], y[idx]
            m = len(idx)
            w0, bias0, w1, bias1 = params
            h = xb @ w0.T + bias0
            np.maximum(h, 0, out=h)
            z = h @ w1.T + bias1
            z -= z.max(axis=1, keepdims=True)
            e = np.exp(z)
            p = e / e.sum(axis=1, keepdims=True)
            loss = float(-np.log(np.maximum(p[np.arange(m), yb], 1e-12)).mean()
                         + 0.5 * lam * (np.sum(w0 * w0) + np.sum(w1 * w1)))
            d = p
            d[np.arange(m), yb] -= 1
            d /= np.float32(m)
            gw1 = d.T @ h + lam * w1
            gb1 = d.sum(axis=0)
            dh = d @ w1
            dh[h <= 0] = 0
            gw0 = dh.T @ xb + lam * w0
            gb0 = dh.sum(axis=0)
            # Adam, written as flpeer's Optimizer does it:
            # w -= lr*sqrt(c2)/c1 * m / (sqrt(v) + eps*sqrt(c2)), c_i = 1 - beta_i^t.
            step += 1
            c1 = 1.0 - ADAM_BETA1 ** step
            c2 = 1.0 - ADAM_BETA2 ** step
            step_size = np.float32(MLP_LEARNING_RATE * np.sqrt(c2) / c1)
            eps_hat = np.float32(ADAM_EPS * np.sqrt(c2))
            for param, g, mom, var in zip(params, (gw0, gb0, gw1, gb1), first, second):
                mom *= b1
                mom += (1 - b1) * g
                var *= b2
                var += (1 - b2) * (g * g)
                param -= step_size * mom / (np.sqrt(var) + eps_hat)
    return params, loss


def mlp_accuracy(params, x, y):
    w0, bias0, w1, bias1 = params
    h = np.maximum(x @ w0.T + bias0, 0)
    return float(np.mean(np.argmax(h @ w1.T + bias1, axis=1) == y))


# Model dispatch: what travels in the ArrayRecord, and how it is trained.

def initial_params(model, features, classes, seed):
    if model == "mlp":
        return mlp_initial_params(features, classes, seed)
    return list(initial_weights(features, classes, seed))


def to_record(model, params):
    if model == "mlp":
        return ArrayRecord({name: Array(np.ascontiguousarray(p)) for name, p in zip(MLP_NAMES, params)})
    return ArrayRecord(params)


def from_record(model, record):
    if model == "mlp":
        return [record[name].numpy().astype(np.float32) for name in MLP_NAMES]
    return record.to_numpy_ndarrays()


def train_params(model, params, x, y, epochs, rng):
    if model == "mlp":
        return train_mlp_local(params, x, y, epochs, rng)
    w, b, loss = train_local(params[0].astype(np.float32), params[1].astype(np.float32), x, y, epochs, rng)
    return [w, b], loss


def params_accuracy(model, params, x, y):
    if model == "mlp":
        return mlp_accuracy(params, x, y)
    return accuracy(params[0], params[1], x, y)


# ---------------------------------------------------------------- Flower apps

def make_client_app(model, client_data, local_epochs, seed):
    app = ClientApp()

    @app.train()
    def train(msg: Message, context: Context) -> Message:
        pid = int(context.node_config["partition-id"])
        server_round = int(msg.content["config"]["server-round"])
        x, y = client_data[pid]
        params = from_record(model, msg.content["arrays"])
        rng = np.random.default_rng([seed, pid, server_round])
        params, loss = train_params(model, params, x, y, local_epochs, rng)
        content = RecordDict({
            "arrays": to_record(model, params),
            "metrics": MetricRecord({"train_loss": loss, "num-examples": len(y)}),
        })
        return Message(content=content, reply_to=msg)

    return app


def make_server_app(args, test, classes, features, out):
    app = ServerApp()

    @app.main()
    def main(grid: Grid, context: Context) -> None:
        common = dict(fraction_train=1.0, fraction_evaluate=0.0,
                      min_train_nodes=args.clients, min_available_nodes=args.clients)
        if args.strategy == "fedavg":
            strategy = FedAvg(**common)
        else:
            strategy = FedTrimmedAvg(beta=TRIM_BETA, **common)

        def evaluate_fn(server_round: int, arrays: ArrayRecord):
            # Called before round 1 (server_round 0) and after every round.
            out["marks"].append(time.perf_counter())
            if server_round == args.rounds:
                out["accuracy"] = params_accuracy(args.model, from_record(args.model, arrays), *test)
                return MetricRecord({"accuracy": out["accuracy"]})
            return None

        params0 = initial_params(args.model, features, classes, args.seed)
        strategy.start(grid=grid, initial_arrays=to_record(args.model, params0),
                       num_rounds=args.rounds, evaluate_fn=evaluate_fn)

    return app


# ---------------------------------------------------------------- main

def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", default=str(REPO_ROOT / "data" / "digits.csv"))
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--rounds", type=int, default=30)
    ap.add_argument("--clients", type=int, default=5)
    ap.add_argument("--alpha", type=float, default=0.5)
    ap.add_argument("--model", choices=["logreg", "mlp"], default="logreg",
                    help="softmax regression (SGD) or flpeer's MLP(64) (Adam)")
    ap.add_argument("--strategy", choices=["fedavg", "fedtrimmedavg"], default="fedavg")
    ap.add_argument("--local-epochs", type=int, default=2)
    ap.add_argument("--client-cpus", type=float, default=1.0,
                    help="Ray CPUs per ClientApp (2 cores here: 1 gives two actors)")
    ap.add_argument("--verbose", action="store_true", help="keep Flower's INFO logs (stderr)")
    args = ap.parse_args()
    if args.rounds < 1 or args.clients < 2 or args.local_epochs < 1 or args.alpha <= 0:
        ap.error("need --rounds >= 1, --clients >= 2, --local-epochs >= 1, --alpha > 0")

    client_data, test, classes = prepare(args.data, args.clients, args.alpha, args.seed)
    features = test[0].shape[1]

    if not args.verbose:
        # ERROR hides run_simulation's deprecation notice (1.42 prefers `flwr run`)
        # and FedAvg's "fraction_evaluate is 0" warning, both expected here.
        logging.getLogger("flwr").setLevel(logging.ERROR)
        logging.getLogger("ray").setLevel(logging.ERROR)

    out = {"marks": []}
    backend_config = {
        "client_resources": {"num_cpus": args.client_cpus, "num_gpus": 0.0},
        "init_args": {"num_cpus": os.cpu_count() or 2, "logging_level": "ERROR",
                      "log_to_driver": False},
    }
    try:
        run_simulation(
            server_app=make_server_app(args, test, classes, features, out),
            client_app=make_client_app(args.model, client_data, args.local_epochs, args.seed),
            num_supernodes=args.clients,
            backend_config=backend_config,
        )
        failure = None
    except Exception as e:  # e.g. Ray's node timing out at start on a loaded machine
        failure = f"{type(e).__name__}: {e}"
    if failure or len(out["marks"]) != args.rounds + 1 or "accuracy" not in out:
        # When the runtime crashes, the ServerApp thread still waits for its
        # nodes and would keep the interpreter alive: leave at once.
        print(f"flower_digits: the simulation did not finish all rounds ({failure or 'no result'});"
              " see the log above", file=sys.stderr, flush=True)
        os._exit(1)
    marks = np.array(out["marks"])
    total = float(marks[-1] - marks[0])
    per_round = np.diff(marks)
    print(json.dumps({
        "framework": "flower", "flwr_version": flwr.__version__, "model": args.model,
        "strategy": args.strategy,
        "clients": args.clients, "rounds": args.rounds, "alpha": args.alpha, "seed": args.seed,
        "local_epochs": args.local_epochs,
        "accuracy": round(out["accuracy"], 6),
        "seconds_per_round": round(total / args.rounds, 6),
        "total_seconds": round(total, 6),
        # Extra detail: round 1 carries Ray's actor start-up and the ClientApp's
        # first load; the steady state is the median of rounds 2..R.
        "first_round_seconds": round(float(per_round[0]), 6),
        "steady_seconds_per_round": (round(float(np.median(per_round[1:])), 6)
                                     if args.rounds > 1 else None),
    }), flush=True)


if __name__ == "__main__":
    main()
