/// The waits of one round at one peer, as a value type: commit → reveal →
/// collect → confirm echoes → closed. Observations go in (a member's signed
/// update entry is here, its bytes checked out or not, fork evidence, who is
/// reachable, which accepted updates neighbours have not yet echoed, the
/// time), and each returns the action the engine carries out next. No
/// sockets, no database, no clock of its own: tests drive it directly
/// (docs/round-protocol.md describes the rules).
///
/// The inputs a round waits for are a parameter (`Plan.inputs`), not "every
/// member": a round kind in which each peer aggregates only its neighbours'
/// updates gives its neighbours and itself.
struct RoundStateMachine<Instant: InstantProtocol> where Instant.Duration == Duration {
    struct Plan {
        var round: UInt64
        /// The members whose updates this round waits for (this peer included).
        var inputs: Set<String>
        /// This peer.
        var me: String
        var quorum: Int
        /// Publish the signed hash first and the bytes only once the inputs committed.
        var commitFirst: Bool
        /// Close without members no one here can reach once the quorum is in.
        var skipUnreachable: Bool
        /// `round_deadline_seconds`.
        var deadline: Duration
        /// How long to wait for neighbours' echoes of the accepted updates.
        var confirmLimit: Duration
        /// Give up (an error naming who was heard) after this many deadlines.
        var giveUpFactor: Int = 10
    }

    enum Phase: Equatable, Sendable {
        case committing, revealing, collecting, confirming, closed, failed
    }

    /// What the engine does next.
    enum Action: Equatable {
        /// Nothing yet: wake on the next observation, or at `until`.
        case wait(until: Instant)
        /// Publish this peer's update bytes, then call `revealed(now:)`; only
        /// `committed` members' updates will be collected. Repeated until then.
        case reveal(committed: Set<String>)
        /// Report which of these accepted updates some neighbour has not echoed yet.
        case confirm(authors: Set<String>)
        /// The round's waits are over: aggregate `accepted`.
        case close(accepted: [String])
        case fail(String)
    }

    /// Something worth a log line, produced while deciding (drained by the engine).
    enum Notice: Equatable {
        case deadlineWithoutQuorum(heard: Int)
        case closingWithoutUnreachable(missing: [String])
        case confirmLimitReached(unconfirmed: [String])
        case droppedForking(author: String)
    }

    let plan: Plan
    private(set) var phase: Phase
    private(set) var committed: Set<String> = []
    private(set) var accepted: Set<String> = []
    private(set) var refused: Set<String> = []
    private(set) var flagged: Set<String> = []
    private(set) var notices: [Notice] = []
    /// Who can be reached now (nil: not known yet).
    private var reachable: Set<String>?
    private var unconfirmed: Set<String>?
    /// Members whose commitments the reveal named (nil before it).
    private var revealedTo: Set<String>?
    private var warnedQuorum = false
    private var warnedUnreachable = false
    private let started: Instant
    private var phaseStarted: Instant
    private var confirmBy: Instant?

    init(plan: Plan, now: Instant) {
        self.plan = plan
        self.phase = plan.commitFirst ? .committing : .collecting
        self.started = now
        self.phaseStarted = now
    }

    var deadline: Instant { phaseStarted.advanced(by: plan.deadline) }
    var giveUp: Instant { phaseStarted.advanced(by: plan.deadline * plan.giveUpFactor) }

    /// Whether the engine should report who is reachable (only asked when it can decide something).
    var wantsReachability: Bool {
        guard plan.skipUnreachable, phase == .committing || phase == .collecting else { return false }
        return (phase == .committing ? live.intersection(committed) : accepted).count >= plan.quorum
    }

    /// Whether `author`'s bytes count for this round now: an input, and
    /// (commit first) one whose commitment was here at the reveal.
    func collects(_ author: String) -> Bool {
        guard plan.inputs.contains(author), phase == .collecting || phase == .confirming else { return false }
        return revealedTo?.contains(author) ?? true
    }

    /// The inputs not proven to equivocate.
    private var live: Set<String> { plan.inputs.subtracting(flagged) }

    /// The members the current phase still waits for.
    var waitingFor: Set<String> {
        switch phase {
        case .committing: live.subtracting(committed)
        case .collecting: live.intersection(revealedTo ?? live).subtracting(accepted).subtracting(refused)
        default: []
        }
    }

    // MARK: - Observations

    /// `author` signed its update entry for this round (its commitment), and this peer holds it.
    mutating func committed(_ author: String, now: Instant) -> Action {
        if plan.inputs.contains(author) { committed.insert(author) }
        return step(now)
    }

    /// `author`'s bytes arrived and match its signed update (or not: refused for the round).
    mutating func checked(_ author: String, ok: Bool, now: Instant) -> Action {
        guard collects(author), !accepted.contains(author), !refused.contains(author) else { return step(now) }
        committed.insert(author)
        if ok { accepted.insert(author) } else { refused.insert(author) }
        return step(now)
    }

