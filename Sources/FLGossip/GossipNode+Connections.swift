import FLIdentity
import FLWire
import Foundation
import Logging
import NIOCore
import NIOPosix
import NIOSSL

/// Connections: the pipeline, dialling with backoff, the hello exchange and
/// admission, one writer per connection, and routing of received messages.
extension GossipNode {
    func dialLoop(_ target: PeerAddress) async {
        var attempt = 0
        while !Task.isCancelled {
            if registry.connections[target.institution] == nil && !registry.cut.contains(target.institution) {
                do {
                    let accepted = try await GossipPipeline.connect(target, group: group, config: config, context: clientContext, traffic: traffic)
                    if await serve(accepted, inbound: false, expected: target.institution) { attempt = 0 }
                } catch {
                    logger.debug("dial failed", metadata: ["to": "\(target.institution)", "error": "\(error)"])
                }
            }
            let delay = registry.backoff(attempt, base: config.backoffBase, cap: config.backoffCap)
            attempt += 1
            try? await Task.sleep(for: delay)
        }
    }

    /// Runs one connection: hello exchange, admission, then messages until it
    /// closes. Returns whether the peer's hello was admitted.
    @discardableResult
    func serve(_ accepted: Accepted, inbound: Bool, expected: String?) async -> Bool {
        let (channel, verdict, remote) = accepted
        registry.opened(channel.channel)
        defer { registry.closed(channel.channel) }
        if registry.stopping { channel.channel.close(promise: nil) }
        let myHello = Hello(consortium: config.consortium, institution: config.claimedInstitution ?? config.institution, heads: replication.mineSorted)
        var registered: Connection?
        do {
            try await channel.executeThenClose { input, output in
                // A failed handshake surfaces on the read side with its real
                // cause; the write of our hello just fails with "closed".
                try? await output.write(.hello(myHello))
                var messages = input.makeAsyncIterator()
                let hello = try await admit(try await messages.next(), verdict: verdict, expected: expected, output: output)
                channel.channel.pipeline.handler(type: HelloDeadline.self).whenSuccess { $0.passed() }
                let (outbox, sink) = AsyncStream.makeStream(of: [WireMessage].self)
                let c = Connection(institution: hello.institution, outbox: sink, output: output, id: registry.nextID(), channel: channel.channel)
                registered = c
                established(c, hello: hello, inbound: inbound)
                // The one writer: messages go out in the order they were sent.
                let writer = Task { await GossipPipeline.drain(outbox, to: output) }
                defer {
                    sink.finish()
                    writer.cancel()
                }
                while let message = try await messages.next() {
                    await handle(message, from: c)
                }
            }
        } catch let end as GossipPipeline.ConnectionEnd {
            report(end, remote: remote, verdict: verdict)
        } catch {
            report(.failed(error), remote: remote, verdict: verdict)
        }
        if let c = registered { closed(c) }
        return registered != nil
    }

    /// Checks the first message (a hello matching the verified certificate)
    /// and admits the member, or says goodbye and throws.
    private func admit(_ first: WireMessage?, verdict: PeerVerdict, expected: String?,
                       output: NIOAsyncChannelOutboundWriter<WireMessage>) async throws -> Hello {
        guard let first, case .success(let member) = verdict.result else { throw GossipPipeline.ConnectionEnd.closedBeforeHello }
        guard case .hello(let hello) = first else {
            throw GossipPipeline.ConnectionEnd.rejected(PeerRejection(.policy, "first message was not a hello"))
        }
        switch registry.admit(hello, member: member, expected: expected, consortium: config.consortium) {
        case .accept:
            return hello
        case .refuse(let problem, let code):
            if let code { try? await output.write(.goodbye(code: code, reason: code == 3 ? "link cut" : problem.reason)) }
            throw GossipPipeline.ConnectionEnd.rejected(problem)
        case .duplicate:
            try? await output.write(.goodbye(code: 2, reason: "already connected"))
            throw GossipPipeline.ConnectionEnd.duplicate
        }
    }

    private func established(_ c: Connection, hello: Hello, inbound: Bool) {
        registry.register(c)
        eventSink.yield(.connected(institution: c.institution, inbound: inbound))
        logger.info("connected", metadata: ["member": "\(c.institution)", "inbound": "\(inbound)"])
        perform(blobs.connected(c.institution))
        announceNeighbours()
        perform(replication.heard(hello.heads, from: c.institution, now: .now))
    }

    private func closed(_ c: Connection) {
        guard registry.remove(c) else { return }
        replication.disconnected(c.institution)
        announceNeighbours()
        perform(blobs.disconnected(c.institution, links: registry.links))
        eventSink.yield(.disconnected(institution: c.institution))
        logger.info("disconnected", metadata: ["member": "\(c.institution)"])
    }

    /// Tells every neighbour which members this node is connected to now.
    private func announceNeighbours() {
        let ids = registry.connections.keys.sorted()
        for c in registry.connections.values { c.outbox.yield([.neighbours(ids)]) }
    }

    private func report(_ end: GossipPipeline.ConnectionEnd, remote: String, verdict: PeerVerdict) {
        let code: String, reason: String
        if case .failure(let r) = verdict.result {
            (code, reason) = (r.code.rawValue, r.reason)
        } else {
            switch end {
            case .rejected(let r): (code, reason) = (r.code.rawValue, r.reason)
            case .duplicate: return
            case .closedBeforeHello: (code, reason) = ("no-hello", "connection closed before a verified hello")
            case .failed(let error): (code, reason) = GossipPipeline.classify(error)
            }
        }
        if code == "closed" { return }
        logger.warning("connection rejected", metadata: ["remote": "\(remote)", "reason": "\(code)", "detail": "\(reason)"])
        eventSink.yield(.rejected(remote: remote, code: code, reason: reason))
    }

    /// Queues `messages` for `member`'s connection, in order (dropped if it is gone).
    func send(_ messages: [WireMessage], to member: String) {
        registry.connections[member]?.outbox.yield(messages)
    }

    /// Routes one received message to the state machine it concerns.
    func handle(_ message: WireMessage, from c: Connection) async {
        received[message.type.rawValue, default: 0] += 1
        let id = c.institution
        switch message {
        case .announce(let a): perform(blobs.announced(a, from: id))
        case .pull(let hash): perform(blobs.pulled(hash, by: id))
        case .chunk(let hash, let offset, let bytes): await chunk(hash, offset: offset, bytes: bytes, from: id)
        case .notFound(let hash): perform(blobs.notFound(hash, from: id, links: registry.links))
        case .goodbye(let code, let reason):
            logger.info("goodbye", metadata: ["member": "\(id)", "code": "\(code)", "reason": "\(reason)"])
            // The other end cut the link (an injected fault): do not redial it.
            if code == 3 { registry.cutLinks(to: [id]) }
        case .hello: logger.warning("second hello ignored", metadata: ["member": "\(id)"])
        case .ping, .pong: break
        case .ledgerHeads(let heads): perform(replication.heard(heads, from: id, now: .now))
        case .ledgerPull(let author, let after, let fromStart):
            if config.ledger != nil { perform(replication.pulled(author: author, after: fromStart ? nil : after, by: id)) }
        case .ledgerEntries(let entries): receive(entries, from: id)
        case .neighbours(let ids):
            let (changed, lost) = registry.neighbours(ids, of: id)
            if changed { eventSink.yield(.neighboursChanged(of: id)) }
            if !lost.isEmpty { perform(replication.neighbourLostLinks(id) ); perform(blobs.lostLinks(lost, of: id)) }
        }
    }
}

