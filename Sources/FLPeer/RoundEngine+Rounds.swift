import Crypto
import FLCore
import FLGossip
import FLLedger
import Foundation
import Logging

/// A round's aggregate and checkpoint (with the model as local state), signed
/// and stored with the next round's update, or at the end of the run.
typealias PendingRecord = (entries: [LedgerStore.PendingEntry], state: [String: [UInt8]])

extension RoundEngine {
    /// What trains the model: the built-in learner on this peer's CSV rows, or an external worker.
    enum LearnerSource {
        case csv(train: Dataset, validation: Dataset)
        case external(ExternalLearner)
    }

    /// The data of one run, standardised with the statistics the members agreed on.
    struct RunData {
        /// Trains and evaluates: on the training rows (labels rewritten by a
        /// label attack), the validation split, and the assessment rows (all
        /// of this peer's rows, true labels: none of them went into another
        /// member's update) that it scores others' updates on.
        let learner: any LocalLearner
        /// The built-in model, for the run summary only (nil with an external learner).
        let spec: ModelSpec?
        let classes: [String]
        let scaler: Standardizer?
        let trainRows: Int
        let assessedClasses: [Int]
        let modelPath: String
        let metadata: [String: String]
    }

    /// What a run carries from one round to the next.
    struct RunState {
        /// The model this round starts from.
        var model: [Float]
        /// The model the previous round started from (replay gate, replay attack).
        var previousBase: [Float]?
        /// Recent starting models by hash, and last round's update vectors (gates).
        var history = ModelHistory()
        /// Other members' deltas in the last round, for ALIE and IPM.
        var observed: [[Float]] = []
        /// Who went into each round's aggregate here.
        var included: [UInt64: Set<String>] = [:]
        var recordedLate = Set<String>()
        /// Update entries of each closed round stored when late updates were last looked for.
        var lateChecked: [UInt64: Int] = [:]
        var pending: PendingRecord?
        var linksCut = false
        var attackRNG: SeededGenerator
        var output = [Float]()
        var reports: [RoundReport] = []
    }

    /// This peer's step of one round, before any other member's update is seen.
    struct LocalStep {
        let local: [Float]
        let localHash: String
        let baseHash: String
        let baseParameters: [Float]
        let previousChange: [Float]?
        let metrics: [String: Double]
        let samples: Int
        let bytes: [UInt8]
    }
}

extension RoundEngine.Session {
    typealias RunData = RoundEngine.RunData
    typealias RunState = RoundEngine.RunState

    mutating func train(_ source: RoundEngine.LearnerSource, classes: [String]) async throws -> RunSummary {
        let data = switch source {
        case .csv(let train, let validation): try await agreeOnStandardisation(train: train, validation: validation, classes: classes)
        case .external(let learner): try await agreeOnLayout(learner, classes: classes)
        }
        var state = RunState(model: data.learner.initialParameters(),
                             attackRNG: SeededGenerator(seed: Self.seed(plan.seed, config.id, 0), stream: "attack"))
        // A restarted peer resumes after the last round it recorded: its
        // aggregate entry and the model it names were committed together.
        let resumeAfter = try resumePoint(data.learner)
        if let (round, saved) = resumeAfter {
            state.model = saved
            engine.progress("resuming after round \(round) (model and ledger from \(config.stateDirectory))")
            logger.notice("resuming", metadata: ["after-round": "\(round)"])
        }
        let firstRound = (resumeAfter?.0 ?? 0) + 1
        let cpuAtFirstRound = processCPUSeconds()
        for r in firstRound..<(plan.rounds + 1) {
            try Task.checkCancellation()
            try await round(r, &state, data)
        }
        if let p = state.pending {
            try await guardOwnChain()
            await node.ledgerChanged(appended: try store.append(author: config.id, key: key, p.entries, state: p.state).map(\.wire))
        }
        // Written once the last round's record is durable: a failed write is redone offline by a restart.
        try writeFinalModel()
        let cpuAtLastRound = processCPUSeconds()
        let test = try await (data.learner as? ExternalLearner)?.evaluateTest(state.model)
        try await linger(round: UInt64(plan.rounds))
        var summary = RunSummary(
            id: config.id, rounds: state.reports, secondsPerRound: state.reports.map(\.seconds).reduce(0, +) / Double(max(1, state.reports.count)),
            bytesIn: node.traffic.bytesIn, bytesOut: node.traffic.bytesOut, modelFile: data.modelPath, ledgerFile: store.path,
            model: data.spec, classes: classes, standardizer: data.scaler, cpuSeconds: processCPUSeconds(), roundCPUSeconds: cpuAtLastRound - cpuAtFirstRound)
        if let external = data.learner as? ExternalLearner {
            summary.learner = external.process.command.joined(separator: " ")
            summary.testAccuracy = test?.accuracy
            summary.testLoss = test?.logLoss
            summary.learnerStartSeconds = external.startSeconds
        }
        try writeSummary(summary)
        return summary
    }

