import FLCore
import FLLedger
import Foundation
import Logging

extension RoundEngine {
    /// What recording a round leaves for its report.
    struct Recorded {
        let trimmed: [String: Int]
        let resultHash: String
        let scoringSeconds: Double
    }
}

extension RoundEngine.Session {
    /// The validation screen (when the plan expects Byzantine members): drops
    /// up to max_byzantine other members' updates (fewer by the members
    /// already excluded for equivocating) that barely move the model (a step
    /// under a tenth of the median step: no training) or do worse on this
    /// peer's validation split than the model the round started from, those
    /// first, then worst loss first. Each peer judges with its own data.
    /// Inputs stay in author order at every peer, so that peers holding the
    /// same updates compute bit-identical aggregates.
    func screen(_ updates: [(RoundEngine.Accepted, [Float])], round r: Int, model baseParameters: [Float], data: RunData) async throws
        -> (ordered: [(RoundEngine.Accepted, [Float])], screened: [EntryBody.Screened], baseLoss: Double?) {
        let budget = plan.maxByzantine - (plan.maxByzantine > 0 ? members.filter(Set(try store.flaggedAuthors(caCertificate: ca)).contains).count : 0)
        guard plan.screen == .validationLoss && budget > 0 else { return (updates, [], nil) }
        let evaluations = try await data.learner.evaluate([baseParameters] + updates.map(\.1), on: .validation)
        guard evaluations.count == updates.count + 1 else { throw RoundError("the learner evaluated \(evaluations.count) of \(updates.count + 1) models") }
        let baseLoss = evaluations[0].logLoss
        // A loss that is not a number counts as the worst.
        let losses = evaluations.dropFirst().map { $0.logLoss.isNaN ? .infinity : $0.logLoss }
        let steps = updates.map { u in u.1.withUnsafeBufferPointer { a in baseParameters.withUnsafeBufferPointer { VectorMath.squaredDistance(a, $0).squareRoot() } } }
        let medianStep = steps.sorted()[steps.count / 2]
        let idle: [Bool] = steps.map { $0 < 0.1 * medianStep }
        let rank: [Int] = idle.map { $0 ? 0 : 1 }
        let candidates: [Int] = updates.indices.filter { updates[$0].0.author != config.id && (idle[$0] || losses[$0] > baseLoss) }
        let worst = candidates.sorted { (i: Int, j: Int) -> Bool in
            (rank[i], -losses[i], updates[i].0.author) < (rank[j], -losses[j], updates[j].0.author)
        }.prefix(budget)
        var screened: [EntryBody.Screened] = []
        for i in worst.sorted() {
            screened.append(.init(author: updates[i].0.author, updateHash: updates[i].0.updateHash, validationLoss: losses[i]))
            logger.info("update screened out", metadata: ["author": "\(updates[i].0.author)", "round": "\(r)", "validation-loss": "\(losses[i])", "base-loss": "\(baseLoss)"])
        }
        let drop = Set(worst)
        return (updates.indices.filter { !drop.contains($0) }.map { updates[$0] }, screened, baseLoss)
    }

