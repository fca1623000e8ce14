import NIOCore
import Synchronization

/// Bytes of protocol frames received and sent over all of a node's
/// connections (inside TLS, so without record overhead).
public final class TrafficCounter: Sendable {
    private let received = Atomic<Int>(0)
    private let sent = Atomic<Int>(0)

    public init() {}

    public var bytesIn: Int { received.load(ordering: .relaxed) }
    public var bytesOut: Int { sent.load(ordering: .relaxed) }

    func add(received n: Int) { received.add(n, ordering: .relaxed) }
    func add(sent n: Int) { sent.add(n, ordering: .relaxed) }
}

/// Counts the plaintext bytes passing between TLS and the frame codec.
final class TrafficHandler: ChannelDuplexHandler, @unchecked Sendable {
    typealias InboundIn = ByteBuffer
    typealias InboundOut = ByteBuffer
    typealias OutboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer
    let counter: TrafficCounter

    init(counter: TrafficCounter) { self.counter = counter }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        counter.add(received: unwrapInboundIn(data).readableBytes)
        context.fireChannelRead(data)
    }

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        counter.add(sent: unwrapOutboundIn(data).readableBytes)
        context.write(data, promise: promise)
    }
}
