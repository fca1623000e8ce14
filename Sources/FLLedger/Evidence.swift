import Crypto
import Foundation

/// A fork proof: two different entries signed by one author for the same
/// (author, seq). Carried in `evidence` entries and in the `forks` table.
public enum Evidence {
    /// The body of an `evidence` entry (docs/ledger-spec.md).
    public struct Body: Codable, Sendable, Equatable {
        /// One entry as stored, each part lowercase hex.
        public struct StoredEntry: Codable, Sendable, Equatable {
            /// The header bytes.
            public var header: String
            /// The body bytes.
            public var body: String
            /// The stored hash.
            public var hash: String
            /// The author's signature of the hash.
            public var signature: String

            /// `e` as stored.
            public init(_ e: LedgerEntry) {
                header = hex(e.headerBytes)
                body = hex(e.body)
                hash = hex(e.hash)
                signature = hex(e.signature)
            }

            /// The entry, if every part is hex and the header parses.
            public var entry: LedgerEntry? {
                guard let h = unhex(header), let b = unhex(body), let d = unhex(hash), let s = unhex(signature) else { return nil }
                return try? LedgerEntry(headerBytes: h, body: b, hash: d, signature: s)
            }
        }

        /// The accused author.
        public var author: String
        /// The position in the accused author's chain that holds two entries.
        public var seq: UInt64
        /// The entry the writer held first, then the conflicting one.
        public var entries: [StoredEntry]

        /// The two entries, if there are two and both parse.
        public var pair: (LedgerEntry, LedgerEntry)? {
            guard entries.count == 2, let first = entries[0].entry, let second = entries[1].entry else { return nil }
            return (first, second)
        }
    }

    /// Who an evidence body accuses, read even when its entries are malformed.
    public struct Accusation: Decodable, Sendable, Equatable {
        /// The accused author.
        public var author: String
        /// The position the accusation names.
        public var seq: UInt64
    }

    /// The body of an `evidence` entry accusing `first.header.author`.
    public static func body(first: LedgerEntry, second: LedgerEntry) -> [UInt8] {
        EntryBody.encode(Body(author: first.header.author, seq: first.header.seq, entries: [.init(first), .init(second)]))
    }

    /// The accused (author, seq) named by an evidence body, if it names one.
    public static func accused(_ body: [UInt8]) -> Accusation? {
        EntryBody.decode(Accusation.self, from: body)
    }

    /// Nil when `first` and `second` prove that `author` signed two different
    /// entries for `seq` in `consortium`; otherwise why they do not.
    public static func problem(_ first: LedgerEntry, _ second: LedgerEntry, author: String, seq: UInt64, consortium: String,
                               key: Curve25519.Signing.PublicKey?) -> String? {
        for e in [first, second] {
            guard e.header.author == author, e.header.seq == seq else { return "an entry for \(e.header.author)#\(e.header.seq), not \(author)#\(seq)" }
            guard e.header.consortium == consortium else { return "an entry of consortium '\(e.header.consortium)'" }
            guard e.hashIsIntact else { return "an entry whose hash does not match its bytes" }
        }
        guard first.hash != second.hash else { return "the same entry twice" }
        guard let key else { return "no genesis key for '\(author)'" }
        guard first.isSigned(by: key), second.isSigned(by: key) else { return "an entry not signed by '\(author)'" }
        return nil
    }
}
