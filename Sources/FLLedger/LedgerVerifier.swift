import Crypto
import FLIdentity
import Foundation
import GRDB
import X509

/// One broken rule, named precisely enough to find and judge.
public struct Finding: Equatable, Sendable, Encodable, CustomStringConvertible {
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
    /// What one file cannot show (printed as `note:` lines; not findings).
    public var notes: [String] = []
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

    /// What `load` read from a file: its meta values, rows, and the findings about the file itself.
    struct Loaded {
        var consortium = ""
        var owner: String?
        var rows: [StoredRow] = []
        var forks: [StoredRow] = []
        /// `integrity`, `schema` and `row-format` findings.
        var findings: [Finding] = []
    }

    /// Tables a ledger may hold (besides SQLite's own `sqlite_*`); `forks` must be present.
    static let knownTables: Set<String> = ["meta", "entries", "forks", "local_state", "grdb_migrations"]

    /// Opens `path` read-only and immutable (no `-wal`/`-shm` is created, nothing is written).
    static func open(_ path: String) throws -> DatabaseQueue {
        guard FileManager.default.fileExists(atPath: path) else { throw UnusableLedger(description: "\(path) does not exist") }
        // A non-empty WAL beside the file (a live peer's ledger, or a copy taken with its WAL) holds
        // committed entries: it is read, read-only, through SQLite's WAL index (FILE-shm, created if absent).
        let wal = (try? FileManager.default.attributesOfItem(atPath: path + "-wal")[.size] as? Int) ?? 0
        var config = Configuration()
        config.readonly = true
        let escaped = path.replacingOccurrences(of: "%", with: "%25").replacingOccurrences(of: "?", with: "%3f").replacingOccurrences(of: "#", with: "%23")
        do {
            let queue = try DatabaseQueue(path: "file:\(escaped)?mode=ro" + (wal > 0 ? "" : "&immutable=1"), configuration: config)
            try queue.read { _ in }
            return queue
        } catch {
            let hint = wal > 0 ? ": its WAL \(path)-wal can be read only where its index \(path)-shm exists or can be created; checkpoint a writable copy first" : ""
            throw UnusableLedger(description: "\(path) cannot be opened as SQLite (\(error))\(hint)")
        }
    }

    static func load(_ path: String) throws -> Loaded {
        let queue = try open(path)
        do {
            return try queue.read { db in
                var out = Loaded()
                let check = try String.fetchAll(db, sql: "PRAGMA integrity_check")
                if check != ["ok"] {
                    out.findings.append(Finding(author: "-", seq: -1, rule: "integrity", expected: "PRAGMA integrity_check ok", found: check.prefix(3).joined(separator: "; ")))
                }
                let tables = Set(try String.fetchAll(db, sql: "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'"))
                guard tables.contains("entries"), tables.contains("meta") else {
                    throw UnusableLedger(description: "\(path) is SQLite but not an flpeer ledger (no entries or meta table)")
                }
                for t in tables.subtracting(knownTables).sorted() {
                    out.findings.append(Finding(author: "-", seq: -1, rule: "schema", expected: "only the tables \(knownTables.sorted().joined(separator: ", "))", found: "table \(t)"))
                }
                if !tables.contains("forks") {
                    out.findings.append(Finding(author: "-", seq: -1, rule: "schema", expected: "a forks table", found: "none"))
                }
                func meta(_ key: String) throws -> String? {
                    guard case .string(let v)? = try DatabaseValue.fetchOne(db, sql: "SELECT value FROM meta WHERE key = ?", arguments: [key])?.storage else { return nil }
                    return v
                }
                out.consortium = try meta("consortium") ?? ""
                out.owner = try meta("owner")
                out.rows = try rows(db, "entries", hasKind: true, findings: &out.findings)
                if tables.contains("forks") { out.forks = try rows(db, "forks", hasKind: false, findings: &out.findings) }
                return out
            }
        } catch let e as UnusableLedger {
            throw e
        } catch {
            throw UnusableLedger(description: "\(path) is not a readable ledger (\(error))")
        }
    }

