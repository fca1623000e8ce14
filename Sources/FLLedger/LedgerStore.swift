import Crypto
import FLIdentity
import Foundation
import GRDB
import Synchronization
import X509

/// Why the ledger refused an operation.
public struct LedgerError: Error, Equatable, CustomStringConvertible, Sendable {
    public let description: String
    init(_ d: String) { description = d }
}

/// A peer's ledger file: one hash-chained, signed chain per institution,
/// replicas of every chain the peer has seen, and evidence of forks.
/// WAL mode with `synchronous=FULL`: an append that returned is on disk.
public final class LedgerStore: Sendable {
    public let path: String
    let pool: DatabasePool
    /// Genesis keys already checked against the CA, by author (a chain's genesis never changes).
    private let genesisKeys = Mutex<[String: Curve25519.Signing.PublicKey]>([:])
    /// The chain heads, loaded once and then kept current by this store's own
    /// appends and merges (gossip asks for them on every message exchange).
    /// One process writes a peer's ledger; other writers are not seen here.
    private let headsCache = Mutex<[String: (seq: UInt64, hash: [UInt8])]?>(nil)
    /// The authors with fork evidence against them, for one CA, kept until a
    /// merge files a fork or an `evidence` entry is stored.
    private let checkpointer: WALCheckpointer

    /// `generation` counts invalidations, so a derivation that raced one is not kept.
    private let flaggedCache = Mutex<(generation: Int, value: (ca: Certificate, authors: [String])?)>((0, nil))

    /// Opens (creating if needed) a ledger file and runs the migrations.
    public init(path: String, consortium: String) throws {
        self.path = path
        var config = Configuration()
        config.prepareDatabase { db in
            try db.execute(sql: "PRAGMA synchronous = FULL")
            // Checkpoints run in the background (`WALCheckpointer`), not inside an append.
            try db.execute(sql: "PRAGMA wal_autocheckpoint = 0")
        }
        pool = try DatabasePool(path: path, configuration: config)
        checkpointer = WALCheckpointer(path: path)
        try LedgerSchema.migrator.migrate(pool)
        try pool.write { db in
            let existing = try String.fetchOne(db, sql: "SELECT value FROM meta WHERE key = 'consortium'")
            if let existing, existing != consortium {
                throw LedgerError("\(path) is the ledger of consortium '\(existing)', not '\(consortium)'")
            }
            if existing == nil {
                try db.execute(sql: "INSERT INTO meta(key, value) VALUES ('consortium', ?)", arguments: [consortium])
            }
        }
    }

    /// Writes a consistent copy of the whole ledger to `path` (SQLite online
    /// backup), safe while the peer keeps appending.
    public func backup(to path: String) throws {
        let target = try DatabaseQueue(path: path)
        try pool.backup(to: target)
        try target.close()
    }

    /// The consortium this ledger belongs to.
    public func consortium() throws -> String {
        if let known = consortiumName.withLock({ $0 }) { return known }
        let name = try pool.read { db in try String.fetchOne(db, sql: "SELECT value FROM meta WHERE key = 'consortium'") ?? "" }
        consortiumName.withLock { $0 = name }
        return name
    }

    /// The consortium of this file (set when it is created, never changed).
    private let consortiumName = Mutex<String?>(nil)

    /// The last entry's seq and hash of each chain.
    public func heads() throws -> [String: (seq: UInt64, hash: [UInt8])] {
        if let cached = headsCache.withLock({ $0 }) { return cached }
        let loaded = try pool.read { db in try LedgerSchema.heads(db) }
        headsCache.withLock { $0 = loaded }
        return loaded
    }

    /// Records entries that a committed transaction stored.
    private func noteStored(_ entries: [LedgerEntry]) {
        guard !entries.isEmpty else { return }
        if entries.contains(where: { $0.header.kind == .evidence }) { invalidateFlagged() }
        headsCache.withLock { cache in
            guard cache != nil else { return }
            for e in entries where (cache![e.header.author]?.seq).map({ e.header.seq > $0 }) ?? true {
                cache![e.header.author] = (e.header.seq, e.hash)
            }
        }
    }

    /// Appends a new entry to `author`'s own chain, signed with `key`, in one
    /// durable transaction (reads the head and inserts atomically).
    @discardableResult
    public func append(author: String, kind: EntryKind, round: UInt64, body: [UInt8], key: Curve25519.Signing.PrivateKey, time: Date = Date()) throws -> LedgerEntry {
        try append(author: author, key: key, time: time, [(kind, round, { _ in body })])[0]
    }

