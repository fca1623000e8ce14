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
    /// One connection for reads and writes: SQLite keeps a connection's page
    /// cache across its own commits but drops it whenever another connection
    /// wrote, so a pool's readers re-read every page they touch after each
    /// merge (hundreds of `pread`s per round). Merges and reads run on the
    /// gossip thread pool and the engine, one at a time either way.
    let pool: DatabaseQueue
    /// Genesis keys already checked against the CA, by author (a chain's genesis never changes).
    let genesisKeys = Mutex<[String: Signer]>([:])
    /// The chain heads, loaded once and then kept current by this store's own
    /// appends and merges (gossip asks for them on every message exchange).
    /// One process writes a peer's ledger; other writers are not seen here.
    private let headsCache = Mutex<[String: (seq: UInt64, hash: [UInt8])]?>(nil)
    private let checkpointer: WALCheckpointer

    /// The authors with fork evidence against them, for one CA, kept until a
    /// merge files a fork or an `evidence` entry is stored. `generation`
    /// counts invalidations, so a derivation that raced one is not kept.
    let flaggedCache = Mutex<(generation: Int, value: (ca: Certificate, authors: [String])?)>((0, nil))

    /// Opens (creating if needed) a ledger file and runs the migrations.
    public init(path: String, consortium: String) throws {
        self.path = path
        var config = Configuration()
        config.prepareDatabase { db in
            // WAL set here, not with `journalMode = .wal`: GRDB follows that with `synchronous = NORMAL`.
            guard try String.fetchOne(db, sql: "PRAGMA journal_mode = WAL") == "wal" else {
                throw LedgerError("\(path) cannot be put in WAL mode (is it on a file system without shared memory?)")
            }
            try db.execute(sql: "PRAGMA synchronous = FULL")
            // Checkpoints run in the background (`WALCheckpointer`), not inside an append.
            try db.execute(sql: "PRAGMA wal_autocheckpoint = 0")
            // A ledger's working set (a few rounds of every chain) stays in
            // the connection's page cache (SQLite's default is 2 MiB).
            try db.execute(sql: "PRAGMA cache_size = -32768")
        }
        pool = try DatabaseQueue(path: path, configuration: config)
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

    /// Copies the write-ahead log into the database file, truncates the log
    /// and closes the file: after a clean stop `ledger.sqlite` alone holds
    /// every entry (an auditor copies that one file). Later calls fail.
    public func close() throws {
        checkpointer.close()
        do {
            try pool.writeWithoutTransaction { db in _ = try db.checkpoint(.truncate) }
        } catch {
            throw LedgerError("\(path): the write-ahead log could not be copied into the file (\(error)); its entries stay in \(path)-wal, keep both files together")
        }
        try pool.close()
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
    func noteStored(_ entries: [LedgerEntry]) {
        guard !entries.isEmpty else { return }
        if entries.contains(where: { $0.header.kind == .evidence }) { invalidateFlagged() }
        headsCache.withLock { cache in
            guard cache != nil else { return }
            for e in entries where (cache![e.header.author]?.seq).map({ e.header.seq > $0 }) ?? true {
                cache![e.header.author] = (e.header.seq, e.hash)
            }
        }
    }

    /// Positions of a chain that may already be signed elsewhere (seen in
    /// other members' replicas), by author: appends at or below them are
    /// refused, so a peer whose file lost entries never signs a position twice.
    private let signedElsewhere = Mutex<[String: Int64]>([:])

    /// Refuses `author`'s appends up to seq `through` (`Int64.max`: all of
    /// them, until a later call lowers the bound); a lower bound than the
    /// one already held only applies when `replace` is set.
    public func refuseAppends(by author: String, through: Int64, replace: Bool = false) {
        signedElsewhere.withLock { held in
            if replace { held[author] = through } else { held[author] = max(held[author] ?? -1, through) }
        }
    }

    /// Names `author` as this file's owner if it has none (a chain recovered
    /// from replicas was not begun here by an append).
    public func claimOwner(_ author: String) throws {
        try pool.write { db in try db.execute(sql: "INSERT OR IGNORE INTO meta(key, value) VALUES ('owner', ?)", arguments: [author]) }
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
                if let held = signedElsewhere.withLock({ $0[author] }), Int64(seq) <= held {
                    throw LedgerError(held == .max
                        ? "\(path): '\(author)' may not sign until its chain has been compared with the other members' replicas"
                        : "\(path): refusing to sign '\(author)'#\(seq): a replica holds this chain to #\(held), so this position may already be signed")
                }
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
    /// Every entry of `kind`, by author and seq.
    public func entries(kind: EntryKind) throws -> [LedgerEntry] {
        try pool.unsafeReentrantRead { db in
            try LedgerSchema.entries(db, sql: "SELECT header, body, hash, signature FROM entries WHERE kind = ? ORDER BY author, seq", arguments: [Int64(kind.rawValue)])
        }
    }

    public func entries(kind: EntryKind, round: UInt64) throws -> [LedgerEntry] {
        try pool.unsafeReentrantRead { db in
            try LedgerSchema.entries(db, sql: "SELECT header, body, hash, signature FROM entries WHERE kind = ? AND round = ? ORDER BY author, seq",
                                     arguments: [Int64(kind.rawValue), Int64(round)])
        }
    }

    /// The entries of `kind` for `round` stored after row `after` (0: all), in
    /// the order they were stored, and the last row read (`after` when none
    /// is new): for readers that look again each time the ledger changes.
    public func entries(kind: EntryKind, round: UInt64, storedAfter after: Int64) throws -> (entries: [LedgerEntry], last: Int64) {
        try pool.unsafeReentrantRead { db in
            var out: [LedgerEntry] = []
            var last = after
            let rows = try Row.fetchCursor(db.cachedStatement(sql: "SELECT id, header, body, hash, signature FROM entries WHERE round = ? AND kind = ? AND id > ? ORDER BY id"),
                                           arguments: [Int64(round), Int64(kind.rawValue), after])
            while let row = try rows.next() {
                out.append(try LedgerSchema.entry(row, from: 1))
                last = row[0]
            }
            return (out, last)
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
}
