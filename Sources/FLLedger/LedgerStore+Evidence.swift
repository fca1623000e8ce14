import Foundation
import GRDB
import X509

/// Fork evidence: who is flagged, and what evidence this peer signed.
extension LedgerStore {
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

    func invalidateFlagged() {
        flaggedCache.withLock { $0 = ($0.generation + 1, nil) }
    }

    private func deriveFlaggedAuthors(caCertificate: Certificate) throws -> [String] {
        let consortium = try consortium()
        return try pool.read { db in
            var flagged = Set(try String.fetchAll(db.cachedStatement(sql: "SELECT DISTINCT author FROM forks")))
            let evidence = try LedgerSchema.entries(db, sql: "SELECT header, body, hash, signature FROM entries WHERE kind = ?",
                                                    arguments: [Int64(EntryKind.evidence.rawValue)])
            for e in evidence {
                guard let body = EntryBody.decode(Evidence.Body.self, from: e.body), !flagged.contains(body.author), let pair = body.pair else { continue }
                let key = try LedgerSchema.storedKey(db, author: body.author, consortium: consortium, ca: caCertificate)
                if Evidence.problem(pair.0, pair.1, author: body.author, seq: body.seq, consortium: consortium, key: key) == nil {
                    flagged.insert(body.author)
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
                Evidence.accused(e.body).map { "\($0.author)#\($0.seq)" }
            })
        }
    }
}