    /// The hash of `author`'s stored entry at `seq`, if any.
    public func entryHash(author: String, seq: UInt64) throws -> [UInt8]? {
        try pool.read { db in
            try Data.fetchOne(db.cachedStatement(sql: "SELECT hash FROM entries WHERE author = ? AND seq = ?"), arguments: [author, Int64(seq)]).map { [UInt8]($0) }
        }
    }

    /// The entry `append` would add next to `author`'s chain, signed but not
    /// stored (the `equivocate` attack signs a second entry for a position).
    public func draft(author: String, kind: EntryKind, round: UInt64, body: [UInt8], key: Curve25519.Signing.PrivateKey, time: Date = Date()) throws -> LedgerEntry {
        let consortium = try consortium()
        guard let head = try heads()[author] else { throw LedgerError("chain '\(author)' has no genesis") }
        let header = EntryHeader(consortium: consortium, author: author, seq: head.seq + 1, prev: head.hash, round: round, kind: kind,
                                 timeMillis: Int64((time.timeIntervalSince1970 * 1000).rounded()), bodyLength: 0)
        return try LedgerEntry.make(header: header, body: body, key: key)
    }

    /// The heads of all chains, read on demand inside an append's transaction.
    public typealias HeadsReader = () throws -> [String: (seq: UInt64, hash: [UInt8])]

    /// One entry to append: its kind, round, and its body, which may read the
    /// heads of all chains as they are just before it is appended.
    public typealias PendingEntry = (kind: EntryKind, round: UInt64, body: (HeadsReader) throws -> [UInt8])

    /// Appends several entries to `author`'s chain in one durable transaction
    /// (one disk sync): all or none are stored.
    @discardableResult
    /// `state` is written to the local-state table in the same transaction
    /// (e.g. the model an aggregate entry names), so both land or neither does.
    public func append(author: String, key: Curve25519.Signing.PrivateKey, time: Date = Date(), _ pending: [PendingEntry],
                       state: [String: [UInt8]] = [:]) throws -> [LedgerEntry] {
        let consortium = try consortium()
        let stored = try pool.write { db in
            for (k, v) in state {
                try db.cachedStatement(sql: "INSERT OR REPLACE INTO local_state(key, value) VALUES (?, ?)").execute(arguments: [k, Data(v)])
            }
            var out: [LedgerEntry] = []
            for p in pending {
                let last = try Row.fetchOne(db.cachedStatement(sql: "SELECT seq, hash FROM entries WHERE author = ? ORDER BY seq DESC LIMIT 1"), arguments: [author])
                let head = last.map { (seq: UInt64($0["seq"] as Int64), hash: [UInt8]($0["hash"] as Data)) }
                let seq = head.map { $0.seq + 1 } ?? 0
                guard (seq == 0) == (p.kind == .genesis) else {
                    throw LedgerError(seq == 0 ? "the first entry of a chain must be its genesis" : "chain '\(author)' already has a genesis")
                }
                let header = EntryHeader(consortium: consortium, author: author, seq: seq, prev: head?.hash ?? LedgerEntry.zeroHash, round: p.round, kind: p.kind,
                                         timeMillis: Int64((time.timeIntervalSince1970 * 1000).rounded()), bodyLength: 0)
                let entry = try LedgerEntry.make(header: header, body: try p.body({ try LedgerSchema.heads(db) }), key: key)
                try LedgerSchema.insert(entry, into: db)
                // The first chain begun here is the file's owner: a verifier
                // expects the owner's chain (and its checkpoints) complete, and
                // other chains possibly behind (replication lag).
                if p.kind == .genesis {
                    try db.execute(sql: "INSERT OR IGNORE INTO meta(key, value) VALUES ('owner', ?)", arguments: [author])
                }
                out.append(entry)
            }
            return out
        }
        noteStored(stored)
        checkpointer.noteCommit()
        return stored
    }

    /// A value of this peer's local state (not replicated, not part of the ledger).
    public func localState(_ key: String) throws -> [UInt8]? {
        try pool.read { db in try Data.fetchOne(db, sql: "SELECT value FROM local_state WHERE key = ?", arguments: [key]).map { [UInt8]($0) } }
    }

    /// Entries of `author` with seq greater than `after` (all when nil), in order.
    public func entries(author: String, after: UInt64? = nil) throws -> [LedgerEntry] {
        try pool.unsafeReentrantRead { db in
            try LedgerSchema.entries(db, sql: "SELECT header, body, hash, signature FROM entries WHERE author = ? AND seq > ? ORDER BY seq",
                                     arguments: [author, after.map { Int64($0) } ?? -1])
        }
    }

