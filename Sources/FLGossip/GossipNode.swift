import FLIdentity
import FLWire
import Foundation
import Logging
import NIOCore
import NIOPosix
import NIOSSL

/// One institution's gossip endpoint: accepts and dials mutual-TLS
/// connections to members, and disseminates content-addressed blobs by
/// announce/pull, relaying what it received to its other neighbours.
public actor GossipNode {
    public nonisolated let events: AsyncStream<GossipEvent>
    public nonisolated let config: GossipConfig
    public nonisolated let store: BlobStore
    /// Frame bytes in and out over all connections.
    public nonisolated let traffic = TrafficCounter()

    private let eventSink: AsyncStream<GossipEvent>.Continuation
    private let group: EventLoopGroup
    private let logger: Logger
    private let serverContext: NIOSSLContext
    private let clientContext: NIOSSLContext
    private var server: NIOAsyncChannel<Accepted, Never>?
    private var connections: [String: Connection] = [:]
    /// Every connection being served (handshaking or established), closed on shutdown.
    private var openChannels: [ObjectIdentifier: Channel] = [:]
    private var stopping = false
    private var inflight: [ContentHash: Inflight] = [:]
    private var announcements: [ContentHash: Announce] = [:]
    /// The last ledger heads each connected member reported (or was pushed).
    private var peerHeads: [String: [ChainHead]] = [:]
    /// Chain positions each connected member showed it holds (heads it
    /// reported in a hello or `ledger-heads`, entries it sent), by author and
    /// seq: what echo confirmation compares with. Bounded per member.
    private var reported: [String: [String: [UInt64: ContentHash]]] = [:]
    /// Conflict pulls already sent, "member|author#seq" (each at most once).
    private var conflictPulls: Set<String> = []
    /// Members whose link to this node is cut (an injected fault): no dialling,
    /// and their connections are closed after the hello.
    private var cut: Set<String> = []
    /// The outstanding ledger pull per chain: after which seq, and when.
    private var pendingPulls: [String: (after: UInt64?, at: ContinuousClock.Instant)] = [:]
    /// The members each neighbour last said it is connected to.
    private var peerNeighbours: [String: Set<String>] = [:]
    /// Messages received, by type (logged at shutdown).
    private var received: [UInt8: Int] = [:]
    private var rng: SplitMix

    typealias Accepted = (channel: NIOAsyncChannel<WireMessage, WireMessage>, verdict: PeerVerdict, remote: String)

    struct Connection: Sendable {
        let institution: String
        /// Messages for this connection, written in the order they were sent
        /// by one writer task (so a push of entries is never overtaken by
        /// the heads sent after it).
        let outbox: AsyncStream<[WireMessage]>.Continuation
        /// Direct writes, for streaming a pulled blob's chunks with back-pressure.
        let output: NIOAsyncChannelOutboundWriter<WireMessage>
        let id: UInt64
        let channel: Channel
    }

    struct Inflight {
        var announce: Announce
        var source: String
        var otherSources: [String]
        var incoming: IncomingBlob
    }

    /// The event loop this actor runs on: the node's bookkeeping shares a
    /// thread with its sockets instead of Swift's cooperative pool, so long
    /// synchronous work elsewhere in the process (training, a test that
    /// blocks) cannot starve the protocol.
    private nonisolated let loop: EventLoop
    public nonisolated var unownedExecutor: UnownedSerialExecutor { loop.executor.asUnownedSerialExecutor() }
    /// Where this node's own tasks start (before they hop onto the actor):
    /// the same event loop, never the cooperative pool.
    private nonisolated let tasks: LoopTaskExecutor

    public init(config: GossipConfig, group: EventLoopGroup, logger: Logger) throws {
        self.config = config
        self.group = group
        self.loop = group.next()
        self.tasks = LoopTaskExecutor(loop)
        var l = logger
        l[metadataKey: "peer"] = "\(config.institution)"
        self.logger = l
        self.store = try BlobStore(directory: config.blobDirectory)
        self.serverContext = try config.tls.makeContext(server: true)
        self.clientContext = try config.tls.makeContext(server: false)
        self.rng = SplitMix(state: config.seed)
        (events, eventSink) = AsyncStream.makeStream(of: GossipEvent.self)
    }

    // MARK: - Lifecycle

    /// Binds the listening socket; returns the port (useful with port 0).
    public func start() async throws -> Int {
        let server = try await ServerBootstrap(group: group)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelOption(.tcpOption(.tcp_nodelay), value: 1)
            .childChannelOption(.writeBufferWaterMark, value: GossipNode.writeWaterMark)
            .childChannelOption(.recvAllocator, value: GossipNode.receiveAllocator)
            .bind(host: config.listenHost, port: config.listenPort) { [serverContext, config, traffic] channel in
                channel.eventLoop.makeCompletedFuture {
                    let verdict = PeerVerdict()
                    let handler = NIOSSLServerHandler(
                        context: serverContext,
                        customVerificationCallback: config.tls.verificationCallback(clock: config.clock, verdict: verdict))
                    try channel.pipeline.syncOperations.addHandler(handler)
                    return (channel: try GossipNode.wrap(channel, config: config, traffic: traffic), verdict: verdict, remote: "\(channel.remoteAddress.map { "\($0)" } ?? "?")")
                }
            }
        self.server = server
        let port = server.channel.localAddress?.port ?? 0
        logger.info("listening", metadata: ["address": "\(config.listenHost):\(port)"])
        return port
    }

    /// Accepts connections and keeps dialling the configured members until cancelled.
    ///
    /// Cancellation closes the listening socket and every open connection, and
    /// the accept loop drains what the server had already accepted (a connection
    /// left unread in NIO's accept stream would trap on release; swift-nio#2637),
    /// so `run` returns once every connection is closed.
    public func run() async throws {
        if server == nil { _ = try await start() }
        guard let server else { return }
        // Not a child task: the accept loop must not see the cancellation, only the closed socket.
        let acceptor = Task(executorPreference: tasks) { await self.acceptLoop(server) }
        await withTaskCancellationHandler {
            await withDiscardingTaskGroup { group in
                for target in config.dial {
                    group.addTask(executorPreference: tasks) { await self.dialLoop(target) }
                }
                if config.ledger != nil {
                    group.addTask(executorPreference: tasks) {
                        while !Task.isCancelled {
                            try? await Task.sleep(for: self.config.headsInterval)
                            await self.antiEntropy()
                        }
                    }
                } else if config.dial.isEmpty {
                    group.addTask { while !Task.isCancelled { try? await Task.sleep(for: .seconds(3600)) } }
                }
            }
        } onCancel: {
            server.channel.close(promise: nil)
        }
        stopping = true
        logger.info("messages received", metadata: ["by-type": "\(received.sorted { $0.key < $1.key }.map { "\(WireProtocol.MessageType(rawValue: $0.key).map { "\($0)" } ?? "?")=\($0.value)" }.joined(separator: " "))"])
        for channel in openChannels.values { channel.close(promise: nil) }
        await acceptor.value
    }

    private func acceptLoop(_ server: NIOAsyncChannel<Accepted, Never>) async {
        do {
            try await server.executeThenClose { inbound in
                await withDiscardingTaskGroup { children in
                    do {
                        for try await accepted in inbound {
                            children.addTask(executorPreference: tasks) { await self.serve(accepted, inbound: true, expected: nil) }
                        }
                    } catch {
                        self.logger.debug("accept loop ended", metadata: ["error": "\(error)"])
                    }
                }
            }
        } catch {
            logger.debug("listening socket closed", metadata: ["error": "\(error)"])
        }
    }

    /// Members with an established connection.
    public func connectedPeers() -> [String] { connections.keys.sorted() }

    /// Members this node can reach now: its connections and theirs (as their
    /// last `neighbours` messages said), one relay away at most, and itself.
    public func reachableMembers() -> Set<String> {
        var out = Set(connections.keys)
        for c in connections.keys { out.formUnion(peerNeighbours[c] ?? []) }
        out.insert(config.institution)
        return out
    }

    /// Stops emitting events.
    public func finishEvents() { eventSink.finish() }

    // MARK: - Publishing

    /// Stores `bytes` and announces them to every connected member.
    @discardableResult
    public func publish(_ bytes: [UInt8], round: UInt64, kind: Announce.Kind) async throws -> Announce {
        let hash = try store.put(bytes)
        return await announceStored(hash, round: round, kind: kind)
    }

    /// Stores a file's contents and announces them.
    @discardableResult
    public func publish(file: String, round: UInt64, kind: Announce.Kind) async throws -> Announce {
        let hash = try store.put(file: file)
        return await announceStored(hash, round: round, kind: kind)
    }

    /// Announces a blob that is already in the store.
    @discardableResult
    public func announce(stored hash: ContentHash, round: UInt64, kind: Announce.Kind) async throws -> Announce {
        guard store.has(hash) else { throw BlobError("blob \(hash) is not stored") }
        return await announceStored(hash, round: round, kind: kind)
    }

    private func announceStored(_ hash: ContentHash, round: UInt64, kind: Announce.Kind) async -> Announce {
        let a = Announce(author: config.institution, round: round, kind: kind, hash: hash, size: store.size(hash) ?? 0)
        announcements[hash] = a
        // A small blob of our own goes out with its announcement (no pull round trip).
        let push = a.size <= WireProtocol.pushLimit ? try? store.read(hash, offset: 0, length: Int(a.size), allocator: ByteBufferAllocator()) : nil
        for c in connections.values {
            if let push {
                send([.announce(a), .chunk(hash: hash, offset: 0, bytes: push)], to: c)
            } else {
                send(.announce(a), to: c)
            }
        }
        return a
    }

    // MARK: - Connections

    /// Up to 1 MiB (four default chunks) may wait in a connection's write
    /// buffer, so the sender reads the next chunk while TLS sends the last.
    static let writeWaterMark = ChannelOptions.Types.WriteBufferWaterMark(low: 512 * 1024, high: 1024 * 1024)
    /// Socket reads of up to 256 KiB, so a chunk arrives in a few reads.
    static let receiveAllocator = AdaptiveRecvByteBufferAllocator(minimum: 1024, initial: 65536, maximum: 262_144)

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

    private func dialLoop(_ target: PeerAddress) async {
        var attempt = 0
        while !Task.isCancelled {
            if connections[target.institution] == nil && !cut.contains(target.institution) {
                do {
                    let accepted = try await connect(target)
                    let helloSeen = await serve(accepted, inbound: false, expected: target.institution)
                    if helloSeen { attempt = 0 }
                } catch {
                    logger.debug("dial failed", metadata: ["to": "\(target.institution)", "error": "\(error)"])
                }
            }
            let delay = backoff(attempt)
            attempt += 1
            try? await Task.sleep(for: delay)
        }
    }

    /// Capped exponential backoff with jitter in [0.5, 1).
    func backoff(_ attempt: Int) -> Duration {
        let base = config.backoffBase * (1 << min(attempt, 20))
        let capped = min(base, config.backoffCap)
        let jitter = 0.5 + 0.5 * rng.unit()
        return capped * jitter
    }

    private func connect(_ target: PeerAddress) async throws -> Accepted {
        try await ClientBootstrap(group: group)
            .connectTimeout(.seconds(5))
            .channelOption(.writeBufferWaterMark, value: GossipNode.writeWaterMark)
            .channelOption(.recvAllocator, value: GossipNode.receiveAllocator)
            .connect(host: target.host, port: target.port) { [clientContext, config, traffic] channel in
                channel.eventLoop.makeCompletedFuture {
                    let verdict = PeerVerdict()
                    let handler = try NIOSSLClientHandler(
                        context: clientContext, serverHostname: nil,
                        customVerificationCallback: config.tls.verificationCallback(clock: config.clock, verdict: verdict))
                    try channel.pipeline.syncOperations.addHandler(handler)
                    return (channel: try GossipNode.wrap(channel, config: config, traffic: traffic), verdict: verdict, remote: "\(target.host):\(target.port)")
                }
            }
    }

    /// Runs one connection: hello exchange, identity checks, then messages.
    /// Returns whether the peer's hello was accepted.
    @discardableResult
    private func serve(_ accepted: Accepted, inbound: Bool, expected: String?) async -> Bool {
        let (channel, verdict, remote) = accepted
        let key = ObjectIdentifier(channel.channel)
        openChannels[key] = channel.channel
        defer { openChannels[key] = nil }
        if stopping { channel.channel.close(promise: nil) }
        let myHello = Hello(consortium: config.consortium, institution: config.claimedInstitution ?? config.institution, heads: ledgerHeads())
        var helloAccepted = false
        var registered: Connection?
        do {
            try await channel.executeThenClose { input, output in
                // A failed handshake surfaces on the read side with its real
                // cause; the write of our hello just fails with "closed".
                try? await output.write(.hello(myHello))
                var messages = input.makeAsyncIterator()
                guard let first = try await messages.next() else {
                    throw ConnectionEnd.closedBeforeHello
                }
                guard case .success(let member) = verdict.result else { throw ConnectionEnd.closedBeforeHello }
                guard case .hello(let hello) = first else {
                    throw ConnectionEnd.rejected(PeerRejection(.policy, "first message was not a hello"))
                }
                if let problem = check(hello, member: member, expected: expected) {
                    try? await output.write(.goodbye(code: 1, reason: problem.reason))
                    throw ConnectionEnd.rejected(problem)
                }
                channel.channel.pipeline.handler(type: HelloDeadline.self).whenSuccess { $0.passed() }
                if cut.contains(member.institution) {
                    try? await output.write(.goodbye(code: 3, reason: "link cut"))
                    throw ConnectionEnd.rejected(PeerRejection(.policy, "link to \(member.institution) is cut (injected fault)"))
                }
                guard connections[member.institution] == nil else {
                    try? await output.write(.goodbye(code: 2, reason: "already connected"))
                    throw ConnectionEnd.duplicate
                }
                helloAccepted = true
                let (outbox, sink) = AsyncStream.makeStream(of: [WireMessage].self)
                let c = Connection(institution: member.institution, outbox: sink, output: output, id: rng.next(), channel: channel.channel)
                connections[member.institution] = c
                registered = c
                eventSink.yield(.connected(institution: member.institution, inbound: inbound))
                logger.info("connected", metadata: ["member": "\(member.institution)", "inbound": "\(inbound)"])
                // The one writer: messages go out in the order they were sent.
                let writer = Task(executorPreference: tasks) { await self.drain(outbox, to: output) }
                defer {
                    sink.finish()
                    writer.cancel()
                }
                for a in announcements.values { send(.announce(a), to: c) }
                announceNeighbours()
                record(hello.heads, from: c)
                requestMissing(hello.heads, from: c)
                while let message = try await messages.next() {
                    handle(message, from: c)
                }
            }
        } catch let end as ConnectionEnd {
            report(end, remote: remote, verdict: verdict)
        } catch {
            report(.failed(error), remote: remote, verdict: verdict)
        }
        if let c = registered, connections[c.institution]?.id == c.id {
            connections[c.institution] = nil
            peerHeads[c.institution] = nil
            reportedAt[c.institution] = nil
            reported[c.institution] = nil
            peerNeighbours[c.institution] = nil
            announceNeighbours()
            dropInflight(from: c.institution)
            eventSink.yield(.disconnected(institution: c.institution))
            logger.info("disconnected", metadata: ["member": "\(c.institution)"])
        }
        return helloAccepted
    }

    private func check(_ hello: Hello, member: MemberCertificate, expected: String?) -> PeerRejection? {
        if hello.protocolVersion != WireProtocol.version {
            return PeerRejection(.policy, "protocol version \(hello.protocolVersion) is not supported (this peer speaks \(WireProtocol.version))")
        }
        if hello.consortium != config.consortium {
            return PeerRejection(.wrongConsortium, "hello names consortium '\(hello.consortium)', expected '\(config.consortium)'")
        }
        if hello.institution != member.institution {
            return PeerRejection(.identityMismatch, "peer claims to be '\(hello.institution)' but its certificate is for '\(member.institution)'")
        }
        if let expected, expected != member.institution {
            return PeerRejection(.identityMismatch, "dialled '\(expected)' but reached '\(member.institution)'")
        }
        return nil
    }

    private func report(_ end: ConnectionEnd, remote: String, verdict: PeerVerdict) {
        let code: String, reason: String
        if case .failure(let r) = verdict.result {
            (code, reason) = (r.code.rawValue, r.reason)
        } else {
            switch end {
            case .rejected(let r): (code, reason) = (r.code.rawValue, r.reason)
            case .duplicate: return
            case .closedBeforeHello: (code, reason) = ("no-hello", "connection closed before a verified hello")
            case .failed(let error): (code, reason) = GossipNode.classify(error)
            }
        }
        if code == "closed" { return }
        logger.warning("connection rejected", metadata: ["remote": "\(remote)", "reason": "\(code)", "detail": "\(reason)"])
        eventSink.yield(.rejected(remote: remote, code: code, reason: reason))
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

    // MARK: - Dissemination

    /// Writes a connection's outbox in order, on this actor's event loop
    /// (not the cooperative pool, which blocking work elsewhere can starve).
    private func drain(_ outbox: AsyncStream<[WireMessage]>, to output: NIOAsyncChannelOutboundWriter<WireMessage>) async {
        for await batch in outbox {
            do { try await output.write(contentsOf: batch) } catch { break }
        }
    }

    private func send(_ message: WireMessage, to c: Connection) {
        c.outbox.yield([message])
    }

    /// Sends `messages` in order.
    private func send(_ messages: [WireMessage], to c: Connection) {
        c.outbox.yield(messages)
    }

    private func handle(_ message: WireMessage, from c: Connection) {
        received[message.type.rawValue, default: 0] += 1
        switch message {
        case .announce(let a):
            onAnnounce(a, from: c)
        case .pull(let hash):
            onPull(hash, from: c)
        case .chunk(let hash, let offset, let bytes):
            onChunk(hash, offset: offset, bytes: bytes, from: c)
        case .notFound(let hash):
            if let f = inflight[hash], f.source == c.institution { retry(hash) }
        case .goodbye(let code, let reason):
            logger.info("goodbye", metadata: ["member": "\(c.institution)", "code": "\(code)", "reason": "\(reason)"])
            // The other end cut the link (an injected fault): do not redial it.
            if code == 3 { cut.insert(c.institution) }
        case .hello:
            logger.warning("second hello ignored", metadata: ["member": "\(c.institution)"])
        case .ping, .pong:
            break
        case .ledgerHeads(let heads):
            record(heads, from: c)
            requestMissing(heads, from: c)
        case .ledgerPull(let author, let after, let fromStart):
            servePull(author: author, after: fromStart ? nil : after, to: c)
        case .ledgerEntries(let entries):
            mergeEntries(entries, from: c)
        case .neighbours(let ids):
            onNeighbours(ids, from: c)
        }
    }

    // MARK: - Ledger sync

    /// Entries per ledger-entries message.
    static let ledgerBatch = 64

    private func ledgerHeads() -> [ChainHead] {
        guard let ledger = config.ledger else { return [] }
        do {
            return try ledger.heads()
        } catch {
            logger.error("cannot read ledger heads", metadata: ["error": "\(error)"])
            return []
        }
    }

    /// The heads the last anti-entropy tick saw, and the neighbours it sent them to.
    private var lastTickHeads: [ChainHead] = []
    private var lastTickSentTo: Set<String> = []
    private var ticks = 0

    /// Sends this node's heads to every neighbour that has not had them from
    /// a tick since they last changed. Push, relay and pull move entries
    /// quickly; this bounds how long a neighbour can stay behind when one of
    /// those messages crossed another (a refused push, a pull answered from
    /// a relay that was itself still behind).
    func antiEntropy() {
        guard !stopping else { return }
        let heads = ledgerHeads()
        ticks += 1
        noteRepairs(heads)
        // Changed heads go out once; every fifth tick they go out again anyway
        // (a pull or its answer lost with a closed connection is retried).
        if heads != lastTickHeads || ticks % 5 == 0 {
            lastTickHeads = heads
            lastTickSentTo = []
        }
        for c in connections.values where !lastTickSentTo.contains(c.institution) {
            send(.ledgerHeads(heads), to: c)
            lastTickSentTo.insert(c.institution)
        }
    }

    /// Chain positions each neighbour was known to lack at the last tick, and when that tick was.
    private var lackedAtLastTick: [String: [String: UInt64]] = [:]
    private var lastTick: ContinuousClock.Instant?
    /// When each neighbour last reported its head of each chain.
    private var reportedAt: [String: [String: ContinuousClock.Instant]] = [:]

    /// Logs a repair for each neighbour that reported its head of a chain at
    /// least a second after the previous tick and still lacked a position
    /// this node held at that tick: push, relay and pull did not bring it
    /// there, so the heads this tick sends are what repairs it. A clean run
    /// needs none.
    private func noteRepairs(_ heads: [ChainHead]) {
        let now = ContinuousClock.now
        var lacked: [String: [String: UInt64]] = [:]
        for c in connections.values {
            let theirs = Dictionary((peerHeads[c.institution] ?? []).map { ($0.author, $0.seq) }, uniquingKeysWith: max)
            var missing: [String: UInt64] = [:]
            for head in heads where head.author != c.institution && (theirs[head.author].map { $0 < head.seq } ?? true) {
                missing[head.author] = head.seq
            }
            lacked[c.institution] = missing
            guard let lastTick, let before = lackedAtLastTick[c.institution] else { continue }
            let stuck = missing.keys.filter { author in
                guard let old = before[author], let at = reportedAt[c.institution]?[author], at >= lastTick + .seconds(1) else { return false }
                return (theirs[author] ?? 0) < old
            }
            if !stuck.isEmpty {
                logger.warning("anti-entropy repair: a neighbour still lacks entries this node held a tick ago; sending heads", metadata: [
                    "member": "\(c.institution)", "chains": "\(stuck.sorted().joined(separator: ","))"])
                lastTickSentTo.remove(c.institution)
            }
        }
        lackedAtLastTick = lacked
        lastTick = now
    }

    /// Tells every connected member that this node's ledger changed (after a
    /// local append): pushes the entries a member is known to lack (saving it
    /// a pull round trip), and sends the heads so it can pull anything else.
    /// The heads go only to members the push did not bring up to date.
    public func ledgerChanged() {
        let heads = ledgerHeads()
        for c in connections.values where !push(heads, to: c) {
            send(.ledgerHeads(heads), to: c)
        }
    }

    /// Echo: tells every neighbour (but each position's author) which chain
    /// positions this node holds, so that an author that showed different
    /// members different entries for one position is caught (see
    /// `unconfirmed`). A round engine echoes its round's update entries once
    /// it has collected them.
    public func echo(_ positions: [ChainHead]) {
        for c in connections.values {
            let shown = positions.filter { $0.author != c.institution }
            if !shown.isEmpty { send(.ledgerHeads(shown), to: c) }
        }
    }

    /// Sends `c` the entries of each chain beyond the head it last reported,
    /// and assumes it now holds them (if it refuses them it will pull).
    /// Returns whether `c` is now known to hold every one of `heads`.
    @discardableResult
    private func push(_ heads: [ChainHead], to c: Connection) -> Bool {
        guard let ledger = config.ledger, let theirs = peerHeads[c.institution] else { return false }
        var updated = Dictionary(theirs.map { ($0.author, $0) }, uniquingKeysWith: { a, _ in a })
        var batch: [WireEntry] = []
        for head in heads {
            guard let seq = updated[head.author]?.seq, head.seq > seq, head.seq - seq <= 8,
                  let entries = try? ledger.entries(author: head.author, after: seq, limit: 8) else { continue }
            batch += entries
            updated[head.author] = head
        }
        let complete = heads.allSatisfy { head in updated[head.author].map { $0.seq >= head.seq } ?? false }
        guard !batch.isEmpty else { return complete }
        send(.ledgerEntries(batch), to: c)
        peerHeads[c.institution] = updated.values.sorted { $0.author < $1.author }
        return complete
    }

    /// True when `neighbour` reported a direct connection to `author` (or is it).
    private func hasDirectLink(_ neighbour: String, to author: String) -> Bool {
        neighbour == author || peerNeighbours[neighbour]?.contains(author) == true
    }

    /// Sends this node's heads to every neighbour (but `except`) that is not
    /// directly connected to all of `authors` and not known to hold these heads.
    private func relayHeads(authors: Set<String>, except: String) {
        let heads = ledgerHeads()
        for other in connections.values where other.institution != except {
            if !authors.isEmpty && authors.allSatisfy({ hasDirectLink(other.institution, to: $0) }) { continue }
            let theirs = Dictionary((peerHeads[other.institution] ?? []).map { ($0.author, $0.seq) }, uniquingKeysWith: max)
            if heads.allSatisfy({ head in theirs[head.author].map { $0 >= head.seq } ?? false }) { continue }
            send(.ledgerHeads(heads), to: other)
        }
    }

    /// The authors among `entries` (chain positions this node holds) that
    /// some connected neighbour other than the author has not yet shown it
    /// holds at exactly that position with the same hash. A round engine waits
    /// for this to empty before closing a round, so a member that sent
    /// different updates to different neighbours is seen.
    ///
    /// A neighbour that showed this node's own head of a chain holds every
    /// earlier position of it too (each entry names the previous one's hash).
    public func unconfirmed(_ entries: [ChainHead]) -> Set<String> {
        let heads = Dictionary(ledgerHeads().map { ($0.author, $0) }, uniquingKeysWith: { a, _ in a })
        var out = Set<String>()
        for e in entries {
            for neighbour in connections.keys where neighbour != e.author {
                let shown = reported[neighbour]?[e.author]
                if shown?[e.seq] == e.hash { continue }
                if let head = heads[e.author], head.seq >= e.seq, shown?[head.seq] == head.hash { continue }
                out.insert(e.author)
                break
            }
        }
        return out
    }

    /// Positions a neighbour showed it holds (at most 16 per author, 1024 authors).
    private func record(_ heads: [ChainHead], from c: Connection) {
        var mine = reported[c.institution] ?? [:]
        var changed = false
        for h in heads where mine[h.author] != nil || mine.count < 1024 {
            var positions = mine[h.author] ?? [:]
            if positions[h.seq] != h.hash { changed = true }
            positions[h.seq] = h.hash
            if positions.count > 16, let oldest = positions.keys.min() { positions[oldest] = nil }
            mine[h.author] = positions
        }
        reported[c.institution] = mine
        if changed { eventSink.yield(.positionsReported(by: c.institution)) }
    }

    /// Cuts this node's direct links to `members` (an injected fault, for
    /// testing relays): closes their connections and refuses new ones.
    public func cutLinks(to members: Set<String>) {
        cut.formUnion(members)
        for id in members.sorted() {
            logger.warning("injected fault: link cut", metadata: ["member": "\(id)"])
            connections[id]?.channel.close(promise: nil)
        }
    }

    /// Sends ledger entries to the named neighbours only, bypassing this
    /// node's ledger (used by the `equivocate` attack to show different
    /// members different entries; honest peers never call it).
    public func send(entries: [WireEntry], to members: Set<String>) {
        for c in connections.values where members.contains(c.institution) { send(.ledgerEntries(entries), to: c) }
    }

    /// Tells every neighbour which members this node is connected to now.
    private func announceNeighbours() {
        let ids = connections.keys.sorted()
        for c in connections.values { send(.neighbours(ids), to: c) }
    }

    /// A neighbour's list of its own connections. When it lost a link, it may
    /// now depend on relays for that member's entries and blobs: send it our
    /// heads and re-announce that member's blobs.
    private func onNeighbours(_ ids: [String], from c: Connection) {
        let now = Set(ids)
        let lost = (peerNeighbours[c.institution] ?? []).subtracting(now)
        if peerNeighbours[c.institution] != now { eventSink.yield(.neighboursChanged(of: c.institution)) }
        peerNeighbours[c.institution] = now
        guard !lost.isEmpty else { return }
        send(.ledgerHeads(ledgerHeads()), to: c)
        for a in announcements.values where lost.contains(a.author) { send(.announce(a), to: c) }
    }

    /// Pulls every chain in which the peer is ahead of this node, and the
    /// entry of every chain where the peer holds a different entry at this
    /// node's head (an author that signed two entries for one position: the
    /// merge turns the pair into fork evidence). `theirs` may name only some
    /// chains (an echo); the others keep what the peer last reported.
    private func requestMissing(_ theirs: [ChainHead], from c: Connection) {
        guard let ledger = config.ledger else { return }
        var known = Dictionary((peerHeads[c.institution] ?? []).map { ($0.author, $0) }, uniquingKeysWith: { a, _ in a })
        for head in theirs where known.count < 1024 || known[head.author] != nil {
            if let k = known[head.author], k.seq > head.seq { continue }  // an echo of an older position
            known[head.author] = head
        }
        peerHeads[c.institution] = known.values.sorted { $0.author < $1.author }
        let reportTime = ContinuousClock.now
        for head in theirs where reportedAt[c.institution]?[head.author] != nil || (reportedAt[c.institution]?.count ?? 0) < 1024 {
            reportedAt[c.institution, default: [:]][head.author] = reportTime
        }
        let myHeads = Dictionary(ledgerHeads().map { ($0.author, $0) }, uniquingKeysWith: { a, _ in a })
        let mine = myHeads.mapValues(\.seq)
        let now = ContinuousClock.now
        for head in theirs {
            // A position this node holds with a different entry: pull the
            // neighbour's entry there (once), so the merge records the fork.
            if let my = myHeads[head.author], head.seq <= my.seq {
                let ours = head.seq == my.seq ? my.hash : (try? ledger.entryHash(author: head.author, seq: head.seq)) ?? nil
                if let ours, ours != head.hash {
                    if conflictPulls.count > 4096 { conflictPulls.removeAll() }
                    if conflictPulls.insert("\(c.institution)|\(head.author)#\(head.seq)").inserted {
                        logger.warning("a neighbour holds a different entry at this chain position; pulling it", metadata: [
                            "author": "\(head.author)", "seq": "\(head.seq)", "from": "\(c.institution)"])
                        send(.ledgerPull(author: head.author, after: head.seq == 0 ? 0 : head.seq - 1, fromStart: head.seq == 0), to: c)
                    }
                }
                continue
            }
            let after = mine[head.author]
            guard after.map({ head.seq > $0 }) ?? true else { continue }
            // One pull per chain position at a time: the same entries are offered by every neighbour.
            if let pending = pendingPulls[head.author], pending.after == after, now - pending.at < .milliseconds(500) { continue }
            pendingPulls[head.author] = (after, now)
            send(.ledgerPull(author: head.author, after: after ?? 0, fromStart: after == nil), to: c)
        }
    }

    private func servePull(author: String, after: UInt64?, to c: Connection) {
        guard let ledger = config.ledger else { return }
        do {
            var batch: [WireEntry] = []
            var bytes = 0
            for e in try ledger.entries(author: author, after: after, limit: GossipNode.ledgerBatch) {
                bytes += e.header.count + e.body.count + 104
                if bytes > WireProtocol.maximumFrameSize - 4096 { break }
                batch.append(e)
            }
            if !batch.isEmpty { send(.ledgerEntries(batch), to: c) }
        } catch {
            logger.error("cannot read ledger entries", metadata: ["author": "\(author)", "error": "\(error)"])
        }
    }

    private func mergeEntries(_ entries: [WireEntry], from c: Connection) {
        guard let ledger = config.ledger, !entries.isEmpty else { return }
        do {
            let ownBefore = ledgerHeads().first { $0.author == config.institution }?.seq
            // The sender holds what it sent.
            let positions = entries.compactMap { e -> (kind: UInt8?, head: ChainHead)? in
                guard let author = WireEntry.author(of: e.header), let seq = WireEntry.seq(of: e.header), let hash = ContentHash(e.hash) else { return nil }
                return (WireEntry.kind(of: e.header), ChainHead(author: author, seq: seq, hash: hash))
            }
            record(positions.map(\.head), from: c)
            let stored = try ledger.merge(entries)
            for author in Set(entries.compactMap { WireEntry.author(of: $0.header) }) { pendingPulls[author] = nil }
            eventSink.yield(.ledgerMerged(from: c.institution, stored: stored))
            // A chain whose entries here start past this node's head + 1 (a
            // push that assumed more than this node holds): pull the gap from
            // the sender. (Entries that start right after the head and were
            // refused diverge from it, a fork: pulling again would loop.)
            let held = Dictionary(ledgerHeads().map { ($0.author, $0.seq) }, uniquingKeysWith: max)
            let byAuthor = Dictionary(grouping: positions.map(\.head), by: \.author)
            let gaps = byAuthor.compactMap { author, heads -> ChainHead? in
                guard let first = heads.map(\.seq).min(), let last = heads.max(by: { $0.seq < $1.seq }) else { return nil }
                let next = held[author].map { $0 + 1 } ?? 0
                return first > next ? last : nil
            }
            if !gaps.isEmpty { requestMissing(gaps, from: c) }
            guard stored > 0 else { return }
            let heads = ledgerHeads()
            // The merge signed evidence into this node's own chain: push it now.
            if heads.first(where: { $0.author == config.institution })?.seq != ownBefore { ledgerChanged() }
            // Relay: tell the other neighbours, except those connected to every
            // author concerned (the authors push to them directly).
            relayHeads(authors: Set(entries.compactMap { WireEntry.author(of: $0.header) }), except: c.institution)
            // Keep pulling if more may follow.
            // A full batch may have more behind it: compare with the peer's heads again.
            if entries.count == GossipNode.ledgerBatch, let theirs = peerHeads[c.institution] { requestMissing(theirs, from: c) }
        } catch {
            logger.warning("ledger merge failed", metadata: ["from": "\(c.institution)", "error": "\(error)"])
        }
    }

    /// Announcements of updates and aggregates for rounds before this are
    /// replays or stragglers: dropped unpulled (the round engine raises it as rounds close).
    private var minimumRound: UInt64 = 0

    /// Drops announcements of update and aggregate blobs for rounds below `round` from now on.
    public func setMinimumRound(_ round: UInt64) { minimumRound = max(minimumRound, round) }

    private func onAnnounce(_ a: Announce, from c: Connection) {
        if a.kind != .other && a.round < minimumRound && !store.has(a.hash) {
            logger.debug("announcement for a closed round dropped", metadata: ["author": "\(a.author)", "round": "\(a.round)", "from": "\(c.institution)"])
            eventSink.yield(.stale(a, from: c.institution))
            return
        }
        if store.has(a.hash) {
            logger.trace("duplicate announcement dropped", metadata: ["hash": "\(a.hash)", "from": "\(c.institution)"])
            eventSink.yield(.duplicate(hash: a.hash, from: c.institution))
            return
        }
        if var f = inflight[a.hash] {
            if f.source != c.institution && !f.otherSources.contains(c.institution) { f.otherSources.append(c.institution) }
            inflight[a.hash] = f
            eventSink.yield(.duplicate(hash: a.hash, from: c.institution))
            return
        }
        do {
            let incoming = try store.beginReceiving(a.hash, size: a.size)
            inflight[a.hash] = Inflight(announce: a, source: c.institution, otherSources: [], incoming: incoming)
            if a.author == c.institution && a.size <= WireProtocol.pushLimit {
                // Its author pushes a small blob right behind the announcement; pull only if it stalls.
                let hash = a.hash, source = c.institution
                Task(executorPreference: tasks) {
                    try? await Task.sleep(for: .seconds(1))
                    await self.pullIfStalled(hash, from: source)
                }
            } else {
                send(.pull(hash: a.hash), to: c)
            }
        } catch {
            logger.error("cannot receive blob", metadata: ["hash": "\(a.hash)", "error": "\(error)"])
        }
    }

    private func onPull(_ hash: ContentHash, from c: Connection) {
        guard let size = store.size(hash), store.has(hash) else {
            send(.notFound(hash: hash), to: c)
            return
        }
        Task(executorPreference: tasks) { await self.stream(hash, size: size, to: c) }
    }

    /// Sends a stored blob's chunks; writes suspend while the channel is not
    /// writable, so back-pressure keeps at most a few chunks in memory.
    private func stream(_ hash: ContentHash, size: UInt64, to c: Connection) async {
        let chunk = config.chunkSize
        var offset: UInt64 = 0
        let allocator = ByteBufferAllocator()
        do {
            repeat {
                let n = Int(min(UInt64(chunk), size - offset))
                let bytes = try store.read(hash, offset: offset, length: n, allocator: allocator)
                try await c.output.write(.chunk(hash: hash, offset: offset, bytes: bytes))
                offset += UInt64(bytes.readableBytes)
            } while offset < size
        } catch {
            logger.debug("blob transfer stopped", metadata: ["hash": "\(hash)", "to": "\(c.institution)", "error": "\(error)"])
        }
    }

    private func onChunk(_ hash: ContentHash, offset: UInt64, bytes: ByteBuffer, from c: Connection) {
        guard let f = inflight[hash], f.source == c.institution else {
            eventSink.yield(.duplicate(hash: hash, from: c.institution))
            return
        }
        do {
            try f.incoming.append(offset: offset, bytes: bytes)
            guard f.incoming.isComplete else { return }
            try f.incoming.commit()
        } catch {
            logger.warning("bad blob data", metadata: ["hash": "\(hash)", "from": "\(c.institution)", "error": "\(error)"])
            retry(hash)
            return
        }
        inflight[hash] = nil
        announcements[hash] = f.announce
        eventSink.yield(.blobReceived(f.announce, from: c.institution))
        for other in connections.values where other.institution != c.institution && !hasDirectLink(other.institution, to: f.announce.author) {
            send(.announce(f.announce), to: other)
        }
    }

    private func pullIfStalled(_ hash: ContentHash, from source: String) {
        guard let f = inflight[hash], f.source == source, f.incoming.received == 0 else { return }
        if let c = connections[source] { send(.pull(hash: hash), to: c) } else { retry(hash) }
    }

    /// Abandons the current source of a blob and pulls it from the next one.
    private func retry(_ hash: ContentHash) {
        guard var f = inflight.removeValue(forKey: hash) else { return }
        f.incoming.abandon()
        while !f.otherSources.isEmpty {
            let next = f.otherSources.removeFirst()
            if let c = connections[next], let incoming = try? store.beginReceiving(hash, size: f.announce.size) {
                inflight[hash] = Inflight(announce: f.announce, source: next, otherSources: f.otherSources, incoming: incoming)
                send(.pull(hash: hash), to: c)
                return
            }
        }
    }

    private func dropInflight(from institution: String) {
        for (hash, f) in inflight where f.source == institution { retry(hash) }
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

/// SplitMix64, for reconnect jitter and connection ids.
struct SplitMix {
    var state: UInt64
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
    mutating func unit() -> Double { Double(next() >> 11) * 0x1.0p-53 }
}

extension WireEntry {
    /// The author named by a ledger entry header (version, consortium, author; docs/ledger-spec.md), if it parses that far.
    static func author(of header: [UInt8]) -> String? {
        guard header.count >= 3 else { return nil }
        let consortiumLength = Int(header[1]) << 8 | Int(header[2])
        let a = 3 + consortiumLength
        guard header.count >= a + 2 else { return nil }
        let authorLength = Int(header[a]) << 8 | Int(header[a + 1])
        guard header.count >= a + 2 + authorLength else { return nil }
        return String(validating: header[(a + 2)..<(a + 2 + authorLength)], as: UTF8.self)
    }

    /// The seq of a ledger entry header (after version, consortium and author), if it parses that far.
    static func seq(of header: [UInt8]) -> UInt64? {
        guard header.count >= 3 else { return nil }
        let a = 3 + (Int(header[1]) << 8 | Int(header[2]))
        guard header.count >= a + 2 else { return nil }
        let s = a + 2 + (Int(header[a]) << 8 | Int(header[a + 1]))
        guard header.count >= s + 8 else { return nil }
        return header[s..<(s + 8)].reduce(0) { $0 << 8 | UInt64($1) }
    }

    /// The entry kind byte of a ledger entry header (after seq, prev and round), if it parses that far.
    static func kind(of header: [UInt8]) -> UInt8? {
        guard header.count >= 3 else { return nil }
        let a = 3 + (Int(header[1]) << 8 | Int(header[2]))
        guard header.count >= a + 2 else { return nil }
        let k = a + 2 + (Int(header[a]) << 8 | Int(header[a + 1])) + 8 + 32 + 8
        return header.count > k ? header[k] : nil
    }

    /// The kind byte of `update` entries (docs/ledger-spec.md).
    static let updateKind: UInt8 = 2
}

/// Runs task jobs on an event loop (a node's tasks start there rather than on
/// Swift's cooperative pool, which long synchronous work can occupy).
final class LoopTaskExecutor: TaskExecutor, @unchecked Sendable {
    let loop: EventLoop
    init(_ loop: EventLoop) { self.loop = loop }

    func enqueue(_ job: consuming ExecutorJob) {
        let job = UnownedJob(job)
        let executor = asUnownedTaskExecutor()
        loop.execute { job.runSynchronously(on: executor) }
    }
}