    /// Aggregates, scores the included updates (docs/credits.md), derives
    /// the previous round's credits and the late updates, and leaves the
    /// aggregate and checkpoint entries pending (stored with the next update).
    func record(_ r: Int, ordered: [(RoundEngine.Accepted, [Float])], updates: [(RoundEngine.Accepted, [Float])], screened: [EntryBody.Screened],
                baseValidationLoss: Double?, step: RoundEngine.LocalStep, _ s: inout RunState, _ data: RunData) async throws -> RoundEngine.Recorded {
        let clock = ContinuousClock()
        let stats = try Aggregator.aggregate(ordered.map(\.1), rule: rule, center: step.local, reference: step.baseParameters, into: &s.output)
        let scoringStart = clock.now
        s.history.note(model: step.baseParameters, hash: step.baseHash, round: UInt64(r))
        bodies.drop(before: UInt64(max(r - 1, 0)))
        let previousAggregates = r > 1 ? try store.entries(kind: .aggregate, round: UInt64(r - 1)) : []
        let authorBases = try s.history.bases(of: ordered.map(\.0.author), round: UInt64(r), store: store, bodies: bodies,
                                              previousAggregates: previousAggregates, rule: rule, learner: data.learner,
                                              mine: (config.id, step.baseParameters, step.previousChange))
        var (scores, scoring) = try await score(ordered, stats: stats, base: s.model, previousChange: step.previousChange, authorBases: authorBases,
                                                center: step.local, learner: data.learner, classes: data.assessedClasses,
                                                classNames: data.classes, baseHash: step.baseHash)
        s.history.remember(updates: updates.map { ($0.0.updateHash, $0.1) })
        scoring.seconds = Self.seconds(scoringStart.duration(to: clock.now))
        if config.attack == .lyingAssessor {
            scores = Dictionary(uniqueKeysWithValues: scores.map { m, v in (m, v.mapValues { _ in m == config.id ? RoundEngine.lyingMaximum : 0 }) })
        }
        let recordedCredits = try previousRoundCredits(UInt64(r), aggregates: previousAggregates)
        s.previousBase = step.baseParameters
        s.model = s.output
        let resultHash = data.learner.hash(s.model)
        var parameters: [String: Double] = [:]
        if case .trimmedMean(let beta) = rule { parameters["beta"] = beta }
        if case .boundedTrimmedMean(let beta) = rule { parameters["beta"] = beta }
        if let tau = stats.tau { parameters["tau"] = tau }
        if let baseValidationLoss { parameters["base_validation_loss"] = baseValidationLoss }
        // Blobs of rounds older than the late window are no longer fetched.
        if r > 5 { await node.setMinimumRound(UInt64(r - 5)) }
        s.included[UInt64(r)] = Set(ordered.map(\.0.author) + screened.map(\.author))
        let late = try lateUpdates(before: UInt64(r), &s)
        let aggregate = EntryBody.aggregate(
            round: UInt64(r), included: ordered.enumerated().map { .init(author: $1.0.author, updateHash: $1.0.updateHash, trimmed: stats.trimmed[$0]) },
            rule: plan.rule.rawValue, parameters: parameters, resultHash: resultHash, scores: scores, late: late,
            screened: screened, scoring: scoring, credits: recordedCredits)
        // The model is kept in the ledger file's local state in the same
        // transaction (no file per round); model.safetensors is written at the end.
        let modelBytes = data.learner.encode(s.model, metadata: data.metadata.merging(["round": "\(r)"]) { $1 })
        var state = ["model": modelBytes]
        // With the last round's record: what a restart needs to finish without neighbours.
        if r == plan.rounds { state["standardizer"] = try JSONEncoder().encode(data.scaler).map { $0 } }
        s.pending = ([
            (.aggregate, UInt64(r), { _ in aggregate }),
            (.checkpoint, UInt64(r), { heads in EntryBody.checkpoint(heads: try heads().map { (author: $0.key, seq: $0.value.seq, hash: $0.value.hash) }) }),
        ], state)
        return .init(trimmed: Dictionary(uniqueKeysWithValues: ordered.enumerated().map { ($1.0.author, stats.trimmed[$0]) }),
                     resultHash: resultHash, scoringSeconds: scoring.seconds)
    }

    /// Updates of the last five rounds already closed here that arrived
    /// since: recorded as late (once each), never mixed in. Members with
    /// fork evidence were dropped, not late.
    func lateUpdates(before r: UInt64, _ s: inout RunState) throws -> [EntryBody.Late] {
        var late: [EntryBody.Late] = []
        let forked = Set(try store.flaggedAuthors(caCertificate: ca))
        for (closed, authors) in s.included where closed < r && closed + 5 >= r {
            // Entries are only ever added: with no new one since the last look, none is late.
            let stored = try store.count(kind: .update, round: closed)
            guard s.lateChecked[closed] != stored else { continue }
            s.lateChecked[closed] = stored
            for e in try store.entries(kind: .update, round: closed) where !authors.contains(e.header.author) && !forked.contains(e.header.author)
                && !s.recordedLate.contains("\(e.header.author)#\(closed)") {
                s.recordedLate.insert("\(e.header.author)#\(closed)")
                let hash = bodies.update(e)?.updateHash ?? ""
                late.append(.init(author: e.header.author, round: closed, updateHash: hash))
                logger.notice("late update recorded", metadata: ["author": "\(e.header.author)", "round": "\(closed)"])
            }
        }
        return late.sorted { ($0.round, $0.author) < ($1.round, $1.author) }
    }
}
