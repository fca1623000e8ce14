import Crypto
import FLIdentity
import Foundation
import GRDB
import X509

/// One broken rule, named precisely enough to find and judge.
public struct Finding: Equatable, Sendable, CustomStringConvertible {
    public let author: String
    public let seq: Int64
    /// Rule identifier from docs/ledger-spec.md, e.g. `hash`, `link`, `signature`.
    public let rule: String
    public let expected: String
    public let found: String

    public var description: String { "\(author)#\(seq) \(rule): expected \(expected), found \(found)" }
}

/// The verdict on one ledger file (and optionally its replicas elsewhere).
public struct VerificationReport: Sendable {
    public var chains = 0
    public var entries = 0
    public var rounds = 0
    public var findings: [Finding] = []
    public var intact: Bool { findings.isEmpty }
}

/// A file that cannot be verified at all (exit code 2).
public struct UnusableLedger: Error, CustomStringConvertible, Sendable {
    public let description: String
}

/// Offline verification with nothing but the consortium CA certificate.
/// Every check reads the stored bytes; nothing is re-encoded.
public enum LedgerVerifier {
    struct StoredRow {
        let author: String
        let seq: Int64
        let kind: Int64
        let round: Int64
        let prev: [UInt8]
        let header: [UInt8]
        let body: [UInt8]
        let hash: [UInt8]
        let signature: [UInt8]
    }

    static func load(_ path: String) throws -> (consortium: String, rows: [StoredRow], forks: [StoredRow]) {
        guard FileManager.default.fileExists(atPath: path) else { throw UnusableLedger(description: "\(path) does not exist") }
        var config = Configuration()
        config.readonly = true
        let queue: DatabaseQueue
        do {
            queue = try DatabaseQueue(path: path, configuration: config)
        } catch {
            throw UnusableLedger(description: "\(path) cannot be opened as SQLite (\(error))")
        }
        do {
            return try queue.read { db in
                guard try db.tableExists("entries"), try db.tableExists("meta") else {
                    throw UnusableLedger(description: "\(path) is SQLite but not an flpeer ledger (no entries table)")
                }
                let consortium = try String.fetchOne(db, sql: "SELECT value FROM meta WHERE key = 'consortium'") ?? ""
                func rows(_ table: String, _ hasKind: Bool) throws -> [StoredRow] {
                    let cols = hasKind ? "author, seq, kind, round, prev, header, body, hash, signature" : "author, seq, 0 AS kind, 0 AS round, x'' AS prev, header, body, hash, signature"
                    // A cursor and one copy per blob: loading is a visible share of verification time.
                    func bytes(_ r: Row, _ i: Int) throws -> [UInt8] { try r.withUnsafeData(atIndex: i) { $0.map { [UInt8]($0) } ?? [] } }
                    var out: [StoredRow] = []
                    let cursor = try Row.fetchCursor(db, sql: "SELECT \(cols) FROM \(table) ORDER BY author, seq")
                    while let r = try cursor.next() {
                        out.append(StoredRow(author: r[0], seq: r[1], kind: r[2], round: r[3], prev: try bytes(r, 4), header: try bytes(r, 5),
                                             body: try bytes(r, 6), hash: try bytes(r, 7), signature: try bytes(r, 8)))
                    }
                    return out
                }
                return (consortium, try rows("entries", true), try db.tableExists("forks") ? try rows("forks", false) : [])
            }
        } catch let e as UnusableLedger {
            throw e
        } catch {
            throw UnusableLedger(description: "\(path) is not a readable ledger (\(error))")
        }
    }

    /// The member whose peer wrote the file (meta key `owner`), if recorded.
    static func owner(_ path: String) -> String? {
        var config = Configuration()
        config.readonly = true
        return try? DatabaseQueue(path: path, configuration: config).read { db in
            try String.fetchOne(db, sql: "SELECT value FROM meta WHERE key = 'owner'")
        }
    }

