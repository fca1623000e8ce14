import FLLedger
import Synchronization

/// Typed bodies of the ledger entries a round reads more than once, decoded
/// once per entry: a round's update entries (read by the exchange, the
/// gates, and the next round's gates) and the previous round's aggregates
/// (read by the gates and by the credits). Entries are immutable (keyed by
/// their hash); `drop(before:)` forgets older rounds (the engine keeps the
/// round it records and the one before).
final class BodyCache: Sendable {
    /// What the gates and the credits read of an aggregate entry.
    struct Aggregate: Sendable {
        /// The fields the gates need, nil if they do not decode.
        let refs: ModelHistory.AggregateRefs?
        /// The assessment the credits read, nil if the scores do not decode.
        let assessment: Credits.Assessment?
    }

    private struct State {
        var updates: [[UInt8]: (round: UInt64, body: EntryBody.Update?)] = [:]
        var aggregates: [[UInt8]: (round: UInt64, body: Aggregate)] = [:]
    }
    private let state = Mutex(State())

    /// The update body of `entry`, nil if it does not decode.
    func update(_ entry: LedgerEntry) -> EntryBody.Update? {
        if let known = state.withLock({ $0.updates[entry.hash] }) { return known.body }
        let body = EntryBody.decode(EntryBody.Update.self, from: entry.body)
        state.withLock { $0.updates[entry.hash] = (entry.header.round, body) }
        return body
    }

    /// The aggregate body of `entry`, parsed once for both readers.
    func aggregate(_ entry: LedgerEntry) -> Aggregate {
        if let known = state.withLock({ $0.aggregates[entry.hash] }) { return known.body }
        let json = JSONValue.object(parsing: entry.body)
        let body = Aggregate(refs: json.flatMap(ModelHistory.AggregateRefs.init(json:)),
                             assessment: json.flatMap { Credits.Assessment(entry, body: $0) })
        state.withLock { $0.aggregates[entry.hash] = (entry.header.round, body) }
        return body
    }

    /// Forgets entries of rounds before `round`.
    func drop(before round: UInt64) {
        state.withLock { s in
            s.updates = s.updates.filter { $0.value.round >= round }
            s.aggregates = s.aggregates.filter { $0.value.round >= round }
        }
    }
}
