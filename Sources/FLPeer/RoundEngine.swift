import Crypto
import FLCore
import FLGossip
import FLIdentity
import FLLedger
import FLWire
import Foundation
import Logging
import NIOPosix
import Synchronization
import X509

/// Why a peer stopped before the plan's end.
public struct RoundError: Error, CustomStringConvertible, Sendable {
    public let description: String
    public init(_ d: String) { description = d }
}

/// What one round did, as printed on the peer's terminal.
public struct RoundReport: Sendable, Codable, Equatable {
    public let round: Int
    public let validationAccuracy: Double
    public let validationLoss: Double
    /// Members whose update went into the aggregate (including this peer).
    public let heard: [String]
    /// Members whose update arrived but the validation screen dropped.
    public let screened: [String]
    public let members: Int
    /// Coordinates trimmed away from each included member's update.
    public let trimmed: [String: Int]
    public let parameters: Int
    public let bytesIn: Int
    public let bytesOut: Int
    public let seconds: Double
    /// Time spent scoring the round's updates (Shapley values).
    public let scoringSeconds: Double
    /// Time spent waiting for an external learner's answers this round (nil: the built-in learner).
    public var learnerSeconds: Double? = nil

    /// One terminal line.
    public var line: String {
        let most = trimmed.max { ($0.value, $1.key) < ($1.value, $0.key) }
        let trim = most.map { parameters > 0 && $0.value > 0 ? String(format: "max %.0f%% (%@)", 100 * Double($0.value) / Double(parameters), $0.key) : "none" } ?? "none"
        let screen = screened.isEmpty ? "" : "  screened out \(screened.joined(separator: ","))"
        return String(format: "round %3d  val acc %.4f  loss %.4f  heard %d/%d%@  trimmed %@  in %@  out %@  %.3f s",
                      round, validationAccuracy, validationLoss, heard.count + screened.count, members, screen, trim, kilobytes(bytesIn), kilobytes(bytesOut), seconds)
    }
}

func kilobytes(_ n: Int) -> String { n >= 10_000_000 ? String(format: "%.1f MB", Double(n) / 1e6) : String(format: "%.1f kB", Double(n) / 1e3) }

/// What a finished run leaves in the state directory as `summary.json`.
public struct RunSummary: Sendable, Codable {
    public let id: String
    public let rounds: [RoundReport]
    /// Mean wall time of rounds 1…R.
    public let secondsPerRound: Double
    public let bytesIn: Int
    public let bytesOut: Int
    public let modelFile: String
    public let ledgerFile: String
    /// The built-in model (nil with an external learner).
    public let model: ModelSpec?
    public let classes: [String]
    /// The pooled standardisation of the built-in model's features (nil with an external learner).
    public let standardizer: Standardizer?
    /// The external learner's command, if one trained the model.
    public var learner: String? = nil
    /// The final model on the external learner's test rows (`FLPEER_TEST`), if it has some.
    public var testAccuracy: Double? = nil
    public var testLoss: Double? = nil
    /// Seconds the external learner took to start and answer `hello` and `init`.
    public var learnerStartSeconds: Double? = nil
    /// User plus system CPU time of this peer's process over the whole run.
    public let cpuSeconds: Double
    /// The part of `cpuSeconds` spent in rounds 1…R (from the start of the first to the end of the last).
    public let roundCPUSeconds: Double
}

/// User plus system CPU time of this process so far, in seconds.
func processCPUSeconds() -> Double {
    var usage = rusage()
    guard getrusage(RUSAGE_SELF.rawValue, &usage) == 0 else { return 0 }
    func seconds(_ t: timeval) -> Double { Double(t.tv_sec) + Double(t.tv_usec) * 1e-6 }
    return seconds(usage.ru_utime) + seconds(usage.ru_stime)
}

/// The round engine of one institution: local training, a signed update
/// entry, announce/pull of the update, collection until every member
/// answered or the deadline passed with the quorum, verification, robust
/// aggregation, an aggregate entry and a checkpoint. No coordinator.
public struct RoundEngine: Sendable {
    public let config: PeerConfig
    public let logger: Logger
    /// Receives one line per round.
    public let progress: @Sendable (String) -> Void

