import FLWire
import NIOCore
import Synchronization

/// Accepted connections between the bootstrap's child initializer and the
/// accept loop. NIO drops its own reference to a child `NIOAsyncChannel`'s
/// writer when the channel becomes active; if the accept loop has stopped
/// by then (the node is shutting down), nothing holds the channel, its
/// writer deinitialises unfinished, and NIO traps
/// (apple/swift-nio#3481). This holds every accepted channel until the
/// accept loop claims it, and finishes and closes the ones never claimed.
final class UnclaimedChannels: Sendable {
    typealias Wrapped = NIOAsyncChannel<WireMessage, WireMessage>
    private let held = Mutex<[ObjectIdentifier: Wrapped]>([:])

    /// Keeps `channel` until it is claimed.
    func hold(_ channel: Wrapped) {
        held.withLock { $0[ObjectIdentifier(channel.channel)] = channel }
    }

    /// The accept loop took `channel`: it is closed by whoever serves it.
    func claim(_ channel: Wrapped) {
        _ = held.withLock { $0.removeValue(forKey: ObjectIdentifier(channel.channel)) }
    }

    /// Closes the channels never claimed (`executeThenClose` finishes their writers).
    func closeUnclaimed() async {
        let left = held.withLock { held -> [Wrapped] in
            defer { held.removeAll() }
            return Array(held.values)
        }
        for c in left { try? await c.executeThenClose { _, _ in } }
    }
}