    /// Every entry of `kind` for `round`, by author then seq.
    public func entries(kind: EntryKind, round: UInt64) throws -> [LedgerEntry] {
        try pool.unsafeReentrantRead { db in
            try LedgerSchema.entries(db, sql: "SELECT header, body, hash, signature FROM entries WHERE kind = ? AND round = ? ORDER BY author, seq",
                                     arguments: [Int64(kind.rawValue), Int64(round)])
        }
    }

    /// How many entries of `kind` for `round` are stored (a cheap check before reading them).
    public func count(kind: EntryKind, round: UInt64) throws -> Int {
        try pool.unsafeReentrantRead { db in
            try Int.fetchOne(db.cachedStatement(sql: "SELECT COUNT(*) FROM entries WHERE kind = ? AND round = ?"),
                             arguments: [Int64(kind.rawValue), Int64(round)]) ?? 0
        }
    }

    /// Every entry, by author then seq.
    public func allEntries() throws -> [LedgerEntry] {
        try pool.read { db in try LedgerSchema.entries(db, sql: "SELECT header, body, hash, signature FROM entries ORDER BY author, seq", arguments: []) }
    }

    /// What a merge did with each received entry.
    public struct MergeReport: Equatable, Sendable {
        public var stored = 0
        public var duplicates = 0
        /// Entries that conflict with a stored one for the same (author, seq): kept as evidence.
        public var forks = 0
        /// Each new fork: the stored entry and the conflicting one, ready for an `evidence` entry.
        public var forkProofs: [ForkProof] = []
        /// Refused entries with the reason.
        public var refused: [String] = []
    }

    /// Two different entries signed by one author for one (author, seq).
    public struct ForkProof: Equatable, Sendable {
        public let stored: LedgerEntry
        public let conflicting: LedgerEntry
    }

    /// Stores replicated entries after checking each one's hash, link and
    /// signature (the author's key comes from its genesis certificate, which
    /// must be issued by `caCertificate`). A second, different entry for an
    /// existing (author, seq) never overwrites: it is kept as a fork and the
    /// author is flagged.
    public func merge(_ incoming: [LedgerEntry], caCertificate: Certificate) throws -> MergeReport {
        let consortium = try consortium()
        var report = MergeReport()
        let sorted = incoming.sorted { ($0.header.author, $0.header.seq) < ($1.header.author, $1.header.seq) }
        var keys = genesisKeys.withLock { $0 }
        defer { genesisKeys.withLock { [keys] in $0.merge(keys) { a, _ in a } } }
        var inserted: [LedgerEntry] = []
        // Replicated entries commit without a disk sync of their own: a crash
        // of the machine may lose the last ones (they are pulled again), and
        // this peer's next own append (synchronous=FULL) syncs the log with
        // everything before it, so no checkpoint it signs names a lost entry.
        try pool.writeWithoutTransaction { db in
            try db.execute(sql: "PRAGMA synchronous = NORMAL")
            defer { try? db.execute(sql: "PRAGMA synchronous = FULL") }
            try db.inTransaction {
                try mergeTransaction(db)
                return .commit
            }
        }
        func mergeTransaction(_ db: Database) throws {
            inserted = []
            for entry in sorted {
                let h = entry.header
                let at = "\(h.author)#\(h.seq)"
                guard h.consortium == consortium else { report.refused.append("\(at): consortium '\(h.consortium)' is not '\(consortium)'"); continue }
                guard entry.hashIsIntact else { report.refused.append("\(at): stored hash does not match its bytes"); continue }
                // The same bytes again (entries reach a peer along several paths): nothing to check or store.
                if let existing = try Data.fetchOne(db.cachedStatement(sql: "SELECT hash FROM entries WHERE author = ? AND seq = ?"), arguments: [h.author, Int64(h.seq)]),
                   [UInt8](existing) == entry.hash {
                    report.duplicates += 1
                    continue
                }
                let key: Curve25519.Signing.PublicKey
                if h.kind == .genesis {
                    guard h.seq == 0, let k = LedgerSchema.genesisKey(entry, author: h.author, consortium: consortium, ca: caCertificate) else {
                        report.refused.append("\(at): genesis does not carry a certificate for '\(h.author)' from the consortium CA"); continue
                    }
                    key = k
                } else {
                    guard let k = try keys[h.author] ?? LedgerSchema.storedKey(db, author: h.author, consortium: consortium, ca: caCertificate) else {
                        report.refused.append("\(at): no genesis is known for '\(h.author)'"); continue
                    }
                    keys[h.author] = k
                    key = k
                }
                guard entry.isSigned(by: key) else { report.refused.append("\(at): signature is not by '\(h.author)'"); continue }
                if let existing = try LedgerSchema.entries(db, sql: "SELECT header, body, hash, signature FROM entries WHERE author = ? AND seq = ?",
                                                           arguments: [h.author, Int64(h.seq)]).first {
                    if existing.hash == entry.hash {
                        report.duplicates += 1
                    } else {
                        try db.execute(sql: """
                            INSERT OR IGNORE INTO forks(author, seq, header, body, hash, signature) VALUES (?, ?, ?, ?, ?, ?)
                            """, arguments: [h.author, Int64(h.seq), Data(entry.headerBytes), Data(entry.body), Data(entry.hash), Data(entry.signature)])
                        if db.changesCount > 0 {
                            report.forks += 1
                            report.forkProofs.append(ForkProof(stored: existing, conflicting: entry))
                        } else {
                            report.duplicates += 1
                        }
                    }
                    continue
                }
                let head = try Row.fetchOne(db.cachedStatement(sql: "SELECT seq, hash FROM entries WHERE author = ? ORDER BY seq DESC LIMIT 1"), arguments: [h.author])
                let expectedSeq = head.map { UInt64($0["seq"] as Int64) + 1 } ?? 0
                let expectedPrev = head.map { [UInt8]($0["hash"] as Data) } ?? LedgerEntry.zeroHash
                guard h.seq == expectedSeq, h.prev == expectedPrev else {
                    report.refused.append("\(at): does not extend the stored chain (expected seq \(expectedSeq) after \(hex(expectedPrev.prefix(6))))"); continue
                }
                try LedgerSchema.insert(entry, into: db)
                inserted.append(entry)
                report.stored += 1
            }
        }
        noteStored(inserted)
        if report.forks > 0 { invalidateFlagged() }
        return report
    }

