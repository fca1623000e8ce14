import FLCore
import Foundation

/// Entry bodies are UTF-8 JSON objects. Hashes and signatures cover the stored
/// bytes, so any encoding of the same object is acceptable; flpeer writes
/// keys sorted and hashes as lowercase hex.
public enum EntryBody {
    /// The round-0 blob of codec `feature-stats/v1` (docs/round-protocol.md):
    /// `{"count":…,"squares":[…],"sums":[…]}`.
    public static func statistics(_ s: FeatureStatistics) -> [UInt8] { encode(s) }

    /// The statistics in a `feature-stats/v1` blob, if the count is not
    /// negative and every sum is finite.
    public static func statistics(from bytes: [UInt8]) -> FeatureStatistics? {
        guard let s = decode(FeatureStatistics.self, from: bytes), s.count >= 0, s.sums.allSatisfy(\.isFinite), s.squares.allSatisfy(\.isFinite)
        else { return nil }
        return s
    }

    public static func genesis(certificatePEM: String) -> [UInt8] { encode(Genesis(certificate: certificatePEM)) }

    /// `blob`: SHA-256 (hex) of the bytes peers pull for this update, when they differ from what `update_hash` covers.
    public static func update(round: UInt64, baseHash: String, updateHash: String, samples: Int, codec: String, metrics: [String: Double], blob: String? = nil) -> [UInt8] {
        encode(Update(round: round, baseHash: baseHash, updateHash: updateHash, samples: samples, codec: codec, metrics: metrics, blob: blob))
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

    /// How the scores of an aggregate entry were computed (docs/credits.md).
    public struct Scoring: Codable, Sendable, Equatable {
        public var rule: String
        /// The permutation seed, 16 hex digits (from the round's base model hash).
        public var seed: String
        public var exact: Bool
        public var permutations: Int
        public var evaluations: Int
        /// Updates a gate gave zero, with the gate's name.
        public var gated: [String: String]
        /// The classes the assessor holds rows of (the keys of every score).
        public var classes: [String]
        public var seconds: Double
        public init(rule: String, seed: String, exact: Bool, permutations: Int, evaluations: Int, gated: [String: String], classes: [String], seconds: Double) {
            self.rule = rule
            self.seed = seed
            self.exact = exact
            self.permutations = permutations
            self.evaluations = evaluations
            self.gated = gated
            self.classes = classes
            self.seconds = seconds
        }
    }

    /// The credits of an earlier round as this peer derived them from the
    /// aggregate entries of `assessors` (re-derived by `ledger-tool report --verify`).
    public struct RecordedCredits: Codable, Sendable, Equatable {
        public var round: UInt64
        public var assessors: [String]
        public var values: [String: Double]
        public init(round: UInt64, assessors: [String], values: [String: Double]) {
            self.round = round
            self.assessors = assessors
            self.values = values
        }
    }

    /// `late` (optional): updates of earlier rounds that arrived after those rounds closed at this peer.
    public static func aggregate(round: UInt64, included: [Included], rule: String, parameters: [String: Double], resultHash: String,
                                 scores: [String: [String: Double]], late: [Late] = [], screened: [Screened] = [],
                                 scoring: Scoring? = nil, credits: RecordedCredits? = nil) -> [UInt8] {
        encode(Aggregate(
            round: round, rule: rule, parameters: parameters.mapValues(finite), resultHash: resultHash, scores: scores.mapValues { $0.mapValues(finite) },
            included: included.map { .init(author: $0.author, updateHash: $0.updateHash, trimmed: $0.trimmed) },
            late: late.isEmpty ? nil : late.map { .init(author: $0.author, round: $0.round, updateHash: $0.updateHash) },
            screened: screened.isEmpty ? nil : screened.map { .init(author: $0.author, updateHash: $0.updateHash, validationLoss: finite($0.validationLoss)) },
            scoring: scoring.map { s in var s = s; s.seconds = finite(s.seconds); return s },
            credits: credits.map { c in var c = c; c.values = c.values.mapValues(finite); return c }))
    }

    public static func checkpoint(heads: [(author: String, seq: UInt64, hash: [UInt8])]) -> [UInt8] {
        encode(Checkpoint(heads: heads.sorted { $0.author < $1.author }.map { .init(author: $0.author, seq: $0.seq, hash: hex($0.hash)) }))
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