    /// Verifies `path`; `others` are replicas from other peers, whose chains
    /// must agree with this one and whose checkpoints reveal truncation and rollback.
    public static func verify(path: String, caCertificate: Certificate, against others: [String] = []) throws -> VerificationReport {
        let (consortium, rows, forks) = try load(path)
        var report = VerificationReport()
        var findings: [Finding] = []
        func find(_ a: String, _ s: Int64, _ rule: String, _ e: String, _ f: String) { findings.append(Finding(author: a, seq: s, rule: rule, expected: e, found: f)) }

        guard (try? MemberName.validate(consortium, what: "consortium")) != nil else {
            throw UnusableLedger(description: "\(path) names no valid consortium in its meta table")
        }
        let chains = Dictionary(grouping: rows, by: \.author)
        var keys: [String: Curve25519.Signing.PublicKey] = [:]
        var updates: [String: [String: UInt64]] = [:]  // author -> update hash hex -> round
        var rounds = Set<UInt64>()
        var parsed: [(StoredRow, EntryHeader, [String: Any])] = []

        for (author, chain) in chains.sorted(by: { $0.key < $1.key }) {
            var expectedSeq: Int64 = 0
            var prevHash = LedgerEntry.zeroHash
            for row in chain {
                if row.seq != expectedSeq {
                    find(author, row.seq, "seq-contiguous", "seq \(expectedSeq)", "seq \(row.seq)")
                }
                defer {
                    expectedSeq = row.seq + 1
                    prevHash = row.hash
                }
                let header: EntryHeader
                do {
                    header = try EntryHeader.decode(row.header)
                } catch {
                    find(author, row.seq, "header-format", "a well-formed header", "\(error)")
                    continue
                }
                if header.author != row.author || Int64(header.seq) != row.seq || Int64(header.kind.rawValue) != row.kind
                    || Int64(header.round) != row.round || header.prev != row.prev {
                    find(author, row.seq, "columns-match-header", "columns equal to the signed header (author \(header.author), seq \(header.seq))", "author \(row.author), seq \(row.seq)")
                }
                if header.consortium != consortium {
                    find(author, row.seq, "consortium", consortium, header.consortium)
                }
                if Int(header.bodyLength) != row.body.count {
                    find(author, row.seq, "body-length", "\(header.bodyLength) bytes", "\(row.body.count) bytes")
                }
                let recomputed = LedgerEntry.computeHash(header: row.header, body: row.body)
                if recomputed != row.hash {
                    find(author, row.seq, "hash", hex(recomputed), hex(row.hash))
                }
                if header.prev != prevHash {
                    find(author, row.seq, "link", hex(prevHash), hex(header.prev))
                }
                if header.seq == 0 {
                    let entry = try? LedgerEntry(headerBytes: row.header, body: row.body, hash: row.hash, signature: row.signature)
                    if header.kind != .genesis {
                        find(author, row.seq, "genesis", "a genesis entry at seq 0", "\(header.kind)")
                    } else if let entry, let key = LedgerSchema.genesisKey(entry, author: author, consortium: consortium, ca: caCertificate) {
                        keys[author] = key
                    } else {
                        find(author, row.seq, "genesis-certificate", "a certificate for '\(author)' issued by the consortium CA", "none")
                    }
                } else if header.kind == .genesis {
                    find(author, row.seq, "genesis", "genesis only at seq 0", "genesis at seq \(row.seq)")
                }
                if let key = keys[author] {
                    if !key.isValidSignature(row.signature, for: row.hash) {
                        find(author, row.seq, "signature", "Ed25519 signature by '\(author)' over the stored hash", "an invalid signature")
                    }
                } else if header.seq != 0 {
                    find(author, row.seq, "signature", "a key from '\(author)' genesis", "no valid genesis")
                }
                guard let body = EntryBody.decode(row.body) else {
                    find(author, row.seq, "body-format", "a JSON object", "\(row.body.count) undecodable bytes")
                    continue
                }
                if let problem = bodyProblem(header.kind, body, round: header.round) {
                    find(author, row.seq, "body-format", problem.0, problem.1)
                }
                if header.kind == .update, let h = body["update_hash"] as? String {
                    updates[author, default: [:]][h] = header.round
                }
                if (header.kind == .update || header.kind == .aggregate) && header.round > 0 { rounds.insert(header.round) }
                parsed.append((row, header, body))
            }
        }

        // Across chains: aggregates name signed updates; checkpoints agree with the chains.
        for (row, header, body) in parsed {
            if header.kind == .aggregate, let included = body["included"] as? [[String: Any]] {
                for item in included {
                    let a = item["author"] as? String ?? "?", h = item["update_hash"] as? String ?? "?"
                    if updates[a]?[h] != header.round {
                        find(row.author, row.seq, "aggregate-names-signed-update",
                             "an update entry by '\(a)' for round \(header.round) with hash \(h.prefix(12))", updates[a]?[h].map { "round \($0)" } ?? "none")
                    }
                }
            }
        }
        let owner = owner(path)
        checkpoints(parsed.map { ($0.0.author, $0.0.seq, $0.2, $0.1.kind) }, against: chains, owner: owner, source: "", find: find)
        equivocations(rows: rows, forks: forks, parsed: parsed, keys: keys, consortium: consortium, find: find)

        for other in others {
            let (otherConsortium, otherRows, _) = try load(other)
            if otherConsortium != consortium {
                find("-", -1, "replica-consortium", consortium, "\(otherConsortium) in \(other)")
                continue
            }
            let mine = Dictionary(uniqueKeysWithValues: rows.map { ("\($0.author)#\($0.seq)", $0.hash) })
            for r in otherRows {
                if let h = mine["\(r.author)#\(r.seq)"], h != r.hash {
                    find(r.author, r.seq, "replicas-agree", "\(hex(h.prefix(6))) (this file)", "\(hex(r.hash.prefix(6))) in \(other)")
                }
            }
            let otherParsed: [(String, Int64, [String: Any], EntryKind)] = otherRows.compactMap { r in
                guard let h = try? EntryHeader.decode(r.header), h.kind == .checkpoint, let b = EntryBody.decode(r.body) else { return nil }
                return (r.author, r.seq, b, h.kind)
            }
            checkpoints(otherParsed, against: chains, owner: owner, source: " (checkpoint in \(other))", find: find)
        }

        report.chains = chains.count
        report.entries = rows.count
        report.rounds = rounds.count
        report.findings = findings
        return report
    }

