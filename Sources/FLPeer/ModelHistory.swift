import FLCore
import FLLedger

/// Starting models of recent rounds by canonical hash, and the previous
/// round's update vectors, so a peer can measure each update from its own
/// author's starting model: peers that screen differently start a round
/// from different models, and the gates (docs/credits.md) compare an update
/// with the model its author received.
struct ModelHistory {
    private var models: [String: (round: UInt64, values: [Float])] = [:]
    private var lastUpdates: [String: [Float]] = [:]

    mutating func note(model values: [Float], hash: String, round: UInt64) {
        models[hash] = (round, values)
        models = models.filter { $0.value.round + 2 >= round }
    }

    /// Keeps this round's update vectors (by update hash) for the next round.
    mutating func remember(updates: [(String, [Float])]) {
        lastUpdates = Dictionary(updates, uniquingKeysWith: { a, _ in a })
    }

    /// Each author's starting model for `round` and its previous change:
    /// this peer's own when the author's update names the same base; else
    /// the author's round − 1 aggregate, recomputed from the updates its
    /// aggregate entry names (kept from last round) and checked against the
    /// hash; else (not recomputable) this peer's own.
    mutating func bases(of authors: [String], round: UInt64, store: LedgerStore, bodies: BodyCache, previousAggregates: [LedgerEntry],
                        rule: AggregationRule, learner: any LocalLearner,
                        mine: (id: String, base: [Float], change: [Float]?)) throws -> [(base: [Float], change: [Float]?, previousSteps: [[Float]])] {
        // An author's first entry of the kind and round counts.
        func first<T>(_ entries: [LedgerEntry], _ body: (LedgerEntry) -> T?) -> [String: T] {
            var out: [String: T] = [:]
            for e in entries where out[e.header.author] == nil {
                if let b = body(e) { out[e.header.author] = b }
            }
            return out
        }
        let updates = first(try store.entries(kind: .update, round: round), bodies.update)
        let previousUpdates = round > 1 ? first(try store.entries(kind: .update, round: round - 1), bodies.update) : [:]
        let aggregates = first(previousAggregates) { bodies.aggregate($0).refs }
        // The steps an author received last round, from its starting model then: what it aggregated (its aggregate entry names them).
        func received(_ author: String) -> [[Float]] {
            guard let previousBase = previousUpdates[author].flatMap({ models[$0.baseHash]?.values }),
                  let included = aggregates[author]?.included else { return [] }
            let others = included.filter { $0.author != author }.map(\.updateHash)
            let vectors = others.compactMap { lastUpdates[$0] }
            guard vectors.count == others.count else { return [] }
            return vectors.map { zip($0, previousBase).map { $0 - $1 } }
        }
        return authors.map { author in
            if author == mine.id { return (mine.base, mine.change, []) }
            guard let hash = updates[author]?.baseHash, let base = model(hash, author: author, aggregate: aggregates[author], rule: rule, learner: learner, round: round) else {
                return (mine.base, mine.change, [])
            }
            let change = previousUpdates[author].flatMap { models[$0.baseHash]?.values }.map { zip(base, $0).map { $0 - $1 } }
            return (base, change, received(author))
        }
    }

    /// What the gates need of an aggregate entry (the rest is not decoded).
    struct AggregateRefs: Sendable {
        let resultHash: String
        let included: [EntryBody.Aggregate.Member]

        /// From a parsed aggregate body: nil unless `result_hash` is a string
        /// and `included` a list of members with `author`, `update_hash` and an integer `trimmed`.
        init?(json body: [String: JSONValue]) {
            guard let resultHash = body["result_hash"]?.string, let list = body["included"]?.array else { return nil }
            var included: [EntryBody.Aggregate.Member] = []
            for m in list {
                guard let author = m["author"]?.string, let updateHash = m["update_hash"]?.string,
                      let trimmed = m["trimmed"]?.integer.flatMap(Int.init(exactly:)) else { return nil }
                included.append(.init(author: author, updateHash: updateHash, trimmed: trimmed))
            }
            (self.resultHash, self.included) = (resultHash, included)
        }
    }

    private mutating func model(_ hash: String, author: String, aggregate: AggregateRefs?, rule: AggregationRule, learner: any LocalLearner, round: UInt64) -> [Float]? {
        if let known = models[hash] { return known.values }
        guard let body = aggregate, body.resultHash == hash else { return nil }
        let included = body.included
        let names = included.map(\.updateHash)
        let vectors = names.compactMap { lastUpdates[$0] }
        guard !vectors.isEmpty, vectors.count == included.count else { return nil }
        let own = included.firstIndex { $0.author == author }.map { vectors[$0] }
        var output = [Float]()
        guard (try? Aggregator.aggregate(vectors, rule: rule, center: own, reference: own, countTrimmed: false, into: &output)) != nil,
              learner.hash(output) == hash else { return nil }
        models[hash] = (round - 1, output)
        return output
    }
}
