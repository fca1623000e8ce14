import FLCore
import FLLedger
import Foundation

extension DemoConsortium {
    /// Runs the consortium: starts one `flpeer join` per member from
    /// `executable` (the first member's progress lines go to `progress`),
    /// waits for every member to finish the plan, then scores each final
    /// model on the common test split beside centralised training, verifies
    /// every ledger against the others and reads the credits. A summary whose
    /// `ledgerVerified` is false is still returned. Cancelling the calling
    /// task stops the members and throws `DemoError` with code `.interrupted`.
    public func run(executable: String, progress: @escaping @Sendable (String) -> Void = { _ in }) async throws(DemoError) -> DemoSummary {
        do {
            try await runMembers(executable: executable, progress: progress)
            var central: Double?
            if let learner = options.learner {
                progress("demo: training the external learner centrally on every member's rows for the same \(options.rounds) rounds (the baseline)")
                central = try await centralizedExternal(learner)
            }
            return try summarize(centralizedAccuracy: central)
        } catch let error as DemoError {
            throw error
        } catch is CancellationError {
            throw DemoError(.interrupted, "the demo was interrupted; every member was sent SIGTERM and has stopped (files in \(directory))")
        } catch {
            throw DemoError(.results, "\(error) (files in \(directory))")
        }
    }

