#!/usr/bin/env python3
"""Independent verifier for flpeer ledgers, written from docs/ledger-spec.md.

Usage: verify_ledger.py LEDGER.sqlite --ca ca.pem [--against OTHER.sqlite ...] [--json]
Exit codes: 0 intact, 1 findings, 2 unusable input.
Needs only the Python standard library and the `cryptography` package.
"""
import argparse
import datetime
import hashlib
import json
import os
import sqlite3
import struct
import sys

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

DOMAIN = b"flpeer/ledger-entry/v1\x00"
KINDS = {1: "genesis", 2: "update", 3: "aggregate", 4: "checkpoint", 5: "evidence"}
ZERO = bytes(32)


class Unusable(Exception):
    pass


def parse_header(b):
    i = 0

    def take(n):
        nonlocal i
        if i + n > len(b):
            raise ValueError("header truncated")
        i += n
        return b[i - n:i]

    def s():
        (n,) = struct.unpack(">H", take(2))
        if n > 256:
            raise ValueError("string too long")
        return take(n).decode("utf-8")

    if take(1)[0] != 1:
        raise ValueError("unsupported header version")
    h = {"consortium": s(), "author": s()}
    (h["seq"],) = struct.unpack(">Q", take(8))
    h["prev"] = take(32)
    (h["round"],) = struct.unpack(">Q", take(8))
    h["kind"] = take(1)[0]
    if h["kind"] not in KINDS:
        raise ValueError("unknown kind")
    (h["time"],) = struct.unpack(">q", take(8))
    (h["body_length"],) = struct.unpack(">I", take(4))
    if i != len(b):
        raise ValueError("trailing header bytes")
    return h


KNOWN_TABLES = {"meta", "entries", "forks", "local_state", "grdb_migrations"}
NAME_CHARS = set("abcdefghijklmnopqrstuvwxyz0123456789._-")


def valid_name(name):
    return isinstance(name, str) and 1 <= len(name.encode()) <= 64 and name[0] in NAME_CHARS - set("._-") and set(name) <= NAME_CHARS


def well_formed(r, has_kind):
    """A row whose columns have the types the schema names (TEXT author, INTEGER seq/kind/round, BLOB others)."""
    ints = r[1:4] if has_kind else r[1:2]
    blobs = r[4:] if has_kind else r[2:]
    return isinstance(r[0], str) and all(type(v) is int for v in ints) and all(isinstance(v, bytes) for v in blobs)


