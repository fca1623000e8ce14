#!/usr/bin/env bash
# Cost of a round as the federation grows: for each member count and
# topology, one `flpeer demo` per seed (logreg, digits, alpha 0.5, 30 rounds,
# the default plan: commit-then-reveal, GTG-Shapley scoring, the screen),
# reporting the median over seeds of seconds per round, CPU seconds per
# member per round (user + system of each `flpeer join` process between the
# start of round 1 and the end of round 30, divided by 30, mean over
# members) and the worst ratio of a member's slowest round to its median.
# Usage: bash benchmarks/round_cost.sh [SEEDS (default "0 1 2")] [COUNTS (default "5 10 20")] [TOPOLOGIES (default "full regular:4")]
set -euo pipefail
seeds="${1:-0 1 2}" counts="${2:-5 10 20}" topologies="${3:-full regular:4}"
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
bench_setup flpeer
echo "| members | topology | s/round (median) | CPU s per member per round (median) | slowest / median round (worst member) | runs |"
echo "| --- | --- | --- | --- | --- | --- |"
for n in $counts; do
  for t in $topologies; do
    if [ "$t" != full ] && [ "${t#regular:}" -ge "$n" ]; then continue; fi
    for s in $seeds; do
      echo "flpeer demo --peers $n --topology $t --seed $s" >&2
      "$root/.build/release/flpeer" demo --peers "$n" --topology "$t" --rounds 30 --alpha 0.5 --model logreg --seed "$s" --dir "$out/run-$n-$s" --json 2>/dev/null > "$out/$n-${t/:/-}-$s.json"
      rm -rf "$out/run-$n-$s"
    done
    python3 - "$out" "$n" "${t/:/-}" "$t" "$seeds" <<'PY'
import json, statistics, sys
out, n, tag, label, seeds = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5].split()
runs = [json.load(open(f"{out}/{n}-{tag}-{s}.json")) for s in seeds]
spr = [r["seconds_per_round"] for r in runs]
cpu = [statistics.mean(p["round_cpu_seconds"] for p in r["peers"]) / r["rounds"] for r in runs]
stall = [max(max(p["round_seconds"]) / statistics.median(p["round_seconds"]) for p in r["peers"]) for r in runs]
print(f"| {n} | {label} | {statistics.median(spr):.4f} | {statistics.median(cpu):.4f} | {max(stall):.2f} | "
      + ", ".join(f"{a:.4f} s, {b * 1000:.1f} ms CPU" for a, b in zip(spr, cpu)) + " |")
PY
  done
done
