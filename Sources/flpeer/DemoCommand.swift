import ArgumentParser
import FLCore
import FLPeer
import Foundation
import Logging

struct DemoCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "demo",
        abstract: "Run a throw-away consortium on this machine: one 'flpeer join' process per member over loopback mutual TLS.",
        discussion: """
            Creates a CA, keys, certificates, configs and a Dirichlet split of the data in DIR (or a temporary folder), \
            starts the peers, waits, verifies every ledger, and compares each peer's final model on the common held-out \
            test split with centralised training of the same model on the same rows. Progress goes to standard error; \
            the summary (or with --json one JSON object) to standard output.
            """
    )

    @Option(help: "Number of member institutions.")
    var peers: Int = 5

    @Option(help: "Training rounds.")
    var rounds: Int = 30

    @Option(help: "digits, breast-cancer (bundled) or a CSV file.")
    var data: String = "digits"

    @Option(help: "Label column of a CSV file.")
    var label: String = "label"

    @Option(help: "Dirichlet concentration of the label skew between members.")
    var alpha: Double = 0.5

    @Option(help: "logreg or mlp.")
    var model: String = "logreg"

    @Option(help: "trimmed-mean, bounded-trimmed-mean, mean, median or clipping.")
    var rule: String = "trimmed-mean"

    @Option(help: "Fraction trimmed from each side by trimmed-mean (default 0.2, raised to byzantine/peers when that is larger).")
    var beta: Double?

    @Option(help: "Number of misbehaving members (the last ones), for robustness experiments.")
    var byzantine: Int = 0

    @Option(help: "What they do (with --byzantine; default sign-flip): \(Attack.names.joined(separator: ", ")); a comma-separated list gives one attack per member in turn.")
    var attack: String?

    @Option(help: "Byzantine members the plan declares (max_byzantine; default: --byzantine). Give it without --byzantine for the same plan with every member honest.")
    var maxByzantine: Int?

    @Option(help: "validation-loss (each peer drops up to max_byzantine updates that do worse than the round's starting model on its validation split) or none.")
    var screen: String = "validation-loss"

    @Option(help: "Quantity skew: member i's expected share of the data scales from 1 (the first) to this (the last); 1 gives equal expected sizes.")
    var sizeSkew: Double = 1

    @Option(help: "Quantity skew member by member: one positive weight per member, comma-separated (member i's expected share scales with weight i); instead of --size-skew.")
    var sizeWeights: String?

    @Option(help: "Local epochs per round.")
    var localEpochs: Int = 4

    @Option(help: "Local learning rate (default: the plan's, 0.05 for logreg, 0.003 for mlp).")
    var learningRate: Double?

    @Option(help: "Random seed (data split, model initialisation, training order).")
    var seed: Int = 0

    @Option(help: "full (every pair linked), line (each member linked to the previous and next only, so most traffic is relayed) or regular:D (a random connected D-regular graph, seeded by --seed).")
    var topology: String = "full"

    @Option(help: "An external learner every member runs on its own data part instead of --model (docs/learner-protocol.md): the program and its arguments, split at spaces, run from the current folder; it finds the data through FLPEER_DATA. E.g. \"python3 examples/learners/numpy_softmax.py\".")
    var learnerCommand: String?

    @Option(help: "Seconds the external learner may take for one request (starting included).")
    var learnerTimeout: Double = 300

    @Option(help: "With --learner-command: tensors each member keeps and never shares (the plan's local_parameters), comma-separated glob patterns, e.g. \"10.*\" for a personalised head.")
    var localParameters: String?

    @Option(help: "With --learner-command: set this fraction of each member's rows aside as its own test rows and report each member's accuracy on them instead of the common test split.")
    var ownTest: Double?

    @Option(help: "Folder for the consortium's files (must be empty or absent); default: a new temporary folder.")
    var dir: String?

    @Flag(help: "Print one JSON object.")
    var json = false

    func validate() throws {
        if !(2...64).contains(peers) { throw ValidationError("--peers must be from 2 to 64, got \(peers).") }
        if !(1...10_000).contains(rounds) { throw ValidationError("--rounds must be from 1 to 10000, got \(rounds).") }
        if !(alpha > 0) { throw ValidationError("--alpha must be positive, got \(alpha).") }
        if ModelSpec.Kind(rawValue: model) == nil { throw ValidationError("--model must be logreg or mlp, got '\(model)'.") }
        if !["validation-loss", "none"].contains(screen) { throw ValidationError("--screen must be validation-loss or none, got '\(screen)'.") }
        if let m = maxByzantine, m < 0 || m >= peers { throw ValidationError("--max-byzantine must be from 0 to \(peers - 1) (fewer than --peers), got \(m).") }
        if !["trimmed-mean", "bounded-trimmed-mean", "mean", "median", "clipping"].contains(rule) { throw ValidationError("--rule must be trimmed-mean, bounded-trimmed-mean, mean, median or clipping, got '\(rule)'.") }
        if let beta, !(beta >= 0 && beta < 0.5) { throw ValidationError("--beta must be in [0, 0.5), got \(beta).") }
        if !(0..<peers).contains(byzantine) { throw ValidationError("--byzantine must be from 0 to \(peers - 1), got \(byzantine).") }
        if attack != nil && byzantine == 0 {
            throw ValidationError("--attack needs --byzantine N (how many of the last members attack); without it every member is honest.")
        }
        if byzantine > 0 && attackNames.isEmpty { throw ValidationError("--attack must name at least one of: \(Attack.names.joined(separator: ", ")).") }
        for name in attackNames where Attack.named(name) == nil {
            throw ValidationError("--attack '\(name)' is not one of: \(Attack.names.joined(separator: ", ")).")
        }
        if !(sizeSkew >= 1 && sizeSkew <= 100) { throw ValidationError("--size-skew must be from 1 to 100, got \(sizeSkew).") }
        if let sizeWeights {
            guard let w = Self.weights(sizeWeights), w.count == peers else {
                throw ValidationError("--size-weights must list \(peers) positive numbers (one per member, comma-separated), got '\(sizeWeights)'.")
            }
            if w.max()! > 100 * w.min()! { throw ValidationError("--size-weights: the largest weight may be at most 100 times the smallest, got '\(sizeWeights)'.") }
            if sizeSkew != 1 { throw ValidationError("--size-skew and --size-weights both set the data sizes; give one of them.") }
        }
        if !(1...1000).contains(localEpochs) { throw ValidationError("--local-epochs must be from 1 to 1000, got \(localEpochs).") }
        if seed < 0 { throw ValidationError("--seed must be zero or positive, got \(seed).") }
        if topology != "full" && topology != "line" {
            guard topology.hasPrefix("regular:"), let d = Int(topology.dropFirst(8)), d >= 2, d < peers, (d * peers) % 2 == 0 else {
                throw ValidationError("--topology must be full, line or regular:D (D from 2 to --peers − 1, D·peers even), got '\(topology)'.")
            }
        }
        if let learningRate, !(learningRate > 0 && learningRate < 100) { throw ValidationError("--learning-rate must be positive, got \(learningRate).") }
        if let learnerCommand, learnerWords(learnerCommand).isEmpty { throw ValidationError("--learner-command must name a program, e.g. \"python3 examples/learners/numpy_softmax.py\".") }
        if (localParameters != nil || ownTest != nil) && learnerCommand == nil { throw ValidationError("--local-parameters and --own-test need --learner-command.") }
        if let ownTest, !(ownTest > 0 && ownTest < 1) { throw ValidationError("--own-test must be a fraction between 0 and 1, got \(ownTest).") }
        if !(learnerTimeout > 0 && learnerTimeout <= 86_400) { throw ValidationError("--learner-timeout must be from 0 to 86400 seconds, got \(learnerTimeout).") }
    }

    func learnerWords(_ text: String) -> [String] { text.split(separator: " ").map(String.init) }

    var attackNames: [String] { (attack ?? "sign-flip").split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty } }

    /// Positive finite weights from "w1,w2,…", or nil.
    static func weights(_ text: String) -> [Double]? {
        let w = text.split(separator: ",", omittingEmptySubsequences: false).map { Double($0.trimmingCharacters(in: .whitespaces)) }
        guard !w.isEmpty, w.allSatisfy({ $0 != nil && $0! > 0 && $0!.isFinite }) else { return nil }
        return w.map { $0! }
    }

    /// The consortium's settings, from the options (already validated).
    func options(executable: String) throws -> DemoOptions {
        var o = DemoOptions(dataPath: try DemoOptions.resolveData(data, executable: executable))
        o.peers = peers
        o.rounds = rounds
        o.label = label
        o.alpha = alpha
        o.model = ModelSpec.Kind(rawValue: model) ?? .logreg
        o.rule = rule
        o.beta = beta
        o.byzantine = byzantine
        o.attackNames = attackNames
        o.maxByzantine = maxByzantine
        o.screen = screen
        o.sizeSkew = sizeSkew
        o.sizeWeights = sizeWeights.flatMap(Self.weights)
        o.localEpochs = localEpochs
        o.learningRate = learningRate
        o.seed = seed
        o.topology = topology
        if let learnerCommand {
            o.learner = LearnerConfig(command: learnerWords(learnerCommand), workingDirectory: FileManager.default.currentDirectoryPath, timeoutSeconds: learnerTimeout)
        }
        o.localParameters = localParameters.map { $0.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty } } ?? []
        o.ownTestFraction = ownTest
        return o
    }

    func run() async throws {
        let executable = Self.ownExecutable()
        let demo: DemoConsortium
        do {
            demo = try DemoConsortium.prepare(try options(executable: executable), in: dir)
        } catch {
            throw CLIError("\(error)")
        }
        for note in demo.notes { printErr(note) }
        printErr(demo.banner)
        let service = DemoService(demo: demo, executable: executable, progress: printErr)
        do {
            try await SignalShutdown.run(service, logger: Logger(label: "flpeer.demo", factory: { StreamLogHandler.standardError(label: $0) }))
        } catch let stop as Interrupted {
            throw CLIError("demo interrupted by \(stop.signal): its \(peers) members were sent SIGTERM and have stopped; files in \(demo.directory)")
        } catch {
            throw CLIError("\(error)")
        }
        guard let summary = service.summary else { throw CLIError("the demo ended without a summary (files in \(demo.directory))") }
        print(json ? try summary.json() : summary.text)
        if !summary.ledgerVerified { throw CLIError("ledger verification failed: \(summary.findings.joined(separator: "; "))") }
    }

    static func ownExecutable() -> String {
        (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")) ?? CommandLine.arguments[0]
    }
}
