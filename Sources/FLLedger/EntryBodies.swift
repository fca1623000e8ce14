import FLCore
import Foundation

/// Entry bodies are UTF-8 JSON objects. Hashes and signatures cover the stored
/// bytes, so any encoding of the same object is acceptable; flpeer writes
/// keys sorted and hashes as lowercase hex.
public enum EntryBody {
    /// JSON bytes of `object` (keys sorted).
    public static func encode(_ object: [String: Any]) -> [UInt8] {
        Array((try? JSONSerialization.data(withJSONObject: object, options: [.sortedKeys, .withoutEscapingSlashes])) ?? Data())
    }

    /// The JSON object in `bytes`, or nil.
    public static func decode(_ bytes: [UInt8]) -> [String: Any]? {
        (try? JSONSerialization.jsonObject(with: Data(bytes))) as? [String: Any]
    }

    public static func genesis(certificatePEM: String) -> [UInt8] { encode(["certificate": certificatePEM]) }

    /// `blob`: SHA-256 (hex) of the bytes peers pull for this update, when they differ from what `update_hash` covers.
    public static func update(round: UInt64, baseHash: String, updateHash: String, samples: Int, codec: String, metrics: [String: Double], blob: String? = nil) -> [UInt8] {
        var o: [String: Any] = ["round": round, "base_hash": baseHash, "update_hash": updateHash, "samples": samples, "codec": codec, "metrics": metrics]
        if let blob { o["blob"] = blob }
        return encode(o)
    }

    /// One included update of an aggregate.
    public struct Included: Sendable, Equatable {
        public let author: String
        public let updateHash: String
        public let trimmed: Int
        public init(author: String, updateHash: String, trimmed: Int) {
            self.author = author
            self.updateHash = updateHash
            self.trimmed = trimmed
        }
    }

    /// An update that arrived in time but was dropped by the validation screen.
    public struct Screened: Sendable, Equatable {
        public let author: String
        public let updateHash: String
        public let validationLoss: Double
        public init(author: String, updateHash: String, validationLoss: Double) {
            self.author = author
            self.updateHash = updateHash
            self.validationLoss = validationLoss
        }
    }

    /// An update that arrived after its round had closed here.
    public struct Late: Sendable, Equatable {
        public let author: String
        public let round: UInt64
        public let updateHash: String
        public init(author: String, round: UInt64, updateHash: String) {
            self.author = author
            self.round = round
            self.updateHash = updateHash
        }
    }

    /// `late` (optional): updates of earlier rounds that arrived after those rounds closed at this peer.
    public static func aggregate(round: UInt64, included: [Included], rule: String, parameters: [String: Double], resultHash: String,
                                 scores: [String: Double], late: [Late] = [], screened: [Screened] = []) -> [UInt8] {
        var o: [String: Any] = [
            "round": round, "rule": rule, "parameters": parameters, "result_hash": resultHash, "scores": scores,
            "included": included.map { ["author": $0.author, "update_hash": $0.updateHash, "trimmed": $0.trimmed] },
        ]
        if !late.isEmpty { o["late"] = late.map { ["author": $0.author, "round": $0.round, "update_hash": $0.updateHash] } }
        if !screened.isEmpty { o["screened"] = screened.map { ["author": $0.author, "update_hash": $0.updateHash, "validation_loss": $0.validationLoss] } }
        return encode(o)
    }

    public static func checkpoint(heads: [(author: String, seq: UInt64, hash: [UInt8])]) -> [UInt8] {
        encode(["heads": heads.sorted { $0.author < $1.author }.map { ["author": $0.author, "seq": $0.seq, "hash": hex($0.hash)] }])
    }
}

/// Lowercase hex.
public func hex(_ bytes: some Sequence<UInt8>) -> String { hexString(bytes) }

/// Bytes from hex, or nil.
public func unhex(_ s: String) -> [UInt8]? {
    let chars = Array(s.utf8)
    guard chars.count % 2 == 0 else { return nil }
    var out: [UInt8] = []
    out.reserveCapacity(chars.count / 2)
    func v(_ c: UInt8) -> UInt8? {
        switch c {
        case 48...57: c - 48
        case 97...102: c - 87
        default: nil
        }
    }
    var i = 0
    while i < chars.count {
        guard let hi = v(chars[i]), let lo = v(chars[i + 1]) else { return nil }
        out.append(hi << 4 | lo)
        i += 2
    }
    return out
}
