import FLIdentity
import FLWire
import Foundation
import Logging
import NIOCore
import NIOPosix
import NIOSSL
import Synchronization

/// One institution's gossip endpoint: accepts and dials mutual-TLS
/// connections to members, disseminates content-addressed blobs by
/// announce/pull, and replicates ledger chains.
///
/// A thin actor that routes between three value-type state machines:
/// `ConnectionRegistry` (who is connected and admitted), `BlobExchange`
/// (announce/pull of blobs) and `ChainReplication` (heads, pushes, pulls,
/// echoes, anti-entropy). It runs on its event loop and only moves bytes and
/// updates those machines there: ledger reads and merges (SQLite, Ed25519
/// and X.509 checks), large blobs' file I/O and hashing run on a thread pool.
public actor GossipNode {
    public nonisolated let events: AsyncStream<GossipEvent>
    public nonisolated let config: GossipConfig
    public nonisolated let store: BlobStore
    /// Frame bytes in and out over all connections.
    public nonisolated let traffic = TrafficCounter()
    /// `reachableMembers()`, recomputed when a connection or a neighbour's links change.
    nonisolated let reachable: Mutex<Set<String>>

    let eventSink: AsyncStream<GossipEvent>.Continuation
    let group: EventLoopGroup
    let logger: Logger
    let serverContext: NIOSSLContext
    let clientContext: NIOSSLContext
    var server: NIOAsyncChannel<Accepted, Never>?
    /// Accepted connections not yet taken by the accept loop.
    let unclaimed = UnclaimedChannels()
    var registry: ConnectionRegistry
    var replication = ChainReplication()
    var blobs: BlobExchange
    /// Received entries waiting for the one merge in progress, by sender.
    var merges: [(entries: [WireEntry], from: String)] = []
    var merging = false
    /// Messages received, by type (logged at shutdown).
    var received: [UInt8: Int] = [:]

    typealias Accepted = (channel: NIOAsyncChannel<WireMessage, WireMessage>, verdict: PeerVerdict, remote: String)
    typealias Connection = ConnectionRegistry.Connection

    /// The node's state lives on its event loop (NIO's own executor), next to
    /// its sockets; everything that blocks goes to `pool`.
    nonisolated let loop: EventLoop
    public nonisolated var unownedExecutor: UnownedSerialExecutor { loop.executor.asUnownedSerialExecutor() }
    /// Ledger and file work, off the event loop.
    nonisolated let io: NodeIO

    public init(config: GossipConfig, group: EventLoopGroup, logger: Logger) throws {
        self.config = config
        self.group = group
        self.loop = group.next()
        var l = logger
        l[metadataKey: "peer"] = "\(config.institution)"
        self.logger = l
        self.store = try BlobStore(directory: config.blobDirectory)
        self.io = NodeIO(store: store, ledger: config.ledger, pool: config.threadPool, chunkSize: config.chunkSize)
        self.blobs = BlobExchange(store: store, limits: config.blobLimits, members: config.tls.trust.members)
        self.registry = ConnectionRegistry(seed: config.seed)
        self.reachable = Mutex([config.institution])
        self.serverContext = try config.tls.makeContext(server: true)
        self.clientContext = try config.tls.makeContext(server: false)
        (events, eventSink) = AsyncStream.makeStream(of: GossipEvent.self)
        blobs.setMinimumRound(config.minimumRound)
    }

    // MARK: - Lifecycle

    /// Binds the listening socket; returns the port (useful with port 0).
    public func start() async throws -> Int {
        replication.setHeads(try await io.heads())
        let server = try await GossipPipeline.listen(group: group, config: config, context: serverContext, traffic: traffic, unclaimed: unclaimed)
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
        let acceptor = Task { await self.acceptLoop(server) }
        await withTaskCancellationHandler {
            await withDiscardingTaskGroup { group in
                for target in config.dial {
                    group.addTask { await ConnectionDriver.dialLoop(target, node: self) }
                }
                if config.ledger != nil {
                    group.addTask {
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
        registry.stop()
        logger.info("messages received", metadata: ["by-type": "\(WireProtocol.describe(counts: received))"])
        for channel in registry.open.values { channel.close(promise: nil) }
        await acceptor.value
        await unclaimed.closeUnclaimed()
    }

    private func acceptLoop(_ server: NIOAsyncChannel<Accepted, Never>) async {
        do {
            try await server.executeThenClose { inbound in
                await withDiscardingTaskGroup { children in
                    do {
                        for try await accepted in inbound {
                            unclaimed.claim(accepted.channel)
                            children.addTask { await ConnectionDriver.serve(accepted, inbound: true, expected: nil, node: self) }
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
    public func connectedPeers() -> [String] { registry.connections.keys.sorted() }

    /// The furthest position of `author`'s chain a neighbour reported holding (hello or heads), and who.
    public func furthestReported(of author: String) -> (seq: UInt64, member: String)? { replication.furthestReported(of: author) }

    /// Members this node can reach now: its connections and theirs (as their
    /// last `neighbours` messages said), one relay away at most, and itself.
    /// Read without a hop onto the node's loop (a round engine asks at every wake-up).
    public nonisolated func reachableMembers() -> Set<String> { reachable.withLock { $0 } }

    /// Recomputes `reachableMembers()` after the links changed.
    func linksChanged() {
        let now = registry.reachable(me: config.institution)
        reachable.withLock { $0 = now }
    }

    /// Stops emitting events.
    public func finishEvents() { eventSink.finish() }

    // MARK: - Publishing

    /// Stores `bytes` and announces them to every connected member.
    @discardableResult
    public func publish(_ bytes: [UInt8], round: UInt64, kind: Announce.Kind) async throws -> Announce {
        announceStored(try await io.put(bytes), round: round, kind: kind)
    }

    /// Stores a file's contents and announces them.
    @discardableResult
    public func publish(file: String, round: UInt64, kind: Announce.Kind) async throws -> Announce {
        announceStored(try await io.put(file: file), round: round, kind: kind)
    }

    /// Announces a blob that is already in the store.
    @discardableResult
    public func announce(stored hash: ContentHash, round: UInt64, kind: Announce.Kind) throws -> Announce {
        guard store.has(hash) else { throw BlobError("blob \(hash) is not stored") }
        return announceStored(hash, round: round, kind: kind)
    }

    private func announceStored(_ hash: ContentHash, round: UInt64, kind: Announce.Kind) -> Announce {
        let a = Announce(author: config.institution, round: round, kind: kind, hash: hash, size: store.size(hash) ?? 0)
        blobs.own(a)
        // A small blob of our own goes out with its announcement (no pull round trip).
        let push = a.size <= WireProtocol.pushLimit && store.isInMemory(hash)
            ? try? store.read(hash, offset: 0, length: Int(a.size), allocator: ByteBufferAllocator()) : nil
        let messages: [WireMessage] = push.map { [.announce(a), .chunk(hash: hash, offset: 0, bytes: $0)] } ?? [.announce(a)]
        for c in registry.connections.values { c.send(messages) }
        return a
    }

    /// Drops announcements of update and aggregate blobs for rounds below `round` from now on.
    public func setMinimumRound(_ round: UInt64) { blobs.setMinimumRound(round) }

    // MARK: - Ledger

    /// Tells every connected member that this node's ledger changed (after a
    /// local append): pushes the entries a member is known to lack (saving it
    /// a pull round trip), and sends the heads to the members the push did
    /// not bring up to date, so they pull anything else.
    ///
    /// `appended`: the entries just appended to this node's own chain, in
    /// order; when they extend the head this node knows, they are pushed at
    /// once, without reading the ledger.
    public func ledgerChanged(appended: [WireEntry]) async {
        let me = config.institution
        let positions = ChainReplication.positions(appended)
        guard let last = positions.last, positions.allSatisfy({ $0.author == me }),
              positions.first?.seq == replication.mine[me].map({ $0.seq + 1 }) else { return await ledgerChanged() }
        replication.hold(appended)
        replication.setHeads([last])
        perform(replication.changed(links: registry.links))
    }

    /// `ledgerChanged(appended:)` when the appended entries are not at hand: reads the heads and own entries.
    public func ledgerChanged() async {
        let me = config.institution, after = replication.mine[me]?.seq
        do {
            guard let (heads, own) = try await io.headsAndEntries(author: me, after: after, limit: ChainReplication.recentPerChain) else { return }
            replication.setHeads(heads)
            replication.hold(own)
        } catch {
            logger.error("cannot read ledger heads", metadata: ["error": "\(error)"])
        }
        perform(replication.changed(links: registry.links))
    }

    /// Echo: tells every neighbour (but each position's author) which chain
    /// positions this node holds, so that an author that showed different
    /// members different entries for one position is caught (see
    /// `unconfirmed`). A round engine echoes its round's update entries once
    /// it has collected them.
    public func echo(_ positions: [ChainHead]) {
        perform(replication.echo(positions, links: registry.links))
    }

    /// The authors among `entries` (chain positions this node holds) that
    /// some connected neighbour other than the author has not yet shown it
    /// holds at exactly that position with the same hash. A round engine waits
    /// for this to empty before closing a round, so a member that sent
    /// different updates to different neighbours is seen.
    public func unconfirmed(_ entries: [ChainHead]) -> Set<String> {
        replication.unconfirmed(entries, links: registry.links)
    }

    /// Cuts this node's direct links to `members` (an injected fault, for
    /// testing relays): closes their connections and refuses new ones.
    public func cutLinks(to members: Set<String>) {
        registry.cutLinks(to: members)
        for id in members.sorted() {
            logger.warning("injected fault: link cut", metadata: ["member": "\(id)"])
            registry.connections[id]?.channel.close(promise: nil)
        }
    }

    /// Sends ledger entries to the named neighbours only, bypassing this
    /// node's ledger (used by the `equivocate` attack to show different
    /// members different entries; honest peers never call it).
    public func send(entries: [WireEntry], to members: Set<String>) {
        for c in registry.connections.values where members.contains(c.institution) { c.send([.ledgerEntries(entries)]) }
    }

    /// One anti-entropy tick (repair only: push, relay and pull move entries).
    func antiEntropy() async {
        guard !registry.stopping, config.ledger != nil else { return }
        if let heads = try? await io.heads() { replication.setHeads(heads) }
        perform(replication.tick(links: registry.links, now: .now))
    }
}
