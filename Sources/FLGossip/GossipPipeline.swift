import FLIdentity
import FLWire
import NIOCore
import NIOPosix
import NIOSSL

/// The channel pipeline of a member connection and the pieces around it
/// that hold no node state: framing, keepalive, the hello deadline, socket
/// options, the ordered writer and the naming of failures.
enum GossipPipeline {
    /// Up to 1 MiB (four default chunks) may wait in a connection's write
    /// buffer, so the sender reads the next chunk while TLS sends the last.
    static let writeWaterMark = ChannelOptions.Types.WriteBufferWaterMark(low: 512 * 1024, high: 1024 * 1024)
    /// Socket reads of up to 256 KiB, so a chunk arrives in a few reads.
    static let receiveAllocator = AdaptiveRecvByteBufferAllocator(minimum: 1024, initial: 65536, maximum: 262_144)

    typealias Accepted = GossipNode.Accepted

    /// Binds the listening socket: each accepted connection gets the server TLS handler and the pipeline.
    static func listen(group: EventLoopGroup, config: GossipConfig, context: NIOSSLContext, traffic: TrafficCounter,
                       unclaimed: UnclaimedChannels) async throws -> NIOAsyncChannel<Accepted, Never> {
        try await ServerBootstrap(group: group)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelOption(.tcpOption(.tcp_nodelay), value: 1)
            .childChannelOption(.writeBufferWaterMark, value: writeWaterMark)
            .childChannelOption(.recvAllocator, value: receiveAllocator)
            .bind(host: config.listenHost, port: config.listenPort) { channel in
                channel.eventLoop.makeCompletedFuture {
                    let verdict = PeerVerdict()
                    let handler = NIOSSLServerHandler(
                        context: context, customVerificationCallback: config.tls.verificationCallback(clock: config.clock, verdict: verdict))
                    try channel.pipeline.syncOperations.addHandler(handler)
                    let wrapped = try wrap(channel, config: config, traffic: traffic)
                    unclaimed.hold(wrapped)
                    return (channel: wrapped, verdict: verdict, remote: "\(channel.remoteAddress.map { "\($0)" } ?? "?")")
                }
            }
    }

    /// Dials a member: the client TLS handler and the pipeline.
    static func connect(_ target: PeerAddress, group: EventLoopGroup, config: GossipConfig, context: NIOSSLContext, traffic: TrafficCounter) async throws -> Accepted {
        try await ClientBootstrap(group: group)
            .connectTimeout(.seconds(5))
            .channelOption(.writeBufferWaterMark, value: writeWaterMark)
            .channelOption(.recvAllocator, value: receiveAllocator)
            .connect(host: target.host, port: target.port) { channel in
                channel.eventLoop.makeCompletedFuture {
                    let verdict = PeerVerdict()
                    let handler = try NIOSSLClientHandler(
                        context: context, serverHostname: nil,
                        customVerificationCallback: config.tls.verificationCallback(clock: config.clock, verdict: verdict))
                    try channel.pipeline.syncOperations.addHandler(handler)
                    return (channel: try wrap(channel, config: config, traffic: traffic), verdict: verdict, remote: "\(target.host):\(target.port)")
                }
            }
    }

    static func wrap(_ channel: Channel, config: GossipConfig, traffic: TrafficCounter) throws -> NIOAsyncChannel<WireMessage, WireMessage> {
        let ops = channel.pipeline.syncOperations
        try ops.addHandler(TrafficHandler(counter: traffic))
        try ops.addHandler(IdleStateHandler(readTimeout: .init(config.idleTimeout), writeTimeout: .init(config.keepaliveInterval)))
        try ops.addHandler(ByteToMessageHandler(WireFrameDecoder()))
        try ops.addHandler(MessageToByteHandler(WireFrameEncoder()))
        try ops.addHandler(KeepaliveHandler())
        let timeout = config.handshakeTimeout
        let task = channel.eventLoop.scheduleTask(in: .init(timeout)) { channel.close(promise: nil) }
        channel.pipeline.addHandler(HelloDeadline(task: task), position: .last).whenFailure { _ in task.cancel() }
        return try NIOAsyncChannel(wrappingChannelSynchronously: channel, configuration: .init(
            backPressureStrategy: .init(lowWatermark: 2, highWatermark: 8)))
    }

    /// Names a TLS or socket failure.
    static func classify(_ error: Error) -> (String, String) {
        let text = String(describing: error)
        if let ssl = error as? NIOSSLError {
            let detail = String(describing: ssl)
            if detail.contains("WRONG_VERSION_NUMBER") || detail.contains("HTTP_REQUEST") || detail.contains("RECORD") {
                return ("not-tls", "the peer did not speak TLS (\(detail))")
            }
            if detail.contains("UNSUPPORTED_PROTOCOL") || detail.contains("PROTOCOL_VERSION") {
                return ("tls-version", "the peer offered no TLS 1.3 (\(detail))")
            }
            // Server side: the remote finished its part without a certificate (not a refusal by it).
            if detail.contains("PEER_DID_NOT_RETURN_A_CERTIFICATE") || detail.contains("CERTIFICATE_REQUIRED") && !detail.contains("ALERT") {
                return ("no-client-certificate", "the remote sent no certificate; a member must present its consortium certificate (\(detail))")
            }
            if detail.contains("CERTIFICATE") || detail.contains("ALERT") {
                return ("tls-rejected-by-peer", "the peer refused the TLS handshake (\(detail))")
            }
            if case .uncleanShutdown = ssl { return ("closed", text) }
            return ("tls", detail)
        }
        if error is ChannelError || error is CancellationError { return ("closed", text) }
        return ("error", text)
    }

    enum ConnectionEnd: Error {
        case closedBeforeHello
        case rejected(PeerRejection)
        case duplicate
        case failed(Error)
    }

    /// The code and reason a connection that ended before or at admission is
    /// reported with (nil: not worth reporting, a duplicate or a plain close).
    static func describe(_ end: ConnectionEnd, verdict: PeerVerdict) -> (code: String, reason: String)? {
        let code: String, reason: String
        if case .failure(let r) = verdict.result {
            (code, reason) = (r.code.rawValue, r.reason)
        } else {
            switch end {
            case .rejected(let r): (code, reason) = (r.code.rawValue, r.reason)
            case .duplicate: return nil
            case .closedBeforeHello: (code, reason) = ("no-hello", "connection closed before a verified hello")
            case .failed(let error): (code, reason) = classify(error)
            }
        }
        return code == "closed" ? nil : (code, reason)
    }
}

/// Closes the channel unless the hello is verified in time.
final class HelloDeadline: ChannelInboundHandler, Sendable {
    typealias InboundIn = WireMessage
    let task: Scheduled<Void>
    init(task: Scheduled<Void>) { self.task = task }
    func passed() { task.cancel() }
    func handlerRemoved(context: ChannelHandlerContext) { task.cancel() }
}