    /// The rows of `table`; a row with a column of the wrong type (NULL, TEXT for a
    /// number or blob, ...) is a `row-format` finding and is left out of every other check.
    static func rows(_ db: Database, _ table: String, hasKind: Bool, findings: inout [Finding]) throws -> [StoredRow] {
        let cols = hasKind ? "author, seq, kind, round, prev, header, body, hash, signature" : "author, seq, 0 AS kind, 0 AS round, x'' AS prev, header, body, hash, signature"
        var out: [StoredRow] = []
        let cursor = try Row.fetchCursor(db, sql: "SELECT \(cols) FROM \(table) ORDER BY author, seq")
        while let r = try cursor.next() {
            let values = (0..<9).map { (r[$0] as DatabaseValue).storage }
            var ints: [Int64] = [], blobs: [[UInt8]] = [], author: String?
            for (i, v) in values.enumerated() {
                switch (i, v) {
                case (0, .string(let s)): author = s
                case (1...3, .int64(let n)): ints.append(n)
                case (4...8, .blob(let d)): blobs.append([UInt8](d))
                default: break
                }
            }
            guard let author, ints.count == 3, blobs.count == 5 else {
                let seq: Int64 = if case .int64(let n) = values[1] { n } else { -1 }
                let a: String = if case .string(let s) = values[0] { s } else { "-" }
                findings.append(Finding(author: a, seq: seq, rule: "row-format", expected: "a \(table) row with TEXT author, INTEGER seq, kind, round and BLOB hashes, header, body, signature", found: "a column of another type"))
                continue
            }
            out.append(StoredRow(author: author, seq: ints[0], kind: ints[1], round: ints[2], prev: blobs[0], header: blobs[1], body: blobs[2], hash: blobs[3], signature: blobs[4]))
        }
        return out
    }

    /// Verifies `path`; `others` are replicas from other peers, whose chains
    /// must agree with this one and whose checkpoints reveal truncation and rollback.
    public static func verify(path: String, caCertificate: Certificate, against others: [String] = []) throws -> VerificationReport {
        let loaded = try load(path)
        let (consortium, rows, forks) = (loaded.consortium, loaded.rows, loaded.forks)
        guard (try? MemberName.validate(consortium, what: "consortium")) != nil else {
            throw UnusableLedger(description: "\(path) names no valid consortium in its meta table")
        }
        var run = Run(consortium: consortium, ca: caCertificate, chains: Dictionary(grouping: rows, by: \.author), owner: loaded.owner)
        run.findings = loaded.findings
        run.checkOwner()
        for (author, chain) in run.chains.sorted(by: { $0.key < $1.key }) { run.checkChain(author, chain) }
        // Across chains: aggregates name signed updates; checkpoints agree with the chains.
        run.checkAggregates()
        run.checkCheckpoints(run.parsed.compactMap { p -> (String, Int64, [Head])? in
            guard case .checkpoint(let heads) = p.facts else { return nil }
            return (p.row.author, p.row.seq, heads)
        }, source: "")
        run.checkEquivocations(rows: rows, forks: forks)
        for other in others { try run.checkReplica(other, rows: rows) }

        var report = VerificationReport()
        report.chains = run.chains.count
        report.entries = rows.count
        report.rounds = run.rounds.count
        report.findings = run.findings
        report.notes = run.notes
        if others.isEmpty {
            report.notes.append("a deleted last entry of another member's chain, or a copy made without its WAL, cannot be seen in one file: verify with --against the other members' files")
        }
        return report
    }

    /// One verification's state: what the chains showed so far, and the findings.
    struct Run {
        let consortium: String
        let ca: Certificate
        let chains: [String: [StoredRow]]
        /// The member whose peer wrote the file, if recorded.
        let owner: String?
        var findings: [Finding] = []
        var notes: [String] = []
        var keys: [String: Curve25519.Signing.PublicKey] = [:]
        /// author -> the unix-ms times its genesis certificate is valid for
        var validity: [String: ClosedRange<Int64>] = [:]
        /// author -> update hash hex -> round
        var updates: [String: [String: UInt64]] = [:]
        var rounds = Set<UInt64>()
        /// Entries whose header parsed and whose body is a JSON object.
        var parsed: [(row: StoredRow, header: EntryHeader, facts: BodyFacts)] = []

        mutating func find(_ a: String, _ s: Int64, _ rule: String, _ e: String, _ f: String) {
            findings.append(Finding(author: a, seq: s, rule: rule, expected: e, found: f))
        }

