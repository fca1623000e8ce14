import Crypto
import FLGossip
import FLLedger
import FLWire
import X509

/// Connects a `LedgerStore` to the gossip layer: heads for the handshake,
/// entries for pulls, and verified merges of what peers send. When a merge
/// finds a fork, the peer signs an `evidence` entry into its own chain, so the
/// proof travels to every other peer with the next sync.
public struct LedgerSync: LedgerReplica {
    public let store: LedgerStore
    public let caCertificate: Certificate
    /// This peer's institution and key, for evidence entries; nil keeps forks local.
    public let identity: (institution: String, key: Curve25519.Signing.PrivateKey)?

    public init(store: LedgerStore, caCertificate: Certificate, identity: (institution: String, key: Curve25519.Signing.PrivateKey)? = nil) {
        self.store = store
        self.caCertificate = caCertificate
        self.identity = identity
    }

    public func heads() throws -> [ChainHead] {
        try store.heads().sorted { $0.key < $1.key }.compactMap { author, head in
            ContentHash(head.hash).map { ChainHead(author: author, seq: head.seq, hash: $0) }
        }
    }

    public func entries(author: String, after: UInt64?, limit: Int) throws -> [WireEntry] {
        try store.entries(author: author, after: after).prefix(limit).map(\.wire)
    }

    public func entryHash(author: String, seq: UInt64) throws -> ContentHash? {
        try store.entryHash(author: author, seq: seq).flatMap(ContentHash.init)
    }

    public func merge(_ entries: [WireEntry]) throws -> MergeOutcome {
        var parsed: [(LedgerEntry, WireEntry)] = []
        for e in entries {
            guard let entry = try? LedgerEntry(headerBytes: e.header, body: e.body, hash: e.hash, signature: e.signature) else { continue }
            parsed.append((entry, e))
        }
        let report = try store.merge(parsed.map(\.0), caCertificate: caCertificate)
        let stored = report.stored + (try recordEvidence(report.forkProofs))
        return MergeOutcome(stored: stored, held: try Self.held(parsed, heads: store.heads()))
    }

    /// The received entries on this replica's chains: for each author, the
    /// run of entries that ends at its head, each naming the previous one's hash.
    static func held(_ received: [(LedgerEntry, WireEntry)], heads: [String: (seq: UInt64, hash: [UInt8])]) -> [WireEntry] {
        var out: [WireEntry] = []
        for (author, list) in Dictionary(grouping: received, by: { $0.0.header.author }) {
            guard var expected = heads[author] else { continue }
            let bySeq = Dictionary(list.map { ($0.0.header.seq, $0) }, uniquingKeysWith: { a, _ in a })
            while let (entry, wire) = bySeq[expected.seq], entry.hash == expected.hash {
                out.append(wire)
                guard expected.seq > 0 else { break }
                expected = (expected.seq - 1, entry.header.prev)
            }
        }
        return out
    }

    /// Appends one `evidence` entry per fork not yet recorded by this peer; returns how many.
    @discardableResult
    public func recordEvidence(_ proofs: [LedgerStore.ForkProof]) throws -> Int {
        guard let identity, !proofs.isEmpty else { return 0 }
        var done = try store.evidenceSigned(by: identity.institution)
        var appended = 0
        for proof in proofs where done.insert("\(proof.stored.header.author)#\(proof.stored.header.seq)").inserted {
            try store.append(author: identity.institution, kind: .evidence, round: proof.conflicting.header.round,
                             body: Evidence.body(first: proof.stored, second: proof.conflicting), key: identity.key)
            appended += 1
        }
        return appended
    }
}

extension LedgerEntry {
    /// The entry as the gossip layer carries it.
    var wire: WireEntry { WireEntry(header: headerBytes, body: body, hash: hash, signature: signature) }
}
