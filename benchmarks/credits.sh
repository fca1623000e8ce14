#!/usr/bin/env bash
# Issue 7 acceptance: incentive credits on digits, alpha 0.5, 30 rounds, 10 members:
# 6 honest with different data sizes (--size-weights: expected sizes 1x to 8x,
# geometric), a label-flipper, an ALIE attacker, an echo free-rider and a
# replay free-rider (each at the middle weight 3); and the same run with one
# honest member (inst06) lying as an assessor. Then the cost of scoring per
# round for 5, 10 and 20 members.
# Usage: bash benchmarks/credits.sh [SEEDS ("0 1 2")] [SIZE_WEIGHTS ("1,1.52,2.3,3.48,5.28,8,3,3,3,3")] [COST_SIZES ("5 10 20")]
# A single number as SIZE_WEIGHTS is --size-skew (a linear ramp over all ten
# members); an empty COST_SIZES skips the cost part.
# Prints a Markdown summary on standard output; progress on standard error.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
bench_setup flpeer ledger-tool
seeds="${1:-0 1 2}"
weights="${2:-1,1.52,2.3,3.48,5.28,8,3,3,3,3}"
sizes="${3-5 10 20}"
cp "$root/.build/release/flpeer" "$root/.build/release/ledger-tool" "$out/"

if [[ "$weights" == *,* ]]; then size=(--size-weights "$weights"); else size=(--size-skew "$weights"); fi
common=(--peers 10 --rounds 30 --alpha 0.5 "${size[@]}")
for seed in $seeds; do
  echo "seed $seed: attackers" >&2
  "$out/flpeer" demo --dir "$out/a$seed" --json "${common[@]}" --seed "$seed" --byzantine 4 --attack label-flip,alie,free-rider,replay \
    2> "$out/a$seed.err" > "$out/a$seed.json" || { tail -5 "$out/a$seed.err" >&2; exit 1; }
  echo "seed $seed: attackers and a lying assessor" >&2
  "$out/flpeer" demo --dir "$out/b$seed" --json "${common[@]}" --seed "$seed" --byzantine 5 --max-byzantine 4 \
    --attack lying-assessor,label-flip,alie,free-rider,replay 2> "$out/b$seed.err" > "$out/b$seed.json" || { tail -5 "$out/b$seed.err" >&2; exit 1; }
  # Every recorded credit re-derives at every peer; the independent script agrees with the report.
  for l in "$out/a$seed"/state/*/ledger.sqlite "$out/b$seed"/state/*/ledger.sqlite; do
    "$out/ledger-tool" report "$l" --verify > /dev/null 2>> "$out/verify.log" || { echo "report --verify failed on $l" >&2; exit 1; }
  done
  "$out/ledger-tool" export "$out/a$seed/state/inst01/ledger.sqlite" --jsonl > "$out/a$seed.jsonl"
  "$out/ledger-tool" report "$out/a$seed/state/inst01/ledger.sqlite" --format json > "$out/a$seed.report.json"
  python3 ledger-tools/credits.py "$out/a$seed.jsonl" --compare "$out/a$seed.report.json" > /dev/null 2>> "$out/verify.log"
done
for n in $sizes; do
  echo "cost: $n members" >&2
  "$out/flpeer" demo --dir "$out/cost$n" --json --peers "$n" --rounds 10 --alpha 0.5 --seed 0 2> "$out/cost$n.err" > "$out/cost$n.json" \
    || { tail -5 "$out/cost$n.err" >&2; exit 1; }
done

python3 - "$out" "$seeds" "$sizes" <<'EOF'
import json, statistics, sys
out, seeds, sizes = sys.argv[1], sys.argv[2].split(), sys.argv[3].split()
def load(name): return json.load(open(f"{out}/{name}.json"))
def ranks(xs):
    order = sorted(range(len(xs)), key=lambda i: xs[i]); r = [0.0] * len(xs); i = 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and xs[order[j + 1]] == xs[order[i]]: j += 1
        for k in range(i, j + 1): r[order[k]] = (i + j) / 2
        i = j + 1
    return r
