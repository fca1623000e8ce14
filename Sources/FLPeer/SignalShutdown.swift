import Logging
import ServiceLifecycle
import UnixSignals

/// A service run that SIGTERM or SIGINT stopped before it finished.
public struct Interrupted: Error, CustomStringConvertible, Sendable {
    /// "SIGTERM" or "SIGINT" (or "a shutdown request" when no signal was seen).
    public let signal: String

    public var description: String { "stopped by \(signal)" }
}

/// Runs services under a `ServiceGroup` that shuts them down gracefully on SIGTERM and SIGINT.
public enum SignalShutdown {
    /// The signals that start a graceful shutdown.
    public static let signals: [UnixSignal] = [.sigterm, .sigint]

    /// Runs `service` to its end. A service that stops early on graceful
    /// shutdown throws `CancellationError`, and this throws `Interrupted`
    /// naming the signal; one that finishes its work despite a signal returns
    /// normally; other errors are rethrown.
    public static func run(_ service: any Service, logger: Logger) async throws {
        let watch = await SignalWatch(signals)
        let group = ServiceGroup(configuration: ServiceGroupConfiguration(
            // A service that finishes its work ends the group (by default the group calls that a failure).
            services: [.init(service: service, successTerminationBehavior: .gracefullyShutdownGroup)], gracefulShutdownSignals: signals, logger: logger))
        do {
            try await group.run()
        } catch is CancellationError {
            throw Interrupted(signal: await watch.first(within: .seconds(1)) ?? "a shutdown request")
        }
    }
}

/// Records the first of some signals that arrives, beside the `ServiceGroup` that acts on it.
final class SignalWatch: Sendable {
    private let task: Task<String?, Never>

    init(_ signals: [UnixSignal]) async {
        let sequence = await UnixSignalsSequence(trapping: signals)
        task = Task {
            for await signal in sequence { return signal.description }
            return nil
        }
    }

    deinit { task.cancel() }

    /// The first signal seen, waiting at most `limit` for one: the group and
    /// this watch hear a signal at the same moment, in either order.
    func first(within limit: Duration) async -> String? {
        let task = self.task
        return await withTaskGroup(of: String?.self) { group in
            group.addTask { await task.value }
            group.addTask {
                try? await Task.sleep(for: limit)
                task.cancel()  // ends the watch, so the first child returns too
                return nil
            }
            let first = await group.next() ?? nil
            group.cancelAll()
            return first
        }
    }
}
