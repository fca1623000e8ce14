#!/usr/bin/env bash
# Federated training on digits (5 members, Dirichlet alpha 0.5, 30 rounds,
# 4 local epochs, trimmed mean) with flpeer — separate 'flpeer join' processes
# over loopback mutual TLS — beside Flower 1.42's simulation of the same
# workload (benchmarks/flower_digits.py), seed by seed, in one run.
# Usage: bash benchmarks/federated.sh [SEEDS (default "0 1 2")] [PEER COUNTS for the scale rows (default "10 20")]
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
seeds="${1:-0 1 2}"
scale="${2:-10 20}"
echo "building flpeer (release)…" >&2
swift build -c release --product flpeer >&2
flpeer="$root/.build/release/flpeer"
python3 -c "import flwr, ray" 2>/dev/null || python3 -m pip install -q -r benchmarks/requirements-flower.txt >&2
out="$(mktemp -d)"
trap 'rm -rf "$out"' EXIT

demo() {  # name, args…
  local name="$1"; shift
  local dir="$out/$name"
  echo "flpeer demo $*" >&2
  "$flpeer" demo --dir "$dir" --json "$@" 2>/dev/null > "$out/$name.json"
  rm -rf "$dir"
}
for s in $seeds; do
  demo "logreg-$s" --peers 5 --rounds 30 --alpha 0.5 --model logreg --seed "$s"
  for strategy in fedtrimmedavg fedavg; do
    echo "flower $strategy seed $s" >&2
    python3 benchmarks/flower_digits.py --strategy "$strategy" --seed "$s" --rounds 30 --clients 5 --alpha 0.5 --local-epochs 4 > "$out/flower-$strategy-$s.json"
  done
  demo "mlp-$s" --peers 5 --rounds 30 --alpha 0.5 --model mlp --seed "$s"
  echo "flower mlp fedtrimmedavg seed $s" >&2
  python3 benchmarks/flower_digits.py --model mlp --strategy fedtrimmedavg --seed "$s" --rounds 30 --clients 5 --alpha 0.5 --local-epochs 4 > "$out/flower-mlp-fedtrimmedavg-$s.json"
done
for n in $scale; do
  demo "scale-$n" --peers "$n" --rounds 30 --alpha 0.5 --model logreg --seed 0
done

python3 - "$out" "$seeds" "$scale" <<'EOF'
import json, statistics, sys
out, seeds, scale = sys.argv[1], sys.argv[2].split(), sys.argv[3].split()
load = lambda n: json.load(open(f"{out}/{n}.json"))
def row(label, runs):
    acc = [statistics.mean(p["accuracy"] for p in r["peers"]) for r in runs]
    worst = [min(p["accuracy"] for p in r["peers"]) for r in runs]
    central = [r["centralized_accuracy"] for r in runs]
    spr = [r["seconds_per_round"] for r in runs]
    print(f"| {label} | {len(runs[0]['peers'])} | {statistics.mean(acc):.4f} | {statistics.mean(worst):.4f} | {statistics.mean(central):.4f} | "
          f"{100 * (statistics.mean(central) - statistics.mean(worst)):.2f} | {statistics.median(spr):.4f} | "
          + ", ".join(f"{x:.4f}" for x in spr) + " |")
    return statistics.median(spr)
print("| flpeer | peers | mean accuracy | worst peer | centralised | gap (points, worst peer) | s/round (median) | s/round per seed |")
print("| --- | --- | --- | --- | --- | --- | --- | --- |")
ours = row("logreg, trimmed mean", [load(f"logreg-{s}") for s in seeds])
ours_mlp = row("MLP(64), trimmed mean", [load(f"mlp-{s}") for s in seeds])
for n in scale:
    row(f"logreg, trimmed mean, seed 0", [load(f"scale-{n}")])
print()
print("| Flower 1.42 | accuracy (mean) | s/round: total/rounds (median) | per seed | steady rounds 2–30 (median) | round 1 (median) |")
print("| --- | --- | --- | --- | --- | --- |")
for label, name in (("fedtrimmedavg", "flower-fedtrimmedavg"), ("fedavg", "flower-fedavg"),
                    ("fedtrimmedavg, MLP(64)", "flower-mlp-fedtrimmedavg")):
    runs = [load(f"{name}-{s}") for s in seeds]
    spr = [r["seconds_per_round"] for r in runs]
    print(f"| {label} | {statistics.mean(r['accuracy'] for r in runs):.4f} | {statistics.median(spr):.4f} | "
          + ", ".join(f"{x:.4f}" for x in spr)
          + f" | {statistics.median(r['steady_seconds_per_round'] for r in runs):.4f} | {statistics.median(r['first_round_seconds'] for r in runs):.2f} |")
    if name == "flower-fedtrimmedavg":
        ratio = statistics.median(spr) / ours
    elif name == "flower-mlp-fedtrimmedavg":
        ratio_mlp = statistics.median(spr) / ours_mlp
print()
print(f"Flower FedTrimmedAvg seconds per round / flpeer seconds per round (medians, logreg): {ratio:.1f}x")
print(f"Flower FedTrimmedAvg MLP seconds per round / flpeer MLP seconds per round (medians): {ratio_mlp:.1f}x")
EOF
