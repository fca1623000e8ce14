import Foundation

/// Typed entry bodies (docs/ledger-spec.md). Encoding sorts keys at every
/// level, as the spec's writers do; decoding accepts any key order. The
/// fields' JSON names are the spec's.
extension EntryBody {
    static let encoder: JSONEncoder = {
        let e = JSONEncoder()
        e.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        return e
    }()

    /// JSON bytes of `value` with sorted keys.
    public static func encode(_ value: some Encodable) -> [UInt8] {
        (try? Array(encoder.encode(value))) ?? []
    }

    /// `value` decoded from `bytes`, or nil.
    public static func decode<T: Decodable>(_ type: T.Type, from bytes: [UInt8]) -> T? {
        try? JSONDecoder().decode(T.self, from: Data(bytes))
    }

    /// JSON has no NaN or infinity: such values are written as the largest finite double of their sign.
    static func finite(_ x: Double) -> Double { x.isFinite ? x : (x < 0 ? -Double.greatestFiniteMagnitude : Double.greatestFiniteMagnitude) }

    /// The body of a `genesis` entry.
    public struct Genesis: Codable, Sendable, Equatable {
        public var certificate: String
    }

    /// The body of an `update` entry.
    public struct Update: Codable, Sendable, Equatable {
        public var round: UInt64
        public var baseHash: String
        public var updateHash: String
        public var samples: Int
        public var codec: String
        public var metrics: [String: Double]
        /// SHA-256 (hex) of the bytes peers pull, when they differ from what `updateHash` covers.
        public var blob: String?

        enum CodingKeys: String, CodingKey {
            case round, samples, codec, metrics, blob
            case baseHash = "base_hash", updateHash = "update_hash"
        }
    }

    /// The body of an `aggregate` entry.
    public struct Aggregate: Codable, Sendable, Equatable {
        public struct Member: Codable, Sendable, Equatable {
            public var author: String
            public var updateHash: String
            public var trimmed: Int
            enum CodingKeys: String, CodingKey { case author, trimmed, updateHash = "update_hash" }
            public init(author: String, updateHash: String, trimmed: Int) {
                (self.author, self.updateHash, self.trimmed) = (author, updateHash, trimmed)
            }
        }

        public struct LateUpdate: Codable, Sendable, Equatable {
            public var author: String
            public var round: UInt64
            public var updateHash: String
            enum CodingKeys: String, CodingKey { case author, round, updateHash = "update_hash" }
        }

        public struct ScreenedUpdate: Codable, Sendable, Equatable {
            public var author: String
            public var updateHash: String
            public var validationLoss: Double
            enum CodingKeys: String, CodingKey { case author, updateHash = "update_hash", validationLoss = "validation_loss" }
        }

        public var round: UInt64
        public var rule: String
        public var parameters: [String: Double]
        public var resultHash: String
        public var scores: [String: [String: Double]]
        public var included: [Member]
        public var late: [LateUpdate]?
        public var screened: [ScreenedUpdate]?
        public var scoring: Scoring?
        public var credits: RecordedCredits?

        enum CodingKeys: String, CodingKey {
            case round, rule, parameters, scores, included, late, screened, scoring, credits
            case resultHash = "result_hash"
        }
    }

    /// The body of a `checkpoint` entry: the heads of every chain the author holds.
    public struct Checkpoint: Codable, Sendable, Equatable {
        public struct Head: Codable, Sendable, Equatable {
            public var author: String
            public var seq: UInt64
            public var hash: String
        }
        public var heads: [Head]
    }
}
