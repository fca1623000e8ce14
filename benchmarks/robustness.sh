#!/usr/bin/env bash
# The robustness matrix: honest members' mean test accuracy under each attack,
# for each Byzantine fraction and aggregation rule, beside the same run with
# every member honest (same members, seeds and beta). Digits, alpha 0.5, 30 rounds.
# Usage: bash benchmarks/robustness.sh [MODELS ("logreg mlp")] [FRACTIONS ("1/5 2/10 3/10")]
#                                      [RULES ("mean trimmed-mean trimmed-mean:no-screen median clipping")] [SEEDS ("0 1 2")]
#                                      [ATTACKS ("sign-flip gaussian label-flip alie ipm free-rider equivocate")]
# Prints Markdown tables (one per model and fraction) on standard output.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
bench_setup flpeer
models="${1:-logreg mlp}"
fractions="${2:-1/5 2/10 3/10}"
rules="${3:-mean trimmed-mean trimmed-mean:no-screen median clipping}"
seeds="${4:-0 1 2}"
attacks="${5:-sign-flip gaussian label-flip alie ipm free-rider equivocate}"
# A copy, so rebuilding while the matrix runs does not change the binary under it.
cp "$root/.build/release/flpeer" "$out/flpeer"
flpeer="$out/flpeer"

for model in $models; do
  for fraction in $fractions; do
    k="${fraction%/*}"; n="${fraction#*/}"
    beta=$(python3 -c "import math; print(max(0.2, math.ceil($k / $n * 100) / 100))")
    for rule in $rules; do
      # RULE:no-screen runs RULE without the validation screen.
      name_rule="${rule/:/-}"; screen=validation-loss
      case "$rule" in *:no-screen) screen=none ;; esac
      for seed in $seeds; do
        for attack in none $attacks; do
          name="$model-$k-$n-$name_rule-$attack-$seed"
          echo "$name" >&2
          # "none": the same plan (max_byzantine K, same beta) with every member honest.
          if [ "$attack" = none ]; then who=(--max-byzantine "$k"); else who=(--byzantine "$k" --attack "$attack"); fi
          "$flpeer" demo --dir "$out/$name" --json --peers "$n" --rounds 30 --alpha 0.5 --model "$model" --rule "${rule%%:*}" --screen "$screen" \
            --beta "$beta" --seed "$seed" "${who[@]}" 2> "$out/$name.err" > "$out/$name.json" || {
            echo '{}' > "$out/$name.json"
            echo "  $name failed; the last lines it printed:" >&2
            tail -n 5 "$out/$name.err" | sed 's/^/    /' >&2
          }
          rm -rf "$out/$name"
        done
      done
    done
  done
done

python3 - "$out" "$models" "$fractions" "$rules" "$seeds" "$attacks" <<'EOF'
import json, statistics, sys
out, models, fractions, rules, seeds, attacks = sys.argv[1], *[a.split() for a in sys.argv[2:]]
def honest(model, k, n, rule, attack):
    vals = []
    for s in seeds:
        try:
            o = json.load(open(f"{out}/{model}-{k}-{n}-{rule.replace(':', '-')}-{attack}-{s}.json"))
            vals.append(o["honest_mean_accuracy"])
        except (KeyError, ValueError, FileNotFoundError):
            return None
    return statistics.mean(vals)
for model in models:
    for fraction in fractions:
        k, n = fraction.split("/")
        print(f"\n### {model}, {k} Byzantine of {n} (mean honest test accuracy over seeds {', '.join(seeds)}; change from no attack in points)\n")
        print("| attack | " + " | ".join(rules) + " |")
        print("| --- |" + " --- |" * len(rules))
        base = {r: honest(model, k, n, r, "none") for r in rules}
        print("| none | " + " | ".join("failed" if base[r] is None else f"{base[r]:.4f}" for r in rules) + " |")
        for a in attacks:
            cells = []
            for r in rules:
                v = honest(model, k, n, r, a)
                cells.append("failed" if v is None or base[r] is None else f"{v:.4f} ({100 * (v - base[r]):+.1f})")
            print(f"| {a} | " + " | ".join(cells) + " |")
EOF