    public init(config: PeerConfig, logger: Logger, progress: @escaping @Sendable (String) -> Void) {
        self.config = config
        self.logger = logger
        self.progress = progress
    }

    static let statsCodec = "feature-stats/v1"
    /// Round 0 with an external learner: the shared tensors and the initial model's hash.
    static let layoutCodec = "learner-layout/v1"
    /// How long a round waits for neighbours to confirm the update entries it holds.
    static let echoWait: Duration = .seconds(2)
    static let modelCodec = "safetensors"
    /// Scores are whole multiples of this many nats of validation loss.
    static let scoreUnit = 1e-6
    /// What the `lying-assessor` role reports as its own score (a million nats).
    static let lyingMaximum = 1e12

    /// One member's verified contribution to a round.
    struct Accepted {
        let author: String
        let updateHash: String
        let bytes: [UInt8]
    }

    public func run() async throws -> RunSummary {
        let plan = config.network.plan
        guard let classes = plan.classes else {
            throw ConfigError(file: config.network.file, key: "plan.classes", problem: "is missing, so members could index labels differently",
                              fix: "list every class in order, e.g. 'classes: [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]'")
        }
        let key = try Ed25519Keys.privateKey(at: config.keyFile)
        let certificatePEM = try PEMFiles.read(config.certificateFile)
        let trust = try config.network.trust()
        let csv = config.learner == nil ? try loadData(classes: classes) : nil
        let state = config.stateDirectory
        try FileManager.default.createDirectory(atPath: state, withIntermediateDirectories: true)
        let ledgerPath = "\(state)/ledger.sqlite"
        // An external learner starts (and answers `hello` and `init`) before this
        // peer joins the network; on a first run, before its ledger file exists,
        // so that a learner that cannot start leaves none behind.
        var external: ExternalLearner?
        if let learnerConfig = config.learner, !FileManager.default.fileExists(atPath: ledgerPath) {
            external = try await startLearner(learnerConfig, classes: classes, resume: false)
        }
        let store: LedgerStore
        do {
            store = try LedgerStore(path: ledgerPath, consortium: config.network.consortium)
        } catch {
            await external?.shutdown()
            throw error
        }
        // Nothing is signed before the own chain was compared with the replicas (`secureOwnChain`).
        store.refuseAppends(by: config.id, through: .max)
        let lastAggregate = try store.entries(author: config.id).last(where: { $0.header.kind == .aggregate })
        if external == nil, let learnerConfig = config.learner, lastAggregate.map({ $0.header.round < UInt64(plan.rounds) }) ?? true {
            do {
                external = try await startLearner(learnerConfig, classes: classes, resume: lastAggregate != nil)
            } catch {
                try? store.close()
                throw error
            }
        }
        var gossip = try config.gossipConfig()
        if let csv {
            let spec = ModelSpec(kind: plan.model, inputs: csv.train.featureCount, classes: classes.count, hidden: plan.model == .mlp ? plan.hidden : [])
            gossip.blobLimits = .forModel(parameterCount: spec.parameterCount, features: csv.train.featureCount, members: config.network.members.count)
        } else if let external {
            gossip.blobLimits = .forModel(parameterCount: external.sharedCount, features: 0, members: config.network.members.count)
        }
        // A restarted peer's blob window starts where recording its last round left it
        // (announcements more than 16 rounds beyond the window's start are refused).
        if let last = lastAggregate, last.header.round > 5 {
            gossip.minimumRound = last.header.round - 5
        }
        gossip.ledger = LedgerSync(store: store, caCertificate: trust.caCertificate, identity: (config.id, key))
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        // The gossip layer's ledger and file work gets a thread of its own:
        // merges must not queue behind training and scoring.
        let gossipPool = NIOThreadPool(numberOfThreads: 1)
        gossipPool.start()
        gossip.threadPool = gossipPool
        let node = try GossipNode(config: gossip, group: group, logger: logger)
        _ = try await node.start()
        let nodeTask = Task { try await node.run() }
        // Collection re-reads the ledger only after a blob or ledger entries arrived.
        let changes = Changes()
        // Waits end on these events or at a deadline's alarm (Changes.alarm); nothing polls.
        let eventTask = Task {
            for await event in node.events {
                switch event {
                case .ledgerMerged(_, let stored) where stored == 0: break  // entries already held
                case .blobReceived, .ledgerMerged, .positionsReported, .neighboursChanged, .connected, .disconnected: changes.bump()
                case .rejected, .duplicate, .stale: break
                }
            }
        }
        defer { eventTask.cancel() }
        var session = Session(engine: self, store: store, node: node, key: key, ca: trust.caCertificate, changes: changes,
                              certificateExpiry: gossip.tls.certificate.notValidAfter)
        let outcome: Result<RunSummary, any Error>
        do {
            if let finished = try session.finishOffline(featureCount: csv?.train.featureCount, classes: classes) {
                outcome = .success(finished)
            } else {
                try await session.secureOwnChain(certificatePEM: certificatePEM)
                let source: LearnerSource = if let external { .external(external) } else if let csv { .csv(train: csv.train, validation: csv.validation) }
                    else { throw RoundError("no learner: the plan's rounds remain but the external learner was not started") }
                outcome = .success(try await session.train(source, classes: classes))
            }
        } catch {
            outcome = .failure(error)
        }
        await external?.shutdown()
        nodeTask.cancel()
        _ = await nodeTask.result
        try? await group.shutdownGracefully()
        try? await gossipPool.shutdownGracefully()
        // After the gossip layer's last merge: the file alone then holds every entry.
        try store.close()
        return try outcome.get()
    }

