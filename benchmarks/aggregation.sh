#!/usr/bin/env bash
# Trimmed mean (beta 0.2, N=10, D=10M) vs a streaming sum in the same process
# and vs Flower 1.42's trim_mean, in one run. Needs: pip install flwr==1.42.0
source "$(dirname "$0")/common.sh"
n=${N:-10}; d=${D:-10000000}
echo "flpeer (Swift) …" >&2
swift_json=$("$flbench" aggregate --n "$n" --d "$d" --beta 0.2 --runs 7)
memory_json=$("$flbench" memory --n "$n" --d "$d")
echo "Flower trim_mean …" >&2
flower_json=$(python3 benchmarks/flower_trim_mean.py --n "$n" --d "$d" --beta 0.2 --runs 3)
python3 - "$swift_json" "$flower_json" "$memory_json" <<'PY'
import json, sys
s, f, m = json.loads(sys.argv[1]), json.loads(sys.argv[2]), json.loads(sys.argv[3])
print(json.dumps({"flpeer": s, "flower": f, "memory": m}))
print(f"N={s['n']} D={s['d']} beta={s['beta']} (k={s['trim_per_side']} per side), medians")
print(f"  streaming sum (a)          {s['streaming_sum_s']*1e3:8.1f} ms  {s['streaming_sum_GBps']:.1f} GB/s")
print(f"  flpeer trimmed mean        {s['trimmed_mean_s']*1e3:8.1f} ms  = {s['trimmed_over_sum']:.2f}x (a)")
print(f"  ... with per-peer counts   {s['trimmed_mean_with_counts_s']*1e3:8.1f} ms  = {s['counted_over_sum']:.2f}x (a)")
print(f"  ... allocating its output  {s['trimmed_mean_allocating_s']*1e3:8.1f} ms  = {s['allocating_over_sum']:.2f}x (a)")
print(f"  Flower {f['flwr']} trim_mean (b) {f['median_s']*1e3:8.1f} ms  -> flpeer is {f['median_s']/s['trimmed_mean_s']:.0f}x faster")
print(f"  memory (one aggregation alone, with counts): inputs {m['inputs_MB']:.0f} MB, output {m['output_MB']:.0f} MB, "
      f"peak RSS {m['peak_rss_MB']:.0f} MB = resident after inputs {m['rss_after_inputs_MB']:.0f} MB + {m['aggregation_added_MB']:.1f} MB; "
      f"Flower peak RSS {f['peak_rss_MB']:.0f} MB")
PY
