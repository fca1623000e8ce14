/// Multi-process runs whose kills and attacks must land while the members
/// train take turns: run beside each other (and beside the rest of the suite)
/// on a two-core machine, each one's members slowed the others' so much that
/// faults aimed mid-run arrived after the plan had ended.
actor TakingTurns {
    static let shared = TakingTurns()
    private var busy = false
    private var waiting: [CheckedContinuation<Void, Never>] = []

    private func acquire() async {
        guard busy else { busy = true; return }
        await withCheckedContinuation { waiting.append($0) }
    }

    private func release() {
        if waiting.isEmpty { busy = false } else { waiting.removeFirst().resume() }
    }

    /// Runs `body` once no other such run is under way.
    static func run<T: Sendable>(_ body: () async throws -> T) async throws -> T {
        await shared.acquire()
        do {
            let result = try await body()
            await shared.release()
            return result
        } catch {
            await shared.release()
            throw error
        }
    }
}