def spearman(a, b):
    ra, rb = ranks(a), ranks(b); ma, mb = statistics.mean(ra), statistics.mean(rb)
    num = sum((x - ma) * (y - mb) for x, y in zip(ra, rb))
    den = (sum((x - ma) ** 2 for x in ra) * sum((y - mb) ** 2 for y in rb)) ** 0.5
    return num / den if den else 0.0
def change(before, after):
    return abs(after - before) / before if before > 0 else (0.0 if after == before else float("inf"))
rows, ratios, rhos, liar = [], {}, [], []
credit, liar_credit, train = {}, {}, {}
honest_ids = None
for s in seeds:
    a, b = load(f"a{s}"), load(f"b{s}")
    peers = a["peers"]; honest = [p for p in peers if not p["byzantine"]]
    honest_ids = [p["id"] for p in honest]
    hm = statistics.mean(p["credit"] for p in honest)
    rho = spearman([p["train_rows"] for p in honest], [p["credit"] for p in honest]); rhos.append(rho)
    for p in peers:
        if p["byzantine"]: ratios.setdefault(p["attack"], []).append((p["credit"], hm))
        credit.setdefault(p["id"], []).append(p["credit"]); train.setdefault(p["id"], []).append(p["train_rows"])
    bc = {p["id"]: p["credit"] for p in b["peers"]}
    for i, c in bc.items(): liar_credit.setdefault(i, []).append(c)
    worst = max((change(p["credit"], bc[p["id"]]), p["id"]) for p in peers if p["id"] != "inst06")
    liar.append(worst)
    rows.append((s, hm, rho, worst, a["honest_mean_accuracy"], a["credit_recorded_mismatches"] + b["credit_recorded_mismatches"]))
print("| seed | mean honest total | Spearman (credit, train rows), honest | largest change of another's credit under a lying assessor | honest accuracy | recorded credits that do not re-derive |")
print("| --- | --- | --- | --- | --- | --- |")
for s, hm, rho, worst, acc, mism in rows:
    print(f"| {s} | {hm:.0f} | {rho:.3f} | {100 * worst[0]:.1f} % ({worst[1]}) | {acc:.4f} | {mism} |")
print()
print("| role | mean total (seeds) | share of the mean honest total |")
print("| --- | --- | --- |")
for role, v in ratios.items():
    t = statistics.mean(x for x, _ in v); h = statistics.mean(y for _, y in v)
    print(f"| {role} | {t:.0f} | {100 * t / h:.1f} % |")
print()
mean = {i: statistics.mean(v) for i, v in credit.items()}; mean_liar = {i: statistics.mean(v) for i, v in liar_credit.items()}
seed_mean_worst = max((change(mean[i], mean_liar[i]), i) for i in mean if i != "inst06")
rho_of_means = spearman([statistics.mean(train[i]) for i in honest_ids], [mean[i] for i in honest_ids])
print(f"Per seed: mean Spearman {statistics.mean(rhos):.3f} (lowest {min(rhos):.3f}); largest change under a lying assessor {100 * max(w[0] for w in liar):.1f} %.")
print(f"Mean of the seeds (each institution's credit averaged over seeds): Spearman {rho_of_means:.3f}; largest change under a lying assessor {100 * seed_mean_worst[0]:.1f} % ({seed_mean_worst[1]}).")
print()
print("| members | scoring s/round (mean over peers) | round s | exact |")
print("| --- | --- | --- | --- |")
for n in sizes:
    c = load(f"cost{n}")
    print(f"| {n} | {c['scoring_seconds_per_round']:.4f} | {c['seconds_per_round']:.3f} | {'yes' if int(n) <= 10 else 'no (sampled permutations)'} |")
EOF
