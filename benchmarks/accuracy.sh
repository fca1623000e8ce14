#!/usr/bin/env bash
# Centralised test accuracy, 80/20 stratified, mean of seeds 0-4, for the
# three acceptance configurations.
set -euo pipefail
cd "$(dirname "$0")/.."
swift build -c release --product flpeer >&2
for cfg in "breast_cancer.csv logreg" "digits.csv logreg" "digits.csv mlp"; do
  set -- $cfg
  accs=()
  for seed in 0 1 2 3 4; do
    accs+=("$(.build/release/flpeer train --data "data/$1" --model "$2" --seed "$seed" --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["accuracy"])')")
  done
  python3 -c "import sys; a=[float(x) for x in sys.argv[3:]]; print(f'{sys.argv[1]:18} {sys.argv[2]:7} mean {sum(a)/len(a):.4f}  seeds ' + ' '.join(f'{x:.4f}' for x in a))" "$1" "$2" "${accs[@]}"
done
