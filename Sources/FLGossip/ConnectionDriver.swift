import FLIdentity
import FLWire
import Foundation
import Logging
import NIOCore
import NIOPosix
import NIOSSL

/// A node's connections: dialling with backoff, the hello exchange and
/// admission, and each connection's message loop, which hands
/// each message to the node (`GossipNode.handle` routes it to its state
/// machine). Each function runs isolated to the node (its `isolated`
/// parameter), on the node's event loop, so it updates the node's
/// `ConnectionRegistry` directly and reading a message costs no hop.
enum ConnectionDriver {
    static func dialLoop(_ target: PeerAddress, node: isolated GossipNode) async {
        var attempt = 0
        while !Task.isCancelled {
            if node.registry.connections[target.institution] == nil && !node.registry.cut.contains(target.institution) {
                do {
                    let accepted = try await GossipPipeline.connect(target, group: node.group, config: node.config, context: node.clientContext, traffic: node.traffic)
                    if await serve(accepted, inbound: false, expected: target.institution, node: node) { attempt = 0 }
                } catch {
                    node.logger.debug("dial failed", metadata: ["to": "\(target.institution)", "error": "\(error)"])
                }
            }
            let delay = node.registry.backoff(attempt, base: node.config.backoffBase, cap: node.config.backoffCap)
            attempt += 1
            try? await Task.sleep(for: delay)
        }
    }

    /// Runs one connection: hello exchange, admission, then messages until it
    /// closes. Returns whether the peer's hello was admitted.
    @discardableResult
    static func serve(_ accepted: GossipNode.Accepted, inbound: Bool, expected: String?, node: isolated GossipNode) async -> Bool {
        let (channel, verdict, remote) = accepted
        node.registry.opened(channel.channel)
        defer { node.registry.closed(channel.channel) }
        if node.registry.stopping { channel.channel.close(promise: nil) }
        let myHello = Hello(consortium: node.config.consortium, institution: node.config.claimedInstitution ?? node.config.institution, heads: node.replication.mineSorted)
        var registered: GossipNode.Connection?
        do {
            try await channel.executeThenClose { input, output in
                // A failed handshake surfaces on the read side with its real
                // cause; the write of our hello just fails with "closed".
                try? await output.write(.hello(myHello))
                var messages = input.makeAsyncIterator()
                let hello = try await admit(try await messages.next(), verdict: verdict, expected: expected, output: output, node: node)
                channel.channel.pipeline.handler(type: HelloDeadline.self).whenSuccess { $0.passed() }
                let expiry = closeAtExpiry(channel.channel, verdict: verdict, node: node)
                defer { expiry?.cancel() }
                let c = GossipNode.Connection(institution: hello.institution, output: output, id: node.registry.nextID(), channel: channel.channel)
                registered = c
                established(c, hello: hello, inbound: inbound, node: node)
                while let message = try await messages.next() {
                    await node.handle(message, from: c)
                }
            }
        } catch let end as GossipPipeline.ConnectionEnd {
            report(end, remote: remote, verdict: verdict, node: node)
        } catch {
            report(.failed(error), remote: remote, verdict: verdict, node: node)
        }
        if let c = registered { closed(c, node: node) }
        return registered != nil
    }

    /// Closes an admitted connection when the first of the two certificates
    /// (the remote's leaf or this member's) expires, with a logged reason;
    /// the handshake checked them only at its own time.
    private static func closeAtExpiry(_ channel: Channel, verdict: PeerVerdict, node: isolated GossipNode) -> Scheduled<Void>? {
        guard case .success(let member) = verdict.result else { return nil }
        let ours = node.config.tls.certificate.notValidAfter, theirs = member.certificate.notValidAfter
        let at = min(ours, theirs)
        let reason = "\(theirs <= ours ? "\(member.institution)'s" : "this member's") certificate expired at \(at)"
        let delay = max(0, at.timeIntervalSince(node.config.clock()))
        let logger = node.logger, institution = member.institution
        return channel.eventLoop.scheduleTask(in: .milliseconds(Int64(min(delay, 1e9) * 1000))) {
            logger.warning("closing a connection at certificate expiry", metadata: ["member": "\(institution)", "reason": "\(reason)"])
            channel.close(promise: nil)
        }
    }

    /// Checks the first message (a hello matching the verified certificate)
    /// and admits the member, or says goodbye and throws.
    private static func admit(_ first: WireMessage?, verdict: PeerVerdict, expected: String?,
                              output: NIOAsyncChannelOutboundWriter<WireMessage>, node: isolated GossipNode) async throws -> Hello {
        guard let first, case .success(let member) = verdict.result else { throw GossipPipeline.ConnectionEnd.closedBeforeHello }
        guard case .hello(let hello) = first else {
            throw GossipPipeline.ConnectionEnd.rejected(PeerRejection(.policy, "first message was not a hello"))
        }
        switch node.registry.admit(hello, member: member, expected: expected, consortium: node.config.consortium) {
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

    private static func established(_ c: GossipNode.Connection, hello: Hello, inbound: Bool, node: isolated GossipNode) {
        node.registry.register(c)
        node.linksChanged()
        node.eventSink.yield(.connected(institution: c.institution, inbound: inbound))
        node.logger.info("connected", metadata: ["member": "\(c.institution)", "inbound": "\(inbound)"])
        node.perform(node.blobs.connected(c.institution))
        announceNeighbours(node: node)
        node.perform(node.replication.heard(hello.heads, from: c.institution, now: .now))
    }

    private static func closed(_ c: GossipNode.Connection, node: isolated GossipNode) {
        guard node.registry.remove(c) else { return }
        node.linksChanged()
        node.replication.disconnected(c.institution)
        announceNeighbours(node: node)
        node.perform(node.blobs.disconnected(c.institution, links: node.registry.links))
        node.eventSink.yield(.disconnected(institution: c.institution))
        node.logger.info("disconnected", metadata: ["member": "\(c.institution)"])
    }

    /// Tells every neighbour which members this node is connected to now.
    private static func announceNeighbours(node: isolated GossipNode) {
        let ids = node.registry.connections.keys.sorted()
        for c in node.registry.connections.values { c.send([.neighbours(ids)]) }
    }

    private static func report(_ end: GossipPipeline.ConnectionEnd, remote: String, verdict: PeerVerdict, node: isolated GossipNode) {
        guard let (code, reason) = GossipPipeline.describe(end, verdict: verdict) else { return }
        node.logger.warning("connection rejected", metadata: ["remote": "\(remote)", "reason": "\(code)", "detail": "\(reason)"])
        node.eventSink.yield(.rejected(remote: remote, code: code, reason: reason))
    }

}
