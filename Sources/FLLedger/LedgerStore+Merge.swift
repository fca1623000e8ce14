import Crypto
import Foundation
import GRDB
import X509

/// Replication: storing entries other peers signed.
extension LedgerStore {
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
        var merger = Merger(consortium: try consortium(), ca: caCertificate, keys: genesisKeys.withLock { $0 })
        defer { genesisKeys.withLock { [keys = merger.keys] in $0.merge(keys) { a, _ in a } } }
        let sorted = incoming.sorted { ($0.header.author, $0.header.seq) < ($1.header.author, $1.header.seq) }
        // Replicated entries commit without a disk sync of their own: a crash
        // of the machine may lose the last ones (they are pulled again), and
        // this peer's next own append (synchronous=FULL) syncs the log with
        // everything before it, so no checkpoint it signs names a lost entry.
        try pool.writeWithoutTransaction { db in
            try db.execute(sql: "PRAGMA synchronous = NORMAL")
            // Own appends must stay durable: a failed reset is an error, not ignored.
            let outcome = Result {
                try db.inTransaction {
                    merger.start()
                    for entry in sorted { try merger.merge(entry, into: db) }
                    return .commit
                }
            }
            try db.execute(sql: "PRAGMA synchronous = FULL")
            try outcome.get()
        }
        noteStored(merger.inserted)
        if merger.report.forks > 0 { invalidateFlagged() }
        return merger.report
    }
}

/// One merge transaction's work: the checks of each entry and what became of it.
struct Merger {
    let consortium: String
    let ca: Certificate
    /// Genesis keys checked against the CA so far, by author.
    var keys: [String: Signer]
    var report = LedgerStore.MergeReport()
    var inserted: [LedgerEntry] = []

    /// Forgets a rolled-back attempt (GRDB may retry a transaction).
    mutating func start() {
        report = LedgerStore.MergeReport()
        inserted = []
    }

    mutating func merge(_ entry: LedgerEntry, into db: Database) throws {
        let h = entry.header
        let at = "\(h.author)#\(h.seq)"
        guard h.consortium == consortium else { report.refused.append("\(at): consortium '\(h.consortium)' is not '\(consortium)'"); return }
        guard entry.hashIsIntact else { report.refused.append("\(at): stored hash does not match its bytes"); return }
        // The same bytes again (entries reach a peer along several paths): nothing to check or store.
        let storedHash = try Data.fetchOne(db.cachedStatement(sql: "SELECT hash FROM entries WHERE author = ? AND seq = ?"), arguments: [h.author, Int64(h.seq)])
        if let storedHash, [UInt8](storedHash) == entry.hash {
            report.duplicates += 1
            return
        }
        guard let signer = try signer(for: entry, db) else { return }
        guard entry.isSigned(by: signer.key) else { report.refused.append("\(at): signature is not by '\(h.author)'"); return }
        // docs/ledger-spec.md, "Time": an entry's time lies within its author's certificate validity.
        guard signer.validity.contains(h.timeMillis) else {
            report.refused.append("\(at): its time \(h.timeMillis) (unix ms) lies outside '\(h.author)''s certificate validity \(signer.validity.lowerBound)...\(signer.validity.upperBound)")
            return
        }
        if storedHash != nil, let existing = try LedgerSchema.entries(db, sql: "SELECT header, body, hash, signature FROM entries WHERE author = ? AND seq = ?",
                                                                      arguments: [h.author, Int64(h.seq)]).first {
            try fork(existing, entry, db)
            return
        }
        let head = try Row.fetchOne(db.cachedStatement(sql: "SELECT seq, hash FROM entries WHERE author = ? ORDER BY seq DESC LIMIT 1"), arguments: [h.author])
        let expectedSeq = head.map { UInt64($0["seq"] as Int64) + 1 } ?? 0
        let expectedPrev = head.map { [UInt8]($0["hash"] as Data) } ?? LedgerEntry.zeroHash
        guard h.seq == expectedSeq, h.prev == expectedPrev else {
            report.refused.append("\(at): does not extend the stored chain (expected seq \(expectedSeq) after \(hex(expectedPrev.prefix(6))))"); return
        }
        try LedgerSchema.insert(entry, into: db)
        inserted.append(entry)
        report.stored += 1
    }

    /// The key `entry` must be signed with: a genesis carries its own; nil
    /// (and the entry refused) when there is none from the consortium CA.
    mutating func signer(for entry: LedgerEntry, _ db: Database) throws -> Signer? {
        let h = entry.header
        if h.kind == .genesis {
            guard h.seq == 0, let k = LedgerSchema.signer(entry, author: h.author, consortium: consortium, ca: ca) else {
                report.refused.append("\(h.author)#\(h.seq): genesis does not carry a certificate for '\(h.author)' from the consortium CA")
                return nil
            }
            return k
        }
        guard let k = try keys[h.author] ?? LedgerSchema.storedSigner(db, author: h.author, consortium: consortium, ca: ca) else {
            report.refused.append("\(h.author)#\(h.seq): no genesis is known for '\(h.author)'")
            return nil
        }
        keys[h.author] = k
        return k
    }

    /// A signed entry for a stored (author, seq): a duplicate, or a fork kept in `forks`.
    mutating func fork(_ existing: LedgerEntry, _ entry: LedgerEntry, _ db: Database) throws {
        guard existing.hash != entry.hash else { report.duplicates += 1; return }
        let h = entry.header
        try db.execute(sql: """
            INSERT OR IGNORE INTO forks(author, seq, header, body, hash, signature) VALUES (?, ?, ?, ?, ?, ?)
            """, arguments: [h.author, Int64(h.seq), Data(entry.headerBytes), Data(entry.body), Data(entry.hash), Data(entry.signature)])
        if db.changesCount > 0 {
            report.forks += 1
            report.forkProofs.append(LedgerStore.ForkProof(stored: existing, conflicting: entry))
        } else {
            report.duplicates += 1
        }
    }
}
