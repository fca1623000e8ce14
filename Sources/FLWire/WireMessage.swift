import NIOCore

/// A SHA-256 digest naming a blob or a ledger entry.
public struct ContentHash: Hashable, Sendable, CustomStringConvertible {
    public let bytes: [UInt8]

    /// Wraps exactly 32 bytes.
    public init?(_ bytes: [UInt8]) {
        guard bytes.count == 32 else { return nil }
        self.bytes = bytes
    }

    public var description: String {
        let digits = Array("0123456789abcdef".utf8)
        var out = [UInt8]()
        for b in bytes.prefix(6) { out.append(digits[Int(b >> 4)]); out.append(digits[Int(b & 0xF)]) }
        return String(decoding: out, as: UTF8.self)
    }
}

/// The head of one institution's ledger chain, as a peer holds it.
public struct ChainHead: Hashable, Sendable {
    public let author: String
    public let seq: UInt64
    public let hash: ContentHash
    public init(author: String, seq: UInt64, hash: ContentHash) {
        self.author = author
        self.seq = seq
        self.hash = hash
    }
}

/// The first message on every connection, in both directions.
public struct Hello: Hashable, Sendable {
    public let protocolVersion: UInt16
    public let consortium: String
    public let institution: String
    public let heads: [ChainHead]
    public init(protocolVersion: UInt16 = WireProtocol.version, consortium: String, institution: String, heads: [ChainHead] = []) {
        self.protocolVersion = protocolVersion
        self.consortium = consortium
        self.institution = institution
        self.heads = heads
    }
}

/// "I have this blob": sent to neighbours, who pull what they lack.
public struct Announce: Hashable, Sendable {
    /// What the blob is.
    public enum Kind: UInt8, Sendable, CaseIterable {
        case update = 1
        case aggregate = 2
        case other = 3
    }

    public let author: String
    public let round: UInt64
    public let kind: Kind
    public let hash: ContentHash
    public let size: UInt64
    public init(author: String, round: UInt64, kind: Kind, hash: ContentHash, size: UInt64) {
        self.author = author
        self.round = round
        self.kind = kind
        self.hash = hash
        self.size = size
    }
}

/// One ledger entry as stored: header and body bytes, hash and signature.
public struct WireEntry: Hashable, Sendable {
    public let header: [UInt8]
    public let body: [UInt8]
    public let hash: [UInt8]
    public let signature: [UInt8]
    public init(header: [UInt8], body: [UInt8], hash: [UInt8], signature: [UInt8]) {
        self.header = header
        self.body = body
        self.hash = hash
        self.signature = signature
    }
}

/// Every message of protocol version 1. See docs/wire-protocol.md.
public enum WireMessage: Hashable, Sendable {
    case hello(Hello)
    case ping(nonce: UInt64)
    case pong(nonce: UInt64)
    case announce(Announce)
    /// Ask for a blob the peer announced.
    case pull(hash: ContentHash)
    /// One piece of a blob; `offset` is its first byte's position.
    case chunk(hash: ContentHash, offset: UInt64, bytes: ByteBuffer)
    /// The sender does not have the blob.
    case notFound(hash: ContentHash)
    /// The sender closes the connection for `reason`.
    case goodbye(code: UInt8, reason: String)
    /// The sender's current ledger chain heads (sent when they change).
    case ledgerHeads([ChainHead])
    /// Ask for `author`'s entries after seq `after` (all when `fromStart`).
    case ledgerPull(author: String, after: UInt64, fromStart: Bool)
    /// Entries of one chain, in seq order.
    case ledgerEntries([WireEntry])
    /// The members the sender is connected to right now (sent on every change),
    /// so neighbours need not relay to it what their authors give it directly.
    case neighbours([String])

    /// The frame type byte.
    public var type: WireProtocol.MessageType {
        switch self {
        case .hello: .hello
        case .ping: .ping
        case .pong: .pong
        case .announce: .announce
        case .pull: .pull
        case .chunk: .chunk
        case .notFound: .notFound
        case .goodbye: .goodbye
        case .ledgerHeads: .ledgerHeads
        case .ledgerPull: .ledgerPull
        case .ledgerEntries: .ledgerEntries
        case .neighbours: .neighbours
        }
    }
}