    /// Fork rows and evidence entries: each must prove that its author signed
    /// two different entries for one seq (`equivocation`), or it is itself a
    /// finding (`evidence-valid`). One equivocation finding per (author, seq).
    static func equivocations(rows: [StoredRow], forks: [StoredRow], parsed: [(StoredRow, EntryHeader, [String: Any])],
                              keys: [String: Curve25519.Signing.PublicKey], consortium: String,
                              find: (String, Int64, String, String, String) -> Void) {
        var accused = Set<String>()
        func equivocation(_ author: String, _ seq: UInt64, _ source: String) {
            guard accused.insert("\(author)#\(seq)").inserted else { return }
            find(author, Int64(seq), "equivocation", "one entry per (author, seq)", "two different entries signed by '\(author)' (\(source))")
        }
        func entry(_ r: StoredRow) -> LedgerEntry? { try? LedgerEntry(headerBytes: r.header, body: r.body, hash: r.hash, signature: r.signature) }
        let stored = Dictionary(rows.map { ("\($0.author)#\($0.seq)", $0) }, uniquingKeysWith: { a, _ in a })
        for f in forks {
            let problem: String?
            if let seq = UInt64(exactly: f.seq), let conflicting = entry(f), let original = stored["\(f.author)#\(f.seq)"].flatMap(entry) {
                problem = Evidence.problem(original, conflicting, author: f.author, seq: seq, consortium: consortium, key: keys[f.author])
            } else {
                problem = "no stored entry it conflicts with"
            }
            if let problem {
                find(f.author, f.seq, "evidence-valid", "a fork row proving two entries signed by '\(f.author)'", problem)
            } else {
                equivocation(f.author, UInt64(f.seq), "fork row \(hex(f.hash.prefix(6)))")
            }
        }
        for (row, header, _) in parsed where header.kind == .evidence {
            guard let body = EntryBody.decode(Evidence.Body.self, from: row.body), let pair = body.pair else {
                find(row.author, row.seq, "evidence-valid", "an accused author and seq with two entries", "a malformed evidence body")
                continue
            }
            let (author, seq) = (body.author, body.seq)
            if let problem = Evidence.problem(pair.0, pair.1, author: author, seq: seq, consortium: consortium, key: keys[author]) {
                find(row.author, row.seq, "evidence-valid", "two different entries signed by '\(author)' for seq \(seq)", problem)
            } else {
                equivocation(author, seq, "evidence \(row.author)#\(row.seq)")
            }
        }
    }

