import ArgumentParser
import FLCore
import FLIdentity
import FLLedger
import FLPeer
import Foundation

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

    @Option(help: "What they do: \(Attack.names.joined(separator: ", ")); a comma-separated list gives one attack per member in turn.")
    var attack: String = "sign-flip"

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
    }

    var attackNames: [String] { attack.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty } }

    /// Positive finite weights from "w1,w2,…", or nil.
    static func weights(_ text: String) -> [Double]? {
        let w = text.split(separator: ",", omittingEmptySubsequences: false).map { Double($0.trimmingCharacters(in: .whitespaces)) }
        guard !w.isEmpty, w.allSatisfy({ $0 != nil && $0! > 0 && $0!.isFinite }) else { return nil }
        return w.map { $0! }
    }

    /// The attack of each member (nil: honest): the last `byzantine` members, attacks in turn.
    var attacks: [String?] {
        (0..<peers).map { i in i >= peers - byzantine ? attackNames[(i - (peers - byzantine)) % attackNames.count] : nil }
    }

    /// Each member's neighbours (indices), or nil for a full mesh.
    var graph: [[Int]]? {
        if topology == "line" { return Topology.line(n: peers) }
        if topology.hasPrefix("regular:"), let d = Int(topology.dropFirst(8)) {
            return Topology.randomRegular(n: peers, degree: d, seed: UInt64(seed) &+ 0x70b0)
        }
        return nil
    }

    func run() async throws {
        let root = try prepareDirectory()
        let graph = self.graph
        if topology.hasPrefix("regular:") && graph == nil { throw CLIError("no connected \(topology) graph on \(peers) members was found; try another --seed") }
        // Each peer aggregates its neighbours' updates and its own: the rule must absorb the attackers among the fewest.
        let inputs = graph.map { $0.map { $0.count + 1 }.min() ?? peers } ?? peers
        let expected = maxByzantine ?? byzantine
        let beta = self.beta ?? min(0.49, max(0.2, (Double(expected) / Double(inputs) * 100).rounded(.up) / 100))
        // Declare the attackers in the plan when the rule can absorb them; otherwise they are unexpected.
        let absorbable = switch rule {
        case "trimmed-mean", "bounded-trimmed-mean": AggregationRule.trimCount(beta: beta, n: inputs) >= expected
        case "mean": expected == 0
        default: 2 * expected < inputs
        }
        let declared = absorbable ? expected : 0
        if !absorbable { printErr("demo: \(rule) cannot absorb \(expected) Byzantine member(s) among \(inputs) inputs; the plan declares none (an experiment)") }
        let dataPath = try Self.resolveData(data)
        let dataset: Dataset
        do {
            dataset = try CSVLoader.load(path: dataPath, labelColumn: label)
        } catch {
            throw CLIError("\(error)")
        }
        let clock = ContinuousClock()
        let started = clock.now

        // Data: a common stratified test split and a Dirichlet split of the rest.
        let (rest, test) = Splitting.stratified(dataset, fraction: 0.2, seed: UInt64(seed))
        let parts: [[Int]]
        do {
            let weights = sizeWeights.flatMap(Self.weights).map { w in w.map { $0 / w.max()! } }
                ?? (sizeSkew == 1 ? nil : (0..<peers).map { 1 + (sizeSkew - 1) * Double($0) / Double(max(peers - 1, 1)) })
            parts = try Splitting.dirichlet(dataset, indices: rest, parts: peers, alpha: alpha, minPartSize: 10, seed: UInt64(seed), weights: weights)
        } catch {
            throw CLIError("cannot split \(dataPath) into \(peers) parts: \(error)")
        }
        let ids = (1...peers).map { String(format: "inst%02d", $0) }
        try FileManager.default.createDirectory(atPath: "\(root)/data", withIntermediateDirectories: true)
        try CSVLoader.render(dataset.subset(test)).write(toFile: "\(root)/data/test.csv", atomically: true, encoding: .utf8)
        for (i, rows) in parts.enumerated() {
            try CSVLoader.render(dataset.subset(rows)).write(toFile: "\(root)/data/\(ids[i]).csv", atomically: true, encoding: .utf8)
        }

        // Identity: the coordinator's CA, then each institution's key and certificate.
        try FileManager.default.createDirectory(atPath: "\(root)/pki/ca", withIntermediateDirectories: true)
        let ca = try ConsortiumCA.create(consortium: "demo")
        try ca.save(directory: "\(root)/pki/ca")
        for id in ids {
            try FileManager.default.createDirectory(atPath: "\(root)/pki/\(id)", withIntermediateDirectories: true)
            let (key, csr) = try InstitutionKey.generate(institution: id)
            try PEMFiles.write(Ed25519Keys.pem(key), to: "\(root)/pki/\(id)/\(id).key.pem", secret: true)
            try PEMFiles.write(try PEMFiles.pem(try ca.sign(csr, days: 7)), to: "\(root)/pki/\(id)/\(id).pem")
        }

        // Configs: one network file, one peer file each, on free loopback ports.
        let ports = try FreePorts.take(peers)
        let quoted = dataset.classNames.map { "\"\($0)\"" }.joined(separator: ", ")
        var network = """
            # Written by 'flpeer demo'.
            consortium: demo
            ca: pki/ca/ca.pem
            revocation_list: pki/ca/crl.pem
            members:

            """
        for (id, port) in zip(ids, ports) { network += "  - id: \(id)\n    address: 127.0.0.1:\(port)\n" }
        network += """
            plan:
              rounds: \(rounds)
              model: \(model)
              hidden: [64]
              rule: \(rule)
              beta: \(beta)
              max_byzantine: \(declared)
              screen: \(screen)
              local_epochs: \(localEpochs)\(learningRate.map { "\n  learning_rate: \($0)" } ?? "")
              batch_size: 32
              quorum: \(peers)
              round_deadline_seconds: 30
              seed: \(seed)
              label: \(label)
              classes: [\(quoted)]

            """
        try network.write(toFile: "\(root)/network.yaml", atomically: true, encoding: .utf8)
        for (i, (id, port)) in zip(ids, ports).enumerated() {
            let neighbours = graph.map { "\nneighbours: [\($0[i].map { ids[$0] }.joined(separator: ", "))]" } ?? ""
            try """
                network: network.yaml
                id: \(id)
                key: pki/\(id)/\(id).key.pem
                certificate: pki/\(id)/\(id).pem
                listen: 127.0.0.1:\(port)
                data:
                  train: data/\(id).csv
                state_dir: state/\(id)\(neighbours)\(attacks[i].map { "\nattack:\n  kind: \($0)" } ?? "")

                """.write(toFile: "\(root)/\(id).yaml", atomically: true, encoding: .utf8)
        }
        printErr("demo: \(peers) institutions (\(topology) topology\(byzantine > 0 ? ", \(byzantine) Byzantine: \(attacks.compactMap { $0 }.joined(separator: ","))" : "")) in \(root); \(rounds) rounds of \(model) with \(rule) on \(URL(fileURLWithPath: dataPath).lastPathComponent) (alpha \(alpha), seed \(seed))")

        // Run: one 'flpeer join' process per institution.
        try FileManager.default.createDirectory(atPath: "\(root)/logs", withIntermediateDirectories: true)
        let executable = Self.ownExecutable()
        var processes: [(String, Process)] = []
        for id in ids {
            let p = Process()
            p.executableURL = URL(fileURLWithPath: executable)
            p.arguments = ["join", "--config", "\(root)/\(id).yaml"]
            _ = FileManager.default.createFile(atPath: "\(root)/logs/\(id).out", contents: nil)
            _ = FileManager.default.createFile(atPath: "\(root)/logs/\(id).err", contents: nil)
            p.standardOutput = FileHandle(forWritingAtPath: "\(root)/logs/\(id).out")
            p.standardError = FileHandle(forWritingAtPath: "\(root)/logs/\(id).err")
            try p.run()
            processes.append((id, p))
        }
        let children = Children(processes.map(\.1))
        let stop = StopSignals { _ in children.terminate() }
        defer { stop.cancel() }
        var shown = 0
        while processes.contains(where: { $0.1.isRunning }) {
            try? await Task.sleep(for: .milliseconds(200))
            shown = Self.echoProgress("\(root)/logs/\(ids[0]).out", from: shown)
        }
        _ = Self.echoProgress("\(root)/logs/\(ids[0]).out", from: shown)
        for (id, p) in processes where p.terminationStatus != 0 {
            let why = (try? String(contentsOfFile: "\(root)/logs/\(id).err", encoding: .utf8))?.split(separator: "\n").last.map(String.init) ?? "no message"
            throw CLIError("peer \(id) exited with status \(p.terminationStatus): \(why) (logs in \(root)/logs)")
        }

        // Results: each peer's final model on the common test split, the centralised baseline, the ledgers.
        let testSet = dataset.subset(test)
        var results: [(id: String, accuracy: Double, rows: Int, secondsPerRound: Double, bytesIn: Int, bytesOut: Int, attack: String?)] = []
        var scoringSeconds: [String: Double] = [:]
        var summaries: [String: RunSummary] = [:]
        for (i, id) in ids.enumerated() {
            let state = "\(root)/state/\(id)"
            let summary = try JSONDecoder().decode(RunSummary.self, from: Data(contentsOf: URL(fileURLWithPath: "\(state)/summary.json")))
            let (params, _) = try Safetensors.read(from: summary.modelFile)
            let net = try Network(spec: summary.model, parameters: params)
            let accuracy = net.evaluate(on: summary.standardizer.transform(testSet)).accuracy
            results.append((id, accuracy, parts[i].count, summary.secondsPerRound, summary.bytesIn, summary.bytesOut, attacks[i]))
            scoringSeconds[id] = summary.rounds.map(\.scoringSeconds).reduce(0, +) / Double(max(1, summary.rounds.count))
            summaries[id] = summary
        }
        let kind = ModelSpec.Kind(rawValue: model)!
        let central = CentralizedTraining.run(train: dataset.subset(rest), test: testSet, kind: kind, hidden: [64],
                                              config: TrainingConfig.defaults(for: kind, seed: UInt64(seed)))
        let ledgers = ids.map { "\(root)/state/\($0)/ledger.sqlite" }
        // Every ledger is verified against the others. A Byzantine member that
        // equivocated is proven so by `equivocation` findings; the findings
        // about its own chain are that proof and its consequences. Any finding
        // about an honest member's chain fails the demo.
        let byzantineIDs = Set(ids.indices.filter { attacks[$0] != nil }.map { ids[$0] })
        var reports: [(String, [Finding])] = []
        for l in ledgers {
            let report = try LedgerVerifier.verify(path: l, caCertificate: ca.certificate, against: ledgers.filter { $0 != l })
            reports.append((l, report.findings))
        }
        let proven = Set(reports.flatMap { $0.1 }.filter { $0.rule == "equivocation" }.map(\.author))
        var verified = true
        var findings: [String] = []
        for (l, found) in reports {
            let unexplained = found.filter { !(proven.contains($0.author) && byzantineIDs.contains($0.author)) }
            if !unexplained.isEmpty {
                verified = false
                findings += unexplained.prefix(3).map { "\(l): \($0)" }
            }
        }
        var flaggedBy: [String: [String]] = [:]
        for (id, l) in zip(ids, ledgers) { flaggedBy[id] = try LedgerStore(path: l, consortium: "demo").flaggedAuthors(caCertificate: ca.certificate).sorted() }
        // Credits, from the first honest member's ledger (every honest ledger holds the same aggregates once replicated).
        let creditLedger = ledgers[ids.indices.first { attacks[$0] == nil } ?? 0]
        let credits = Credits.report(entries: try LedgerReader.entries(path: creditLedger))
        let creditOf = Dictionary(uniqueKeysWithValues: credits.institutions.map { ($0.id, $0) })
        let elapsed = started.duration(to: clock.now)
        let secondsPerRound = results.map(\.secondsPerRound).reduce(0, +) / Double(results.count)
        let bytes = results.map { $0.bytesIn + $0.bytesOut }.reduce(0, +) / 2
        let meanAccuracy = results.map(\.accuracy).reduce(0, +) / Double(results.count)
        let honest = results.filter { $0.attack == nil }
        let honestAccuracy = honest.map(\.accuracy).reduce(0, +) / Double(max(1, honest.count))

        if json {
            let obj: [String: Any] = [
                "peers": results.map { r -> [String: Any] in
                    var p: [String: Any] = ["id": r.id, "accuracy": r.accuracy, "train_rows": r.rows, "seconds_per_round": r.secondsPerRound, "byzantine": r.attack != nil,
                                            "flagged": flaggedBy[r.id] ?? []]
                    if let a = r.attack { p["attack"] = a }
                    p["scoring_seconds_per_round"] = scoringSeconds[r.id] ?? 0
                    if let s = summaries[r.id] {
                        p["round_seconds"] = s.rounds.map(\.seconds)
                        p["cpu_seconds"] = s.cpuSeconds
                        p["round_cpu_seconds"] = s.roundCPUSeconds
                    }
                    if let c = creditOf[r.id] {
                        p["credit"] = c.total
                        p["credit_share"] = c.share
                        p["credit_negative"] = c.negative
                        p["credit_rounds"] = Dictionary(uniqueKeysWithValues: c.rounds.map { ("\($0.key)", $0.value) })
                    }
                    return p
                },
                "mean_accuracy": meanAccuracy, "honest_mean_accuracy": honestAccuracy, "beta": beta, "byzantine": byzantine, "centralized_accuracy": central.metrics.accuracy, "seconds_per_round": secondsPerRound,
                "bytes_moved": bytes, "ledger_verified": verified, "equivocation_proven": proven.sorted(), "dir": root, "rounds": rounds, "model": model, "rule": rule,
                "alpha": alpha, "seed": seed, "data": dataPath, "topology": topology, "size_skew": sizeSkew, "size_weights": sizeWeights.flatMap(Self.weights) ?? [], "credits_ledger": creditLedger,
                "scoring_seconds_per_round": scoringSeconds.values.reduce(0, +) / Double(max(1, scoringSeconds.count)),
                "credit_unit": "micro-nats of class loss (docs/credits.md)", "credit_recorded_mismatches": credits.mismatches.count, "wall_seconds": Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) * 1e-18,
            ]
            print(String(decoding: try JSONSerialization.data(withJSONObject: obj, options: [.sortedKeys, .withoutEscapingSlashes]), as: UTF8.self))
        } else {
            print("institution  train rows  test accuracy        credit   share")
            for r in results {
                let c = creditOf[r.id]
                print(String(format: "%-11@  %10d  %13.4f  %12.0f  %5.1f%%%@", r.id, r.rows, r.accuracy, c?.total ?? 0, 100 * (c?.share ?? 0),
                             r.attack.map { "  (Byzantine: \($0))" } ?? ""))
            }
            print(String(format: "mean                     %13.4f", meanAccuracy))
            if byzantine > 0 { print(String(format: "honest mean              %13.4f", honestAccuracy)) }
            print(String(format: "centralised (%@, same test split): %.4f", model, central.metrics.accuracy))
            print(String(format: "%.3f s per round (%.3f s of it scoring), %@ moved, ledgers %@", secondsPerRound,
                         scoringSeconds.values.reduce(0, +) / Double(max(1, scoringSeconds.count)), kilobytesText(bytes), verified ? "verified (all intact and agreeing)" : "NOT verified"))
            print("credits: micro-nats of class loss, per-class medians of the other members' Shapley scores (ledger-tool report \(creditLedger))")
            if !proven.isEmpty { print("equivocation proven in the ledgers against: \(proven.sorted().joined(separator: ", "))") }
            print("files: \(root)")
        }
        if !verified { throw CLIError("ledger verification failed: \(findings.joined(separator: "; "))") }
    }

    private func prepareDirectory() throws -> String {
        let root: String
        if let dir {
            root = URL(fileURLWithPath: dir).standardizedFileURL.path
            if let contents = try? FileManager.default.contentsOfDirectory(atPath: root), !contents.isEmpty {
                throw CLIError("--dir \(dir) is not empty; give a new or empty folder so no earlier run's files are mixed in")
            }
        } else {
            root = FileManager.default.temporaryDirectory.appendingPathComponent("flpeer-demo-\(UUID().uuidString.prefix(8))").path
        }
        try FileManager.default.createDirectory(atPath: root, withIntermediateDirectories: true)
        return root
    }

    /// The bundled data sets by name, else a path.
    static func resolveData(_ name: String) throws -> String {
        let bundled = ["digits": "digits.csv", "breast-cancer": "breast_cancer.csv"]
        guard let file = bundled[name] else {
            guard FileManager.default.fileExists(atPath: name) else { throw CLIError("--data \(name) is neither digits, breast-cancer nor an existing CSV file") }
            return name
        }
        var candidates = ["data/\(file)"]
        var url = URL(fileURLWithPath: ownExecutable()).deletingLastPathComponent()
        while url.path != "/" {
            candidates.append(url.appendingPathComponent("data/\(file)").path)
            url.deleteLastPathComponent()
        }
        guard let found = candidates.first(where: FileManager.default.fileExists) else {
            throw CLIError("the bundled data set '\(name)' (data/\(file)) was not found; run from the repository or pass --data FILE.csv")
        }
        return URL(fileURLWithPath: found).standardizedFileURL.path
    }

    static func ownExecutable() -> String {
        (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")) ?? CommandLine.arguments[0]
    }

    /// Copies new lines of a peer's output to standard error; returns the new offset.
    static func echoProgress(_ path: String, from offset: Int) -> Int {
        guard let data = FileManager.default.contents(atPath: path), data.count > offset else { return offset }
        let chunk = data[offset...]
        guard let lastNewline = chunk.lastIndex(of: 10) else { return offset }
        for line in String(decoding: data[offset...lastNewline], as: UTF8.self).split(separator: "\n") { printErr(String(line)) }
        return lastNewline + 1
    }
}

