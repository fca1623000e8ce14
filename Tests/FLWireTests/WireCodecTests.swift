import FLWire
import NIOCore
import NIOEmbedded
import NIOTestUtils
import Testing

/// A deterministic generator for fuzzing (SplitMix64).
struct Fuzz {
    var state: UInt64
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
    mutating func below(_ n: Int) -> Int { Int(next() % UInt64(n)) }
    mutating func bytes(_ n: Int) -> [UInt8] { (0..<n).map { _ in UInt8(truncatingIfNeeded: next()) } }
    mutating func digest() -> ContentHash { ContentHash(bytes(32))! }
    mutating func string() -> String { String((0..<below(20)).map { _ in Character(Unicode.Scalar(UInt8(97 + below(26)))) }) + (below(4) == 0 ? "é✓" : "") }

    mutating func message() -> WireMessage {
        switch below(12) {
        case 0: return .hello(Hello(consortium: string(), institution: string(),
                                    heads: (0..<below(5)).map { _ in ChainHead(author: string(), seq: next(), hash: digest()) }))
        case 1: return .ping(nonce: next())
        case 2: return .pong(nonce: next())
        case 3: return .announce(Announce(author: string(), round: next(), kind: Announce.Kind.allCases[below(3)], hash: digest(), size: next()))
        case 4: return .pull(hash: digest())
        case 5: return .chunk(hash: digest(), offset: next(), bytes: ByteBuffer(bytes: bytes(below(300))))
        case 6: return .notFound(hash: digest())
        case 7: return .goodbye(code: UInt8(below(256)), reason: string())
        case 8: return .ledgerHeads((0..<below(5)).map { _ in ChainHead(author: string(), seq: next(), hash: digest()) })
        case 9: return .ledgerPull(author: string(), after: next(), fromStart: below(2) == 0)
        case 10: return .neighbours((0..<below(5)).map { _ in string() })
        default: return .ledgerEntries((0..<below(4)).map { _ in
            WireEntry(header: bytes(below(80)), body: bytes(below(200)), hash: bytes(32), signature: bytes(64)) })
        }
    }
}

func frame(_ m: WireMessage) -> ByteBuffer {
    var b = ByteBuffer()
    WireCodec.encodeFrame(m, into: &b)
    return b
}

@Suite("wire codec")
struct WireCodecTests {
    @Test func everyMessageRoundTripsByteByByteAndBatched() throws {
        var fuzz = Fuzz(state: 1)
        var pairs: [(ByteBuffer, [WireMessage])] = []
        for type in WireProtocol.MessageType.allCases {
            // At least one of each type, then random ones.
            var m = fuzz.message()
            while m.type != type { m = fuzz.message() }
            pairs.append((frame(m), [m]))
        }
        for _ in 0..<40 {
            let m = fuzz.message()
            pairs.append((frame(m), [m]))
        }
        try ByteToMessageDecoderVerifier.verifyDecoder(inputOutputPairs: pairs) { WireFrameDecoder() }
    }

    @Test func embeddedChannelRoundTripThroughEncoderAndDecoder() throws {
        let channel = EmbeddedChannel()
        try channel.pipeline.syncOperations.addHandlers([
            ByteToMessageHandler(WireFrameDecoder()), MessageToByteHandler(WireFrameEncoder()),
        ])
        var fuzz = Fuzz(state: 2)
        let messages = (0..<50).map { _ in fuzz.message() }
        for m in messages { try channel.writeOutbound(m) }
        var wire = ByteBuffer()
        while var b = try channel.readOutbound(as: ByteBuffer.self) { wire.writeBuffer(&b) }
        try channel.writeInbound(wire)
        var decoded: [WireMessage] = []
        while let m = try channel.readInbound(as: WireMessage.self) { decoded.append(m) }
        #expect(decoded == messages)
        #expect(try channel.finish().isClean)
    }

