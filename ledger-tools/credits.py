#!/usr/bin/env python3
"""Recompute flpeer incentive credits from `ledger-tool export --jsonl`, independently of the Swift code.

Usage: credits.py EXPORT.jsonl [--compare REPORT.json] [--json]

Implements docs/credits.md (rule class-median/2) from the exported entries
alone. Per round, the assessors are the authors of aggregate entries that no
evidence entry accuses. In each class, a member's value is the median of the
per-class scores of the other assessors that hold the class and heard the
member (an assessor that screened the member out votes 0 only when at least
half of them did; otherwise it abstains); only classes that more than half of
the round's assessors hold count. A member's positive part is the sum
of its positive class values. The round pays at most the smaller of the sum
over classes of the median, over the class's holders, of their scores for the
other members in that class, and the sum of all class values; positive parts
are scaled down to that and rounded down to whole micro-nats. Totals are the sums, in round order, of the round credits. With
--compare, checks that `ledger-tool report --format json` gives exactly the
same figures (exit 1 if not). Only the standard library is used.
"""
import argparse
import json
import math
import sys


def median(xs):
    s = sorted(xs)
    n = len(s)
    return s[n // 2] if n % 2 == 1 else (s[n // 2 - 1] + s[n // 2]) / 2


def round_figures(assessments):
    """(credits, negatives) of one round; every sum in sorted order, as the spec fixes."""
    members = set()
    for a in assessments:
        members |= set(a["scores"]) | set(a["screened"])
    holding = {}
    for a in assessments:
        for c in set(a["classes"]):
            holding[c] = holding.get(c, 0) + 1
    counted = sorted(c for c, n in holding.items() if 2 * n > len(assessments))
    positives, negatives, signed = {}, {}, {}
    for m in sorted(members):
        pos = neg = 0.0
        for c in counted:
            holders, votes = 0, []
            for a in assessments:
                if a["assessor"] == m or c not in a["classes"]:
                    continue
                if m in a["scores"]:
                    holders += 1
                    votes.append(float(a["scores"][m].get(c, 0)))
                elif m in a["screened"]:
                    holders += 1
            if 2 * len(votes) <= holders:
                votes += [0.0] * (holders - len(votes))
            if not votes:
                continue
            v = median(votes)
            if v > 0:
                pos += v
            else:
                neg += v
        positives[m], negatives[m], signed[m] = pos, neg, pos + neg
    claimed = 0.0
    for c in counted:
        claims = []
        for a in sorted(assessments, key=lambda a: a["assessor"]):
            if c not in a["classes"]:
                continue
            worth = 0.0
            for m in sorted(a["scores"]):
                if m != a["assessor"]:
                    worth += float(a["scores"][m].get(c, 0))
            claims.append(worth)
        if claims:
            claimed += median(claims)
    consensus = 0.0
    for m in sorted(members):
        consensus += signed[m]
    payout = max(0.0, min(claimed, consensus))
    total = 0.0
    for m in sorted(members):
        total += positives[m]
    credits = {}
    for m in members:
        p = positives[m]
        credits[m] = 0.0 if total <= 0 else float(math.floor(p if payout >= total else p * payout / total))
    return credits, negatives


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

        def number(x):
            # JSON integers (no fraction, no exponent) of at most 2**53 in magnitude, as the spec requires
            return isinstance(x, int) and not isinstance(x, bool) and abs(x) <= 2 ** 53
        if not isinstance(scores, dict) or not all(isinstance(v, dict) and all(number(x) for x in v.values()) for v in scores.values()):
            continue  # not per class: another scoring rule
        listed = body.get("screened")
        screened = [s["author"] for s in (listed if isinstance(listed, list) else [])
                    if isinstance(s, dict) and isinstance(s.get("author"), str)]
        scoring = body.get("scoring")
        if not isinstance(scoring, dict):
            scoring = {}
        gated = scoring.get("gated")
        if not isinstance(gated, dict) or not all(isinstance(g, str) for g in gated.values()):
            gated = {}
        classes = scoring.get("classes")
        if not isinstance(classes, list) or not all(isinstance(c, str) for c in classes):
            classes = sorted({c for v in scores.values() for c in v})
        by_round.setdefault(e["round"], {}).setdefault(e["author"], {
            "assessor": e["author"], "scores": scores, "classes": classes, "screened": screened, "gated": gated})
    rounds = sorted(by_round)
    lines = {m: {"id": m, "rounds": {}, "total": 0, "negative": 0, "times_screened": 0, "gated": {}, "evidence": 0}
             for m in members | set(accused)}
    for r in rounds:
        assessments = [by_round[r][a] for a in sorted(by_round[r])]
        credits, negatives = round_figures(assessments)
        for member, credit in credits.items():
            lines.setdefault(member, {"id": member, "rounds": {}, "total": 0, "negative": 0, "times_screened": 0, "gated": {}, "evidence": 0})
            lines[member]["rounds"][r] = credit
            lines[member]["negative"] += negatives[member]
        for a in assessments:
            for m in set(a["screened"]):
                if m != a["assessor"]:
                    line = lines.setdefault(m, {"id": m, "rounds": {}, "total": 0, "negative": 0, "times_screened": 0, "gated": {}, "evidence": 0})
                    line["times_screened"] += 1
            for m, gate in a["gated"].items():
                if m != a["assessor"]:
                    line = lines.setdefault(m, {"id": m, "rounds": {}, "total": 0, "negative": 0, "times_screened": 0, "gated": {}, "evidence": 0})
                    line["gated"][gate] = line["gated"].get(gate, 0) + 1
    for m, seqs in accused.items():
        lines[m]["evidence"] = len(seqs)
    for line in lines.values():
        contributed = 0
        for r in sorted(line["rounds"]):
            c = line["rounds"][r]
            line["total"] += c
            if c > 0:
                contributed += 1
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
