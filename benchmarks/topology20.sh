#!/usr/bin/env bash
# Issue 6 report (not a target): 20 members on a random 4-regular topology,
# digits, alpha 0.5, 30 rounds, with and without 2 attackers, trimmed mean
# vs clipping. "none" declares the same 2 Byzantine members (same plan).
# Usage: bash benchmarks/topology20.sh [SEEDS ("0")] [ATTACKS ("sign-flip")] [RULES ("trimmed-mean clipping")]
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
bench_setup flpeer
seeds="${1:-0}"
attacks="${2:-sign-flip}"
rules="${3:-trimmed-mean clipping}"
cp "$root/.build/release/flpeer" "$out/flpeer"
for rule in $rules; do
  for attack in none $attacks; do
    for seed in $seeds; do
      name="$rule-$attack-$seed"
      echo "$name" >&2
      if [ "$attack" = none ]; then who=(--max-byzantine 2); else who=(--byzantine 2 --attack "$attack"); fi
      "$out/flpeer" demo --dir "$out/$name" --json --peers 20 --topology regular:4 --rounds 30 --alpha 0.5 --rule "$rule" --seed "$seed" "${who[@]}" \
        2> "$out/$name.err" > "$out/$name.json" || { echo '{}' > "$out/$name.json"; tail -3 "$out/$name.err" >&2; }
      rm -rf "${out:?}/$name"
    done
  done
done
python3 - "$out" "$seeds" "$attacks" "$rules" <<'EOF'
import json, statistics, sys
out, seeds, attacks, rules = sys.argv[1], *[a.split() for a in sys.argv[2:]]
print("| rule | attackers | honest mean accuracy | s/round | MB moved | ledgers verified |")
print("| --- | --- | --- | --- | --- | --- |")
for rule in rules:
    for attack in ["none"] + attacks:
        runs = []
        for s in seeds:
            try:
                runs.append(json.load(open(f"{out}/{rule}-{attack}-{s}.json")))
            except ValueError:
                pass
        runs = [r for r in runs if "honest_mean_accuracy" in r]
        if not runs:
            print(f"| {rule} | {attack} | failed | | | |"); continue
        who = "none (2 declared)" if attack == "none" else f"2 × {attack}"
        print(f"| {rule} | {who} | {statistics.mean(r['honest_mean_accuracy'] for r in runs):.4f} | "
              f"{statistics.median(r['seconds_per_round'] for r in runs):.3f} | {statistics.mean(r['bytes_moved'] for r in runs) / 1e6:.1f} | "
              f"{all(r['ledger_verified'] for r in runs)} |")
EOF
