@testable import FLPeer
import Testing

/// The round's waits without sockets: observations in, actions out, on an
/// injected clock (instants offset from one fixed start).
@Suite("round state machine")
struct RoundStateMachineTests {
    typealias Machine = RoundStateMachine<ContinuousClock.Instant>
    static let t0 = ContinuousClock.now
    static func at(_ ms: Int) -> ContinuousClock.Instant { t0.advanced(by: .milliseconds(ms)) }
    static let members: Set<String> = ["a", "b", "c", "d", "e"]

    static func machine(quorum: Int = 5, commitFirst: Bool = true, skipUnreachable: Bool = true, inputs: Set<String> = members) -> Machine {
        Machine(plan: .init(round: 3, inputs: inputs, me: "a", quorum: quorum, commitFirst: commitFirst, skipUnreachable: skipUnreachable,
                            deadline: .seconds(30), confirmLimit: .seconds(2)), now: at(0))
    }

    /// Commitments, reveal, every update, every echo: the round closes at once with everyone.
    @Test func everyoneOnTimeClosesWithoutWaitingOutAnyLimit() {
        var m = Self.machine()
        // Below the quorum it still wakes at the deadline (to warn if the quorum is not in by then).
        for x in ["a", "b", "c", "d"] { #expect(m.committed(x, now: Self.at(1)) == .wait(until: Self.at(30_000))) }
        #expect(m.committed("e", now: Self.at(2)) == .reveal(committed: Self.members))
        // The reveal is repeated until the engine says it published (an action is never lost).
        #expect(m.tick(now: Self.at(3)) == .reveal(committed: Self.members))
        #expect(m.revealed(now: Self.at(4)) == .wait(until: Self.at(30_004)))
        for x in ["a", "b", "c", "d"] { _ = m.checked(x, ok: true, now: Self.at(5)) }
        #expect(m.checked("e", ok: true, now: Self.at(6)) == .confirm(authors: ["b", "c", "d", "e"]))
        #expect(m.unconfirmed(["c"], now: Self.at(7)) == .wait(until: Self.at(2006)))
        #expect(m.unconfirmed([], now: Self.at(8)) == .close(accepted: ["a", "b", "c", "d", "e"]))
        #expect(m.takeNotices().isEmpty)
    }

    /// A member that has not committed when the deadline passes (with the quorum) is left out; its update is not collected.
    @Test func aLateMemberIsLeftOutAtTheDeadline() {
        var m = Self.machine(quorum: 3)
        for x in ["a", "b", "c", "d"] { _ = m.committed(x, now: Self.at(10)) }
        #expect(m.tick(now: Self.at(29_999)) == .wait(until: Self.at(30_000)))
        #expect(m.tick(now: Self.at(30_000)) == .reveal(committed: ["a", "b", "c", "d"]))
        _ = m.revealed(now: Self.at(30_001))
        // It commits and its bytes arrive after the reveal: not collected.
        _ = m.committed("e", now: Self.at(30_002))
        #expect(!m.collects("e"))
        #expect(m.checked("e", ok: true, now: Self.at(30_003)) == .wait(until: Self.at(60_001)))
        for x in ["a", "b", "c"] { _ = m.checked(x, ok: true, now: Self.at(30_004)) }
        _ = m.checked("d", ok: true, now: Self.at(30_005))
        #expect(m.unconfirmed([], now: Self.at(30_006)) == .close(accepted: ["a", "b", "c", "d"]))
    }

    /// Without the quorum the round keeps waiting past the deadline (warning once), and fails after ten deadlines naming who was heard.
    @Test func missingMembersFailTheRoundAfterTenDeadlines() {
        var m = Self.machine(quorum: 3, skipUnreachable: false)
        _ = m.committed("a", now: Self.at(1))
        #expect(m.committed("b", now: Self.at(1)) == .wait(until: Self.at(30_000)))
        #expect(m.tick(now: Self.at(30_000)) == .wait(until: Self.at(300_000)))
        #expect(m.takeNotices() == [.deadlineWithoutQuorum(heard: 2)])
        #expect(m.tick(now: Self.at(299_999)) == .wait(until: Self.at(300_000)))
        guard case .fail(let reason) = m.tick(now: Self.at(300_000)) else {
            Issue.record("expected the round to fail")
            return
        }
        #expect(reason.contains("2 of 5 members committed") && reason.contains("a, b") && reason.contains("quorum is 3"))
        #expect(m.phase == .failed)
        #expect(m.takeNotices().isEmpty, "warned once")
    }

    /// Collecting below the quorum, the machine still wakes at the deadline, to warn then rather than when it gives up.
    @Test func collectingBelowTheQuorumWarnsAtTheDeadline() {
        var m = Self.machine(quorum: 5, skipUnreachable: false)
        for x in Self.members { _ = m.committed(x, now: Self.at(1)) }
        _ = m.revealed(now: Self.at(2))
        #expect(m.checked("a", ok: true, now: Self.at(3)) == .wait(until: Self.at(30_002)))
        #expect(m.takeNotices().isEmpty)
        #expect(m.tick(now: Self.at(30_002)) == .wait(until: Self.at(300_002)))
        #expect(m.takeNotices() == [.deadlineWithoutQuorum(heard: 1)])
    }

    /// A member that committed but whose bytes never come: the round closes at the deadline with the quorum, after a warning-free wait.
    @Test func aSlowMemberIsWaitedForUntilTheDeadlineOnly() {
        var m = Self.machine(quorum: 4)
        for x in Self.members { _ = m.committed(x, now: Self.at(1)) }
        _ = m.revealed(now: Self.at(2))
        for x in ["a", "b", "c", "d"] { _ = m.checked(x, ok: true, now: Self.at(3)) }
        #expect(m.waitingFor == ["e"])
        #expect(m.tick(now: Self.at(10_000)) == .wait(until: Self.at(30_002)))
        #expect(m.tick(now: Self.at(30_002)) == .confirm(authors: ["b", "c", "d"]))
        #expect(m.unconfirmed([], now: Self.at(30_003)) == .close(accepted: ["a", "b", "c", "d"]))
    }

    /// Bytes that do not match the signed update are refused for good: the round does not wait for that member any longer.
    @Test func aRefusedUpdateIsNotWaitedFor() {
        var m = Self.machine(quorum: 4)
        for x in Self.members { _ = m.committed(x, now: Self.at(1)) }
        _ = m.revealed(now: Self.at(2))
        _ = m.checked("e", ok: false, now: Self.at(3))
        for x in ["a", "b", "c"] { _ = m.checked(x, ok: true, now: Self.at(4)) }
        #expect(m.checked("d", ok: true, now: Self.at(5)) == .confirm(authors: ["b", "c", "d"]))
        // A second copy of its bytes changes nothing.
        _ = m.checked("e", ok: true, now: Self.at(6))
        #expect(m.unconfirmed([], now: Self.at(7)) == .close(accepted: ["a", "b", "c", "d"]))
    }

    /// A member proven to equivocate is not waited for while committing, and is dropped from the aggregate even after it was accepted.
    @Test func anEquivocatingMemberIsDropped() {
        var m = Self.machine(quorum: 3)
        for x in ["a", "b", "c", "d"] { _ = m.committed(x, now: Self.at(1)) }
        #expect(m.flagged(["e"], now: Self.at(2)) == .reveal(committed: ["a", "b", "c", "d"]))
        _ = m.revealed(now: Self.at(3))
        for x in ["a", "b", "c", "d"] { _ = m.checked(x, ok: true, now: Self.at(4)) }
        #expect(m.phase == .confirming)
        // Evidence against d arrives while neighbours' echoes are awaited.
        _ = m.unconfirmed(["d"], now: Self.at(5))
        #expect(m.flagged(["e", "d"], now: Self.at(6)) == .close(accepted: ["a", "b", "c"]))
        #expect(m.takeNotices() == [.droppedForking(author: "d")])
    }

    /// Members nobody here can reach (gone, or cut off) are not waited for once the quorum is in.
    @Test func departedMembersAreNotWaitedForOnceTheQuorumIsIn() {
        var m = Self.machine(quorum: 3)
        for x in ["a", "b", "c"] { _ = m.committed(x, now: Self.at(1)) }
        #expect(m.wantsReachability)
        #expect(m.reachable(["a", "b", "c", "d", "e"], now: Self.at(2)) == .wait(until: Self.at(30_000)))
        #expect(m.reachable(["a", "b", "c"], now: Self.at(3)) == .reveal(committed: ["a", "b", "c"]))
        _ = m.revealed(now: Self.at(4))
        for x in ["a", "b", "c"] { _ = m.checked(x, ok: true, now: Self.at(5)) }
        #expect(m.phase == .confirming)
        #expect(m.takeNotices().isEmpty)
        // Without the shortcut (round 0), the same round waits for the deadline.
        var strict = Self.machine(quorum: 3, skipUnreachable: false)
        for x in ["a", "b", "c"] { _ = strict.committed(x, now: Self.at(1)) }
        #expect(!strict.wantsReachability)
        #expect(strict.reachable(["a", "b", "c"], now: Self.at(3)) == .wait(until: Self.at(30_000)))
    }

    /// A neighbour that never echoes delays the round by the confirmation limit at most, with a notice the engine logs.
    @Test func aSilentNeighbourCostsTheConfirmLimitAtMost() {
        var m = Self.machine()
        for x in Self.members { _ = m.committed(x, now: Self.at(1)) }
        _ = m.revealed(now: Self.at(2))
        for x in Self.members { _ = m.checked(x, ok: true, now: Self.at(3)) }
        #expect(m.unconfirmed(["b"], now: Self.at(4)) == .wait(until: Self.at(2003)))
        #expect(m.unconfirmed(["b"], now: Self.at(2003)) == .close(accepted: Self.members.sorted()))
        #expect(m.takeNotices() == [.confirmLimitReached(unconfirmed: ["b"])])
    }

    /// The inputs are a parameter: a peer aggregating only its neighbours' updates waits for those alone.
    @Test func onlyTheRoundsInputsAreWaitedFor() {
        var m = Self.machine(quorum: 2, inputs: ["a", "b", "c"])
        _ = m.committed("d", now: Self.at(1))
        _ = m.committed("a", now: Self.at(1))
        _ = m.committed("b", now: Self.at(1))
        #expect(m.committed("c", now: Self.at(2)) == .reveal(committed: ["a", "b", "c"]))
        _ = m.revealed(now: Self.at(3))
        _ = m.checked("d", ok: true, now: Self.at(4))
        for x in ["a", "b"] { _ = m.checked(x, ok: true, now: Self.at(5)) }
        #expect(m.checked("c", ok: true, now: Self.at(6)) == .confirm(authors: ["b", "c"]))
    }

    /// Without commit-then-reveal (round 0) collection starts at once.
    @Test func withoutCommitFirstCollectionStartsAtOnce() {
        var m = Self.machine(commitFirst: false)
        #expect(m.phase == .collecting)
        for x in ["a", "b", "c", "d"] { _ = m.checked(x, ok: true, now: Self.at(1)) }
        #expect(m.checked("e", ok: true, now: Self.at(2)) == .confirm(authors: ["b", "c", "d", "e"]))
    }
}