    /// Starts the peer file's external learner on this member's data (docs/learner-protocol.md).
    func startLearner(_ learner: LearnerConfig, classes: [String], resume: Bool) async throws -> ExternalLearner {
        let plan = config.network.plan
        let environment = ExternalLearner.environment(data: config.trainData, validation: config.validationData, test: config.testData, member: config.id,
                                                      seed: plan.seed, classes: classes, label: plan.label, rounds: plan.rounds, localEpochs: plan.localEpochs,
                                                      batchSize: plan.batchSize, learningRate: plan.learningRate)
        let permutation = config.attack.flatMap { attack -> [Int]? in
            guard case .labelFlip = attack else { return nil }
            return attack.trainingLabels(Array(0..<classes.count), classes: classes.count)
        }
        let external = try await ExternalLearner.start(learner, directory: "\(config.stateDirectory)/learner", environment: environment, classes: classes,
                                                       localPatterns: plan.localParameters, seed: UInt64(plan.seed), labelPermutation: permutation, resume: resume)
        let seconds = external.startSeconds
        progress(String(format: "learner: %@ answered hello and init in %.2f s (%d shared parameters in %d tensors, %d kept local)",
                        external.name, seconds, external.sharedCount, external.shared.count, external.tensors.count - external.shared.count))
        logger.info("learner started", metadata: ["seconds": "\(seconds)", "shared": "\(external.sharedCount)", "initial-model": "\(external.initialHash.prefix(12))"])
        return external
    }

    /// This peer's training rows and validation split (its own file, or 10 % of the training rows, stratified).
    func loadData(classes: [String]) throws -> (train: Dataset, validation: Dataset) {
        let plan = config.network.plan
        let all = try CSVLoader.load(path: config.trainData, labelColumn: plan.label, classNames: classes)
        if let v = config.validationData {
            return (all, try CSVLoader.load(path: v, labelColumn: plan.label, classNames: classes))
        }
        let (t, v) = Splitting.stratified(all, fraction: 0.1, seed: UInt64(plan.seed))
        guard !v.isEmpty else {
            let name = (config.trainData as NSString).lastPathComponent
            throw ConfigError(file: config.file, key: "data.train",
                              problem: "names \(name), whose \(all.rows) row(s) leave no validation rows (10 % of each class is set aside, so some class needs at least \(Self.minimumRowsForValidation) rows)",
                              fix: "add rows to \(name) or name a separate validation CSV as 'data.validation'")
        }
        return (all.subset(t), all.subset(v))
    }

    /// The fewest rows of one class whose 10 % rounds to a validation row.
    static let minimumRowsForValidation = 5