    /// Authors with fork evidence against them: conflicting entries this
    /// peer received itself, and valid `evidence` entries from any chain.
    /// Cached: re-derived only after a merge filed a fork or an `evidence`
    /// entry was stored.
    public func flaggedAuthors(caCertificate: Certificate) throws -> [String] {
        let (generation, cached) = flaggedCache.withLock { $0 }
        if let cached, cached.ca == caCertificate { return cached.authors }
        let authors = try deriveFlaggedAuthors(caCertificate: caCertificate)
        flaggedCache.withLock { if $0.generation == generation { $0.value = (caCertificate, authors) } }
        return authors
    }

    private func invalidateFlagged() {
        flaggedCache.withLock { $0 = ($0.generation + 1, nil) }
    }

    private func deriveFlaggedAuthors(caCertificate: Certificate) throws -> [String] {
        let consortium = try consortium()
        return try pool.read { db in
            var flagged = Set(try String.fetchAll(db.cachedStatement(sql: "SELECT DISTINCT author FROM forks")))
            let evidence = try LedgerSchema.entries(db, sql: "SELECT header, body, hash, signature FROM entries WHERE kind = ?",
                                                    arguments: [Int64(EntryKind.evidence.rawValue)])
            for e in evidence {
                guard let body = EntryBody.decode(e.body), let (author, seq) = Evidence.accused(body), !flagged.contains(author),
                      let pair = Evidence.entries(body) else { continue }
                let key = try LedgerSchema.storedKey(db, author: author, consortium: consortium, ca: caCertificate)
                if Evidence.problem(pair[0], pair[1], author: author, seq: seq, consortium: consortium, key: key) == nil {
                    flagged.insert(author)
                }
            }
            return flagged.sorted()
        }
    }

    /// The forks `author` has already signed evidence for, as "accused#seq".
    public func evidenceSigned(by author: String) throws -> Set<String> {
        try pool.read { db in
            Set(try LedgerSchema.entries(db, sql: "SELECT header, body, hash, signature FROM entries WHERE author = ? AND kind = ?",
                                         arguments: [author, Int64(EntryKind.evidence.rawValue)]).compactMap { e in
                EntryBody.decode(e.body).flatMap(Evidence.accused).map { "\($0.author)#\($0.seq)" }
            })
        }
    }
}

