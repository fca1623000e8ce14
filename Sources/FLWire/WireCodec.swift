import NIOCore

/// Encodes and decodes message payloads. All integers are big-endian;
/// strings are a u16 length then UTF-8; digests are 32 raw bytes.
public enum WireCodec {
    /// Appends the frame (u32 length, type byte, payload) of `message`.
    public static func encodeFrame(_ message: WireMessage, into buffer: inout ByteBuffer) {
        let lengthIndex = buffer.writerIndex
        buffer.writeInteger(UInt32(0))
        let start = buffer.writerIndex
        buffer.writeInteger(message.type.rawValue)
        encodePayload(message, into: &buffer)
        buffer.setInteger(UInt32(buffer.writerIndex - start), at: lengthIndex)
    }

    static func encodePayload(_ message: WireMessage, into b: inout ByteBuffer) {
        switch message {
        case .hello(let h):
            b.writeInteger(h.protocolVersion)
            writeString(h.consortium, &b)
            writeString(h.institution, &b)
            writeHeads(h.heads, &b)
        case .ping(let n), .pong(let n):
            b.writeInteger(n)
        case .announce(let a):
            writeString(a.author, &b)
            b.writeInteger(a.round)
            b.writeInteger(a.kind.rawValue)
            b.writeBytes(a.hash.bytes)
            b.writeInteger(a.size)
        case .pull(let h), .notFound(let h):
            b.writeBytes(h.bytes)
        case .chunk(let h, let offset, let bytes):
            b.writeBytes(h.bytes)
            b.writeInteger(offset)
            b.writeInteger(UInt32(bytes.readableBytes))
            b.writeImmutableBuffer(bytes)
        case .goodbye(let code, let reason):
            b.writeInteger(code)
            writeString(String(reason.utf8.prefix(WireProtocol.maximumStringLength)) ?? "", &b)
        case .ledgerHeads(let heads):
            writeHeads(heads, &b)
        case .ledgerPull(let author, let after, let fromStart):
            writeString(author, &b)
            b.writeInteger(after)
            b.writeInteger(UInt8(fromStart ? 1 : 0))
        case .neighbours(let ids):
            b.writeInteger(UInt16(ids.count))
            for id in ids { writeString(id, &b) }
        case .ledgerEntries(let entries):
            b.writeInteger(UInt16(entries.count))
            for e in entries {
                b.writeInteger(UInt32(e.header.count))
                b.writeBytes(e.header)
                b.writeInteger(UInt32(e.body.count))
                b.writeBytes(e.body)
                b.writeBytes(e.hash)
                b.writeBytes(e.signature)
            }
        }
    }

    private static func writeHeads(_ heads: [ChainHead], _ b: inout ByteBuffer) {
        b.writeInteger(UInt16(heads.count))
        for head in heads {
            writeString(head.author, &b)
            b.writeInteger(head.seq)
            b.writeBytes(head.hash.bytes)
        }
    }

    private static func readHeads(_ body: inout ByteBuffer) throws(WireError) -> [ChainHead] {
        let count = Int(try readInt(&body, "head_count") as UInt16)
        guard count <= WireProtocol.maximumHeads else { throw .tooManyHeads(count) }
        var heads: [ChainHead] = []
        heads.reserveCapacity(min(count, body.readableBytes / 43))
        for _ in 0..<count {
            let author = try readString(&body, "head.author")
            let seq: UInt64 = try readInt(&body, "head.seq")
            heads.append(ChainHead(author: author, seq: seq, hash: try readDigest(&body, "head.hash")))
        }
        return heads
    }

    private static func writeString(_ s: String, _ b: inout ByteBuffer) {
        let bytes = Array(s.utf8.prefix(WireProtocol.maximumStringLength))
        b.writeInteger(UInt16(bytes.count))
        b.writeBytes(bytes)
    }