    /// The state of one run.
    struct Session {
        let engine: RoundEngine
        let store: LedgerStore
        let node: GossipNode
        let key: Curve25519.Signing.PrivateKey
        let ca: Certificate
        let changes: Changes
        /// This member's certificate's notAfter: the other members refuse entries it signs later.
        let certificateExpiry: Date
        /// Bodies of entries read more than once, decoded once.
        let bodies = BodyCache()
        var config: PeerConfig { engine.config }
        var plan: TrainingPlan { engine.config.network.plan }
        var members: [String] { engine.config.network.members.map(\.id) }
        var logger: Logger { engine.logger }

        /// Milliseconds since 1970, for log lines compared across processes.
        static func unixMillis() -> Int64 { Int64((Date().timeIntervalSince1970 * 1000).rounded(.down)) }

        /// The last round this peer recorded (its latest aggregate entry) and
        /// the model saved with it, if the state directory holds one.
        func resumePoint(_ learner: any LocalLearner) throws -> (Int, [Float])? {
            guard let last = try store.entries(author: config.id).last(where: { $0.header.kind == .aggregate }),
                  let resultHash = EntryBody.decode(EntryBody.Aggregate.self, from: last.body)?.resultHash else { return nil }
            guard let bytes = try store.localState("model") else { throw lostModel(round: last.header.round) }
            guard let net = learner.decode(bytes), learner.hash(net) == resultHash else {
                throw RoundError("\(store.path) records round \(last.header.round) but the saved model does not match its aggregate; start from an empty state directory")
            }
            return (Int(last.header.round), net)
        }

        var rule: AggregationRule { plan.rule.aggregation(beta: plan.beta) }

        /// A per-member, per-round training seed.
        static func seed(_ planSeed: Int, _ id: String, _ round: Int) -> UInt64 {
            var h: UInt64 = 0xCBF2_9CE4_8422_2325
            for b in id.utf8 { h = (h ^ UInt64(b)) &* 0x0000_0100_0000_01B3 }
            return UInt64(planSeed) ^ h &+ UInt64(round) &* 0x9E37_79B9_7F4A_7C15
        }

        /// Signs this peer's update for `round` into its chain (once: a
        /// restarted peer reuses the entry it already signed) and announces the bytes.
        /// `after`: entries (and local state) to store first, in the same transaction.
        func publish(round: UInt64, bytes: [UInt8], updateHash: String, baseHash: String, samples: Int, codec: String, metrics: [String: Double],
                     reveal: Bool = true, after earlier: PendingRecord? = nil) async throws {
            let blob = hex(SHA256.hash(data: bytes))
            var appended: [LedgerEntry] = []
            try await guardOwnChain()
            if let existing = try store.entries(kind: .update, round: round).first(where: { $0.header.author == config.id }) {
                guard EntryBody.decode(EntryBody.Update.self, from: existing.body)?.updateHash == updateHash else {
                    throw RoundError("this peer already signed a different update for round \(round) in \(store.path); start from an empty state directory")
                }
                if let earlier { appended = try store.append(author: config.id, key: key, earlier.entries, state: earlier.state) }
            } else {
                let body = EntryBody.update(round: round, baseHash: baseHash, updateHash: updateHash, samples: samples, codec: codec, metrics: metrics, blob: blob)
                appended = try store.append(author: config.id, key: key, (earlier?.entries ?? []) + [(.update, round, { _ in body })], state: earlier?.state ?? [:])
            }
            logger.debug("signed", metadata: ["round": "\(round)", "at": "\(Int(Date().timeIntervalSince1970 * 1000) % 100000)"])
            await node.ledgerChanged(appended: appended.map(\.wire))
            guard reveal else { return }
            try await node.publish(bytes, round: round, kind: codec == RoundEngine.modelCodec ? .update : .other)
            logger.debug("published", metadata: ["round": "\(round)", "at": "\(Int(Date().timeIntervalSince1970 * 1000) % 100000)"])
        }

