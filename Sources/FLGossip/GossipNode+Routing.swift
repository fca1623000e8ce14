import FLWire
import Foundation
import Logging
import NIOCore

/// Routing: each received message goes to the state machine it concerns.
extension GossipNode {
    /// Queues `messages` for `member`'s connection, in order (dropped if it is gone).
    func send(_ messages: [WireMessage], to member: String) {
        registry.connections[member]?.send(messages)
    }

    /// Routes one received message to the state machine it concerns.
    func handle(_ message: WireMessage, from c: Connection) async {
        // Closed for exceeding a limit: what it had already sent is not acted on.
        guard c.channel.isActive else { return }
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
            if changed { linksChanged() }
            if changed { eventSink.yield(.neighboursChanged(of: id)) }
            if !lost.isEmpty { perform(replication.neighbourLostLinks(id) ); perform(blobs.lostLinks(lost, of: id)) }
        }
    }
}

