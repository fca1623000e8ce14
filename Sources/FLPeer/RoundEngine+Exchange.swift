import Crypto
import FLGossip
import FLLedger
import FLWire
import Logging

extension RoundEngine.Session {
    /// One round's exchange, driven by `RoundStateMachine`: waits for the
    /// members' signed update entries (commitments), calls `reveal` (which
    /// publishes this peer's bytes), collects the updates whose bytes
    /// arrived and pass `check` (it sees the bytes, the signed
    /// `update_hash` and the author), and waits for neighbours' echoes of them. Wakes only
    /// on gossip events and at the machine's deadlines.
    func exchange<T>(round: UInt64, commitFirst: Bool, reveal: () async throws -> Void,
                     check: ([UInt8], String, String) -> T?) async throws -> [(RoundEngine.Accepted, T)] {
        let clock = ContinuousClock()
        // Round 0 fixes the standardisation for the whole run: give late starters at least 10 s.
        let wait = round == 0 ? max(plan.roundDeadlineSeconds, 10) : plan.roundDeadlineSeconds
        var machine = RoundStateMachine<ContinuousClock.Instant>(plan: .init(
            round: round, inputs: Set(members), me: config.id, quorum: plan.quorum, commitFirst: commitFirst,
            skipUnreachable: round > 0, deadline: .milliseconds(Int64((wait * 1000).rounded())), confirmLimit: RoundEngine.echoWait), now: clock.now)
        var values: [String: (RoundEngine.Accepted, T)] = [:]
        var positions: [String: ChainHead] = [:]
        var entries: [String: Commitment] = [:]
        var echoed = false
        var read: Int64 = 0  // the last ledger row of the round's update entries read
        // A certificate that expires mid-round ends the wait: the others close
        // this peer's links at that moment and refuse what it signs after it.
        let expiry = clock.now + .milliseconds(Int64((max(0, min(certificateExpiry.timeIntervalSinceNow, 86_400 * 365)) * 1000).rounded(.up)) + 1)
        defer { changes.cancelAlarm() }
        while true {
            try Task.checkCancellation()
            if let expired = certificateExpired() { throw expired }
            let seen = changes.count  // before reading, so nothing that lands meanwhile is missed
            var action = machine.tick(now: clock.now)
            let flagged = Set(try store.flaggedAuthors(caCertificate: ca))
            if flagged != machine.flagged { action = machine.flagged(flagged, now: clock.now) }
            for author in try readCommitments(round: round, into: &entries, read: &read) {
                action = machine.committed(author, now: clock.now)
            }
            for (author, e) in entries where values[author] == nil && machine.collects(author) && !machine.refused.contains(author) && node.store.has(e.blob) {
                let bytes = node.store.bytes(e.blob) ?? []
                guard hex(SHA256.hash(data: bytes)) == hex(e.blob.bytes), let value = check(bytes, e.updateHash, author) else {
                    logger.warning("update refused", metadata: ["author": "\(author)", "round": "\(round)", "reason": "bytes do not match the signed update or the model"])
                    action = machine.checked(author, ok: false, now: clock.now)
                    continue
                }
                values[author] = (RoundEngine.Accepted(author: author, updateHash: e.updateHash, bytes: bytes), value)
                if author != config.id, let h = ContentHash(e.entry.hash) { positions[author] = ChainHead(author: author, seq: e.entry.header.seq, hash: h) }
                action = machine.checked(author, ok: true, now: clock.now)
            }
            if machine.wantsReachability { action = machine.reachable(node.reachableMembers(), now: clock.now) }
            if machine.phase == .confirming {
                if !echoed {
                    echoed = true
                    await node.echo(entries.values.compactMap { e in ContentHash(e.entry.hash).map { ChainHead(author: e.entry.header.author, seq: e.entry.header.seq, hash: $0) } })
                }
                let watched = machine.included.compactMap { positions[$0] }
                action = machine.unconfirmed(await node.unconfirmed(watched), now: clock.now)
            }
            log(machine.takeNotices(), round: round)
            switch action {
            case .wait(let until):
                changes.alarm(at: min(until, expiry))
                await changes.wait(after: seen)
            case .reveal(let committed):
                logger.info("revealing update", metadata: ["round": "\(round)", "committed": "\(committed.count)", "unix-ms": "\(Self.unixMillis())"])
                try await reveal()
                _ = machine.revealed(now: clock.now)
            case .confirm:
                continue
            case .close(let accepted):
                return accepted.compactMap { values[$0] }
            case .fail(let reason):
                throw RoundError(reason)
            }
        }
    }

    /// One member's signed update entry for the round, with what it commits to.
    typealias Commitment = (entry: LedgerEntry, updateHash: String, blob: ContentHash)

    /// Adds the round's update entries stored since the last read (`read`:
    /// the last row read) to `entries`; returns their authors.
    private func readCommitments(round: UInt64, into entries: inout [String: Commitment], read: inout Int64) throws -> [String] {
        let (stored, last) = try store.entries(kind: .update, round: round, storedAfter: read)
        read = last
        var added: [String] = []
        for entry in stored where entries[entry.header.author] == nil && members.contains(entry.header.author) {
            guard let body = bodies.update(entry),
                  let blob = body.blob.flatMap(unhex).flatMap(ContentHash.init) else { continue }
            entries[entry.header.author] = (entry, body.updateHash, blob)
            added.append(entry.header.author)
        }
        return added
    }

    private func log(_ notices: [RoundStateMachine<ContinuousClock.Instant>.Notice], round: UInt64) {
        for n in notices {
            switch n {
            case .deadlineWithoutQuorum(let heard):
                logger.warning("round deadline passed without the quorum", metadata: ["round": "\(round)", "heard": "\(heard)", "quorum": "\(plan.quorum)"])
            case .closingWithoutUnreachable(let missing):
                logger.warning("closing the round without unreachable members", metadata: ["round": "\(round)", "missing": "\(missing.joined(separator: ","))"])
            case .confirmLimitReached(let unconfirmed):
                logger.warning("waited out the echo limit: closing the round before every neighbour confirmed", metadata: [
                    "round": "\(round)", "unconfirmed": "\(unconfirmed.joined(separator: ","))", "limit": "\(RoundEngine.echoWait)"])
            case .droppedForking(let author):
                logger.warning("update dropped: its author signed two different entries for one ledger position", metadata: ["author": "\(author)", "round": "\(round)"])
            }
        }
    }
}