    /// The members with fork evidence against them (they are dropped).
    mutating func flagged(_ authors: Set<String>, now: Instant) -> Action {
        for a in authors.subtracting(flagged) where accepted.contains(a) && phase == .confirming {
            notices.append(.droppedForking(author: a))
        }
        flagged = authors
        return step(now)
    }

    /// Who this peer can reach now (its connections and theirs).
    mutating func reachable(_ members: Set<String>, now: Instant) -> Action {
        reachable = members
        return step(now)
    }

    /// Which of the accepted updates some connected neighbour has not yet shown it holds.
    mutating func unconfirmed(_ authors: Set<String>, now: Instant) -> Action {
        unconfirmed = authors
        return step(now)
    }

    /// Time passed.
    mutating func tick(now: Instant) -> Action { step(now) }

    /// This peer published its bytes (after `.reveal`): collection starts.
    mutating func revealed(now: Instant) -> Action {
        if phase == .revealing {
            phase = .collecting
            phaseStarted = now
            warnedQuorum = false
        }
        return step(now)
    }

    /// Takes the notices produced so far.
    mutating func takeNotices() -> [Notice] {
        defer { notices = [] }
        return notices
    }

    /// The accepted members not proven to equivocate, sorted.
    var included: [String] { accepted.subtracting(flagged).sorted() }

    // MARK: - Decisions

    private mutating func step(_ now: Instant) -> Action {
        switch phase {
        case .committing: return stepCommitting(now)
        case .revealing: return .reveal(committed: revealedTo ?? [])
        case .collecting: return stepCollecting(now)
        case .confirming: return stepConfirming(now)
        case .closed: return .close(accepted: included)
        case .failed: return .fail("round \(plan.round) failed")
        }
    }

    private mutating func stepCommitting(_ now: Instant) -> Action {
        let have = live.intersection(committed)
        let waiting = live.subtracting(committed)
        var reveal = waiting.isEmpty
        if !reveal && have.count >= plan.quorum {
            if now >= deadline { reveal = true }
            if plan.skipUnreachable, let reachable, waiting.isDisjoint(with: reachable) { reveal = true }
        }
        if reveal {
            phase = .revealing
            revealedTo = have
            reachable = nil
            return .reveal(committed: have)
        }
        warnIfPastDeadline(heard: have.count, now)
        if now >= giveUp {
            phase = .failed
            return .fail("round \(plan.round): \(have.count) of \(plan.inputs.count) members committed an update (\(have.sorted().joined(separator: ", "))) in \(seconds(plan.deadline * plan.giveUpFactor)) s; the plan's quorum is \(plan.quorum)")
        }
        // Wake at the deadline even below the quorum, to warn then.
        return .wait(until: now < deadline ? deadline : giveUp)
    }

    private mutating func stepCollecting(_ now: Instant) -> Action {
        let heard = accepted.subtracting(flagged)
        let waiting = waitingFor
        var done = waiting.isEmpty
        if !done && heard.count >= plan.quorum {
            if now >= deadline { done = true }
            if plan.skipUnreachable, let reachable, waiting.isDisjoint(with: reachable) {
                if !warnedUnreachable {
                    warnedUnreachable = true
                    notices.append(.closingWithoutUnreachable(missing: waiting.sorted()))
                }
                done = true
            }
        }
        if done {
            phase = .confirming
            confirmBy = now.advanced(by: plan.confirmLimit)
            unconfirmed = nil
            return stepConfirming(now)
        }
        warnIfPastDeadline(heard: heard.count, now)
        if now >= giveUp {
            phase = .failed
            return .fail("round \(plan.round): heard \(heard.count) of \(plan.inputs.count) members (\(heard.sorted().joined(separator: ", "))) in \(seconds(plan.deadline * plan.giveUpFactor)) s; the plan's quorum is \(plan.quorum)")
        }
        return .wait(until: now < deadline ? deadline : giveUp)
    }

    /// Past the deadline without the quorum: warn (once per phase).
    private mutating func warnIfPastDeadline(heard: Int, _ now: Instant) {
        guard now >= deadline, !warnedQuorum else { return }
        warnedQuorum = true
        notices.append(.deadlineWithoutQuorum(heard: heard))
    }

    private mutating func stepConfirming(_ now: Instant) -> Action {
        let others = Set(included).subtracting([plan.me])
        guard let unconfirmed else { return others.isEmpty ? close() : .confirm(authors: others) }
        let pending = unconfirmed.intersection(others)
        if pending.isEmpty { return close() }
        if let confirmBy, now >= confirmBy {
            notices.append(.confirmLimitReached(unconfirmed: pending.sorted()))
            return close()
        }
        return .wait(until: confirmBy ?? now)
    }

    private mutating func close() -> Action {
        phase = .closed
        return .close(accepted: included)
    }

    private func seconds(_ d: Duration) -> Int { Int(d.components.seconds) }
}