/// Constants of the wire protocol.
public enum WireProtocol {
    /// The protocol version this code speaks.
    public static let version: UInt16 = 1
    /// Largest frame body (type byte + payload) a peer accepts: 1 MiB + 256.
    public static let maximumFrameSize = 1_048_576 + 256
    /// Largest chunk payload: 1 MiB.
    public static let maximumChunkSize = 1_048_576
    /// A blob no larger than this is pushed by its author right behind its announcement.
    public static let pushLimit: UInt64 = 65_536
    /// Chunk size senders use by default: 256 KiB.
    public static let defaultChunkSize = 262_144
    /// Longest string field in bytes (ids, consortium names, reasons).
    public static let maximumStringLength = 256

    /// Message counts by type byte as "announce=3 pull=1 …", in type order (for logs).
    public static func describe(counts: [UInt8: Int]) -> String {
        counts.sorted { $0.key < $1.key }.map { "\(MessageType(rawValue: $0.key).map { "\($0)" } ?? "?")=\($0.value)" }.joined(separator: " ")
    }
    /// Most chain heads a hello or heads message may carry, and most ids in a neighbours message.
    public static let maximumHeads = 1024
    /// Most ledger entries in one message.
    public static let maximumEntriesPerMessage = 256
    /// Largest header or body of one ledger entry on the wire.
    public static let maximumEntryPartSize = 65_536

    /// Frame type bytes.
    public enum MessageType: UInt8, Sendable, CaseIterable {
        case hello = 1
        case ping = 2
        case pong = 3
        case announce = 4
        case pull = 5
        case chunk = 6
        case notFound = 7
        case goodbye = 8
        case ledgerHeads = 9
        case ledgerPull = 10
        case ledgerEntries = 11
        case neighbours = 12
    }
}

/// Why bytes from a peer were rejected.
public enum WireError: Error, Hashable, Sendable, CustomStringConvertible {
    case frameTooLarge(length: UInt32, maximum: Int)
    case emptyFrame
    case unknownType(UInt8)
    case truncated(field: String)
    case trailingBytes(type: UInt8, count: Int)
    case stringTooLong(field: String, length: Int)
    case invalidUTF8(field: String)
    case tooManyHeads(Int)
    case invalidValue(field: String)

    public var description: String {
        switch self {
        case .frameTooLarge(let l, let m): "frame of \(l) bytes exceeds the \(m)-byte limit"
        case .emptyFrame: "frame has no type byte"
        case .unknownType(let t): "unknown message type \(t)"
        case .truncated(let f): "message ends inside field '\(f)'"
        case .trailingBytes(let t, let n): "message type \(t) has \(n) unexpected trailing bytes"
        case .stringTooLong(let f, let n): "field '\(f)' is \(n) bytes, longer than \(WireProtocol.maximumStringLength)"
        case .invalidUTF8(let f): "field '\(f)' is not UTF-8"
        case .tooManyHeads(let n): "hello carries \(n) chain heads, more than \(WireProtocol.maximumHeads)"
        case .invalidValue(let f): "field '\(f)' has an invalid value"
        }
    }
}

extension WireMessage {
    /// `entries`, in order, as `ledgerEntries` messages that each fit one
    /// frame (`WireProtocol.maximumFrameSize`, with 4 KiB to spare) and
    /// `WireProtocol.maximumEntriesPerMessage`. A batch of many chains'
    /// entries (64 members' aggregates and checkpoints) exceeds a frame, and
    /// the receiver closes the connection on an oversized frame.
    public static func ledgerEntryMessages(_ entries: [WireEntry]) -> [WireMessage] {
        let budget = WireProtocol.maximumFrameSize - 4096
        var messages: [WireMessage] = []
        var batch: [WireEntry] = []
        var bytes = 0
        for e in entries {
            let size = e.header.count + e.body.count + e.hash.count + e.signature.count + 8
            if !batch.isEmpty && (bytes + size > budget || batch.count == WireProtocol.maximumEntriesPerMessage) {
                messages.append(.ledgerEntries(batch))
                batch = []
                bytes = 0
            }
            batch.append(e)
            bytes += size
        }
        if !batch.isEmpty { messages.append(.ledgerEntries(batch)) }
        return messages
    }
}
