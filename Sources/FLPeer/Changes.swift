import Synchronization

/// Counts events that may move a round on (gossip and ledger events, and
/// alarms at the round's deadlines), and wakes whoever waits for the next
/// one. Waits are driven by these events: nothing polls.
final class Changes: Sendable {
    private struct State {
        var count = 0
        var waiters: [CheckedContinuation<Void, Never>] = []
        var alarm: Task<Void, Never>?
        var alarmAt: ContinuousClock.Instant?
    }

    private let state = Mutex(State())

    var count: Int { state.withLock { $0.count } }

    func bump() {
        let waiters = state.withLock { s in
            s.count += 1
            defer { s.waiters = [] }
            return s.waiters
        }
        for w in waiters { w.resume() }
    }

    /// Bumps once at `instant` (replacing an earlier alarm that is still pending).
    func alarm(at instant: ContinuousClock.Instant) {
        state.withLock { s in
            if s.alarmAt == instant, s.alarm != nil { return }
            s.alarm?.cancel()
            s.alarmAt = instant
            s.alarm = Task { [weak self] in
                try? await Task.sleep(until: instant, clock: .continuous)
                if !Task.isCancelled { self?.bump() }
            }
        }
    }

    /// Cancels the pending alarm.
    func cancelAlarm() {
        state.withLock { s in
            s.alarm?.cancel()
            s.alarm = nil
            s.alarmAt = nil
        }
    }

    /// Returns once the count differs from `seen`, or the task is cancelled.
    func wait(after seen: Int) async {
        await withTaskCancellationHandler {
            await withCheckedContinuation { (c: CheckedContinuation<Void, Never>) in
                let now = state.withLock { s in
                    if s.count != seen || Task.isCancelled { return true }
                    s.waiters.append(c)
                    return false
                }
                if now { c.resume() }
            }
        } onCancel: {
            bump()
        }
    }
}