func kilobytesText(_ n: Int) -> String { n >= 10_000_000 ? String(format: "%.1f MB", Double(n) / 1e6) : String(format: "%.1f kB", Double(n) / 1e3) }

/// Free loopback TCP ports, found by binding port 0.
enum FreePorts {
    static func take(_ n: Int) throws -> [Int] {
        var sockets: [Int32] = []
        defer { for s in sockets { close(s) } }
        var ports: [Int] = []
        for _ in 0..<n {
            let s = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
            guard s >= 0 else { throw CLIError("cannot open a socket to find a free port") }
            sockets.append(s)
            var addr = sockaddr_in()
            addr.sin_family = sa_family_t(AF_INET)
            addr.sin_port = 0
            addr.sin_addr.s_addr = inet_addr("127.0.0.1")
            var len = socklen_t(MemoryLayout<sockaddr_in>.size)
            let bound = withUnsafePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(s, $0, len) } }
            guard bound == 0 else { throw CLIError("cannot bind a loopback port") }
            _ = withUnsafeMutablePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(s, $0, &len) } }
            ports.append(Int(UInt16(bigEndian: addr.sin_port)))
        }
        return ports
    }
}

/// Child processes that a signal handler may terminate.
final class Children: @unchecked Sendable {
    let processes: [Process]
    init(_ processes: [Process]) { self.processes = processes }
    func terminate() { for p in processes where p.isRunning { p.terminate() } }
}
