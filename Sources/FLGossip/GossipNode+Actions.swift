import FLWire
import Foundation
import Logging
import NIOCore

/// Carrying out what the state machines decided: sends on the loop; ledger
/// reads and merges, and large blobs' file I/O, on the thread pool.
extension GossipNode {
    func perform(_ actions: [ChainReplication.Action]) {
        for action in actions {
            switch action {
            case .send(let to, let messages):
                send(messages, to: to)
            case .serve(let author, let after, let to):
                Task { await serveFromLedger(author: author, after: after, to: to) }
            case .lookUp(let author, let seq, let theirs, let from):
                Task { await lookUp(author: author, seq: seq, theirs: theirs, from: from) }
            case .positionsReported(let member):
                eventSink.yield(.positionsReported(by: member))
            case .repair(let member, let chains):
                logger.warning("anti-entropy repair: a neighbour still lacks entries this node held a tick ago; sending heads", metadata: [
                    "member": "\(member)", "chains": "\(chains.joined(separator: ","))"])
            case .conflict(let author, let seq, let from):
                logger.warning("a neighbour holds a different entry at this chain position; pulling it", metadata: [
                    "author": "\(author)", "seq": "\(seq)", "from": "\(from)"])
            }
        }
    }

    func perform(_ actions: [BlobExchange.Action]) {
        for action in actions {
            switch action {
            case .send(let to, let messages):
                send(messages, to: to)
            case .stream(let hash, let size, let to):
                guard let c = registry.connections[to] else { continue }
                Task { await stream(hash, size: size, to: c) }
            case .pullIfStalled(let hash, let source):
                Task {
                    try? await Task.sleep(for: .seconds(1))
                    perform(blobs.stalled(hash, from: source, links: registry.links))
                }
            case .refused(let a, let from, let reason):
                logger.warning("blob announcement refused", metadata: [
                    "from": "\(from)", "author": "\(a.author)", "round": "\(a.round)", "size": "\(a.size)", "reason": "\(reason)"])
            case .close(let member, let reason):
                guard let c = registry.connections[member] else { continue }
                logger.warning("closing a member's connection", metadata: ["member": "\(member)", "reason": "\(reason)"])
                c.send([.goodbye(code: 4, reason: reason)])
                c.channel.close(promise: nil)
            case .event(let event):
                if case .stale(let a, let from) = event {
                    logger.debug("announcement for a closed round dropped", metadata: ["author": "\(a.author)", "round": "\(a.round)", "from": "\(from)"])
                }
                eventSink.yield(event)
            }
        }
    }

    // MARK: - Ledger work

    /// Entries a neighbour sent: it holds them; they wait for the one merge in progress.
    func receive(_ entries: [WireEntry], from member: String) {
        guard config.ledger != nil, !entries.isEmpty else { return }
        let positions = ChainReplication.positions(entries)
        perform(replication.record(positions, from: member))
        replication.queue(positions)
        merges.append((entries, member))
        guard !merging else { return }
        merging = true
        Task { await drainMerges() }
    }

    /// Merges what arrived, oldest first; batches that queued up behind a
    /// merge go into the next one together (one transaction).
    private func drainMerges() async {
        while !merges.isEmpty {
            let batch = merges
            merges = []
            let me = config.institution, ownBefore = replication.mine[me]?.seq
            do {
                let all = batch.flatMap(\.entries)
                guard let (outcome, heads) = try await io.merge(all) else { break }
                replication.setHeads(heads)
                replication.hold(outcome.held)
                for (entries, from) in batch {
                    eventSink.yield(.ledgerMerged(from: from, stored: outcome.stored))
                    perform(replication.merged(entries, stored: outcome.stored, from: from, links: registry.links, now: .now))
                }
                // The merge signed evidence into this node's own chain: push it now.
                if replication.mine[me]?.seq != ownBefore { await ledgerChanged() }
            } catch {
                for (entries, _) in batch { replication.mergeFailed(entries) }
                logger.warning("ledger merge failed", metadata: ["from": "\(batch.map(\.from).joined(separator: ","))", "error": "\(error)"])
            }
        }
        merging = false
    }

    /// Answers a pull the kept entries do not cover, from the ledger.
    private func serveFromLedger(author: String, after: UInt64?, to member: String) async {
        do {
            let batch = try await io.entriesToServe(author: author, after: after)
            if !batch.isEmpty { send([.ledgerEntries(batch)], to: member) }
        } catch {
            logger.error("cannot read ledger entries", metadata: ["author": "\(author)", "error": "\(error)"])
        }
    }

    /// Compares a neighbour's entry at a position below this node's head with the one held.
    private func lookUp(author: String, seq: UInt64, theirs: ContentHash, from member: String) async {
        guard let ours = try? await io.entryHash(author: author, seq: seq), ours != theirs else { return }
        perform(replication.conflictFound(ChainHead(author: author, seq: seq, hash: theirs), from: member))
    }

    // MARK: - Blob work

    /// A chunk of a blob being received: appended (a large blob's on the
    /// pool), and when the blob is whole and its hash checks, announced on.
    func chunk(_ hash: ContentHash, offset: UInt64, bytes: ByteBuffer, from member: String) async {
        guard let incoming = blobs.receiving(hash, from: member) else {
            eventSink.yield(.duplicate(hash: hash, from: member))
            return
        }
        let complete: Bool
        do {
            complete = try await io.append(incoming, offset: offset, bytes: bytes)
        } catch {
            logger.warning("bad blob data", metadata: ["hash": "\(hash)", "from": "\(member)", "error": "\(error)"])
            perform(blobs.retry(hash, links: registry.links))
            return
        }
        if complete { perform(blobs.completed(hash, from: member, links: registry.links)) }
    }

    /// Sends a stored blob's chunks to `c` (back-pressured, `NodeIO.stream`).
    func stream(_ hash: ContentHash, size: UInt64, to c: Connection) async {
        do {
            try await io.stream(hash, size: size, to: c.output)
        } catch {
            logger.debug("blob transfer stopped", metadata: ["hash": "\(hash)", "to": "\(c.institution)", "error": "\(error)"])
        }
    }
}
