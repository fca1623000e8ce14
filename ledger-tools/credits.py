#!/usr/bin/env python3
"""Recompute flpeer incentive credits from `ledger-tool export --jsonl`, independently of the Swift code.

Usage: credits.py EXPORT.jsonl [--compare REPORT.json] [--json]

Implements docs/credits.md (rule median-of-others/1) from the exported entries
alone: per round, each assessor (an author of an aggregate entry, unless an
evidence entry accuses it) votes its signed score for every member it
included and 0 for every member it screened out; a member's round credit is
the median of the votes of the other assessors; totals are the sums, in round
order, of the positive round credits. With --compare, checks that
`ledger-tool report --format json` gives exactly the same figures (exit 1 if
not). Only the standard library is used.
"""
import argparse
import json
import sys


def median(xs):
    s = sorted(xs)
    n = len(s)
    return s[n // 2] if n % 2 == 1 else (s[n // 2 - 1] + s[n // 2]) / 2


def round_credits(assessments):
    votes = {}
    for a in assessments:
        for member, score in a["scores"].items():
            if member != a["assessor"]:
                votes.setdefault(member, []).append(score)
        for member in set(a["screened"]):
            if member != a["assessor"] and member not in a["scores"]:
                votes.setdefault(member, []).append(0)
    return {m: median(v) for m, v in votes.items() if v}


def compute(entries):
    accused = {}
    for e in entries:
        if e["kind"] == "evidence" and isinstance(e.get("body"), dict):
            b = e["body"]
            if isinstance(b.get("author"), str) and isinstance(b.get("seq"), int):
                accused.setdefault(b["author"], set()).add(b["seq"])
    members = {e["author"] for e in entries if e["kind"] == "genesis"}
    by_round = {}
    for e in sorted(entries, key=lambda e: (e["author"], e["seq"])):
        if e["kind"] != "aggregate" or e["author"] in accused or not isinstance(e.get("body"), dict):
            continue
        body = e["body"]
        scores = body.get("scores")
        if not isinstance(scores, dict) or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in scores.values()):
            continue
        screened = [s["author"] for s in body.get("screened", []) if isinstance(s, dict) and isinstance(s.get("author"), str)]
        gated = (body.get("scoring") or {}).get("gated") or {}
        by_round.setdefault(e["round"], {}).setdefault(e["author"], {
            "assessor": e["author"], "scores": scores, "screened": screened, "gated": gated})
    rounds = sorted(by_round)
    lines = {m: {"id": m, "rounds": {}, "total": 0, "negative": 0, "times_screened": 0, "gated": {}, "evidence": 0}
             for m in members | set(accused)}
    for r in rounds:
        assessments = [by_round[r][a] for a in sorted(by_round[r])]
        for member, credit in round_credits(assessments).items():
            lines.setdefault(member, {"id": member, "rounds": {}, "total": 0, "negative": 0, "times_screened": 0, "gated": {}, "evidence": 0})
            lines[member]["rounds"][r] = credit
        for a in assessments:
            for m in set(a["screened"]):
                if m != a["assessor"]:
                    lines[m]["times_screened"] += 1
            for m, gate in a["gated"].items():
                if m != a["assessor"]:
                    lines[m]["gated"][gate] = lines[m]["gated"].get(gate, 0) + 1
    for m, seqs in accused.items():
        lines[m]["evidence"] = len(seqs)
    for line in lines.values():
        contributed = 0
        for r in sorted(line["rounds"]):
            c = line["rounds"][r]
            if c > 0:
                line["total"] += c
                contributed += 1
            else:
                line["negative"] += c
        line["rounds_contributed"] = contributed
    total = 0
    for m in sorted(lines):
        total += lines[m]["total"]
    for line in lines.values():
        line["share"] = line["total"] / total if total > 0 else 0
    return {"rounds": rounds, "institutions": [lines[m] for m in sorted(lines)]}


def compare(mine, theirs):
    problems = []
    got = {i["id"]: i for i in theirs.get("institutions", [])}
    if sorted(got) != [i["id"] for i in mine["institutions"]]:
        problems.append(f"institutions differ: {sorted(got)} vs {[i['id'] for i in mine['institutions']]}")
    for i in mine["institutions"]:
        t = got.get(i["id"])
        if t is None:
            continue
        for key in ("total", "negative", "share", "rounds_contributed", "times_screened", "evidence", "gated"):
            if t.get(key) != i[key]:
                problems.append(f"{i['id']} {key}: report {t.get(key)!r}, recomputed {i[key]!r}")
        rounds = {int(k): v for k, v in (t.get("rounds") or {}).items()}
        if rounds != i["rounds"]:
            diff = sorted(r for r in set(rounds) | set(i["rounds"]) if rounds.get(r) != i["rounds"].get(r))
            problems.append(f"{i['id']} round credits differ in rounds {diff[:5]}")
    return problems


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("export", help="output of 'ledger-tool export LEDGER --jsonl' ('-' for standard input)")
    p.add_argument("--compare", help="output of 'ledger-tool report LEDGER --format json'")
    p.add_argument("--json", action="store_true", help="print the recomputed report as JSON")
    a = p.parse_args()
    src = sys.stdin if a.export == "-" else open(a.export, encoding="utf-8")
    entries = [json.loads(line) for line in src if line.strip()]
    mine = compute(entries)
    if a.json:
        print(json.dumps(mine, sort_keys=True))
    else:
        for i in mine["institutions"]:
            print(f"{i['id']}: total {i['total']} ({100 * i['share']:.1f}%), negative {i['negative']}, "
                  f"{i['rounds_contributed']}/{len(mine['rounds'])} rounds")
    if a.compare:
        with open(a.compare, encoding="utf-8") as f:
            problems = compare(mine, json.load(f))
        for line in problems:
            print(f"credits.py: {line}", file=sys.stderr)
        if problems:
            sys.exit(1)
        print(f"credits.py: the report agrees exactly ({len(mine['institutions'])} institutions, {len(mine['rounds'])} rounds)", file=sys.stderr)


if __name__ == "__main__":
    main()
