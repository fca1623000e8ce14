import Crypto
import Foundation

/// The kinds of ledger entry.
public enum EntryKind: UInt8, Sendable, CaseIterable, CustomStringConvertible {
    /// First entry of a chain: the institution's certificate.
    case genesis = 1
    /// A signed local update: round, base model hash, update hash, sample count, codec, metrics.
    case update = 2
    /// What a peer aggregated: included (author, update hash), rule, trims, result hash, scores.
    case aggregate = 3
    /// The heads of every chain the peer holds, signed.
    case checkpoint = 4
    /// Two different signed entries for one (author, seq): a fork proof.
    case evidence = 5

    public var description: String {
        switch self {
        case .genesis: "genesis"
        case .update: "update"
        case .aggregate: "aggregate"
        case .checkpoint: "checkpoint"
        case .evidence: "evidence"
        }
    }
}

/// Why bytes are not a well-formed entry.
public struct LedgerFormatError: Error, Equatable, CustomStringConvertible, Sendable {
    public let description: String
    init(_ d: String) { description = d }
}

/// The fixed-layout header of an entry (see docs/ledger-spec.md). All
/// integers are big-endian; strings are a u16 length then UTF-8.
public struct EntryHeader: Equatable, Sendable {
    public static let formatVersion: UInt8 = 1
    public var consortium: String
    public var author: String
    public var seq: UInt64
    /// Hash of the previous entry of this chain; 32 zero bytes for seq 0.
    public var prev: [UInt8]
    public var round: UInt64
    public var kind: EntryKind
    /// Milliseconds since 1970-01-01 UTC, as the author's clock said.
    public var timeMillis: Int64
    public var bodyLength: UInt32

    public init(consortium: String, author: String, seq: UInt64, prev: [UInt8], round: UInt64, kind: EntryKind, timeMillis: Int64, bodyLength: UInt32) {
        self.consortium = consortium
        self.author = author
        self.seq = seq
        self.prev = prev
        self.round = round
        self.kind = kind
        self.timeMillis = timeMillis
        self.bodyLength = bodyLength
    }

    /// The header's bytes.
    public func encoded() -> [UInt8] {
        var out: [UInt8] = [EntryHeader.formatVersion]
        func str(_ s: String) {
            let b = Array(s.utf8)
            out += [UInt8(b.count >> 8), UInt8(b.count & 0xFF)] + b
        }
        func int<T: FixedWidthInteger>(_ v: T) { withUnsafeBytes(of: v.bigEndian) { out += $0 } }
        str(consortium)
        str(author)
        int(seq)
        out += prev
        int(round)
        out.append(kind.rawValue)
        int(timeMillis)
        int(bodyLength)
        return out
    }

    /// Parses header bytes, which must be consumed exactly.
    public static func decode(_ bytes: [UInt8]) throws(LedgerFormatError) -> EntryHeader {
        var i = 0
        func take(_ n: Int, _ field: String) throws(LedgerFormatError) -> ArraySlice<UInt8> {
            guard n >= 0, i + n <= bytes.count else { throw LedgerFormatError("header ends inside '\(field)'") }
            defer { i += n }
            return bytes[i..<(i + n)]
        }
        func int<T: FixedWidthInteger>(_ field: String) throws(LedgerFormatError) -> T {
            var v: T = 0
            for b in try take(MemoryLayout<T>.size, field) { v = (v << 8) | T(b) }
            return v
        }
        func str(_ field: String) throws(LedgerFormatError) -> String {
            let n = Int(try int(field) as UInt16)
            guard n <= 256, let s = String(validating: try take(n, field), as: UTF8.self) else { throw LedgerFormatError("'\(field)' is not UTF-8 of at most 256 bytes") }
            return s
        }
        let version = try take(1, "version").first!
        guard version == formatVersion else { throw LedgerFormatError("header version \(version) is not \(formatVersion)") }
        let consortium = try str("consortium")
        let author = try str("author")
        let seq: UInt64 = try int("seq")
        let prev = Array(try take(32, "prev"))
        let round: UInt64 = try int("round")
        let kindByte = try take(1, "kind").first!
        guard let kind = EntryKind(rawValue: kindByte) else { throw LedgerFormatError("unknown entry kind \(kindByte)") }
        let time: Int64 = try int("time")
        let length: UInt32 = try int("body_length")
        guard i == bytes.count else { throw LedgerFormatError("header has \(bytes.count - i) trailing bytes") }
        return EntryHeader(consortium: consortium, author: author, seq: seq, prev: prev, round: round, kind: kind, timeMillis: time, bodyLength: length)
    }
}

/// One signed entry exactly as stored: header bytes, body bytes, hash and signature.
public struct LedgerEntry: Equatable, Sendable {
    /// "flpeer/ledger-entry/v1" followed by a zero byte.
    public static let hashDomainTag = Array("flpeer/ledger-entry/v1\0".utf8)
    public static let zeroHash = [UInt8](repeating: 0, count: 32)

    public let headerBytes: [UInt8]
    public let body: [UInt8]
    public let hash: [UInt8]
    public let signature: [UInt8]
    public let header: EntryHeader

    /// An entry from stored parts; the header must parse (hash and signature are not checked here).
    public init(headerBytes: [UInt8], body: [UInt8], hash: [UInt8], signature: [UInt8]) throws(LedgerFormatError) {
        self.headerBytes = headerBytes
        self.body = body
        self.hash = hash
        self.signature = signature
        self.header = try EntryHeader.decode(headerBytes)
    }

    /// Builds and signs a new entry.
    public static func make(header: EntryHeader, body: [UInt8], key: Curve25519.Signing.PrivateKey) throws -> LedgerEntry {
        var h = header
        h.bodyLength = UInt32(body.count)
        let bytes = h.encoded()
        let hash = computeHash(header: bytes, body: body)
        let signature = Array(try key.signature(for: hash))
        return try LedgerEntry(headerBytes: bytes, body: body, hash: hash, signature: signature)
    }

    /// SHA-256(domain tag ‖ header ‖ body).
    public static func computeHash(header: [UInt8], body: [UInt8]) -> [UInt8] {
        var hasher = SHA256()
        hasher.update(data: hashDomainTag)
        hasher.update(data: header)
        hasher.update(data: body)
        return Array(hasher.finalize())
    }

    /// True when the stored hash is the hash of the stored bytes.
    public var hashIsIntact: Bool { LedgerEntry.computeHash(header: headerBytes, body: body) == hash }

    /// True when `key` signed the stored hash.
    public func isSigned(by key: Curve25519.Signing.PublicKey) -> Bool {
        key.isValidSignature(signature, for: hash)
    }
}
