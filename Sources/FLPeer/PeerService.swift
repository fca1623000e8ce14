import ServiceLifecycle
import Synchronization

/// One institution's peer as a service: runs the round engine until the
/// plan's rounds end. On graceful shutdown the engine's task is cancelled:
/// it stops at its next step, closes its connections and event loops, and
/// `run` throws `CancellationError`; every ledger entry appended so far was
/// committed durably when it was appended.
public final class PeerService: Service, Sendable {
    public let engine: RoundEngine
    /// Called once when a graceful shutdown starts (e.g. to tell the user it is stopping).
    let onShutdown: @Sendable () -> Void
    private let result = Mutex<RunSummary?>(nil)

    public init(engine: RoundEngine, onShutdown: @escaping @Sendable () -> Void = {}) {
        self.engine = engine
        self.onShutdown = onShutdown
    }

    /// The finished run's summary, once `run` returned.
    public var summary: RunSummary? { result.withLock { $0 } }

    public func run() async throws {
        let engine = self.engine
        let summary = try await withGracefulShutdownHandler {
            try await cancelWhenGracefulShutdown { try await engine.run() }
        } onGracefulShutdown: { [onShutdown] in onShutdown() }
        result.withLock { $0 = summary }
    }
}