        /// A file whose meta names an owner holds that owner's chain (its peer writes the genesis with the owner key).
        mutating func checkOwner() {
            if let owner, chains[owner] == nil {
                find(owner, 0, "owner-chain", "the chain of the file's owner '\(owner)'", "none")
            }
        }

        mutating func checkChain(_ author: String, _ chain: [StoredRow]) {
            var expectedSeq: Int64 = 0
            var prevHash = LedgerEntry.zeroHash
            for row in chain {
                if row.seq != expectedSeq {
                    find(author, row.seq, "seq-contiguous", "seq \(expectedSeq)", "seq \(row.seq)")
                }
                checkEntry(row, prev: prevHash)
                expectedSeq = row.seq &+ 1
                prevHash = row.hash
            }
        }

        /// The checks of one entry on its own; `prev`: the stored hash of the entry before it.
        mutating func checkEntry(_ row: StoredRow, prev: [UInt8]) {
            let author = row.author
            let header: EntryHeader
            do {
                header = try EntryHeader.decode(row.header)
            } catch {
                find(author, row.seq, "header-format", "a well-formed header", "\(error)")
                return
            }
            checkHeader(row, header, prev: prev)
            checkKey(row, header)
            guard let body = CheckedBody(header.kind, row.body, round: header.round) else {
                find(author, row.seq, "body-format", "a JSON object", "\(row.body.count) undecodable bytes")
                return
            }
            if let problem = body.problem {
                find(author, row.seq, "body-format", problem.expected, problem.found)
            }
            if case .update(let h?) = body.facts {
                updates[author, default: [:]][h] = header.round
            }
            if (header.kind == .update || header.kind == .aggregate) && header.round > 0 { rounds.insert(header.round) }
            parsed.append((row, header, body.facts))
        }

