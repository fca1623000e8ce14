import FLWire
import NIOCore
import NIOEmbedded
import Testing

@testable import FLGossip

@Suite("keepalive")
struct KeepaliveTests {
    func channel() throws -> EmbeddedChannel {
        let channel = EmbeddedChannel()
        try channel.pipeline.syncOperations.addHandler(KeepaliveHandler())
        return channel
    }

    @Test func answersPingsAndSwallowsPongs() throws {
        let c = try channel()
        try c.writeInbound(WireMessage.ping(nonce: 42))
        #expect(try c.readOutbound(as: WireMessage.self) == .pong(nonce: 42))
        try c.writeInbound(WireMessage.pong(nonce: 1))
        #expect(try c.readInbound(as: WireMessage.self) == nil)
        let announce = WireMessage.notFound(hash: ContentHash([UInt8](repeating: 7, count: 32))!)
        try c.writeInbound(announce)
        #expect(try c.readInbound(as: WireMessage.self) == announce)
        #expect(try c.finish().isClean)
    }

    @Test func pingsWhenQuietAndClosesWhenSilent() throws {
        let c = try channel()
        try c.connect(to: try SocketAddress(ipAddress: "127.0.0.1", port: 9)).wait()
        c.pipeline.fireUserInboundEventTriggered(IdleStateHandler.IdleStateEvent.write)
        #expect(try c.readOutbound(as: WireMessage.self) == .ping(nonce: 1))
        c.pipeline.fireUserInboundEventTriggered(IdleStateHandler.IdleStateEvent.write)
        #expect(try c.readOutbound(as: WireMessage.self) == .ping(nonce: 2))
        #expect(c.isActive)
        c.pipeline.fireUserInboundEventTriggered(IdleStateHandler.IdleStateEvent.read)
        #expect(!c.isActive, "a connection with nothing read for the idle timeout is closed")
    }
}
