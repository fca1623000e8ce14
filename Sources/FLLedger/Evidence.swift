import Crypto
import Foundation

/// A fork proof: two different entries signed by one author for the same
/// (author, seq). Carried in `evidence` entries and in the `forks` table.
public enum Evidence {
    /// The body of an `evidence` entry accusing `first.header.author`.
    public static func body(first: LedgerEntry, second: LedgerEntry) -> [UInt8] {
        func entry(_ e: LedgerEntry) -> [String: Any] {
            ["header": hex(e.headerBytes), "body": hex(e.body), "hash": hex(e.hash), "signature": hex(e.signature)]
        }
        return EntryBody.encode([
            "author": first.header.author, "seq": first.header.seq,
            "entries": [entry(first), entry(second)],
        ])
    }

    /// The accused (author, seq) named by an evidence body, if it names one.
    public static func accused(_ body: [String: Any]) -> (author: String, seq: UInt64)? {
        guard let a = body["author"] as? String, let s = body["seq"] as? NSNumber, s.int64Value >= 0 else { return nil }
        return (a, s.uint64Value)
    }

    /// The two entries of an evidence body, if both parse.
    public static func entries(_ body: [String: Any]) -> [LedgerEntry]? {
        guard let list = body["entries"] as? [[String: Any]], list.count == 2 else { return nil }
        var out: [LedgerEntry] = []
        for item in list {
            guard let h = (item["header"] as? String).flatMap(unhex), let b = (item["body"] as? String).flatMap(unhex),
                  let d = (item["hash"] as? String).flatMap(unhex), let s = (item["signature"] as? String).flatMap(unhex),
                  let e = try? LedgerEntry(headerBytes: h, body: b, hash: d, signature: s)
            else { return nil }
            out.append(e)
        }
        return out
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
