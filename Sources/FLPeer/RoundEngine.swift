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
    public let model: ModelSpec
    public let classes: [String]
    public let standardizer: Standardizer
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
        let all = try CSVLoader.load(path: config.trainData, labelColumn: plan.label, classNames: classes)
        let train: Dataset, validation: Dataset
        if let v = config.validationData {
            train = all
            validation = try CSVLoader.load(path: v, labelColumn: plan.label, classNames: classes)
        } else {
            let (t, v) = Splitting.stratified(all, fraction: 0.1, seed: UInt64(plan.seed))
            train = all.subset(t)
            validation = all.subset(v)
        }
        let state = config.stateDirectory
        try FileManager.default.createDirectory(atPath: state, withIntermediateDirectories: true)
        let ledgerPath = "\(state)/ledger.sqlite"
        let store = try LedgerStore(path: ledgerPath, consortium: config.network.consortium)
        if try store.heads()[config.id] == nil {
            try store.append(author: config.id, kind: .genesis, round: 0, body: EntryBody.genesis(certificatePEM: certificatePEM), key: key)
        }

        var gossip = try config.gossipConfig()
        gossip.ledger = LedgerSync(store: store, caCertificate: trust.caCertificate, identity: (config.id, key))
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        let node = try GossipNode(config: gossip, group: group, logger: logger)
        _ = try await node.start()
        let nodeTask = Task { try await node.run() }
        // Collection re-reads the ledger only after a blob or ledger entries arrived.
        let changes = Changes()
        // Waits end on these events or at a deadline's alarm (Changes.alarm); nothing polls.
        let eventTask = Task {
            for await event in node.events {
                switch event {
                case .blobReceived, .ledgerMerged, .positionsReported, .neighboursChanged, .connected, .disconnected: changes.bump()
                case .rejected, .duplicate, .stale: break
                }
            }
        }
        defer { eventTask.cancel() }
        var session = Session(engine: self, store: store, node: node, key: key, ca: trust.caCertificate, changes: changes)
        do {
            let summary = try await session.train(train: train, validation: validation, classes: classes)
            nodeTask.cancel()
            _ = await nodeTask.result
            try await group.shutdownGracefully()
            return summary
        } catch {
            nodeTask.cancel()
            _ = await nodeTask.result
            try? await group.shutdownGracefully()
            throw error
        }
    }

    /// The state of one run.
    struct Session {
        let engine: RoundEngine
        let store: LedgerStore
        let node: GossipNode
        let key: Curve25519.Signing.PrivateKey
        let ca: Certificate
        let changes: Changes
        var config: PeerConfig { engine.config }
        var plan: TrainingPlan { engine.config.network.plan }
        var members: [String] { engine.config.network.members.map(\.id) }
        var logger: Logger { engine.logger }

        mutating func train(train: Dataset, validation: Dataset, classes: [String]) async throws -> RunSummary {
            // Round 0: pooled feature statistics, so every member standardises alike.
            let statsBytes = EntryBody.encode(Self.statsObject(FeatureStatistics(of: train)))
            let statsHash = hex(SHA256.hash(data: statsBytes))
            try await publish(round: 0, bytes: statsBytes, updateHash: statsHash, baseHash: "", samples: train.rows, codec: RoundEngine.statsCodec, metrics: [:])
            let statsIn: [(Accepted, FeatureStatistics)] = try await exchange(round: 0, commitFirst: false, reveal: {}) { bytes, hash in
                guard hex(SHA256.hash(data: bytes)) == hash, let s = Self.stats(bytes), s.sums.count == train.featureCount else { return nil }
                return s
            }
            guard let scaler = FeatureStatistics.pooled(statsIn.map(\.1)) else { throw RoundError("the members' feature statistics do not combine (different feature counts?)") }
            logger.info("standardisation agreed", metadata: ["members": "\(statsIn.map(\.0.author).joined(separator: ","))"])
            var trainStd = scaler.transform(train)
            let validationStd = scaler.transform(validation)
            // What this peer scores other members' updates on: all of its rows
            // (none of them went into another member's update), true labels
            // (copied before an attack rewrites the training labels).
            var assessment = trainStd
            assessment.features += validationStd.features
            assessment.labels += validationStd.labels
            let assessedClasses = Array(Set(assessment.labels)).sorted()
            let attack = config.attack
            if let attack {
                trainStd.labels = attack.trainingLabels(trainStd.labels, classes: classes.count)
                logger.warning("this peer attacks the federation (robustness evaluation)", metadata: ["attack": "\(attack)"])
            }
            var rng = SeededGenerator(seed: Self.seed(plan.seed, config.id, 0), stream: "attack")
            var observed: [[Float]] = []  // other members' deltas in the last round, for ALIE and IPM
            var included: [UInt64: Set<String>] = [:]  // who went into each round's aggregate here
            var recordedLate = Set<String>()

            let spec = ModelSpec(kind: plan.model, inputs: train.featureCount, classes: classes.count, hidden: plan.model == .mlp ? plan.hidden : [])
            var model = Network(spec: spec, seed: UInt64(plan.seed))
            var reports: [RoundReport] = []
            var output = [Float]()
            let clock = ContinuousClock()
            let modelPath = "\(config.stateDirectory)/model.safetensors"
            let metadata = ["model": spec.kind.rawValue, "hidden": spec.hidden.map(String.init).joined(separator: ","), "classes": classes.joined(separator: ",")]
            // A restarted peer resumes after the last round it recorded: its
            // aggregate entry and the model it names were committed together.
            let resumeAfter = try resumePoint(spec: spec)
            if let (round, saved) = resumeAfter {
                model = saved
                engine.progress("resuming after round \(round) (model and ledger from \(config.stateDirectory))")
                logger.notice("resuming", metadata: ["after-round": "\(round)"])
            }
            let firstRound = (resumeAfter?.0 ?? 0) + 1
            if firstRound > plan.rounds { try Data(Safetensors.encode(model.parameterSet, metadata: metadata)).write(to: URL(fileURLWithPath: modelPath), options: .atomic) }
            var linksCut = false
            var previousBase: [Float]?  // the model the previous round started from (replay gate, replay attack)
            var history = ModelHistory()  // recent starting models by hash, and last round's update vectors (gates)
            let cpuAtFirstRound = processCPUSeconds()
            // A round's aggregate and checkpoint (with the model as local state), not yet stored.
            var pending: (entries: [LedgerStore.PendingEntry], state: [String: [UInt8]])?
            var cpuAtLastRound = cpuAtFirstRound
            for r in firstRound..<(plan.rounds + 1) {
                try Task.checkCancellation()
                if !config.faults.cutLinks.isEmpty && !linksCut && r > config.faults.cutAfterRound {
                    linksCut = true
                    logger.warning("injected fault: cutting links", metadata: ["before-round": "\(r)", "members": "\(config.faults.cutLinks.sorted().joined(separator: ","))"])
                    await node.cutLinks(to: config.faults.cutLinks)
                }
                let start = clock.now
                let (in0, out0) = (node.traffic.bytesIn, node.traffic.bytesOut)
                let baseHash = model.parameterSet.sha256Hex()
                var local = model
                let baseParameters = model.parameters
                let summary = Trainer.train(&local, on: trainStd, config: plan.trainingConfig(seed: Self.seed(plan.seed, config.id, r)))
                if config.faults.slowRounds.contains(r) {
                    logger.warning("injected fault: slow round", metadata: ["round": "\(r)", "seconds": "\(config.faults.slowSeconds)"])
                    try await Task.sleep(for: .seconds(config.faults.slowSeconds))
                }
                let previousChange = previousBase.map { zip(baseParameters, $0).map { $0 - $1 } }
                if let attack {
                    local.parameters = attack.update(local: local.parameters, base: model.parameters, observed: observed, previousChange: previousChange,
                                                     members: members.count, attackers: max(1, plan.maxByzantine), rng: &rng)
                }
                let bytes = Safetensors.encode(local.parameterSet)
                if attack == .equivocate, let p = pending {
                    // The second update must name the position the honest one will take.
                    try store.append(author: config.id, key: key, p.entries, state: p.state)
                    pending = nil
                }
                if attack == .equivocate {
                    try await equivocate(round: UInt64(r), honest: local, base: model, baseHash: baseHash, samples: train.rows)
                }
                // Commit, then reveal: the signed update hash first; the bytes
                // only once every member's commitment for the round is here
                // (or the deadline passed with the quorum), so nobody can shape
                // its update on others'. Updates committed later are late.
                // The previous round's aggregate and checkpoint go into the same
                // durable transaction as this update (one disk sync per round).
                try await publish(round: UInt64(r), bytes: bytes, updateHash: local.parameterSet.sha256Hex(), baseHash: baseHash, samples: train.rows,
                                  codec: RoundEngine.modelCodec, metrics: ["train_loss": Double(summary.epochLosses.last ?? 0)], reveal: false,
                                  after: pending)
                pending = nil
                var published = clock.now
                let updates: [(Accepted, [Float])] = try await exchange(round: UInt64(r), commitFirst: true, reveal: { [node] in
                    try await node.publish(bytes, round: UInt64(r), kind: .update)
                    published = clock.now
                }) { bytes, hash in
                    guard let (params, _) = try? Safetensors.decode(bytes), params.sha256Hex() == hash,
                          let net = try? Network(spec: spec, parameters: params), net.parameters.allSatisfy(\.isFinite) else { return nil }
                    return net.parameters
                }
                let collected = clock.now
                // Inputs in author order at every peer, so that peers holding the
                // same updates compute bit-identical aggregates (float sums depend
                // on order); this peer's own update is the centre of clipping.
                let me = config.id
                var ordered = updates  // collect returns them sorted by author
                // Validation screen (when the plan expects Byzantine members): drop
                // up to max_byzantine other members' updates (fewer by the members
                // already excluded for equivocating) that barely move the model
                // (a step under a tenth of the median step: no training) or do
                // worse on this peer's validation split than the model the round
                // started from, those first, then worst loss first. Each peer
                // judges with its own data.
                var screened: [EntryBody.Screened] = []
                var baseValidationLoss: Double?
                let budget = plan.maxByzantine - (plan.maxByzantine > 0 ? members.filter(Set(try store.flaggedAuthors(caCertificate: ca)).contains).count : 0)
                if plan.screen == "validation-loss" && budget > 0 {
                    var probe = model
                    let baseLoss = model.evaluate(on: validationStd).logLoss
                    // A loss that is not a number counts as the worst.
                    let losses = ordered.map { u -> Double in probe.parameters = u.1; let l = probe.evaluate(on: validationStd).logLoss; return l.isNaN ? .infinity : l }
                    let steps = ordered.map { u in u.1.withUnsafeBufferPointer { a in baseParameters.withUnsafeBufferPointer { VectorMath.squaredDistance(a, $0).squareRoot() } } }
                    let sortedSteps = steps.sorted()
                    let medianStep = sortedSteps[sortedSteps.count / 2]
                    let idle: [Bool] = steps.map { $0 < 0.1 * medianStep }
                    let rank: [Int] = idle.map { $0 ? 0 : 1 }
                    let candidates: [Int] = ordered.indices.filter { ordered[$0].0.author != me && (idle[$0] || losses[$0] > baseLoss) }
                    let worst = candidates.sorted { (i: Int, j: Int) -> Bool in
                        (rank[i], -losses[i], ordered[i].0.author) < (rank[j], -losses[j], ordered[j].0.author)
                    }.prefix(budget)
                    let drop = Set(worst)
                    baseValidationLoss = baseLoss
                    for i in worst.sorted() {
                        screened.append(.init(author: ordered[i].0.author, updateHash: ordered[i].0.updateHash, validationLoss: losses[i]))
                        logger.info("update screened out", metadata: ["author": "\(ordered[i].0.author)", "round": "\(r)", "validation-loss": "\(losses[i])", "base-loss": "\(baseLoss)"])
                    }
                    ordered = ordered.indices.filter { !drop.contains($0) }.map { ordered[$0] }
                }
                if attack != nil {
                    let base = model.parameters
                    observed = ordered.filter { $0.0.author != me }.map { zip($0.1, base).map { $0 - $1 } }
                }
                let stats = try Aggregator.aggregate(ordered.map(\.1), rule: rule, center: local.parameters, reference: baseParameters, into: &output)
                // Scores of the included updates (docs/credits.md), and the credits of the previous round.
                let scoringStart = clock.now
                history.note(model: baseParameters, hash: baseHash, round: UInt64(r))
                let authorBases = try history.bases(of: ordered.map(\.0.author), round: UInt64(r), store: store, rule: rule, like: model,
                                                     mine: (config.id, baseParameters, previousChange))
                var (scores, scoring) = try score(ordered, stats: stats, base: model, previousChange: previousChange, authorBases: authorBases,
                                                  center: local.parameters, assessment: assessment, classes: assessedClasses,
                                                  classNames: classes, baseHash: baseHash)
                history.remember(updates: updates.map { ($0.0.updateHash, $0.1) })
                let scoringTime = scoringStart.duration(to: clock.now)
                scoring.seconds = Double(scoringTime.components.seconds) + Double(scoringTime.components.attoseconds) * 1e-18
                if attack == .lyingAssessor {
                    scores = Dictionary(uniqueKeysWithValues: scores.map { m, v in (m, v.mapValues { _ in m == me ? RoundEngine.lyingMaximum : 0 }) })
                }
                let scored = clock.now
                let recordedCredits = try previousRoundCredits(UInt64(r))
                let credited = clock.now
                previousBase = baseParameters
                model.parameters = output
                let resultHash = model.parameterSet.sha256Hex()
                var parameters: [String: Double] = [:]
                if case .trimmedMean(let beta) = rule { parameters["beta"] = beta }
                if case .boundedTrimmedMean(let beta) = rule { parameters["beta"] = beta }
                if let tau = stats.tau { parameters["tau"] = tau }
                if let baseValidationLoss { parameters["base_validation_loss"] = baseValidationLoss }
                // The aggregate and the checkpoint of all heads (including that aggregate) in one transaction.
                // Blobs of rounds older than the late window are no longer fetched.
                if r > 5 { await node.setMinimumRound(UInt64(r - 5)) }
                // Updates of rounds already closed here that arrived since: recorded as late, never mixed in.
                included[UInt64(r)] = Set(ordered.map(\.0.author) + screened.map(\.author))
                var late: [EntryBody.Late] = []
                // Members with fork evidence were dropped, not late.
                let forked = Set(try store.flaggedAuthors(caCertificate: ca))
                for (closed, authors) in included where closed < UInt64(r) && closed + 5 >= UInt64(r) {
                    for e in try store.entries(kind: .update, round: closed) where !authors.contains(e.header.author) && !forked.contains(e.header.author)
                        && !recordedLate.contains("\(e.header.author)#\(closed)") {
                        recordedLate.insert("\(e.header.author)#\(closed)")
                        let hash = EntryBody.decode(EntryBody.Update.self, from: e.body)?.updateHash ?? ""
                        late.append(.init(author: e.header.author, round: closed, updateHash: hash))
                        logger.notice("late update recorded", metadata: ["author": "\(e.header.author)", "round": "\(closed)"])
                    }
                }
                let aggregate = EntryBody.aggregate(
                    round: UInt64(r), included: ordered.enumerated().map { .init(author: $1.0.author, updateHash: $1.0.updateHash, trimmed: stats.trimmed[$0]) },
                    rule: plan.rule, parameters: parameters, resultHash: resultHash, scores: scores, late: late.sorted { ($0.round, $0.author) < ($1.round, $1.author) },
                    screened: screened, scoring: scoring, credits: recordedCredits)
                // The model is kept in the ledger file's local state in the same
                // transaction (no file per round); model.safetensors is written at the end.
                let modelBytes = Safetensors.encode(model.parameterSet, metadata: metadata.merging(["round": "\(r)"]) { $1 })
                // Signed and stored with the next round's update (or at the end).
                let drafted = clock.now
                pending = ([
                    (.aggregate, UInt64(r), { _ in aggregate }),
                    (.checkpoint, UInt64(r), { heads in EntryBody.checkpoint(heads: try heads().map { (author: $0.key, seq: $0.value.seq, hash: $0.value.hash) }) }),
                ], ["model": modelBytes])
                if r == plan.rounds { try Data(modelBytes).write(to: URL(fileURLWithPath: modelPath), options: .atomic) }

                let metrics = model.evaluate(on: validationStd)
                let elapsed = start.duration(to: clock.now)
                let report = RoundReport(
                    round: r, validationAccuracy: metrics.accuracy, validationLoss: metrics.logLoss, heard: ordered.map(\.0.author), screened: screened.map(\.author), members: members.count,
                    trimmed: Dictionary(uniqueKeysWithValues: ordered.enumerated().map { ($1.0.author, stats.trimmed[$0]) }), parameters: output.count,
                    bytesIn: node.traffic.bytesIn - in0, bytesOut: node.traffic.bytesOut - out0,
                    seconds: Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) * 1e-18, scoringSeconds: scoring.seconds)
                reports.append(report)
                engine.progress(report.line)
                logger.info("round done", metadata: [
                    "round": "\(r)", "heard": "\(report.heard.joined(separator: ","))", "result": "\(resultHash.prefix(12))", "accuracy": "\(metrics.accuracy)",
                    "train_publish": "\(start.duration(to: published))", "collect": "\(published.duration(to: collected))", "record": "\(collected.duration(to: clock.now))",
                    "screen_aggregate": "\(collected.duration(to: scoringStart))", "score": "\(scoringStart.duration(to: scored))", "credits": "\(scored.duration(to: credited))",
                    "late_draft": "\(credited.duration(to: drafted))", "evaluate": "\(drafted.duration(to: clock.now))",
                ])
            }
            if let p = pending {
                try store.append(author: config.id, key: key, p.entries, state: p.state)
                await node.ledgerChanged()
            }
            cpuAtLastRound = processCPUSeconds()
            try await linger(round: UInt64(plan.rounds))
            let summary = RunSummary(
                id: config.id, rounds: reports, secondsPerRound: reports.map(\.seconds).reduce(0, +) / Double(max(1, reports.count)),
                bytesIn: node.traffic.bytesIn, bytesOut: node.traffic.bytesOut, modelFile: modelPath, ledgerFile: store.path,
                model: spec, classes: classes, standardizer: scaler, cpuSeconds: processCPUSeconds(), roundCPUSeconds: cpuAtLastRound - cpuAtFirstRound)
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
            try encoder.encode(summary).write(to: URL(fileURLWithPath: "\(config.stateDirectory)/summary.json"), options: .atomic)
            return summary
        }

        /// Milliseconds since 1970, for log lines compared across processes.
        static func unixMillis() -> Int64 { Int64((Date().timeIntervalSince1970 * 1000).rounded(.down)) }

        /// The last round this peer recorded (its latest aggregate entry) and
        /// the model saved with it, if the state directory holds one.
        func resumePoint(spec: ModelSpec) throws -> (Int, Network)? {
            guard let last = try store.entries(author: config.id).last(where: { $0.header.kind == .aggregate }),
                  let resultHash = EntryBody.decode(EntryBody.Aggregate.self, from: last.body)?.resultHash,
                  let bytes = try store.localState("model") else { return nil }
            guard let (params, _) = try? Safetensors.decode(bytes), params.sha256Hex() == resultHash,
                  let net = try? Network(spec: spec, parameters: params)
            else {
                throw RoundError("\(store.path) records round \(last.header.round) but the saved model does not match its aggregate; start from an empty state directory")
            }
            return (Int(last.header.round), net)
        }

        var rule: AggregationRule {
            switch plan.rule {
            case "mean": .mean
            case "median": .median
            case "clipping": .clipping(tau: nil)
            case "bounded-trimmed-mean": .boundedTrimmedMean(beta: plan.beta)
            default: .trimmedMean(beta: plan.beta)
            }
        }

        /// A per-member, per-round training seed.
        static func seed(_ planSeed: Int, _ id: String, _ round: Int) -> UInt64 {
            var h: UInt64 = 0xCBF2_9CE4_8422_2325
            for b in id.utf8 { h = (h ^ UInt64(b)) &* 0x0000_0100_0000_01B3 }
            return UInt64(planSeed) ^ h &+ UInt64(round) &* 0x9E37_79B9_7F4A_7C15
        }

        static func statsObject(_ s: FeatureStatistics) -> [String: Any] { ["count": s.count, "sums": s.sums, "squares": s.squares] }

        static func stats(_ bytes: [UInt8]) -> FeatureStatistics? {
            guard let o = EntryBody.decode(bytes), let n = (o["count"] as? NSNumber)?.intValue, n >= 0,
                  let sums = (o["sums"] as? [NSNumber])?.map(\.doubleValue), let squares = (o["squares"] as? [NSNumber])?.map(\.doubleValue),
                  sums.allSatisfy(\.isFinite), squares.allSatisfy(\.isFinite)
            else { return nil }
            return FeatureStatistics(count: n, sums: sums, squares: squares)
        }

        /// Signs this peer's update for `round` into its chain (once: a
        /// restarted peer reuses the entry it already signed) and announces the bytes.
        /// `after`: entries (and local state) to store first, in the same transaction.
        func publish(round: UInt64, bytes: [UInt8], updateHash: String, baseHash: String, samples: Int, codec: String, metrics: [String: Double],
                     reveal: Bool = true, after earlier: (entries: [LedgerStore.PendingEntry], state: [String: [UInt8]])? = nil) async throws {
            let blob = hex(SHA256.hash(data: bytes))
            if let existing = try store.entries(kind: .update, round: round).first(where: { $0.header.author == config.id }) {
                guard EntryBody.decode(EntryBody.Update.self, from: existing.body)?.updateHash == updateHash else {
                    throw RoundError("this peer already signed a different update for round \(round) in \(store.path); start from an empty state directory")
                }
                if let earlier { try store.append(author: config.id, key: key, earlier.entries, state: earlier.state) }
            } else {
                let body = EntryBody.update(round: round, baseHash: baseHash, updateHash: updateHash, samples: samples, codec: codec, metrics: metrics, blob: blob)
                try store.append(author: config.id, key: key, (earlier?.entries ?? []) + [(.update, round, { _ in body })], state: earlier?.state ?? [:])
            }
            logger.debug("signed", metadata: ["round": "\(round)", "at": "\(Int(Date().timeIntervalSince1970 * 1000) % 100000)"])
            await node.ledgerChanged()
            guard reveal else { return }
            try await node.publish(bytes, round: round, kind: codec == RoundEngine.modelCodec ? .update : .other)
            logger.debug("published", metadata: ["round": "\(round)", "at": "\(Int(Date().timeIntervalSince1970 * 1000) % 100000)"])
        }

        /// The scores of the included updates (docs/credits.md): gates first
        /// (zero, and out of the game), then the Shapley values of the rest,
        /// class by class: a coalition's utility for class c is how far its
        /// aggregate (same rule) lowers this peer's mean loss on its rows of
        /// class c below carrying on in the last round's direction.
        func score(_ ordered: [(Accepted, [Float])], stats: AggregationStats, base: Network, previousChange: [Float]?,
                   authorBases: [(base: [Float], change: [Float]?, previousSteps: [[Float]])], center: [Float],
                   assessment: Dataset, classes: [Int], classNames: [String], baseHash: String) throws -> ([String: [String: Double]], EntryBody.Scoring) {
            let beta: Double = switch rule {
            case .trimmedMean(let b), .boundedTrimmedMean(let b): b
            case .median: 0.5
            default: 0
            }
            let gates = ContributionScorer.gates(updates: ordered.map(\.1), bases: authorBases.map(\.base), previousChanges: authorBases.map(\.change),
                                                 previousSteps: authorBases.map(\.previousSteps), trimmed: stats.trimmed, beta: beta)
            let players = ordered.indices.filter { gates[$0] == nil }
            var evaluator = ClassLossEvaluator(network: base, data: assessment, classes: classes)
            // A loss that is not a number (NaN parameters) counts as 1000, far above
            // any real one (probabilities are clipped at 1e-15, so at most 34.6).
            func losses(_ parameters: [Float]) -> [Double] { evaluator.losses(parameters).map { $0.isFinite ? $0 : 1e3 } }
            // The empty coalition: carrying on in the last round's direction
            // (the base plus the previous change), what the federation gets
            // without anyone's new work; round 1: the base.
            let carryOn = previousChange.map { zip(base.parameters, $0).map { $0 + $1 } } ?? base.parameters
            let empty = losses(carryOn)
            var buffer = [Float]()
            let seed = UInt64(baseHash.prefix(16), radix: 16) ?? 0
            // A linear model's logits are linear in its parameters, and a rule
            // that trims nothing from a coalition this small is its mean: the
            // coalition's losses come from the mean of its members' logits,
            // computed once per member (docs/credits.md, "Cost").
            func isMean(_ size: Int) -> Bool {
                switch rule {
                case .mean: true
                case .trimmedMean(let beta): AggregationRule.trimCount(beta: beta, n: size) == 0
                default: false
                }
            }
            let memberLogits = evaluator.isLinear ? players.map { evaluator.logits(ordered[$0].1) } : []
            let values = ContributionScorer.shapley(players: players.count, dimensions: classes.count, seed: seed) { coalition in
                if !memberLogits.isEmpty && isMean(coalition.count) {
                    return zip(empty, evaluator.losses(meanOfLogits: coalition.map { memberLogits[$0] }).map { $0.isFinite ? $0 : 1e3 }).map { $0 - $1 }
                }
                let inputs = coalition.map { ordered[players[$0]].1 }
                guard (try? Aggregator.aggregate(inputs, rule: rule, center: center, reference: base.parameters, countTrimmed: false, into: &buffer)) != nil else {
                    return classes.map { _ in 0 }
                }
                return zip(empty, losses(buffer)).map { $0 - $1 }
            }
            let names = classes.map { classNames[$0] }
            var scores: [String: [String: Double]] = [:]
            var gated: [String: String] = [:]
            for (i, u) in ordered.enumerated() {
                if let g = gates[i] {
                    scores[u.0.author] = Dictionary(uniqueKeysWithValues: names.map { ($0, 0) })
                    gated[u.0.author] = g.rawValue
                }
            }
            // Whole micro-nats: integers read back exactly by every JSON parser,
            // so medians and sums re-derive bit for bit in any language.
            for (k, i) in players.enumerated() {
                scores[ordered[i].0.author] = Dictionary(uniqueKeysWithValues: zip(names, values.values[k]).map { ($0, ($1 / RoundEngine.scoreUnit).rounded()) })
            }
            return (scores, EntryBody.Scoring(rule: ContributionScorer.ruleVersion, seed: String(format: "%016llx", seed), exact: values.exact,
                                              permutations: values.permutations, evaluations: values.evaluations, gated: gated, classes: names, seconds: 0))
        }

        /// The credits of round `round − 1`, from the aggregate entries of
        /// that round this peer holds (members proven to equivocate excepted),
        /// recorded so an auditor can re-derive them.
        func previousRoundCredits(_ round: UInt64) throws -> EntryBody.RecordedCredits? {
            guard round >= 2 else { return nil }
            let flagged = Set(try store.flaggedAuthors(caCertificate: ca))
            var assessments: [String: Credits.Assessment] = [:]
            for e in try store.entries(kind: .aggregate, round: round - 1) where !flagged.contains(e.header.author) && assessments[e.header.author] == nil {
                if let a = Credits.Assessment(e) { assessments[a.assessor] = a }
            }
            guard !assessments.isEmpty else { return nil }
            let ordered = assessments.keys.sorted().map { assessments[$0]! }
            return EntryBody.RecordedCredits(round: round - 1, assessors: ordered.map(\.assessor), values: Credits.roundCredits(ordered))
        }

        /// The `equivocate` attack: signs a second update for this round's chain
        /// position (the honest step reversed) and sends it, with its bytes, to
        /// every other neighbour before the honest one is published to all.
        func equivocate(round: UInt64, honest: Network, base: Network, baseHash: String, samples: Int) async throws {
            var alt = honest
            alt.parameters = zip(base.parameters, honest.parameters).map { $0 - ($1 - $0) }
            let altBytes = Safetensors.encode(alt.parameterSet)
            let entry = try store.draft(author: config.id, kind: .update, round: round, body: EntryBody.update(
                round: round, baseHash: baseHash, updateHash: alt.parameterSet.sha256Hex(), samples: samples, codec: RoundEngine.modelCodec,
                metrics: [:], blob: hex(SHA256.hash(data: altBytes))), key: key)
            let shown = Set(await node.connectedPeers().enumerated().filter { $0.offset % 2 == 0 }.map(\.element))
            try await node.publish(altBytes, round: round, kind: .update)
            await node.send(entries: [WireEntry(header: entry.headerBytes, body: entry.body, hash: entry.hash, signature: entry.signature)], to: shown)
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
                let reachable = await node.reachableMembers()
                if members.filter(reachable.contains).allSatisfy(done.contains) { break }
                changes.alarm(at: deadline)
                await changes.wait(after: seen)
            }
            // Give the slowest member a moment to pull this peer's last entries.
            try await Task.sleep(for: .milliseconds(300))
        }
    }
}

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
    mutating func bases(of authors: [String], round: UInt64, store: LedgerStore, rule: AggregationRule, like net: Network,
                        mine: (id: String, base: [Float], change: [Float]?)) throws -> [(base: [Float], change: [Float]?, previousSteps: [[Float]])] {
        // Each body is decoded once: an author's first entry of the kind and round.
        func bodies<T: Decodable>(_ entries: [LedgerEntry], as type: T.Type) -> [String: T] {
            var out: [String: T] = [:]
            for e in entries where out[e.header.author] == nil {
                if let body = EntryBody.decode(T.self, from: e.body) { out[e.header.author] = body }
            }
            return out
        }
        let updates = bodies(try store.entries(kind: .update, round: round), as: EntryBody.Update.self)
        let previousUpdates = round > 1 ? bodies(try store.entries(kind: .update, round: round - 1), as: EntryBody.Update.self) : [:]
        let aggregates = round > 1 ? bodies(try store.entries(kind: .aggregate, round: round - 1), as: AggregateRefs.self) : [:]
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
            guard let hash = updates[author]?.baseHash, let base = model(hash, author: author, aggregate: aggregates[author], rule: rule, like: net, round: round) else {
                return (mine.base, mine.change, [])
            }
            let change = previousUpdates[author].flatMap { models[$0.baseHash]?.values }.map { zip(base, $0).map { $0 - $1 } }
            return (base, change, received(author))
        }
    }

    /// What the gates need of an aggregate entry (the rest is not decoded).
    struct AggregateRefs: Decodable {
        let resultHash: String
        let included: [EntryBody.Aggregate.Member]
        enum CodingKeys: String, CodingKey { case included, resultHash = "result_hash" }
    }

    private mutating func model(_ hash: String, author: String, aggregate: AggregateRefs?, rule: AggregationRule, like net: Network, round: UInt64) -> [Float]? {
        if let known = models[hash] { return known.values }
        guard let body = aggregate, body.resultHash == hash else { return nil }
        let included = body.included
        let names = included.map(\.updateHash)
        let vectors = names.compactMap { lastUpdates[$0] }
        guard !vectors.isEmpty, vectors.count == included.count else { return nil }
        let own = included.firstIndex { $0.author == author }.map { vectors[$0] }
        var rebuilt = net
        var output = [Float]()
        guard (try? Aggregator.aggregate(vectors, rule: rule, center: own, reference: own, countTrimmed: false, into: &output)) != nil else { return nil }
        rebuilt.parameters = output
        guard rebuilt.parameterSet.sha256Hex() == hash else { return nil }
        models[hash] = (round - 1, output)
        return output
    }
}
