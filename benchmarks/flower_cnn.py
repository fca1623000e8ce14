#!/usr/bin/env python3
"""Anchor for the external-learner benchmark: the PyTorch CNN of
examples/learners/torch_cnn.py in Flower 1.42, on the split an flpeer demo wrote.

``--split DIR`` is a finished ``flpeer demo --dir DIR`` folder: client i trains
on ``DIR/data/inst0i.csv`` exactly as flpeer's member does — the same
``DigitsCNN`` class (its 10 % validation rows held out, Adam, the plan's
learning rate, batch 32, ``--local-epochs`` per round, the same per-round
seeds) — and the server evaluates the global model on ``DIR/data/test.csv``
after the last round. Every client every round, ``FedTrimmedAvg`` (beta 0.2)
or ``FedAvg``; the initial model is ``DigitsCNN.init(seed)``, the bytes every
flpeer member starts from.

Timing as benchmarks/flower_digits.py: from right before round 1 to the end
of the last aggregation, inside the ServerApp (Ray start-up excluded).
Prints one JSON line.
"""
import argparse
import json
import logging
import os
import sys
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("RAY_DEDUP_LOGS", "0")
os.environ.setdefault("RAY_DISABLE_IMPORT_WARNING", "1")
os.environ.setdefault("RAY_ACCEL_ENV_VAR_OVERRIDE_ON_ZERO", "0")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")

import flwr  # noqa: E402
from flwr.app import Array, ArrayRecord, Context, Message, MetricRecord, RecordDict  # noqa: E402
from flwr.clientapp import ClientApp  # noqa: E402
from flwr.serverapp import Grid, ServerApp  # noqa: E402
from flwr.serverapp.strategy import FedAvg, FedTrimmedAvg  # noqa: E402
from flwr.simulation import run_simulation  # noqa: E402

REPO_ROOT = Path(__file__).resolve().parent.parent
CLASSES = [str(c) for c in range(10)]


def member_seed(plan_seed, member, round):
    """RoundEngine.Session.seed: FNV-1a of the id, mixed with the plan seed and round (UInt64)."""
    h = 0xCBF29CE484222325
    for b in member.encode():
        h = ((h ^ b) * 0x00000100000001B3) & 0xFFFFFFFFFFFFFFFF
    value = (plan_seed ^ h) + ((round * 0x9E3779B97F4A7C15) & 0xFFFFFFFFFFFFFFFF)
    return (value & 0xFFFFFFFFFFFFFFFF) & ((1 << 53) - 1)


def learner(data, test, args):
    """A DigitsCNN on one CSV, configured as an flpeer peer would configure it."""
    os.environ.update({"FLPEER_DATA": data, "FLPEER_CLASSES": ",".join(CLASSES), "FLPEER_SEED": str(args.seed),
                       "FLPEER_ROUNDS": str(args.rounds), "FLPEER_LOCAL_EPOCHS": str(args.local_epochs), "FLPEER_BATCH_SIZE": "32",
                       "FLPEER_LEARNING_RATE": str(args.learning_rate)})
    if test:
        os.environ["FLPEER_TEST"] = test
    else:
        os.environ.pop("FLPEER_TEST", None)
    sys.path.insert(0, str(REPO_ROOT / "examples" / "learners"))
    import torch_cnn  # noqa: E402
    return torch_cnn.DigitsCNN(batchnorm=args.batchnorm)


def to_record(state):
    return ArrayRecord({k: Array(np.asarray(v, order="C")) for k, v in sorted(state.items())})


def from_record(record):
    return {k: record[k].numpy() for k in record.keys()}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--split", required=True, help="a finished 'flpeer demo --dir' folder")
    ap.add_argument("--clients", type=int, default=5)
    ap.add_argument("--rounds", type=int, default=30)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--local-epochs", type=int, default=4)
    ap.add_argument("--learning-rate", type=float, default=0.003)
    ap.add_argument("--strategy", choices=["fedavg", "fedtrimmedavg"], default="fedtrimmedavg")
    ap.add_argument("--batchnorm", action="store_true")
    ap.add_argument("--client-cpus", type=float, default=1.0)
    args = ap.parse_args()
    split = Path(args.split)
    parts = [str(split / "data" / f"inst{i + 1:02d}.csv") for i in range(args.clients)]
    test_csv = str(split / "data" / "test.csv")
    logging.getLogger("flwr").setLevel(logging.ERROR)
    logging.getLogger("ray").setLevel(logging.ERROR)

    client = ClientApp()
    cache = {}

    @client.train()
    def train(msg: Message, context: Context) -> Message:
        pid = int(context.node_config["partition-id"])
        if pid not in cache:
            cache[pid] = learner(parts[pid], None, args)
        rnd = int(msg.content["config"]["server-round"])
        state, samples, metrics = cache[pid].train(from_record(msg.content["arrays"]), rnd, member_seed(args.seed, f"inst{pid + 1:02d}", rnd))
        return Message(content=RecordDict({"arrays": to_record(state),
                                           "metrics": MetricRecord({"train_loss": metrics["train_loss"], "num-examples": samples})}), reply_to=msg)

    out = {"marks": []}
    server = ServerApp()

    @server.main()
    def main_(grid: Grid, context: Context) -> None:
        common = dict(fraction_train=1.0, fraction_evaluate=0.0, min_train_nodes=args.clients, min_available_nodes=args.clients)
        strategy = FedAvg(**common) if args.strategy == "fedavg" else FedTrimmedAvg(beta=0.2, **common)
        judge = learner(parts[0], test_csv, args)

        def evaluate_fn(server_round, arrays):
            out["marks"].append(time.perf_counter())
            if server_round == args.rounds:
                log_probs, labels = judge.evaluate(from_record(arrays), "test")
                out["accuracy"] = float(np.mean(np.argmax(log_probs, axis=1) == labels))
                return MetricRecord({"accuracy": out["accuracy"]})
            return None

        strategy.start(grid=grid, initial_arrays=to_record(judge.init(args.seed)), num_rounds=args.rounds, evaluate_fn=evaluate_fn)

    run_simulation(server_app=server, client_app=client, num_supernodes=args.clients,
                   backend_config={"client_resources": {"num_cpus": args.client_cpus, "num_gpus": 0.0},
                                   "init_args": {"num_cpus": os.cpu_count() or 2, "logging_level": "ERROR", "log_to_driver": False}})
    if len(out["marks"]) != args.rounds + 1 or "accuracy" not in out:
        print("flower_cnn: the simulation did not finish all rounds", file=sys.stderr, flush=True)
        os._exit(1)
    marks = np.array(out["marks"])
    per_round = np.diff(marks)
    total = float(marks[-1] - marks[0])
    print(json.dumps({"framework": "flower", "flwr_version": flwr.__version__, "model": "torch_cnn" + ("+bn" if args.batchnorm else ""),
                      "strategy": args.strategy, "clients": args.clients, "rounds": args.rounds, "seed": args.seed,
                      "accuracy": round(out["accuracy"], 6), "seconds_per_round": round(total / args.rounds, 6),
                      "first_round_seconds": round(float(per_round[0]), 6),
                      "steady_seconds_per_round": round(float(np.median(per_round[1:])), 6) if args.rounds > 1 else None}), flush=True)
    os._exit(0)


if __name__ == "__main__":
    main()
