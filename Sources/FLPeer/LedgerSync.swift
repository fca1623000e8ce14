import FLGossip
import FLLedger
import FLWire
import X509

/// Connects a `LedgerStore` to the gossip layer: heads for the handshake,
/// entries for pulls, and verified merges of what peers send.
public struct LedgerSync: LedgerReplica {
    public let store: LedgerStore
    public let caCertificate: Certificate

    public init(store: LedgerStore, caCertificate: Certificate) {
        self.store = store
        self.caCertificate = caCertificate
    }

    public func heads() throws -> [ChainHead] {
        try store.heads().sorted { $0.key < $1.key }.compactMap { author, head in
            ContentHash(head.hash).map { ChainHead(author: author, seq: head.seq, hash: $0) }
        }
    }

    public func entries(author: String, after: UInt64?, limit: Int) throws -> [WireEntry] {
        try store.entries(author: author, after: after).prefix(limit).map {
            WireEntry(header: $0.headerBytes, body: $0.body, hash: $0.hash, signature: $0.signature)
        }
    }

    public func merge(_ entries: [WireEntry]) throws -> Int {
        var parsed: [LedgerEntry] = []
        for e in entries {
            guard let entry = try? LedgerEntry(headerBytes: e.header, body: e.body, hash: e.hash, signature: e.signature) else { continue }
            parsed.append(entry)
        }
        return try store.merge(parsed, caCertificate: caCertificate).stored
    }
}