    /// Every head a checkpoint names that the chain holds must have that
    /// hash. A head the chain lacks is truncation or rollback when the file
    /// must hold it: a head of the file owner's own chain, or one named by the
    /// owner's own checkpoint in this file (or any head, when the file records
    /// no owner); otherwise the file is only behind (replication lag).
    static func checkpoints(_ entries: [(String, Int64, [String: Any], EntryKind)], against chains: [String: [StoredRow]],
                            owner: String?, source: String, find: (String, Int64, String, String, String) -> Void) {
        for (author, seq, body, kind) in entries where kind == .checkpoint {
            for head in body["heads"] as? [[String: Any]] ?? [] {
                guard let a = head["author"] as? String, let s = (head["seq"] as? NSNumber)?.int64Value, let h = head["hash"] as? String else { continue }
                let chain = chains[a] ?? []
                if let row = chain.first(where: { $0.seq == s }) {
                    if hex(row.hash) != h {
                        find(a, s, "checkpoint-agrees", "hash \(h.prefix(12)) as checkpointed by \(author)#\(seq)\(source)", hex(row.hash.prefix(6)))
                    }
                } else if owner == nil || a == owner || (author == owner && source.isEmpty) {
                    find(a, s, "not-truncated", "entry \(a)#\(s) (checkpointed by \(author)#\(seq)\(source))",
                         "chain ends at seq \(chain.last.map { "\($0.seq)" } ?? "none")")
                }
            }
        }
    }

    /// Required fields per kind; returns (expected, found) when one is missing.
    static func bodyProblem(_ kind: EntryKind, _ body: [String: Any], round: UInt64) -> (String, String)? {
        func has(_ k: String, _ ok: (Any) -> Bool) -> Bool { body[k].map(ok) ?? false }
        let isString: (Any) -> Bool = { $0 is String }
        let isNumber: (Any) -> Bool = { $0 is NSNumber }
        switch kind {
        case .genesis:
            return has("certificate", isString) ? nil : ("field 'certificate' (PEM)", "missing")
        case .update:
            for k in ["base_hash", "update_hash", "codec"] where !has(k, isString) { return ("text field '\(k)'", "missing") }
            for k in ["round", "samples"] where !has(k, isNumber) { return ("number field '\(k)'", "missing") }
            if (body["round"] as? NSNumber)?.uint64Value != round { return ("body round \(round)", "\(body["round"] ?? "none")") }
            return nil
        case .aggregate:
            for k in ["rule", "result_hash"] where !has(k, isString) { return ("text field '\(k)'", "missing") }
            if !has("included", { $0 is [[String: Any]] }) { return ("list field 'included'", "missing") }
            if !has("scores", { $0 is [String: Any] }) { return ("object field 'scores'", "missing") }
            if (body["round"] as? NSNumber)?.uint64Value != round { return ("body round \(round)", "\(body["round"] ?? "none")") }
            return nil
        case .checkpoint:
            return has("heads", { $0 is [[String: Any]] }) ? nil : ("list field 'heads'", "missing")
        case .evidence:
            if !has("author", isString) { return ("text field 'author'", "missing") }
            if !has("seq", isNumber) { return ("number field 'seq'", "missing") }
            return has("entries", { ($0 as? [[String: Any]])?.count == 2 }) ? nil : ("list field 'entries' of two entries", "missing")
        }
    }
}

/// Read-only access to a ledger file's entries, for display and export.
public enum LedgerReader {
    /// Every entry whose header parses, by author then seq.
    public static func entries(path: String) throws -> [LedgerEntry] {
        try LedgerVerifier.load(path).rows.compactMap {
            try? LedgerEntry(headerBytes: $0.header, body: $0.body, hash: $0.hash, signature: $0.signature)
        }
    }
}