        /// The scores of the included updates (docs/credits.md): gates first
        /// (zero, and out of the game), then the Shapley values of the rest,
        /// class by class: a coalition's utility for class c is how far its
        /// aggregate (same rule) lowers this peer's mean loss on its rows of
        /// class c below carrying on in the last round's direction.
        func score(_ ordered: [(Accepted, [Float])], stats: AggregationStats, base: [Float], previousChange: [Float]?,
                   authorBases: [(base: [Float], change: [Float]?, previousSteps: [[Float]])], center: [Float],
                   learner: any LocalLearner, classes: [Int], classNames: [String], baseHash: String) async throws -> ([String: [String: Double]], EntryBody.Scoring) {
            let beta: Double = switch rule {
            case .trimmedMean(let b), .boundedTrimmedMean(let b): b
            case .median: 0.5
            default: 0
            }
            let rule = self.rule
            let gates = ContributionScorer.gates(updates: ordered.map(\.1), bases: authorBases.map(\.base), previousChanges: authorBases.map(\.change),
                                                 previousSteps: authorBases.map(\.previousSteps), trimmed: stats.trimmed, beta: beta)
            let players = ordered.indices.filter { gates[$0] == nil }
            // A loss that is not a number (NaN parameters) counts as 1000, far above
            // any real one (probabilities are clipped at 1e-15, so at most 34.6).
            func finite(_ losses: [Double]) -> [Double] { losses.map { $0.isFinite ? $0 : 1e3 } }
            // The empty coalition: carrying on in the last round's direction
            // (the base plus the previous change), what the federation gets
            // without anyone's new work; round 1: the base.
            let carryOn = previousChange.map { zip(base, $0).map { $0 + $1 } } ?? base
            var buffer = [Float]()
            let seed = UInt64(baseHash.prefix(16), radix: 16) ?? 0
            /// A coalition's aggregate (same rule), nil when the rule refuses it.
            func aggregate(_ coalition: [Int]) -> [Float]? {
                let inputs = coalition.map { ordered[players[$0]].1 }
                guard (try? Aggregator.aggregate(inputs, rule: rule, center: center, reference: base, countTrimmed: false, into: &buffer)) != nil else { return nil }
                return buffer
            }
            let values: ContributionScorer.VectorValues
            if let evaluator = learner.scorer(on: .assessment, classes: classes) {
                func losses(_ parameters: [Float]) -> [Double] { finite(evaluator.losses(parameters)) }
                let empty = losses(carryOn)
                // A linear model's logits are linear in its parameters, and a rule
                // that trims nothing from a coalition this small is its mean: the
                // coalition's losses come from the mean of its members' logits,
                // computed once per member (docs/credits.md, "Shapley values").
                func isMean(_ size: Int) -> Bool {
                    switch rule {
                    case .mean: true
                    case .trimmedMean(let beta): AggregationRule.trimCount(beta: beta, n: size) == 0
                    default: false
                    }
                }
                let memberLogits = players.compactMap { evaluator.outputs(ordered[$0].1) }
                values = ContributionScorer.shapley(players: players.count, dimensions: classes.count, seed: seed) { coalition in
                    if memberLogits.count == players.count && !players.isEmpty && isMean(coalition.count) {
                        return zip(empty, finite(evaluator.losses(meanOfOutputs: coalition.map { memberLogits[$0] }))).map { $0 - $1 }
                    }
                    guard let model = aggregate(coalition) else { return classes.map { _ in 0 } }
                    return zip(empty, losses(model)).map { $0 - $1 }
                }
            } else {
                // An external learner: the coalitions each play of the game
                // needs are aggregated here and evaluated in batched requests.
                // The empty coalition's model goes with the first batch.
                func losses(_ models: [[Float]]) async throws -> [[Double]] {
                    let e = try await learner.evaluate(models, on: .assessment)
                    guard e.count == models.count else { throw RoundError("the learner evaluated \(e.count) of \(models.count) models") }
                    return e.map { e in finite(classes.map { e.classLosses[$0] }) }
                }
                var empty: [Double]?
                values = try await ContributionScorer.shapley(players: players.count, dimensions: classes.count, seed: seed) { coalitions in
                    let models = coalitions.map { aggregate($0) }
                    var evaluated = try await losses((empty == nil ? [carryOn] : []) + models.compactMap { $0 }).makeIterator()
                    let base = empty ?? evaluated.next()!
                    empty = base
                    return models.map { m in m == nil ? classes.map { _ in 0 } : zip(base, evaluated.next()!).map { $0 - $1 } }
                }
            }
            return Self.scores(authors: ordered.map(\.0.author), gates: gates, players: players, values: values,
                               names: classes.map { classNames[$0] }, seed: seed)
        }