    /// Round 0: pooled feature statistics, so every member standardises alike.
    func agreeOnStandardisation(train: Dataset, validation: Dataset, classes: [String]) async throws -> RunData {
        let statsBytes = EntryBody.statistics(FeatureStatistics(of: train))
        let statsHash = hex(SHA256.hash(data: statsBytes))
        try await publish(round: 0, bytes: statsBytes, updateHash: statsHash, baseHash: "", samples: train.rows, codec: RoundEngine.statsCodec, metrics: [:])
        var otherCounts: [Int: [String]] = [:]  // feature count -> members whose statistics have it
        let statsIn: [(RoundEngine.Accepted, FeatureStatistics)] = try await exchange(round: 0, commitFirst: false, reveal: {}) { bytes, hash, author in
            guard hex(SHA256.hash(data: bytes)) == hash, let s = EntryBody.statistics(from: bytes) else { return nil }
            guard s.sums.count == train.featureCount else {
                otherCounts[s.sums.count, default: []].append(author)
                engine.progress(Self.featureMismatch(author, has: s.sums.count, own: train.featureCount, file: config.trainData))
                return nil
            }
            return s
        }
        try refuseOwnFeatureCount(train.featureCount, matching: statsIn.count, others: otherCounts)
        guard let scaler = FeatureStatistics.pooled(statsIn.map(\.1)) else { throw RoundError("the members' feature statistics do not combine (different feature counts?)") }
        logger.info("standardisation agreed", metadata: ["members": "\(statsIn.map(\.0.author).joined(separator: ","))", "unix-ms": "\(Self.unixMillis())"])
        var trainStd = scaler.transform(train)
        let validationStd = scaler.transform(validation)
        // Copied before an attack rewrites the training labels.
        var assessment = trainStd
        assessment.features += validationStd.features
        assessment.labels += validationStd.labels
        if let attack = config.attack {
            trainStd.labels = attack.trainingLabels(trainStd.labels, classes: classes.count)
            logger.warning("this peer attacks the federation (robustness evaluation)", metadata: ["attack": "\(attack)"])
        }
        let spec = ModelSpec(kind: plan.model, inputs: train.featureCount, classes: classes.count, hidden: plan.model == .mlp ? plan.hidden : [])
        let learner = SwiftModelLearner(spec: spec, planSeed: UInt64(plan.seed), training: { [plan] in plan.trainingConfig(seed: $0) },
                                        train: trainStd, validation: validationStd, assessment: assessment)
        return RunData(learner: learner, spec: spec, classes: classes, scaler: scaler, trainRows: trainStd.rows,
                       assessedClasses: Array(Set(assessment.labels)).sorted(), modelPath: "\(config.stateDirectory)/model.safetensors",
                       metadata: ["model": spec.kind.rawValue, "hidden": spec.hidden.map(String.init).joined(separator: ","), "classes": classes.joined(separator: ",")])
    }

