#!/usr/bin/env bash
# Training throughput: digits MLP(64), batch 32, SGD momentum; flpeer vs numpy
# doing the same forward and backward passes, in one run.
source "$(dirname "$0")/common.sh"
swift_json=$("$flbench" train --hidden 64 --batch 32 --epochs 20 --data data/digits.csv)
numpy_json=$(python3 benchmarks/numpy_mlp.py --hidden 64 --batch 32 --epochs 20 --data data/digits.csv)
python3 - "$swift_json" "$numpy_json" <<'PY'
import json, sys
s, n = json.loads(sys.argv[1]), json.loads(sys.argv[2])
print(json.dumps({"flpeer": s, "numpy": n}))
print(f"digits MLP(64), batch {s['batch']}, {s['epochs']} epochs, median of 5 runs")
print(f"  flpeer  {s['samples_per_s']:12,.0f} samples/s  (final loss {s['final_loss']:.3f})")
print(f"  numpy   {n['samples_per_s']:12,.0f} samples/s  (final loss {n['final_loss']:.3f}, numpy {n['numpy']})")
print(f"  ratio   {s['samples_per_s']/n['samples_per_s']:.2f}x")
PY