    /// The summary of a finished run, from the members' state directories and ledgers.
    /// `centralizedAccuracy`: the external learner's baseline (nil: train the built-in model centrally).
    func summarize(centralizedAccuracy: Double? = nil) throws -> DemoSummary {
        let ledgers = ids.map(ledgerPath)
        let verdict = try verifyLedgers(ledgers)
        // Credits, from the first honest member's ledger (every honest ledger holds the same aggregates once replicated).
        let creditsLedger = ledgers[ids.indices.first { options.attacks[$0] == nil } ?? 0]
        let credits = Credits.report(entries: try LedgerReader.entries(path: creditsLedger))
        let creditOf = Dictionary(uniqueKeysWithValues: credits.institutions.map {
            ($0.id, DemoSummary.Credit(total: $0.total, share: $0.share, negative: $0.negative, rounds: $0.rounds))
        })
        var members: [DemoSummary.Member] = []
        for (i, id) in ids.enumerated() {
            let flagged = try LedgerStore(path: ledgers[i], consortium: Self.consortium).flaggedAuthors(caCertificate: caCertificate).sorted()
            members.append(try member(i, flagged: flagged, credit: creditOf[id]))
        }
        let centralAccuracy = centralizedAccuracy ?? CentralizedTraining.run(train: dataset.subset(trainRows), test: dataset.subset(testRows), kind: options.model, hidden: [64],
                                                                           config: TrainingConfig.defaults(for: options.model, seed: UInt64(options.seed))).metrics.accuracy
        let elapsed = started.duration(to: ContinuousClock().now)
        return DemoSummary(options: options, directory: directory, beta: beta, members: members, centralizedAccuracy: centralAccuracy,
                           ledgerVerified: verdict.verified, findings: verdict.findings, equivocationProven: verdict.proven, creditsLedger: creditsLedger,
                           creditRecordedMismatches: credits.mismatches.count,
                           wallSeconds: Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) * 1e-18)
    }

    /// The external learner trained on every member's rows together (data/central.csv), as many
    /// rounds as the plan from the same seed, and its accuracy on the common test split.
    func centralizedExternal(_ learner: LearnerConfig) async throws -> Double {
        let path = "\(directory)/data/central.csv"
        try CSVLoader.render(dataset.subset(trainRows)).write(toFile: path, atomically: true, encoding: .utf8)
        let environment = ExternalLearner.environment(data: path, validation: nil, test: "\(directory)/data/test.csv", member: "central", seed: options.seed,
                                                      classes: dataset.classNames, label: options.label, rounds: options.rounds, localEpochs: options.localEpochs, batchSize: 32,
                                                      learningRate: options.plannedLearningRate)
        let worker = try await ExternalLearner.start(learner, directory: "\(directory)/state/central", environment: environment, classes: dataset.classNames,
                                                     localPatterns: [], seed: UInt64(options.seed), labelPermutation: nil, resume: false)
        do {
            var model = worker.initialParameters()
            for r in 1...options.rounds {
                model = try await worker.train(from: model, round: r, seed: RoundEngine.Session.seed(options.seed, "central", r)).parameters
            }
            guard let test = try await worker.evaluateTest(model) else { throw DemoError(.results, "\(worker.name) reported no test rows for the centralised baseline") }
            await worker.shutdown()
            return test.accuracy
        } catch {
            await worker.shutdown()
            throw error
        }
    }

    /// Member `i`'s results: its run summary, and its final model on the common test split.
    func member(_ i: Int, flagged: [String], credit: DemoSummary.Credit?) throws -> DemoSummary.Member {
        let state = "\(directory)/state/\(ids[i])"
        let summary = try JSONDecoder().decode(RunSummary.self, from: Data(contentsOf: URL(fileURLWithPath: "\(state)/summary.json")))
        let accuracy: Double
        if let spec = summary.model, let standardizer = summary.standardizer {
            let (params, _) = try Safetensors.read(from: summary.modelFile)
            accuracy = try Network(spec: spec, parameters: params).evaluate(on: standardizer.transform(dataset.subset(testRows))).accuracy
        } else {
            // An external learner evaluated its final model on data/test.csv (FLPEER_TEST).
            guard let a = summary.testAccuracy else { throw DemoError(.results, "\(ids[i])'s learner reported no accuracy on the test rows (\(state)/summary.json)") }
            accuracy = a
        }
        var member = DemoSummary.Member(id: ids[i], accuracy: accuracy, trainRows: parts[i].count, secondsPerRound: summary.secondsPerRound,
                                  attack: options.attacks[i], flagged: flagged,
                                  scoringSecondsPerRound: summary.rounds.map(\.scoringSeconds).reduce(0, +) / Double(max(1, summary.rounds.count)),
                                  roundSeconds: summary.rounds.map(\.seconds), cpuSeconds: summary.cpuSeconds, roundCPUSeconds: summary.roundCPUSeconds,
                                  bytesIn: summary.bytesIn, bytesOut: summary.bytesOut, credit: credit)
        let learner = summary.rounds.compactMap(\.learnerSeconds)
        if !learner.isEmpty { member.learnerSecondsPerRound = learner.reduce(0, +) / Double(learner.count) }
        member.learnerStartSeconds = summary.learnerStartSeconds
        return member
    }

    /// Verifies every ledger against the others. A Byzantine member that
    /// equivocated is proven so by `equivocation` findings; the findings about
    /// its own chain are that proof and its consequences. Any finding about an
    /// honest member's chain fails the verdict.
    func verifyLedgers(_ ledgers: [String]) throws -> (verified: Bool, findings: [String], proven: [String]) {
        let byzantine = Set(ids.indices.filter { options.attacks[$0] != nil }.map { ids[$0] })
        var reports: [(String, [Finding])] = []
        for l in ledgers {
            reports.append((l, try LedgerVerifier.verify(path: l, caCertificate: caCertificate, against: ledgers.filter { $0 != l }).findings))
        }
        let proven = Set(reports.flatMap(\.1).filter { $0.rule == "equivocation" }.map(\.author))
        var findings: [String] = []
        var verified = true
        for (l, found) in reports {
            let unexplained = found.filter { !(proven.contains($0.author) && byzantine.contains($0.author)) }
            if !unexplained.isEmpty {
                verified = false
                findings += unexplained.prefix(3).map { "\(l): \($0)" }
            }
        }
        return (verified, findings, proven.sorted())
    }
}
