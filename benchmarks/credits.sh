#!/usr/bin/env bash
# Issue 7 acceptance: incentive credits on digits, alpha 0.5, 30 rounds, 10 members:
# 6 honest with different data sizes (--size-skew), a label-flipper, an ALIE
# attacker, an echo free-rider and a replay free-rider; and the same run with
# one honest member (inst06) lying as an assessor. Then the cost of scoring
# per round for 5, 10 and 20 members.
# Usage: bash benchmarks/credits.sh [SEEDS ("0 1 2")] [SIZE_SKEW (8)] [COST_SIZES ("5 10 20")]
# Prints a Markdown summary on standard output; progress on standard error.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
seeds="${1:-0 1 2}"
skew="${2:-8}"
sizes="${3:-5 10 20}"
echo "building flpeer and ledger-tool (release)…" >&2
swift build -c release --product flpeer >&2
swift build -c release --product ledger-tool >&2
out="$(mktemp -d)"
trap 'rm -rf "$out"' EXIT
cp "$root/.build/release/flpeer" "$root/.build/release/ledger-tool" "$out/"

common=(--peers 10 --rounds 30 --alpha 0.5 --size-skew "$skew")
for seed in $seeds; do
  echo "seed $seed: attackers" >&2
  "$out/flpeer" demo --dir "$out/a$seed" --json "${common[@]}" --seed "$seed" --byzantine 4 --attack label-flip,alie,free-rider,replay \
    2> "$out/a$seed.err" > "$out/a$seed.json" || { tail -5 "$out/a$seed.err" >&2; exit 1; }
  echo "seed $seed: attackers and a lying assessor" >&2
  "$out/flpeer" demo --dir "$out/b$seed" --json "${common[@]}" --seed "$seed" --byzantine 5 --max-byzantine 4 \
    --attack lying-assessor,label-flip,alie,free-rider,replay 2> "$out/b$seed.err" > "$out/b$seed.json" || { tail -5 "$out/b$seed.err" >&2; exit 1; }
  # Every recorded credit re-derives at every peer; the independent script agrees with the report.
  for l in "$out/a$seed"/state/*/ledger.sqlite; do
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
rows, ratios, rhos, liar = [], {}, [], []
for s in seeds:
    a, b = load(f"a{s}"), load(f"b{s}")
    peers = a["peers"]; honest = [p for p in peers if not p["byzantine"]]
    hm = statistics.mean(p["credit"] for p in honest)
    rho = spearman([p["train_rows"] for p in honest], [p["credit"] for p in honest]); rhos.append(rho)
    for p in peers:
        if p["byzantine"]: ratios.setdefault(p["attack"], []).append((p["credit"], hm))
    bc = {p["id"]: p["credit"] for p in b["peers"]}
    changes = [(abs(bc[p["id"]] - p["credit"]) / p["credit"] if p["credit"] > 0 else (0.0 if bc[p["id"]] == 0 else float("inf")), p["id"])
               for p in peers if p["id"] != "inst06"]
    worst = max(changes); liar.append(worst)
    rows.append((s, hm, rho, worst, a["honest_mean_accuracy"]))
print("| seed | mean honest total | Spearman (credit, train rows), honest | largest change of another's credit under a lying assessor | honest accuracy |")
print("| --- | --- | --- | --- | --- |")
for s, hm, rho, worst, acc in rows:
    print(f"| {s} | {hm:.0f} | {rho:.3f} | {100 * worst[0]:.1f} % ({worst[1]}) | {acc:.4f} |")
print()
print("| role | mean total (seeds) | share of the mean honest total |")
print("| --- | --- | --- |")
for role, v in ratios.items():
    t = statistics.mean(x for x, _ in v); h = statistics.mean(y for _, y in v)
    print(f"| {role} | {t:.0f} | {100 * t / h:.1f} % |")
print()
print(f"Mean Spearman over seeds: {statistics.mean(rhos):.3f}; largest change under a lying assessor: {100 * max(w[0] for w in liar):.1f} %")
print()
print("| members | scoring s/round (mean over peers) | round s | exact |")
print("| --- | --- | --- | --- |")
for n in sizes:
    c = load(f"cost{n}")
    print(f"| {n} | {c['scoring_seconds_per_round']:.4f} | {c['seconds_per_round']:.3f} | {'yes' if int(n) <= 10 else 'no (sampled permutations)'} |")
EOF
