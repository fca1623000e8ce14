import FLLedger
import Foundation
import Logging

extension RoundEngine.Session {
    /// The furthest position of this peer's own chain that another member
    /// holds: reported in a hello or heads message, or named by a checkpoint
    /// this peer holds. Nil when nobody showed one.
    func ownChainClaim() async throws -> (seq: UInt64, by: String)? {
        var best = await node.furthestReported(of: config.id).map { (seq: $0.seq, by: $0.member) }
        for entry in try store.entries(kind: .checkpoint) where entry.header.author != config.id {
            guard let c = EntryBody.decode(EntryBody.Checkpoint.self, from: entry.body),
                  let mine = c.heads.first(where: { $0.author == self.config.id }) else { continue }
            if best.map({ mine.seq > $0.seq }) ?? true { best = (mine.seq, "\(entry.header.author)'s checkpoint") }
        }
        return best
    }

    /// Before this process signs anything (the store refuses until then):
    /// waits for the neighbours and their heads, and when they hold this
    /// peer's chain beyond what its file holds (a file restored from an old
    /// copy, or whose write-ahead log was lost), recovers the missing entries
    /// from them (each verified as every replicated entry is) or stops with
    /// one sentence. Only then does a new chain begin with its genesis.
    func secureOwnChain(certificatePEM: String) async throws {
        let head = try ownHead()
        let had = head.map { "ends at #\($0)" } ?? "is missing"
        await awaitNeighbours(limit: .seconds(min(plan.roundDeadlineSeconds, 10)))
        if head == nil, config.neighbourCount > 0, await node.connectedPeers().isEmpty {
            // A file without this peer's chain is new, or lost its write-ahead log: only another member can tell.
            engine.progress("waiting for another member before signing this peer's genesis: only a replica can show whether \(store.path) lost an earlier chain")
            guard await awaitConnected(1, limit: .seconds(plan.roundDeadlineSeconds)) else {
                try Task.checkCancellation()
                throw RoundError("no other member was reachable within \(deadlineText) s, and \(store.path) holds no chain of this peer; "
                    + "it signs its genesis only once a member can show whether it signed one before (start it again when another member is up)")
            }
        }
        var reported = false
        func reportMerged() throws {
            // Pulled and merged while the neighbours connected (or while the checks here ran).
            guard !reported, let now = try ownHead(), head.map({ now > $0 }) ?? true else { return }
            reported = true
            engine.progress("this peer's own chain in \(store.path) \(had); recovered it from the replicas up to #\(now)")
            logger.warning("own chain recovered from replicas", metadata: ["own-head": "\(head.map(String.init) ?? "none")", "recovered": "\(now)"])
        }
        try reportMerged()
        if let claim = try await ownChainClaim(), try ownHead().map({ claim.seq > $0 }) ?? true {
            engine.progress("this peer's own chain in \(store.path) \(had), but \(claim.by) holds it to #\(claim.seq): recovering it from the replicas")
            logger.warning("own chain behind a replica", metadata: ["own-head": "\(head.map(String.init) ?? "none")", "replica": "\(claim.seq)", "by": "\(claim.by)"])
            try await awaitOwnHead(claim.seq, limit: .seconds(plan.roundDeadlineSeconds))
            guard let recovered = try ownHead(), recovered >= claim.seq else {
                throw RoundError("this peer's own chain in \(store.path) \(had), but \(claim.by) holds it to #\(claim.seq), and the missing entries did not arrive within \(deadlineText) s; "
                    + "this peer stops rather than sign positions it may already have signed (restore ledger.sqlite together with its -wal file, or start again once the other members are reachable)")
            }
            engine.progress("recovered this peer's own chain from the replicas up to #\(recovered)")
            reported = true
        }
        // Replicated entries can land after the checks above, before the
        // decisions below: whatever this file holds now is reported.
        try reportMerged()
        // A chain begun here or recovered from replicas: this file keeps it whole.
        if try ownHead() != nil { try store.claimOwner(config.id) }
        if let last = try store.entries(author: config.id).last(where: { $0.header.kind == .aggregate }), try store.localState("model") == nil {
            throw lostModel(round: last.header.round)
        }
        store.refuseAppends(by: config.id, through: -1, replace: true)
        try await guardOwnChain()
        if try ownHead() == nil {
            try store.append(author: config.id, kind: .genesis, round: 0, body: EntryBody.genesis(certificatePEM: certificatePEM), key: key)
        }
    }

    /// Refuses this peer's next appends at any position a neighbour holds, and
    /// every append once this member's certificate expired (checked before every own append).
    func guardOwnChain() async throws {
        if let expired = certificateExpired() { throw expired }
        guard let claim = await node.furthestReported(of: config.id) else { return }
        store.refuseAppends(by: config.id, through: Int64(claim.seq))
        let head = try ownHead()
        if let head, head >= claim.seq { return }
        throw RoundError("\(claim.member) holds this peer's chain to #\(claim.seq), beyond the #\(head.map(String.init) ?? "none") in \(store.path); "
            + "this peer stops rather than sign positions it may already have signed (was ledger.sqlite replaced or its -wal file deleted while running?)")
    }

    /// The sentence this peer stops with once its certificate expired (nil while it is valid).
    func certificateExpired(now: Date = Date()) -> RoundError? {
        guard now >= certificateExpiry else { return nil }
        return RoundError("this member's certificate expired at \(PeerConfig.utc(certificateExpiry)); the other members refuse entries signed after it, so this peer stops "
            + "(have the consortium CA issue a new one with 'flpeer ca sign' and restart)")
    }

    /// This peer's chain records its aggregate of `round` but its file lost the model saved with it.
    func lostModel(round: UInt64) -> RoundError {
        RoundError("\(store.path) records this peer's aggregate of round \(round), but the model saved with it is lost (was ledger.sqlite-wal deleted?); "
            + "this peer stops rather than sign that round's positions again: restore ledger.sqlite together with its -wal file, or leave the consortium")
    }

    /// The plan's round deadline as an operator wrote it ("30", "2.5").
    var deadlineText: String {
        let d = plan.roundDeadlineSeconds
        return d == d.rounded() && abs(d) < 1e9 ? String(Int(d)) : String(d)
    }

    func ownHead() throws -> UInt64? { try store.heads()[config.id]?.seq }

    /// Waits, at most `limit`, until this peer's own chain reaches `seq` (merges of entries pulled from neighbours).
    func awaitOwnHead(_ seq: UInt64, limit: Duration) async throws {
        let clock = ContinuousClock()
        let deadline = clock.now + limit
        defer { changes.cancelAlarm() }
        while clock.now < deadline {
            try Task.checkCancellation()
            let seen = changes.count
            if let head = try ownHead(), head >= seq { return }
            changes.alarm(at: deadline)
            await changes.wait(after: seen)
        }
    }
}
