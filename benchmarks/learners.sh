#!/usr/bin/env bash
# External learners (docs/learner-protocol.md): the PyTorch CNN of
# examples/learners/torch_cnn.py on digits as 1x8x8 images, 5 members,
# Dirichlet alpha 0.5, 30 rounds, 4 local epochs, Adam 0.003, trimmed mean,
# as separate 'flpeer join' processes each with its own worker — beside
# Flower 1.42 training the same CNN on the same split (benchmarks/flower_cnn.py
# reads the demo's data folder), seed by seed in one run. Then: one sign-flipper
# of five against the clean run, the CNN with BatchNorm (running statistics
# aggregated, then kept local: FedBN), and a personalised head (plan local_parameters
# "9.*", each member's own test rows) against a fully shared model at alpha 0.1.
# Usage: bash benchmarks/learners.sh [SEEDS (default "0 1 2")]
# Needs: pip install torch, and benchmarks/requirements-flower.txt.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
seeds="${1:-0 1 2}"
echo "building flpeer (release)…" >&2
swift build -c release --product flpeer >&2
flpeer="$root/.build/release/flpeer"
python3 -c "import torch" 2>/dev/null || { echo "learners.sh needs PyTorch: pip install torch" >&2; exit 1; }
python3 -c "import flwr, ray" 2>/dev/null || python3 -m pip install -q -r benchmarks/requirements-flower.txt >&2
out="$(mktemp -d)"
trap 'rm -rf "$out"' EXIT
cnn="python3 examples/learners/torch_cnn.py"
common=(--peers 5 --rounds 30 --learning-rate 0.003 --learner-command "$cnn")

for s in $seeds; do
  echo "flpeer demo, torch CNN, seed $s" >&2
  "$flpeer" demo "${common[@]}" --alpha 0.5 --seed "$s" --dir "$out/cnn-$s" --json 2>/dev/null > "$out/cnn-$s.json"
  echo "flower, torch CNN, seed $s (same split)" >&2
  python3 benchmarks/flower_cnn.py --split "$out/cnn-$s" --seed "$s" --rounds 30 --local-epochs 4 --learning-rate 0.003 2>/dev/null > "$out/flower-$s.json"
  rm -rf "$out/cnn-$s"
done
echo "flpeer demo, torch CNN, one sign-flipper of five, seed 0" >&2
"$flpeer" demo "${common[@]}" --alpha 0.5 --seed 0 --byzantine 1 --attack sign-flip --dir "$out/flip" --json 2>/dev/null > "$out/flip.json"
rm -rf "$out/flip"
for stats in shared local; do
  echo "flpeer demo, torch CNN with BatchNorm, seed 0, running statistics $stats" >&2
  extra=()
  [ "$stats" = local ] && extra=(--local-parameters "*.running_*")
  "$flpeer" demo --peers 5 --rounds 30 --learning-rate 0.003 --learner-command "$cnn --batchnorm" --alpha 0.5 --seed 0 "${extra[@]}" \
    --dir "$out/bn-$stats" --json 2>/dev/null > "$out/bn-$stats.json"
  rm -rf "$out/bn-$stats"
done
for head in shared local; do
  echo "flpeer demo, torch CNN, alpha 0.1, own test rows, head $head" >&2
  extra=()
  [ "$head" = local ] && extra=(--local-parameters "9.*")
  "$flpeer" demo "${common[@]}" --alpha 0.1 --seed 0 --own-test 0.25 "${extra[@]}" --dir "$out/head-$head" --json 2>/dev/null > "$out/head-$head.json"
  rm -rf "$out/head-$head"
done

python3 - "$out" "$seeds" <<'PY'
import json, statistics as st, sys
out, seeds = sys.argv[1], sys.argv[2].split()
load = lambda n: json.load(open(f"{out}/{n}.json"))
print("| seed | flpeer s/round | flpeer steady | flpeer accuracy (worst member) | centralised | gap, points | learner s/round (median member) | overhead s/round beyond the learner | worker start-up s | Flower s/round (total/30) | Flower steady | Flower accuracy |")
print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
ours, ours_steady, theirs, steady, gaps = [], [], [], [], []
for s in seeds:
    d, f = load(f"cnn-{s}"), load(f"flower-{s}")
    worst = min(p["accuracy"] for p in d["peers"])
    learner = st.median(p["learner_seconds_per_round"] for p in d["peers"])
    start = st.median(p["learner_start_seconds"] for p in d["peers"])
    gap = 100 * (d["centralized_accuracy"] - worst)
    # Like Flower's steady figure: the median of rounds 2-30 (median member).
    mine = st.median(st.median(p["round_seconds"][1:]) for p in d["peers"])
    ours.append(d["seconds_per_round"]); ours_steady.append(mine); theirs.append(f["seconds_per_round"]); steady.append(f["steady_seconds_per_round"]); gaps.append(gap)
    print(f"| {s} | {d['seconds_per_round']:.3f} | {mine:.3f} | {worst:.4f} | {d['centralized_accuracy']:.4f} | {gap:.2f} | {learner:.3f} | "
          f"{d['seconds_per_round'] - learner:.3f} | {start:.2f} | {f['seconds_per_round']:.3f} | {f['steady_seconds_per_round']:.3f} | {f['accuracy']:.4f} |")
print()
print(f"medians: flpeer {st.median(ours):.3f} s/round ({st.median(ours_steady):.3f} steady), Flower {st.median(theirs):.3f} (total/30) and {st.median(steady):.3f} (steady); "
      f"flpeer/Flower {st.median(ours) / st.median(theirs):.2f}x and {st.median(ours) / st.median(steady):.2f}x, steady/steady {st.median(ours_steady) / st.median(steady):.2f}x; "
      f"largest gap to centralised {max(gaps):.2f} points")
clean, flip = load("cnn-0") if "0" in seeds else None, load("flip")
honest = [p["accuracy"] for p in flip["peers"] if not p["byzantine"]]
if clean:
    print(f"sign-flip 1 of 5 (seed 0): honest mean {st.mean(honest):.4f} vs clean {clean['mean_accuracy']:.4f}: {100 * (clean['mean_accuracy'] - st.mean(honest)):.2f} points")
for stats in ("shared", "local"):
    b = load(f"bn-{stats}")
    accs = [p["accuracy"] for p in b["peers"]]
    print(f"BatchNorm CNN, seed 0, running statistics {stats}: members {min(accs):.4f}-{max(accs):.4f} (mean {st.mean(accs):.4f}), "
          f"centralised {b['centralized_accuracy']:.4f}, {b['seconds_per_round']:.3f} s/round, ledgers verified: {b['ledger_verified']}")
shared, local = load("head-shared"), load("head-local")
print()
print("| member | own-test accuracy, fully shared | own-test accuracy, personalised head (9.*) |")
print("| --- | --- | --- |")
for a, b in zip(shared["peers"], local["peers"]):
    print(f"| {a['id']} | {a['accuracy']:.4f} | {b['accuracy']:.4f} |")
print(f"| mean | {shared['mean_accuracy']:.4f} | {local['mean_accuracy']:.4f} |")
PY