        /// The scores entry of an aggregate: gated members score zero; the
        /// others' Shapley values in whole micro-nats (integers read back
        /// exactly by every JSON parser, so medians and sums re-derive bit for
        /// bit in any language).
        static func scores(authors: [String], gates: [ContributionScorer.Gate?], players: [Int], values: ContributionScorer.VectorValues,
                           names: [String], seed: UInt64) -> ([String: [String: Double]], EntryBody.Scoring) {
            var scores: [String: [String: Double]] = [:]
            var gated: [String: String] = [:]
            for (i, author) in authors.enumerated() {
                if let g = gates[i] {
                    scores[author] = Dictionary(uniqueKeysWithValues: names.map { ($0, 0) })
                    gated[author] = g.rawValue
                }
            }
            for (k, i) in players.enumerated() {
                scores[authors[i]] = Dictionary(uniqueKeysWithValues: zip(names, values.values[k]).map { ($0, ($1 / RoundEngine.scoreUnit).rounded()) })
            }
            return (scores, EntryBody.Scoring(rule: ContributionScorer.ruleVersion, seed: String(format: "%016llx", seed), exact: values.exact,
                                              permutations: values.permutations, evaluations: values.evaluations, gated: gated, classes: names, seconds: 0))
        }

        /// The credits of round `round − 1`, from the aggregate entries of
        /// that round this peer holds (members proven to equivocate excepted),
        /// recorded so an auditor can re-derive them.
        /// `aggregates`: the aggregate entries of round `round − 1` stored here.
        func previousRoundCredits(_ round: UInt64, aggregates: [LedgerEntry]) throws -> EntryBody.RecordedCredits? {
            guard round >= 2 else { return nil }
            let flagged = Set(try store.flaggedAuthors(caCertificate: ca))
            var assessments: [String: Credits.Assessment] = [:]
            for e in aggregates where !flagged.contains(e.header.author) && assessments[e.header.author] == nil {
                if let a = bodies.aggregate(e).assessment { assessments[a.assessor] = a }
            }
            guard !assessments.isEmpty else { return nil }
            let ordered = assessments.keys.sorted().map { assessments[$0]! }
            return EntryBody.RecordedCredits(round: round - 1, assessors: ordered.map(\.assessor), values: Credits.roundCredits(ordered))
        }

        /// The `equivocate` attack: signs a second update for this round's chain
        /// position (the honest step reversed) and sends it, with its bytes, to
        /// every other neighbour before the honest one is published to all.
        func equivocate(round: UInt64, honest: [Float], base: [Float], baseHash: String, samples: Int, learner: any LocalLearner) async throws {
            let alt = zip(base, honest).map { $0 - ($1 - $0) }
            let altBytes = learner.encode(alt, metadata: nil)
            let entry = try store.draft(author: config.id, kind: .update, round: round, body: EntryBody.update(
                round: round, baseHash: baseHash, updateHash: learner.hash(alt), samples: samples, codec: RoundEngine.modelCodec,
                metrics: [:], blob: hex(SHA256.hash(data: altBytes))), key: key)
            let shown = Set(await node.connectedPeers().enumerated().filter { $0.offset % 2 == 0 }.map(\.element))
            try await node.publish(altBytes, round: round, kind: .update)
            await node.send(entries: [entry.wire], to: shown)
            logger.warning("attack: equivocating", metadata: ["round": "\(round)", "second-update-to": "\(shown.sorted().joined(separator: ","))"])
        }

        /// After the last round, stays reachable until every member's final
        /// checkpoint is here (so they have pulled ours too), or the deadline passes.
        func linger(round: UInt64) async throws {
            let clock = ContinuousClock()
            let deadline = clock.now + .seconds(plan.roundDeadlineSeconds)
            defer { changes.cancelAlarm() }
            while clock.now < deadline {
                try Task.checkCancellation()
                let seen = changes.count
                let done = Set(try store.entries(kind: .checkpoint, round: round).map(\.header.author))
                let reachable = node.reachableMembers()
                if members.filter(reachable.contains).allSatisfy(done.contains) { break }
                changes.alarm(at: deadline)
                await changes.wait(after: seen)
            }
            // Give the slowest member a moment to pull this peer's last entries.
            try await Task.sleep(for: .milliseconds(300))
        }
    }
}