def load(path):
    """(consortium, owner, rows, forks, findings); opened read-only and immutable, so nothing is written beside it."""
    if not os.path.exists(path):
        raise Unusable(f"{path} does not exist")
    # A non-empty WAL beside the file holds committed entries: read it, read-only, through its index (FILE-shm).
    wal = os.path.exists(path + "-wal") and os.path.getsize(path + "-wal") > 0
    quoted = path.replace("%", "%25").replace("?", "%3f").replace("#", "%23")
    findings = []
    try:
        con = sqlite3.connect(f"file:{quoted}?mode=ro" + ("" if wal else "&immutable=1"), uri=True)
        try:
            con.execute("SELECT 1 FROM sqlite_master LIMIT 1").fetchall()
        except sqlite3.DatabaseError as e:
            if not wal:
                raise
            raise Unusable(f"{path} cannot be opened as SQLite ({e}): its WAL {path}-wal can be read only where its index {path}-shm exists or can be created; checkpoint a writable copy first")
        check = [r[0] for r in con.execute("PRAGMA integrity_check").fetchall()]
        tables = {r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type='table' AND name NOT LIKE 'sqlite_%'")}
    except sqlite3.DatabaseError as e:
        raise Unusable(f"{path} cannot be opened as SQLite ({e})")
    if check != ["ok"]:
        findings.append({"author": "-", "seq": -1, "rule": "integrity", "expected": "PRAGMA integrity_check ok", "found": "; ".join(check[:3])})
    if "entries" not in tables or "meta" not in tables:
        raise Unusable(f"{path} is SQLite but not an flpeer ledger (no entries or meta table)")
    for t in sorted(tables - KNOWN_TABLES):
        findings.append({"author": "-", "seq": -1, "rule": "schema", "expected": "only the tables " + ", ".join(sorted(KNOWN_TABLES)), "found": f"table {t}"})
    if "forks" not in tables:
        findings.append({"author": "-", "seq": -1, "rule": "schema", "expected": "a forks table", "found": "none"})
    try:
        def meta(key):
            row = con.execute("SELECT value FROM meta WHERE key=?", (key,)).fetchone()
            return row[0] if row and isinstance(row[0], str) else None

        def rows(table, has_kind):
            cols = "author, seq, kind, round, prev, header, body, hash, signature" if has_kind else "author, seq, header, body, hash, signature"
            out = []
            for r in con.execute(f"SELECT {cols} FROM {table} ORDER BY author, seq"):
                if well_formed(r, has_kind):
                    out.append(r)
                else:
                    findings.append({"author": r[0] if isinstance(r[0], str) else "-", "seq": r[1] if type(r[1]) is int else -1, "rule": "row-format",
                                     "expected": f"a {table} row with TEXT author, INTEGER seq, kind, round and BLOB hashes, header, body, signature",
                                     "found": "a column of another type"})
            return out
        consortium, owner = meta("consortium") or "", meta("owner")
        entries = rows("entries", True)
        forks = rows("forks", False) if "forks" in tables else []
    except sqlite3.DatabaseError as e:
        raise Unusable(f"{path} is not a readable ledger ({e})")
    return consortium, owner, entries, forks, findings


def member_uri(cert):
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return None
    for uri in san.get_values_for_type(x509.UniformResourceIdentifier):
        if uri.startswith("flpeer://") and uri.count("/") == 3:
            _, _, consortium, institution = uri.split("/")
            return consortium, institution
    return None


def not_a_ca(cert, path):
    """Why cert (read from path) cannot be the consortium CA, or None: a CA carries basicConstraints CA:TRUE."""
    try:
        if cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca:
            return None
    except x509.ExtensionNotFound:
        pass
    member = member_uri(cert)
    if member:
        return f"{path} is not a CA certificate: it is the member certificate of {member[1]} in consortium {member[0]}; pass the consortium's ca.pem"
    return f"{path} is not a CA certificate (it has no basicConstraints CA:TRUE); pass the consortium's ca.pem"


def valid_millis(cert):
    """(notBefore, notAfter) in unix ms: an entry's time must lie within, inclusive."""
    before = getattr(cert, "not_valid_before_utc", None) or cert.not_valid_before.replace(tzinfo=datetime.timezone.utc)
    after = getattr(cert, "not_valid_after_utc", None) or cert.not_valid_after.replace(tzinfo=datetime.timezone.utc)
    return round(before.timestamp()) * 1000, round(after.timestamp()) * 1000


def genesis_key(body, author, consortium, ca):
    """(key, validity window) of a genesis certificate the CA issued to author, or None."""
    try:
        cert = x509.load_pem_x509_certificate(body["certificate"].encode())
        cert.verify_directly_issued_by(ca)
    except Exception:
        return None
    if member_uri(cert) != (consortium, author):
        return None
    key = cert.public_key()
    return (key, valid_millis(cert)) if isinstance(key, Ed25519PublicKey) else None


def body_problem(kind, body, rnd):
    def has(k, t):
        return isinstance(body.get(k), t) and not (t is int and isinstance(body.get(k), bool))
    if kind == 1:
        return None if has("certificate", str) else ("field 'certificate' (PEM)", "missing")
    if kind == 2:
        for k in ("base_hash", "update_hash", "codec"):
            if not has(k, str):
                return (f"text field '{k}'", "missing")
        for k in ("round", "samples"):
            if not has(k, (int, float)):
                return (f"number field '{k}'", "missing")
        return None if body["round"] == rnd else (f"body round {rnd}", str(body["round"]))
    if kind == 3:
        for k in ("rule", "result_hash"):
            if not has(k, str):
                return (f"text field '{k}'", "missing")
        if not has("included", list):
            return ("list field 'included'", "missing")
        if not has("scores", dict):
            return ("object field 'scores'", "missing")
        return None if body.get("round") == rnd else (f"body round {rnd}", str(body.get("round")))
    if kind == 4:
        return None if has("heads", list) else ("list field 'heads'", "missing")
    if not has("author", str):
        return ("text field 'author'", "missing")
    if not has("seq", (int, float)):
        return ("number field 'seq'", "missing")
    entries = body.get("entries")
    return None if isinstance(entries, list) and len(entries) == 2 else ("list field 'entries' of two entries", "missing")


def fork_problem(first, second, author, seq, consortium, key):
    """None when two (header, body, hash, signature) tuples prove author signed two entries for seq."""
    for (header, body, h, sig) in (first, second):
        try:
            hd = parse_header(header)
        except Exception:
            return "an entry whose header does not parse"
        if hd["author"] != author or hd["seq"] != seq:
            return f"an entry for {hd['author']}#{hd['seq']}, not {author}#{seq}"
        if hd["consortium"] != consortium:
            return f"an entry of consortium '{hd['consortium']}'"
        if hashlib.sha256(DOMAIN + header + body).digest() != h:
            return "an entry whose hash does not match its bytes"
    if first[2] == second[2]:
        return "the same entry twice"
    if key is None:
        return f"no genesis key for '{author}'"
    try:
        key.verify(first[3], first[2])
        key.verify(second[3], second[2])
    except InvalidSignature:
        return f"an entry not signed by '{author}'"
    return None


def evidence_entries(obj):
    items = obj.get("entries")
    if not isinstance(items, list) or len(items) != 2:
        return None
    out = []
    for item in items:
        try:
            out.append(tuple(bytes.fromhex(item[k]) for k in ("header", "body", "hash", "signature")))
        except Exception:
            return None
    return out


def verify(path, ca, others):
    consortium, owner, rows, forks, findings = load(path)
    if not valid_name(consortium):
        raise Unusable(f"{path} names no valid consortium in its meta table")

    def find(author, seq, rule, expected, found):
        findings.append({"author": author, "seq": seq, "rule": rule, "expected": expected, "found": found})

    chains = {}
    for r in rows:
        chains.setdefault(r[0], []).append(r)
    if owner is not None and owner not in chains:
        find(owner, 0, "owner-chain", f"the chain of the file's owner '{owner}'", "none")
    keys, windows, updates, rounds, parsed = {}, {}, {}, set(), []
    for author in sorted(chains):
        expected_seq, prev_hash = 0, ZERO
        for (a, seq, kind, rnd, prev, header, body, h, sig) in chains[author]:
            header, body, h, sig, prev = bytes(header), bytes(body), bytes(h), bytes(sig), bytes(prev)
            if seq != expected_seq:
                find(a, seq, "seq-contiguous", f"seq {expected_seq}", f"seq {seq}")
            expected_seq, this_prev, prev_hash_expected = seq + 1, prev_hash, prev_hash
            prev_hash = h
            try:
                hd = parse_header(header)
            except Exception as e:
                find(a, seq, "header-format", "a well-formed header", str(e))
                continue
            if (hd["author"], hd["seq"], hd["kind"], hd["round"], hd["prev"]) != (a, seq, kind, rnd, prev):
                find(a, seq, "columns-match-header", f"columns equal to the signed header (author {hd['author']}, seq {hd['seq']})", f"author {a}, seq {seq}")
            if hd["consortium"] != consortium:
                find(a, seq, "consortium", consortium, hd["consortium"])
            if hd["body_length"] != len(body):
                find(a, seq, "body-length", f"{hd['body_length']} bytes", f"{len(body)} bytes")
            digest = hashlib.sha256(DOMAIN + header + body).digest()
            if digest != h:
                find(a, seq, "hash", digest.hex(), h.hex())
            if hd["prev"] != prev_hash_expected:
                find(a, seq, "link", prev_hash_expected.hex(), hd["prev"].hex())
            try:
                obj = json.loads(body.decode("utf-8"))
                if not isinstance(obj, dict):
                    raise ValueError
            except Exception:
                obj = None
            if hd["seq"] == 0:
                if hd["kind"] != 1:
                    find(a, seq, "genesis", "a genesis entry at seq 0", KINDS[hd["kind"]])
                else:
                    found = genesis_key(obj or {}, author, consortium, ca)
                    if found is None:
                        find(a, seq, "genesis-certificate", f"a certificate for '{author}' issued by the consortium CA", "none")
                    else:
                        keys[author], windows[author] = found
            elif hd["kind"] == 1:
                find(a, seq, "genesis", "genesis only at seq 0", f"genesis at seq {seq}")
            if author in windows and not windows[author][0] <= hd["time"] <= windows[author][1]:
                lo, hi = windows[author]
                find(a, seq, "time-in-validity", f"a time within '{author}' certificate validity ({lo}...{hi} ms)", f"{hd['time']} ms")
            if author in keys:
                try:
                    keys[author].verify(sig, h)
                except InvalidSignature:
                    find(a, seq, "signature", f"Ed25519 signature by '{author}' over the stored hash", "an invalid signature")
            elif hd["seq"] != 0:
                find(a, seq, "signature", f"a key from '{author}' genesis", "no valid genesis")
            if obj is None:
                find(a, seq, "body-format", "a JSON object", f"{len(body)} undecodable bytes")
                continue
            problem = body_problem(hd["kind"], obj, hd["round"])
            if problem:
                find(a, seq, "body-format", *problem)
            if hd["kind"] == 2 and isinstance(obj.get("update_hash"), str):
                updates.setdefault(author, {})[obj["update_hash"]] = hd["round"]
            if hd["kind"] in (2, 3) and hd["round"] > 0:
                rounds.add(hd["round"])
            parsed.append((a, seq, hd, obj))

    for (a, seq, hd, obj) in parsed:
        if hd["kind"] == 3:
            for item in obj.get("included", []) if isinstance(obj.get("included"), list) else []:
                item = item if isinstance(item, dict) else {}
                ia, ih = item.get("author", "?"), item.get("update_hash", "?")
                ia, ih = ia if isinstance(ia, str) else "?", ih if isinstance(ih, str) else "?"
                if updates.get(ia, {}).get(ih) != hd["round"]:
                    got = updates.get(ia, {}).get(ih)
                    find(a, seq, "aggregate-names-signed-update",
                         f"an update entry by '{ia}' for round {hd['round']} with hash {ih[:12]}", "none" if got is None else f"round {got}")

    def checkpoints(entries, source):
        for (a, seq, kind, obj) in entries:
            if kind != 4:
                continue
            for head in obj.get("heads", []) if isinstance(obj.get("heads"), list) else []:
                if not isinstance(head, dict):
                    continue
                ha, hs, hh = head.get("author"), head.get("seq"), head.get("hash")
                if not isinstance(ha, str) or type(hs) is not int or not isinstance(hh, str):
                    continue
                chain = chains.get(ha, [])
                match = [r for r in chain if r[1] == hs]
                if match:
                    if bytes(match[0][7]).hex() != hh:
                        find(ha, hs, "checkpoint-agrees", f"hash {hh[:12]} as checkpointed by {a}#{seq}{source}", bytes(match[0][7])[:6].hex())
                elif owner is None or ha == owner or (a == owner and source == ""):
                    # Missing: truncation or rollback when this file must hold it;
                    # otherwise the file is only behind (replication lag).
                    end = chain[-1][1] if chain else "none"
                    find(ha, hs, "not-truncated", f"entry {ha}#{hs} (checkpointed by {a}#{seq}{source})", f"chain ends at seq {end}")

    checkpoints([(a, s, hd["kind"], o) for (a, s, hd, o) in parsed], "")
    accused = set()

    def equivocation(author, seq, source):
        if (author, seq) not in accused:
            accused.add((author, seq))
            find(author, seq, "equivocation", "one entry per (author, seq)", f"two different entries signed by '{author}' ({source})")

    stored = {}
    for r in rows:
        stored.setdefault((r[0], r[1]), r)
    for (fa, fs, fheader, fbody, fh, fsig) in forks:
        original = stored.get((fa, fs))
        if original is None or fs < 0:
            problem = "no stored entry it conflicts with"
        else:
            first = (bytes(original[5]), bytes(original[6]), bytes(original[7]), bytes(original[8]))
            problem = fork_problem(first, (bytes(fheader), bytes(fbody), bytes(fh), bytes(fsig)), fa, fs, consortium, keys.get(fa))
        if problem:
            find(fa, fs, "evidence-valid", f"a fork row proving two entries signed by '{fa}'", problem)
        else:
            equivocation(fa, fs, f"fork row {bytes(fh)[:6].hex()}")
    for (a, seq, hd, obj) in parsed:
        if hd["kind"] != 5:
            continue
        ea, es, pair = obj.get("author"), obj.get("seq"), evidence_entries(obj)
        if not isinstance(ea, str) or not isinstance(es, int) or isinstance(es, bool) or es < 0 or pair is None:
            find(a, seq, "evidence-valid", "an accused author and seq with two entries", "a malformed evidence body")
            continue
        problem = fork_problem(pair[0], pair[1], ea, es, consortium, keys.get(ea))
        if problem:
            find(a, seq, "evidence-valid", f"two different entries signed by '{ea}' for seq {es}", problem)
        else:
            equivocation(ea, es, f"evidence {a}#{seq}")

    mine = {(r[0], r[1]): bytes(r[7]) for r in rows}
    notes = [] if others else ["a deleted last entry of another member's chain, or a copy made without its WAL, cannot be seen in one file: "
                               "verify with --against the other members' files"]
    for other in others:
        oc, _, orows, _, _ = load(other)
        if oc != consortium:
            find("-", -1, "replica-consortium", consortium, f"{oc} in {other}")
            continue
        theirs = {}
        for r in orows:
            theirs[r[0]] = max(theirs.get(r[0], r[1]), r[1])
        for author in sorted(theirs):
            mine_head = max((r[1] for r in chains.get(author, [])), default=None)
            if mine_head is None or mine_head < theirs[author]:
                end = "absent" if mine_head is None else f"ends at seq {mine_head}"
                notes.append(f"{other} holds {author}#{theirs[author]}, beyond this file's chain of {author} ({end}): "
                             f"replication lag, or a deleted tail that {author}'s own file settles")
        for r in orows:
            h = mine.get((r[0], r[1]))
            if h is not None and h != bytes(r[7]):
                find(r[0], r[1], "replicas-agree", f"{h[:6].hex()} (this file)", f"{bytes(r[7])[:6].hex()} in {other}")
        other_cps = []
        for r in orows:
            try:
                hd = parse_header(bytes(r[5]))
                if hd["kind"] == 4:
                    other_cps.append((r[0], r[1], 4, json.loads(bytes(r[6]))))
            except Exception:
                pass
        checkpoints(other_cps, f" (checkpoint in {other})")
    return {"chains": len(chains), "entries": len(rows), "rounds": len(rounds), "findings": findings, "notes": notes}


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("ledger")
    p.add_argument("--ca", required=True)
    p.add_argument("--against", action="extend", nargs="+", default=[], metavar="OTHER")
    p.add_argument("--json", action="store_true")
    a = p.parse_args()
    try:
        with open(a.ca, "rb") as f:
            ca = x509.load_pem_x509_certificate(f.read())
        problem = not_a_ca(ca, a.ca)
        if problem:
            raise Unusable(problem)
        report = verify(a.ledger, ca, a.against)
    except Unusable as e:
        print(f"verify_ledger: {e}", file=sys.stderr)
        return 2
    except (OSError, ValueError) as e:
        print(f"verify_ledger: unusable input ({e})", file=sys.stderr)
        return 2
    intact = not report["findings"]
    for note in report.pop("notes"):
        print(f"verify_ledger: note: {note}", file=sys.stderr)
    if a.json:
        print(json.dumps({"ledger": a.ledger, "intact": intact, **report}, sort_keys=True))
    elif intact:
        print(f"{a.ledger}: intact: {report['chains']} chains, {report['entries']} entries, {report['rounds']} rounds")
    else:
        for f in report["findings"]:
            print(f"{f['author']}#{f['seq']} {f['rule']}: expected {f['expected']}, found {f['found']}")
        print(f"{a.ledger}: {len(report['findings'])} finding(s) in {report['chains']} chains, {report['entries']} entries")
    return 0 if intact else 1


if __name__ == "__main__":
    sys.exit(main())
