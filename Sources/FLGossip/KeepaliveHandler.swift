import FLWire
import NIOCore

/// Answers pings, swallows pongs, sends a ping when the connection has been
/// quiet for the write-idle interval, and closes it when nothing at all was
/// read for the read-idle interval (both from the `IdleStateHandler` before it).
final class KeepaliveHandler: ChannelDuplexHandler, RemovableChannelHandler {
    typealias InboundIn = WireMessage
    typealias InboundOut = WireMessage
    typealias OutboundIn = WireMessage
    typealias OutboundOut = WireMessage

    private var nonce: UInt64 = 0

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .ping(let n):
            context.writeAndFlush(wrapOutboundOut(.pong(nonce: n)), promise: nil)
        case .pong:
            break
        default:
            context.fireChannelRead(data)
        }
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if let idle = event as? IdleStateHandler.IdleStateEvent {
            switch idle {
            case .write:
                nonce &+= 1
                context.writeAndFlush(wrapOutboundOut(.ping(nonce: nonce)), promise: nil)
            case .read, .all:
                context.close(promise: nil)
            }
            return
        }
        context.fireUserInboundEventTriggered(event)
    }

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        context.write(data, promise: promise)
    }
}