    @Test func oversizedLengthIsRefusedBeforeItsBytesArrive() throws {
        var b = ByteBuffer()
        b.writeInteger(UInt32(0xFFFF_FFF0))  // a 4 GB frame announced; only 4 bytes sent
        #expect(throws: WireError.frameTooLarge(length: 0xFFFF_FFF0, maximum: WireProtocol.maximumFrameSize)) {
            _ = try WireFrameDecoder.decodeFrame(&b)
        }
        var empty = ByteBuffer()
        empty.writeInteger(UInt32(0))
        #expect(throws: WireError.emptyFrame) { _ = try WireFrameDecoder.decodeFrame(&empty) }
    }

    @Test func malformedBodiesGiveTypedErrors() throws {
        func body(_ bytes: [UInt8]) throws(WireError) -> WireMessage {
            var b = ByteBuffer(bytes: bytes)
            return try WireCodec.decodeBody(&b)
        }
        #expect(throws: WireError.unknownType(99)) { try body([99]) }
        #expect(throws: WireError.truncated(field: "nonce")) { try body([2, 0, 0]) }
        #expect(throws: WireError.trailingBytes(type: 2, count: 1)) { try body([2, 0, 0, 0, 0, 0, 0, 0, 1, 7]) }
        #expect(throws: WireError.stringTooLong(field: "consortium", length: 0xFFFF)) { try body([1, 0, 1, 0xFF, 0xFF]) }
        #expect(throws: WireError.invalidUTF8(field: "consortium")) { try body([1, 0, 1, 0, 2, 0xC3, 0x28]) }
        #expect(throws: WireError.tooManyHeads(0xFFFF)) { try body([1, 0, 1, 0, 0, 0, 0, 0xFF, 0xFF]) }
        #expect(throws: WireError.invalidValue(field: "kind")) { try body([4, 0, 0] + [UInt8](repeating: 0, count: 8) + [9]) }
        // A chunk whose declared length runs past the frame.
        #expect(throws: WireError.truncated(field: "bytes")) {
            try body([6] + [UInt8](repeating: 0, count: 32 + 8) + [0, 0, 0x10, 0] + [1, 2, 3])
        }
    }

    /// Seeded fuzzing of random and mutated frames. The default run feeds
    /// 20,000 frames; FLPEER_FUZZ_FRAMES=1000000 runs the acceptance-size campaign.
    @Test func randomAndMutatedFramesNeverCrash() throws {
        let count = Int(ProcessInfo.processInfo.environment["FLPEER_FUZZ_FRAMES"] ?? "") ?? 20_000
        var fuzz = Fuzz(state: 3)
        var decoded = 0, rejected = 0
        for i in 0..<count {
            var bytes: [UInt8]
            if i % 3 == 0 {
                bytes = fuzz.bytes(fuzz.below(64))
            } else {
                var b = frame(fuzz.message())
                bytes = b.readBytes(length: b.readableBytes)!
                for _ in 0..<(1 + fuzz.below(3)) {
                    switch fuzz.below(3) {
                    case 0: bytes[fuzz.below(bytes.count)] = UInt8(truncatingIfNeeded: fuzz.next())
                    case 1: bytes = Array(bytes.prefix(fuzz.below(bytes.count + 1)))
                    default: bytes.insert(UInt8(truncatingIfNeeded: fuzz.next()), at: fuzz.below(bytes.count + 1))
                    }
                    if bytes.isEmpty { break }
                }
            }
            var buffer = ByteBuffer(bytes: bytes)
            do {
                while let _ = try WireFrameDecoder.decodeFrame(&buffer) { decoded += 1 }
            } catch {
                rejected += 1
            }
        }
        #expect(decoded + rejected > 0)
        #expect(rejected > count / 10, "mutations should be caught: \(rejected) of \(count)")
    }
}

import Foundation

@Suite("ledger entries split into frames")
struct LedgerEntryFrameTests {
    /// 64 members' pushed aggregates and checkpoints (16 KiB bodies, 8 per
    /// chain) once went out as one 8 MB frame, which every receiver closed
    /// the connection on; split, each frame decodes within the limit and the
    /// entries arrive whole and in order.
    @Test func manyChainsEntriesGoOutAsFramesWithinTheLimit() throws {
        var fuzz = Fuzz(state: 64)
        let entries = (0..<512).map { i in
            WireEntry(header: fuzz.bytes(90), body: fuzz.bytes(i % 8 == 0 ? 16_384 : 6_500), hash: fuzz.bytes(32), signature: fuzz.bytes(64))
        }
        let messages = WireMessage.ledgerEntryMessages(entries)
        #expect(messages.count > 1)
        var received: [WireEntry] = []
        for m in messages {
            var frame = ByteBuffer()
            WireCodec.encodeFrame(m, into: &frame)
            #expect(frame.readableBytes - 4 <= WireProtocol.maximumFrameSize)
            guard case .ledgerEntries(let batch) = try WireFrameDecoder.decodeFrame(&frame) else { Issue.record("not a ledger-entries frame"); continue }
            received += batch
        }
        #expect(received == entries)
        #expect(WireMessage.ledgerEntryMessages([]).isEmpty)
    }
}