    /// Round 0 with an external learner: every member publishes its shared
    /// tensors' layout and the hash of the model its worker's `init` made
    /// (also the entry's base hash, so the ledger records where training
    /// started); a member whose layout or initial model differs is refused,
    /// and this peer stops when more members agree on another one than on its own.
    func agreeOnLayout(_ learner: ExternalLearner, classes: [String]) async throws -> RunData {
        let own = LearnerLayout(tensors: learner.shared, initialModel: learner.initialHash)
        let bytes = own.encoded()
        try await publish(round: 0, bytes: bytes, updateHash: hex(SHA256.hash(data: bytes)), baseHash: learner.initialHash, samples: learner.rows["train"] ?? 0,
                          codec: RoundEngine.layoutCodec, metrics: [:])
        var others: [LearnerLayout: [String]] = [:]
        let agreed: [(RoundEngine.Accepted, LearnerLayout)] = try await exchange(round: 0, commitFirst: false, reveal: {}) { bytes, hash, author in
            guard hex(SHA256.hash(data: bytes)) == hash, let theirs = LearnerLayout.decode(bytes) else { return nil }
            guard theirs == own else {
                others[theirs, default: []].append(author)
                engine.progress(own.mismatch(theirs, member: author))
                return nil
            }
            return theirs
        }
        if let (layout, members) = others.max(by: { $0.value.count < $1.value.count }), members.count >= agreed.count {
            throw RoundError("\(members.sorted().joined(separator: ", ")) \(layout.difference(from: own)), and outnumber the members that agree with this peer's \(learner.name); "
                + "every member's learner must declare the same shared tensors and make the same initial model from seed \(plan.seed) (docs/learner-protocol.md)")
        }
        logger.info("learner layout agreed", metadata: ["members": "\(agreed.map(\.0.author).joined(separator: ","))", "initial-model": "\(learner.initialHash.prefix(12))"])
        // Credits score the classes this peer holds rows of.
        guard let counts = try await learner.evaluate([learner.initialParameters()], on: .assessment).first?.classCounts else {
            throw RoundError("\(learner.name) evaluated no model")
        }
        return RunData(learner: learner, spec: nil, classes: classes, scaler: nil, trainRows: learner.rows["train"] ?? 0,
                       assessedClasses: counts.indices.filter { counts[$0] > 0 }, modelPath: "\(config.stateDirectory)/model.safetensors",
                       metadata: ["learner": learner.process.command.joined(separator: " "), "classes": classes.joined(separator: ",")])
    }

    /// One sentence naming a member whose data has a different feature count.
    static func featureMismatch(_ member: String, has count: Int, own: Int, file: String) -> String {
        "member '\(member)' has \(count) feature column(s) and this peer's \((file as NSString).lastPathComponent) has \(own); every member's CSV needs the same feature columns, so its update is refused"
    }

    /// Stops this peer when more members agree on another feature count than on its own.
    func refuseOwnFeatureCount(_ own: Int, matching: Int, others: [Int: [String]]) throws {
        guard let (count, members) = others.max(by: { $0.value.count < $1.value.count }), members.count >= matching else { return }
        let name = (config.trainData as NSString).lastPathComponent
        throw RoundError("this member's \(name) has \(own) feature column(s) but \(members.sorted().joined(separator: ", ")) \(members.count == 1 ? "has" : "have") \(count); give this peer a CSV with the same feature columns as the others ('data.train' in \(config.file))")
    }

    /// Waits, at most `limit`, until this peer is connected to all its
    /// neighbours, so that the members start round 0 together: a member
    /// still being dialled gets the others' statistics over links that come
    /// up one by one, and closes round 0 tens of milliseconds after the
    /// first, which then waits that long in round 1.
    func awaitNeighbours(limit: Duration) async {
        guard await !awaitConnected(config.neighbourCount, limit: limit) else { return }
        let connected = await node.connectedPeers()
        logger.notice("starting round 0 before every neighbour is connected", metadata: [
            "connected": "\(connected.joined(separator: ","))", "neighbours": "\(config.neighbourCount)"])
    }

    /// Waits, at most `limit`, until `count` neighbours are connected; whether they are.
    func awaitConnected(_ count: Int, limit: Duration) async -> Bool {
        let clock = ContinuousClock()
        let deadline = clock.now + limit
        defer { changes.cancelAlarm() }
        while !Task.isCancelled {
            let seen = changes.count
            if await node.connectedPeers().count >= count { return true }
            guard clock.now < deadline else { return false }
            changes.alarm(at: deadline)
            await changes.wait(after: seen)
        }
        return false
    }

