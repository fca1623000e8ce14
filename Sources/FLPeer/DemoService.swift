import ServiceLifecycle
import Synchronization

/// A demo consortium as a service: runs its members to the end. On graceful
/// shutdown the members are sent SIGTERM and waited for (at most
/// `DemoConsortium.stopGrace`, then killed), and `run` throws `CancellationError`.
public final class DemoService: Service, Sendable {
    public let demo: DemoConsortium
    let executable: String
    let progress: @Sendable (String) -> Void
    private let result = Mutex<DemoSummary?>(nil)

    public init(demo: DemoConsortium, executable: String, progress: @escaping @Sendable (String) -> Void) {
        self.demo = demo
        self.executable = executable
        self.progress = progress
    }

    /// The finished run's summary, once `run` returned.
    public var summary: DemoSummary? { result.withLock { $0 } }

    public func run() async throws {
        let (demo, executable, progress) = (self.demo, self.executable, self.progress)
        do {
            let summary = try await cancelWhenGracefulShutdown { try await demo.run(executable: executable, progress: progress) }
            result.withLock { $0 = summary }
        } catch let error as DemoError where error.code == .interrupted {
            throw CancellationError()
        }
    }
}