    /// Decodes one frame body (type byte and payload), which must be consumed exactly.
    public static func decodeBody(_ body: inout ByteBuffer) throws(WireError) -> WireMessage {
        guard let typeByte: UInt8 = body.readInteger() else { throw .emptyFrame }
        guard let type = WireProtocol.MessageType(rawValue: typeByte) else { throw .unknownType(typeByte) }
        let message: WireMessage
        switch type {
        case .hello:
            let version: UInt16 = try readInt(&body, "protocol_version")
            let consortium = try readString(&body, "consortium")
            let institution = try readString(&body, "institution")
            message = .hello(Hello(protocolVersion: version, consortium: consortium, institution: institution, heads: try readHeads(&body)))
        case .ping:
            message = .ping(nonce: try readInt(&body, "nonce"))
        case .pong:
            message = .pong(nonce: try readInt(&body, "nonce"))
        case .announce:
            let author = try readString(&body, "author")
            let round: UInt64 = try readInt(&body, "round")
            let kindByte: UInt8 = try readInt(&body, "kind")
            guard let kind = Announce.Kind(rawValue: kindByte) else { throw .invalidValue(field: "kind") }
            let hash = try readDigest(&body, "hash")
            message = .announce(Announce(author: author, round: round, kind: kind, hash: hash, size: try readInt(&body, "size")))
        case .pull:
            message = .pull(hash: try readDigest(&body, "hash"))
        case .notFound:
            message = .notFound(hash: try readDigest(&body, "hash"))
        case .chunk:
            let hash = try readDigest(&body, "hash")
            let offset: UInt64 = try readInt(&body, "offset")
            let length = Int(try readInt(&body, "length") as UInt32)
            guard length <= WireProtocol.maximumChunkSize else { throw .invalidValue(field: "length") }
            guard let bytes = body.readSlice(length: length) else { throw .truncated(field: "bytes") }
            message = .chunk(hash: hash, offset: offset, bytes: bytes)
        case .goodbye:
            let code: UInt8 = try readInt(&body, "code")
            message = .goodbye(code: code, reason: try readString(&body, "reason"))
        case .ledgerHeads:
            message = .ledgerHeads(try readHeads(&body))
        case .ledgerPull:
            let author = try readString(&body, "author")
            let after: UInt64 = try readInt(&body, "after")
            let flag: UInt8 = try readInt(&body, "from_start")
            guard flag <= 1 else { throw .invalidValue(field: "from_start") }
            message = .ledgerPull(author: author, after: after, fromStart: flag == 1)
        case .ledgerEntries:
            let count = Int(try readInt(&body, "entry_count") as UInt16)
            guard count <= WireProtocol.maximumEntriesPerMessage else { throw .invalidValue(field: "entry_count") }
            var entries: [WireEntry] = []
            for _ in 0..<count {
                func part(_ field: String) throws(WireError) -> [UInt8] {
                    let n = Int(try readInt(&body, field) as UInt32)
                    guard n <= WireProtocol.maximumEntryPartSize else { throw .invalidValue(field: field) }
                    guard let bytes = body.readBytes(length: n) else { throw .truncated(field: field) }
                    return bytes
                }
                let header = try part("entry.header")
                let entryBody = try part("entry.body")
                guard let hash = body.readBytes(length: 32) else { throw .truncated(field: "entry.hash") }
                guard let signature = body.readBytes(length: 64) else { throw .truncated(field: "entry.signature") }
                entries.append(WireEntry(header: header, body: entryBody, hash: hash, signature: signature))
            }
            message = .ledgerEntries(entries)
        case .neighbours:
            let count = Int(try readInt(&body, "neighbour_count") as UInt16)
            guard count <= WireProtocol.maximumHeads else { throw .invalidValue(field: "neighbour_count") }
            var ids: [String] = []
            for _ in 0..<count { ids.append(try readString(&body, "neighbour")) }
            message = .neighbours(ids)
        }
        guard body.readableBytes == 0 else { throw .trailingBytes(type: typeByte, count: body.readableBytes) }
        return message
    }

    private static func readInt<T: FixedWidthInteger>(_ b: inout ByteBuffer, _ field: String) throws(WireError) -> T {
        guard let v: T = b.readInteger() else { throw .truncated(field: field) }
        return v
    }

    private static func readString(_ b: inout ByteBuffer, _ field: String) throws(WireError) -> String {
        let length = Int(try readInt(&b, field) as UInt16)
        guard length <= WireProtocol.maximumStringLength else { throw .stringTooLong(field: field, length: length) }
        guard let bytes = b.readBytes(length: length) else { throw .truncated(field: field) }
        guard let s = String(validating: bytes, as: UTF8.self) else { throw .invalidUTF8(field: field) }
        return s
    }

    private static func readDigest(_ b: inout ByteBuffer, _ field: String) throws(WireError) -> ContentHash {
        guard let bytes = b.readBytes(length: 32) else { throw .truncated(field: field) }
        return ContentHash(bytes)!
    }
}

/// Splits the inbound byte stream into frames and decodes them. A length
/// above `maximumFrameSize` is rejected as soon as its four bytes arrive,
/// before anything is buffered for it.
public struct WireFrameDecoder: ByteToMessageDecoder {
    public typealias InboundOut = WireMessage
    public let maximumFrameSize: Int

    public init(maximumFrameSize: Int = WireProtocol.maximumFrameSize) {
        self.maximumFrameSize = maximumFrameSize
    }

    public mutating func decode(context: ChannelHandlerContext, buffer: inout ByteBuffer) throws -> DecodingState {
        guard let message = try Self.decodeFrame(&buffer, maximumFrameSize: maximumFrameSize) else { return .needMoreData }
        context.fireChannelRead(Self.wrapInboundOut(message))
        return .continue
    }

    public mutating func decodeLast(context: ChannelHandlerContext, buffer: inout ByteBuffer, seenEOF: Bool) throws -> DecodingState {
        try decode(context: context, buffer: &buffer)
    }

    /// Reads one whole frame from `buffer`, or returns nil (consuming nothing) when it is incomplete.
    public static func decodeFrame(_ buffer: inout ByteBuffer, maximumFrameSize: Int = WireProtocol.maximumFrameSize) throws(WireError) -> WireMessage? {
        guard let length: UInt32 = buffer.getInteger(at: buffer.readerIndex) else { return nil }
        guard length <= maximumFrameSize else { throw .frameTooLarge(length: length, maximum: maximumFrameSize) }
        guard length > 0 else { throw .emptyFrame }
        guard buffer.readableBytes >= 4 + Int(length) else { return nil }
        buffer.moveReaderIndex(forwardBy: 4)
        var body = buffer.readSlice(length: Int(length))!
        return try WireCodec.decodeBody(&body)
    }
}

/// Encodes outbound messages into frames.
public struct WireFrameEncoder: MessageToByteEncoder {
    public typealias OutboundIn = WireMessage
    public init() {}
    public func encode(data: WireMessage, out: inout ByteBuffer) throws {
        WireCodec.encodeFrame(data, into: &out)
    }
}
