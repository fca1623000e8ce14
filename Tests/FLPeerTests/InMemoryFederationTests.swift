import FLGossip
import Testing

@testable import FLPeer

/// The round protocol end to end without sockets: five peers in one process
/// (`InMemoryFederation`), each with its round machine, chain replication and
/// blob exchange over a real ledger, on an injected clock. Each scenario
/// checks what a member's operator would see: whom each honest peer's round
/// aggregated, who was late, dropped or not waited for, that honest peers
/// agree, and how long the round took against its deadline and echo limit.
@Suite("in-memory federation")
struct InMemoryFederationTests {
    typealias Settings = InMemoryFederation.Settings
    typealias Behaviour = SimulatedPeer.Behaviour
    static let everyone = ["a", "b", "c", "d", "e"]

    /// Runs a round for `limit` of simulated time.
    static func round(_ settings: Settings, for limit: Duration = .seconds(20)) throws -> InMemoryFederation {
        let federation = try InMemoryFederation(settings)
        try federation.run(for: limit)
        return federation
    }

    /// The peers other than `except`, which must all have closed the round.
    static func honest(_ f: InMemoryFederation, except: Set<String> = []) throws -> [(SimulatedPeer, SimulatedPeer.Outcome)] {
        try f.settings.members.filter { !except.contains($0) }.map { id in
            let peer = try #require(f.peers[id])
            return (peer, try #require(peer.outcome, "\(id) did not close the round"))
        }
    }

    /// Every member on time over a full mesh: every peer aggregates all five,
    /// a few link latencies after the last commitment, with nothing to warn about.
    @Test func everyoneOnTimeClosesWithAllFiveWellBeforeTheDeadline() throws {
        let f = try Self.round(Settings())
        for (peer, outcome) in try Self.honest(f) {
            #expect(outcome.accepted == Self.everyone, "\(peer.id)")
            // Commitments are signed by 150 ms; then commit, reveal and echo take a link latency (≤ 25 ms) each, or a little more.
            #expect(outcome.after < .milliseconds(400), "\(peer.id) closed after \(outcome.after)")
            #expect(peer.notices.isEmpty, "\(peer.id): \(peer.notices)")
            #expect(peer.repairs.isEmpty && peer.conflicts.isEmpty, "\(peer.id): \(peer.repairs) \(peer.conflicts)")
            #expect(try peer.late().isEmpty)
        }
    }

    /// A member that commits after the deadline: the others reveal at the
    /// deadline without it (the quorum is in), never mix its update in, even
    /// when it arrives while they still collect (another member is slow),
    /// and record it as late; it catches up at once with everyone's updates.
    @Test(arguments: [false, true])
    func aLateMemberIsLeftOutAtTheDeadlineAndRecordedLate(whileCollecting: Bool) throws {
        var s = Settings()
        s.behaviours["e"] = Behaviour(commitsAfter: s.deadline + .seconds(2))
        // d publishes its bytes 3 s after the reveal, so collection lasts past e's update.
        if whileCollecting { s.behaviours["d"] = Behaviour(revealTakes: .seconds(3)) }
        let f = try Self.round(s)
        let closing = s.deadline + (whileCollecting ? .seconds(3) : .zero)
        for (peer, outcome) in try Self.honest(f, except: ["e"]) {
            #expect(outcome.accepted == ["a", "b", "c", "d"], "\(peer.id)")
            #expect(outcome.after >= closing && outcome.after < closing + .milliseconds(400), "\(peer.id) closed after \(outcome.after)")
            #expect(try peer.late() == ["e"], "\(peer.id)")
            #expect(peer.notices.isEmpty, "\(peer.id): \(peer.notices)")
        }
        let late = try #require(f.peers["e"]?.outcome)
        #expect(late.accepted == Self.everyone)
        #expect(late.after < max(s.deadline + .seconds(2), closing) + .milliseconds(300))
    }

    /// A member that never commits, with the quorum in: the others close at the deadline, without a warning.
    @Test func aMissingMemberCostsTheDeadlineWhenTheQuorumIsIn() throws {
        var s = Settings()
        s.behaviours["e"] = Behaviour(commitsAfter: nil)
        let f = try Self.round(s)
        for (peer, outcome) in try Self.honest(f, except: ["e"]) {
            #expect(outcome.accepted == ["a", "b", "c", "d"], "\(peer.id)")
            #expect(outcome.after >= s.deadline && outcome.after < s.deadline + .milliseconds(400), "\(peer.id) closed after \(outcome.after)")
            #expect(peer.notices.isEmpty, "\(peer.id): \(peer.notices)")
        }
    }

    /// Below the quorum the deadline passes with a warning at the deadline,
    /// and the round fails after ten deadlines naming who was heard, whether
    /// a commitment or a committed member's bytes are missing.
    @Test(arguments: [false, true])
    func belowTheQuorumTheRoundWarnsAtTheDeadlineAndFailsAfterTen(committed: Bool) throws {
        var s = Settings()
        s.quorum = 5
        s.behaviours["e"] = committed ? Behaviour(revealTakes: .seconds(1000)) : Behaviour(commitsAfter: nil)
        let f = try Self.round(s, for: s.deadline * 10 + .seconds(5))
        for id in ["a", "b", "c", "d"] {
            let peer = try #require(f.peers[id])
            let failure = try #require(peer.outcome?.failure, "\(id) should have given up")
            #expect(failure.contains(committed ? "heard 4 of 5 members" : "4 of 5 members committed") && failure.contains("a, b, c, d"), "\(failure)")
            #expect(peer.outcome?.after ?? .zero >= s.deadline * 10)
            #expect(peer.notices.map(\.notice) == [.deadlineWithoutQuorum(heard: 4)], "\(id): \(peer.notices)")
            // The warning comes when the deadline passes, not when the round gives up.
            let warned = peer.notices.first?.after ?? .zero
            #expect(warned >= s.deadline && warned < s.deadline + .seconds(4), "\(id) warned after \(warned)")
        }
    }

    /// A member that publishes its bytes 3 s late (within the deadline): it is
    /// included everywhere, and the round takes those 3 s longer.
    @Test func aSlowMemberIsIncludedAndTheRoundTakesLonger() throws {
        var s = Settings()
        s.behaviours["e"] = Behaviour(revealTakes: .seconds(3))
        let f = try Self.round(s)
        for (peer, outcome) in try Self.honest(f) {
            #expect(outcome.accepted == Self.everyone, "\(peer.id)")
            #expect(outcome.after >= .seconds(3) && outcome.after < .seconds(3) + .milliseconds(400), "\(peer.id) closed after \(outcome.after)")
            #expect(peer.notices.isEmpty, "\(peer.id): \(peer.notices)")
        }
    }

    /// A member that shows two of its neighbours a different entry for its
    /// update's position (and the others the one it stored), consistently:
    /// the echoes of the round's entries expose the fork, every honest peer
    /// holds the proof and drops the member within the round, before the
    /// deadline and without waiting out the echo limit, and they agree on
    /// whom they aggregate. With anti-entropy off only the echo can find it.
    @Test(arguments: [false, true])
    func anEquivocatingMemberIsDroppedByEveryHonestPeerWithinTheRound(antiEntropy: Bool) throws {
        var s = Settings()
        // It signs last, so no honest peer's push of its own entry carries e's on to the others.
        s.behaviours["e"] = Behaviour(commitsAfter: .milliseconds(300), liesTo: ["a", "b"])
        if !antiEntropy { s.headsInterval = nil }
        let f = try Self.round(s)
        for (peer, outcome) in try Self.honest(f, except: ["e"]) {
            #expect(outcome.accepted == ["a", "b", "c", "d"], "\(peer.id)")
            #expect(peer.machine?.flagged == ["e"], "\(peer.id)")
            #expect(try peer.store.flaggedAuthors(caCertificate: f.ca.certificate) == ["e"], "\(peer.id)")
            #expect(outcome.after < .seconds(1), "\(peer.id) closed after \(outcome.after)")
            #expect(!peer.notices.contains { if case .confirmLimitReached = $0.notice { true } else { false } }, "\(peer.id): \(peer.notices)")
            #expect(try peer.late().isEmpty, "a proven equivocator is dropped, not late")
        }
        // Those it lied to saw the conflict; each honest peer signed its proof (or merged another's).
        #expect(["a", "b"].allSatisfy { !(f.peers[$0]?.conflicts.isEmpty ?? true) })
    }

    /// A member whose links drop mid-round (2 s in), after it committed and
    /// before its bytes went out: the others stop waiting for it as soon as
    /// they see it is unreachable, long before the deadline, and say so.
    @Test func aDepartingMemberIsNotWaitedForOnceUnreachable() throws {
        var s = Settings()
        s.behaviours["d"] = Behaviour(revealTakes: .seconds(5), departsAfter: .seconds(2))
        let f = try Self.round(s)
        for (peer, outcome) in try Self.honest(f, except: ["d"]) {
            #expect(outcome.accepted == ["a", "b", "c", "e"], "\(peer.id)")
            #expect(outcome.after >= .seconds(2) && outcome.after < .seconds(2) + .milliseconds(400), "\(peer.id) closed after \(outcome.after)")
            #expect(peer.notices.map(\.notice) == [.closingWithoutUnreachable(missing: ["d"])], "\(peer.id): \(peer.notices)")
            #expect(!peer.connected.contains("d"))
        }
    }

    /// A member that leaves before it commits: the others reveal without it
    /// once it is unreachable; without that shortcut (round 0's rule) the same
    /// departure costs the deadline.
    @Test(arguments: [true, false])
    func aMemberLeavingBeforeItCommitsCostsTheDeadlineOnlyWithoutSkippingUnreachable(skipUnreachable: Bool) throws {
        var s = Settings()
        s.skipUnreachable = skipUnreachable
        s.behaviours["d"] = Behaviour(commitsAfter: .seconds(5), departsAfter: .seconds(2))
        let f = try Self.round(s)
        let waited = skipUnreachable ? Duration.seconds(2) : s.deadline
        for (peer, outcome) in try Self.honest(f, except: ["d"]) {
            #expect(outcome.accepted == ["a", "b", "c", "e"], "\(peer.id)")
            #expect(outcome.after >= waited && outcome.after < waited + .milliseconds(400), "\(peer.id) closed after \(outcome.after)")
            #expect(peer.notices.isEmpty, "\(peer.id): \(peer.notices)")
        }
    }

    /// A ring (the random 2-regular graph on five members, no link beyond
    /// it): entries and blobs reach non-neighbours through relays. When every
    /// member is an input (what `flpeer demo --topology regular:2` runs) each
    /// peer closes with all five as promptly as in a full mesh.
    @Test func aRingRoundWithEveryMemberAsInputClosesPromptly() throws {
        let f = try Self.round(Self.ring())
        for (peer, outcome) in try Self.honest(f) {
            #expect(peer.connected == f.neighbours(of: peer.id), "no direct link beyond the ring")
            #expect(outcome.accepted == Self.everyone, "\(peer.id)")
            #expect(outcome.after < .milliseconds(500), "\(peer.id) closed after \(outcome.after)")
            #expect(peer.notices.isEmpty, "\(peer.id): \(peer.notices)")
            #expect(peer.repairs.isEmpty, "\(peer.id): \(peer.repairs)")
        }
    }

    /// The same ring, each peer aggregating only its neighbours' updates and
    /// its own (the O(degree) round kind): each closes with exactly those
    /// three, before the deadline and the echo limit, while every member's
    /// entries still reach every peer through relays.
    @Test func aRingRoundOnTheNeighboursInputsClosesWithThoseThree() throws {
        var s = Self.ring()
        s.neighboursOnly = true
        let f = try Self.round(s)
        var slow: [String] = []
        for (peer, outcome) in try Self.honest(f) {
            let inputs = f.neighbours(of: peer.id).union([peer.id])
            #expect(inputs.count == 3)
            #expect(outcome.accepted == inputs.sorted(), "\(peer.id)")
            // The echo limit bounds the wait, far below the deadline.
            #expect(outcome.after < s.confirmLimit + .milliseconds(500), "\(peer.id) closed after \(outcome.after)")
            let authors = Set(try peer.store.entries(kind: .update, round: InMemoryFederation.round).map(\.header.author))
            #expect(authors == Set(Self.everyone), "\(peer.id) holds the updates of \(authors.sorted())")
            if outcome.after >= .milliseconds(500) || !peer.notices.isEmpty { slow.append("\(peer.id) after \(outcome.after) \(peer.notices.map(\.notice))") }
        }
        // A peer waits until each neighbour shows it holds the other
        // neighbour's update entry; a neighbour that is not linked to that
        // author (and does not aggregate it) got the entry by relay, and
        // tells the relaying peer it holds it as soon as it merged it (not
        // at its next anti-entropy tick).
        #expect(slow.isEmpty, "closed late: \(slow)")
    }

    /// Five members in a ring drawn with a fixed seed.
    static func ring() -> Settings {
        var s = Settings()
        let ring = Topology.randomRegular(n: 5, degree: 2, seed: 7) ?? []
        s.links = ring.enumerated().flatMap { i, others in others.filter { $0 > i }.map { (everyone[i], everyone[$0]) } }
        return s
    }

    /// One seed, one run: latencies, training times and so every outcome repeat.
    @Test func aSeedRepeatsTheRun() throws {
        var s = Settings()
        s.seed = 42
        s.behaviours["c"] = Behaviour(revealTakes: .milliseconds(700))
        let first = try Self.round(s), second = try Self.round(s)
        for id in Self.everyone {
            #expect(first.peers[id]?.outcome == second.peers[id]?.outcome, "\(id)")
        }
    }
}