        /// The stored columns, consortium, length, hash and link against the signed header.
        mutating func checkHeader(_ row: StoredRow, _ header: EntryHeader, prev: [UInt8]) {
            let author = row.author
            if header.author != row.author || UInt64(exactly: row.seq) != header.seq || Int64(header.kind.rawValue) != row.kind
                || UInt64(exactly: row.round) != header.round || header.prev != row.prev {
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
            if header.prev != prev {
                find(author, row.seq, "link", hex(prev), hex(header.prev))
            }
        }

        /// The genesis rules, the key a genesis carries, and the signature.
        mutating func checkKey(_ row: StoredRow, _ header: EntryHeader) {
            let author = row.author
            if header.seq == 0 {
                let entry = try? LedgerEntry(headerBytes: row.header, body: row.body, hash: row.hash, signature: row.signature)
                if header.kind != .genesis {
                    find(author, row.seq, "genesis", "a genesis entry at seq 0", "\(header.kind)")
                } else if let entry, let member = LedgerSchema.genesisMember(entry, author: author, consortium: consortium, ca: ca),
                          let key = member.ed25519PublicKey {
                    keys[author] = key
                    validity[author] = LedgerSchema.validMillis(member.certificate)
                } else {
                    find(author, row.seq, "genesis-certificate", "a certificate for '\(author)' issued by the consortium CA", "none")
                }
            } else if header.kind == .genesis {
                find(author, row.seq, "genesis", "genesis only at seq 0", "genesis at seq \(row.seq)")
            }
            if let window = validity[author], !window.contains(header.timeMillis) {
                find(author, row.seq, "time-in-validity", "a time within '\(author)' certificate validity (\(window.lowerBound)...\(window.upperBound) ms)", "\(header.timeMillis) ms")
            }
            if let key = keys[author] {
                if !key.isValidSignature(row.signature, for: row.hash) {
                    find(author, row.seq, "signature", "Ed25519 signature by '\(author)' over the stored hash", "an invalid signature")
                }
            } else if header.seq != 0 {
                find(author, row.seq, "signature", "a key from '\(author)' genesis", "no valid genesis")
            }
        }

        /// Every update an aggregate includes is signed by its author for the aggregate's round.
        mutating func checkAggregates() {
            for (row, header, facts) in parsed {
                guard case .aggregate(let included?) = facts else { continue }
                for item in included {
                    let a = item.author ?? "?", h = item.updateHash ?? "?"
                    if updates[a]?[h] != header.round {
                        find(row.author, row.seq, "aggregate-names-signed-update",
                             "an update entry by '\(a)' for round \(header.round) with hash \(h.prefix(12))", updates[a]?[h].map { "round \($0)" } ?? "none")
                    }
                }
            }
        }

        /// A replica from another peer: the same consortium, the same entries
        /// where both hold one, and its checkpoints against this file's chains.
        mutating func checkReplica(_ other: String, rows: [StoredRow]) throws {
            let loaded = try load(other)
            let (otherConsortium, otherRows) = (loaded.consortium, loaded.rows)
            if otherConsortium != consortium {
                find("-", -1, "replica-consortium", consortium, "\(otherConsortium) in \(other)")
                return
            }
            let mine = Dictionary(uniqueKeysWithValues: rows.map { ("\($0.author)#\($0.seq)", $0.hash) })
            for r in otherRows {
                if let h = mine["\(r.author)#\(r.seq)"], h != r.hash {
                    find(r.author, r.seq, "replicas-agree", "\(hex(h.prefix(6))) (this file)", "\(hex(r.hash.prefix(6))) in \(other)")
                }
            }
            let myHeads = Dictionary(rows.map { ($0.author, $0.seq) }, uniquingKeysWith: max)
            for (author, theirs) in Dictionary(otherRows.map { ($0.author, $0.seq) }, uniquingKeysWith: max).sorted(by: { $0.key < $1.key }) {
                let mine = myHeads[author]
                if mine.map({ $0 < theirs }) ?? true {
                    notes.append("\(other) holds \(author)#\(theirs), beyond this file's chain of \(author) (\(mine.map { "ends at seq \($0)" } ?? "absent")): replication lag, or a deleted tail that \(author)'s own file settles")
                }
            }
            let checkpoints: [(String, Int64, [Head])] = otherRows.compactMap { r in
                guard let h = try? EntryHeader.decode(r.header), h.kind == .checkpoint, let heads = checkpointHeads(r.body) else { return nil }
                return (r.author, r.seq, heads)
            }
            checkCheckpoints(checkpoints, source: " (checkpoint in \(other))")
        }

        /// Every head a checkpoint names that the chain holds must have that
        /// hash. A head the chain lacks is truncation or rollback when the file
        /// must hold it: a head of the file owner's own chain, or one named by the
        /// owner's own checkpoint in this file (or any head, when the file records
        /// no owner); otherwise the file is only behind (replication lag).
        mutating func checkCheckpoints(_ checkpoints: [(String, Int64, [Head])], source: String) {
            for (author, seq, heads) in checkpoints {
                for head in heads {
                    guard let a = head.author, let s = head.seq, let h = head.hash else { continue }
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

        /// Fork rows and evidence entries: each must prove that its author signed
        /// two different entries for one seq (`equivocation`), or it is itself a
        /// finding (`evidence-valid`). One equivocation finding per (author, seq).
        mutating func checkEquivocations(rows: [StoredRow], forks: [StoredRow]) {
            var accused = Set<String>()
            func equivocation(_ author: String, _ seq: UInt64, _ source: String) {
                guard accused.insert("\(author)#\(seq)").inserted else { return }
                find(author, Int64(truncatingIfNeeded: seq), "equivocation", "one entry per (author, seq)", "two different entries signed by '\(author)' (\(source))")
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
                if let problem = Evidence.problem(pair.0, pair.1, author: body.author, seq: body.seq, consortium: consortium, key: keys[body.author]) {
                    find(row.author, row.seq, "evidence-valid", "two different entries signed by '\(body.author)' for seq \(body.seq)", problem)
                } else {
                    equivocation(body.author, body.seq, "evidence \(row.author)#\(row.seq)")
                }
            }
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

extension LedgerVerifier {
    /// Why `certificate` (read from `file`) cannot be the consortium CA, or nil when it can:
    /// a CA certificate carries basicConstraints CA:TRUE.
    public static func notACertificateAuthority(_ certificate: Certificate, file: String) -> UnusableLedger? {
        if case .isCertificateAuthority? = try? certificate.extensions.basicConstraints { return nil }
        if let member = MemberCertificate(certificate) {
            return UnusableLedger(description: "\(file) is not a CA certificate: it is the member certificate of \(member.institution) in consortium \(member.consortium); pass the consortium's ca.pem")
        }
        return UnusableLedger(description: "\(file) is not a CA certificate (it has no basicConstraints CA:TRUE); pass the consortium's ca.pem")
    }
}