/// The schema. Migrations never change once shipped; new ones are appended.
enum LedgerSchema {
    static var migrator: DatabaseMigrator {
        var m = DatabaseMigrator()
        m.registerMigration("v1") { db in
            try db.execute(sql: """
                CREATE TABLE meta (
                    key TEXT PRIMARY KEY NOT NULL,
                    value TEXT NOT NULL
                );
                CREATE TABLE entries (
                    id INTEGER PRIMARY KEY,
                    author TEXT NOT NULL,
                    seq INTEGER NOT NULL CHECK (seq >= 0),
                    kind INTEGER NOT NULL,
                    round INTEGER NOT NULL,
                    prev BLOB NOT NULL CHECK (length(prev) = 32),
                    header BLOB NOT NULL,
                    body BLOB NOT NULL,
                    hash BLOB NOT NULL CHECK (length(hash) = 32),
                    signature BLOB NOT NULL CHECK (length(signature) = 64),
                    UNIQUE (author, seq)
                );
                CREATE TABLE forks (
                    id INTEGER PRIMARY KEY,
                    author TEXT NOT NULL,
                    seq INTEGER NOT NULL,
                    header BLOB NOT NULL,
                    body BLOB NOT NULL,
                    hash BLOB NOT NULL,
                    signature BLOB NOT NULL,
                    UNIQUE (author, seq, hash)
                );
                """)
        }
        // v2: the round engine looks up one round's entries many times per round.
        m.registerMigration("v2") { db in
            try db.execute(sql: "CREATE INDEX entries_round_kind ON entries(round, kind)")
        }
        // v3: the peer's own working state (its current model), written with its entries.
        m.registerMigration("v3") { db in
            try db.execute(sql: "CREATE TABLE local_state (key TEXT PRIMARY KEY NOT NULL, value BLOB NOT NULL)")
        }
        return m
    }

    /// The last entry's seq and hash of each chain.
    static func heads(_ db: Database) throws -> [String: (seq: UInt64, hash: [UInt8])] {
        var out: [String: (seq: UInt64, hash: [UInt8])] = [:]
        // SQLite returns the other columns of the row holding MAX(seq).
        for row in try Row.fetchAll(db.cachedStatement(sql: "SELECT author, MAX(seq) AS seq, hash FROM entries GROUP BY author")) {
            out[row["author"]] = (UInt64(row["seq"] as Int64), [UInt8](row["hash"] as Data))
        }
        return out
    }

    static func insert(_ e: LedgerEntry, into db: Database) throws {
        let h = e.header
        try db.cachedStatement(sql: """
            INSERT INTO entries(author, seq, kind, round, prev, header, body, hash, signature) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
            """).execute(arguments: [h.author, Int64(h.seq), Int64(h.kind.rawValue), Int64(h.round), Data(h.prev), Data(e.headerBytes), Data(e.body), Data(e.hash), Data(e.signature)])
    }

    static func entries(_ db: Database, sql: String, arguments: StatementArguments) throws -> [LedgerEntry] {
        try Row.fetchAll(db.cachedStatement(sql: sql), arguments: arguments).map { row in
            try LedgerEntry(headerBytes: [UInt8](row["header"] as Data), body: [UInt8](row["body"] as Data),
                            hash: [UInt8](row["hash"] as Data), signature: [UInt8](row["signature"] as Data))
        }
    }

    /// The Ed25519 key in a genesis entry's certificate, if the CA issued it to `author` in `consortium`.
    static func genesisKey(_ entry: LedgerEntry, author: String, consortium: String, ca: Certificate) -> Curve25519.Signing.PublicKey? {
        guard let body = EntryBody.decode(entry.body), let pem = body["certificate"] as? String,
              let cert = try? Certificate(pemEncoded: pem),
              ca.publicKey.isValidSignature(cert.signature, for: cert), cert.issuer == ca.subject,
              let member = MemberCertificate(cert), member.institution == author, member.consortium == consortium
        else { return nil }
        return member.ed25519PublicKey
    }

    static func storedKey(_ db: Database, author: String, consortium: String, ca: Certificate) throws -> Curve25519.Signing.PublicKey? {
        guard let row = try Row.fetchOne(db, sql: "SELECT header, body, hash, signature FROM entries WHERE author = ? AND seq = 0", arguments: [author]),
              let entry = try? LedgerEntry(headerBytes: [UInt8](row["header"] as Data), body: [UInt8](row["body"] as Data),
                                           hash: [UInt8](row["hash"] as Data), signature: [UInt8](row["signature"] as Data))
        else { return nil }
        return genesisKey(entry, author: author, consortium: consortium, ca: ca)
    }
}