    /// One round: local step, commit and exchange, screen, aggregate, score, record.
    func round(_ r: Int, _ s: inout RunState, _ data: RunData) async throws {
        let clock = ContinuousClock()
        try await injectLinkCuts(before: r, &s)
        let start = clock.now
        let learnerBusy = (data.learner as? ExternalLearner)?.busySeconds
        let (in0, out0) = (node.traffic.bytesIn, node.traffic.bytesOut)
        let step = try await localStep(r, &s, data)
        let trained = clock.now
        var published = clock.now
        // Commit, then reveal: the signed update hash first; the bytes only
        // once every member's commitment for the round is here (or the
        // deadline passed with the quorum), so nobody can shape its update
        // on others'. Updates committed later are late. The previous round's
        // aggregate and checkpoint go into the same durable transaction as
        // this update (one disk sync per round).
        try await publish(round: UInt64(r), bytes: step.bytes, updateHash: step.localHash, baseHash: step.baseHash, samples: step.samples,
                          codec: RoundEngine.modelCodec, metrics: step.metrics, reveal: false, after: s.pending)
        s.pending = nil
        let signed = clock.now
        let updates: [(RoundEngine.Accepted, [Float])] = try await exchange(round: UInt64(r), commitFirst: true, reveal: { [node] in
            try await node.publish(step.bytes, round: UInt64(r), kind: .update)
            published = clock.now
        }) { [learner = data.learner] bytes, hash, _ in
            guard let parameters = learner.decode(bytes), learner.hash(parameters) == hash else { return nil }
            return parameters
        }
        let collected = clock.now
        let (ordered, screened, baseValidationLoss) = try await screen(updates, round: r, model: s.model, data: data)
        if config.attack != nil {
            s.observed = ordered.filter { $0.0.author != config.id }.map { zip($0.1, s.model).map { $0 - $1 } }
        }
        let heard = try await record(r, ordered: ordered, updates: updates, screened: screened, baseValidationLoss: baseValidationLoss, step: step, &s, data)
        guard let metrics = try await data.learner.evaluate([s.model], on: .validation).first else { throw RoundError("the learner evaluated no model") }
        let elapsed = start.duration(to: clock.now)
        var report = RoundReport(
            round: r, validationAccuracy: metrics.accuracy, validationLoss: metrics.logLoss, heard: ordered.map(\.0.author), screened: screened.map(\.author),
            members: members.count, trimmed: heard.trimmed, parameters: s.output.count, bytesIn: node.traffic.bytesIn - in0, bytesOut: node.traffic.bytesOut - out0,
            seconds: Self.seconds(elapsed), scoringSeconds: heard.scoringSeconds)
        if let external = data.learner as? ExternalLearner, let learnerBusy { report.learnerSeconds = external.busySeconds - learnerBusy }
        s.reports.append(report)
        engine.progress(report.line)
        logger.info("round done", metadata: [
            "round": "\(r)", "heard": "\(report.heard.joined(separator: ","))", "result": "\(heard.resultHash.prefix(12))", "accuracy": "\(metrics.accuracy)",
            "train": "\(start.duration(to: trained))", "sign": "\(trained.duration(to: signed))", "commit_wait": "\(signed.duration(to: published))", "collect": "\(published.duration(to: collected))", "record": "\(collected.duration(to: clock.now))",
            "score": "\(heard.scoringSeconds)",
        ])
    }

    /// The `cut_links` fault: this peer's links to the named members close before round `cut_after_round + 1`.
    func injectLinkCuts(before r: Int, _ s: inout RunState) async throws {
        guard !config.faults.cutLinks.isEmpty && !s.linksCut && r > config.faults.cutAfterRound else { return }
        s.linksCut = true
        logger.warning("injected fault: cutting links", metadata: ["before-round": "\(r)", "members": "\(config.faults.cutLinks.sorted().joined(separator: ","))"])
        await node.cutLinks(to: config.faults.cutLinks)
    }

    /// Trains from the current model (and, for robustness experiments, attacks or stalls).
    func localStep(_ r: Int, _ s: inout RunState, _ data: RunData) async throws -> RoundEngine.LocalStep {
        let learner = data.learner
        let baseParameters = s.model
        let baseHash = learner.hash(baseParameters)
        let trained = try await learner.train(from: baseParameters, round: r, seed: Self.seed(plan.seed, config.id, r))
        var local = trained.parameters
        if config.faults.slowRounds.contains(r) {
            logger.warning("injected fault: slow round", metadata: ["round": "\(r)", "seconds": "\(config.faults.slowSeconds)"])
            try await Task.sleep(for: .seconds(config.faults.slowSeconds))
        }
        let previousChange = s.previousBase.map { zip(baseParameters, $0).map { $0 - $1 } }
        if let attack = config.attack {
            local = attack.update(local: local, base: baseParameters, observed: s.observed, previousChange: previousChange,
                                  members: members.count, attackers: max(1, plan.maxByzantine), rng: &s.attackRNG)
        }
        if config.attack == .equivocate {
            if let p = s.pending {
                // The second update must name the position the honest one will take.
                try store.append(author: config.id, key: key, p.entries, state: p.state)
                s.pending = nil
            }
            try await equivocate(round: UInt64(r), honest: local, base: baseParameters, baseHash: baseHash, samples: data.trainRows, learner: learner)
        }
        return .init(local: local, localHash: learner.hash(local), baseHash: baseHash, baseParameters: baseParameters, previousChange: previousChange,
                     metrics: trained.metrics, samples: trained.samples ?? data.trainRows, bytes: learner.encode(local, metadata: nil))
    }

    static func seconds(_ d: Duration) -> Double { Double(d.components.seconds) + Double(d.components.attoseconds) * 1e-18 }
}
