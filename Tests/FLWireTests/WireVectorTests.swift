import FLWire
import NIOCore
import Testing

/// The test vectors published in docs/wire-protocol.md (computed independently
/// with Python's struct module).
@Suite("wire test vectors")
struct WireVectorTests {
    static func h(_ byte: UInt8) -> ContentHash { ContentHash([UInt8](repeating: byte, count: 32))! }

    static let vectors: [(String, WireMessage, String)] = [
        ("ping", .ping(nonce: 0x0102_0304_0506_0708), "00000009020102030405060708"),
        ("hello", .hello(Hello(consortium: "demo", institution: "alice", heads: [ChainHead(author: "bob", seq: 7, hash: h(0x11))])),
         "0000003f010001000464656d6f0005616c69636500010003626f620000000000000007" + String(repeating: "11", count: 32)),
        ("announce", .announce(Announce(author: "alice", round: 3, kind: .update, hash: h(0xAB), size: 1000)),
         "00000039040005616c696365000000000000000301" + String(repeating: "ab", count: 32) + "00000000000003e8"),
        ("pull", .pull(hash: h(0xAB)), "0000002105" + String(repeating: "ab", count: 32)),
        ("chunk", .chunk(hash: h(0xCD), offset: 0, bytes: ByteBuffer(bytes: [1, 2, 3])),
         "0000003006" + String(repeating: "cd", count: 32) + "000000000000000000000003010203"),
        ("goodbye", .goodbye(code: 1, reason: "bye"), "0000000708010003627965"),
        ("neighbours", .neighbours(["alice", "bob"]), "0000000f0c00020005616c6963650003626f62"),
    ]

    @Test(arguments: vectors.map { $0.0 })
    func vector(name: String) throws {
        let (_, message, hex) = try #require(Self.vectors.first { $0.0 == name })
        var buffer = ByteBuffer()
        WireCodec.encodeFrame(message, into: &buffer)
        let bytes = buffer.readableBytesView
        #expect(bytes.map { String(format: "%02x", $0) }.joined() == hex)
        #expect(try WireFrameDecoder.decodeFrame(&buffer) == message)
    }
}

import Foundation
