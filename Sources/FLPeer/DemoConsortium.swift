import FLCore
import FLIdentity
import Foundation
import X509

/// A throw-away consortium on this machine: `prepare` writes its CA, keys,
/// certificates, configs and a Dirichlet split of the data into a folder;
/// `run` starts one `flpeer join` process per member over loopback mutual
/// TLS, waits, verifies every ledger and compares each member's final model
/// with centralised training on the same rows.
public struct DemoConsortium: Sendable {
    /// The settings it was prepared with.
    public let options: DemoOptions
    /// The folder holding every file of the consortium.
    public let directory: String
    /// Institution ids, in member order.
    public let ids: [String]
    /// Each member's neighbours (indices), nil for a full mesh.
    public let graph: [[Int]]?
    /// The trimmed fraction written into the plan.
    public let beta: Double
    /// Byzantine members the plan declares (0 when the rule cannot absorb them).
    public let declared: Int
    /// Remarks about the plan for the user (e.g. a rule that cannot absorb the attackers).
    public let notes: [String]
    /// The consortium CA's certificate, which every ledger is verified against.
    public let caCertificate: Certificate
    let dataset: Dataset
    /// Rows of the common test split, and of the members' training data.
    let testRows: [Int], trainRows: [Int]
    /// Each member's rows.
    let parts: [[Int]]
    /// Each member's own test rows (`DemoOptions.ownTestFraction`), or nil.
    let ownTests: [[Int]]?
    let started: ContinuousClock.Instant

    /// The consortium's name in its certificates and ledgers.
    public static let consortium = "demo"

    /// Prepares a consortium in `directory` (created if absent; it must be empty), or in a new temporary folder.
    public static func prepare(_ options: DemoOptions, in directory: String?) throws(DemoError) -> DemoConsortium {
        try options.check()
        let graph = try options.graph()
        let root = try makeDirectory(directory)
        let (beta, declared, notes) = plannedTrimming(options, graph: graph)
        let dataset: Dataset
        do {
            dataset = try CSVLoader.load(path: options.dataPath, labelColumn: options.label)
        } catch {
            throw DemoError(.data, "\(error)")
        }
        let started = ContinuousClock().now
        // Data: a common stratified test split and a Dirichlet split of the rest.
        let (rest, test) = Splitting.stratified(dataset, fraction: 0.2, seed: UInt64(options.seed))
        var parts: [[Int]]
        do {
            parts = try Splitting.dirichlet(dataset, indices: rest, parts: options.peers, alpha: options.alpha, minPartSize: 10,
                                            seed: UInt64(options.seed), weights: options.sizeShares)
        } catch {
            throw DemoError(.split, "cannot split \(options.dataPath) into \(options.peers) parts: \(error)")
        }
        // Each member sets 10 % of every class aside for validation (`RoundEngine.loadData`): say so before any member starts.
        for (i, part) in parts.enumerated() where Splitting.stratified(dataset.subset(part), fraction: 0.1, seed: UInt64(options.seed)).second.isEmpty {
            throw DemoError(.split, "the \(options.peers)-way split of \(options.dataPath) leaves \(options.ids[i]) \(part.count) rows, with no class of "
                + "\(RoundEngine.minimumRowsForValidation) rows to set a validation row aside from; use fewer --peers, a larger --alpha or more data")
        }
        var ownTests: [[Int]]?
        var trainRows = rest
        if let f = options.ownTestFraction {
            let splits = parts.map { part in Splitting.stratified(dataset.subset(part), fraction: f, seed: UInt64(options.seed) &+ 0x7e57) }
            ownTests = zip(parts, splits).map { part, s in s.second.map { part[$0] } }
            parts = zip(parts, splits).map { part, s in s.first.map { part[$0] } }
            trainRows = parts.flatMap { $0 }
            if let i = ownTests!.indices.first(where: { ownTests![$0].isEmpty }) {
                throw DemoError(.split, "--own-test \(f) leaves \(options.ids[i]) no test rows; raise the fraction, use fewer --peers or a larger --alpha")
            }
        }
        let ca: ConsortiumCA
        do {
            ca = try ConsortiumCA.create(consortium: consortium)
        } catch {
            throw DemoError(.files, "cannot create the consortium CA: \(error)")
        }
        let demo = DemoConsortium(options: options, directory: root, ids: options.ids, graph: graph, beta: beta, declared: declared, notes: notes,
                                  caCertificate: ca.certificate, dataset: dataset, testRows: test, trainRows: trainRows, parts: parts, ownTests: ownTests, started: started)
        do {
            try demo.writeData()
            try demo.writeIdentities(ca)
            try demo.writeConfigs(ports: try FreePorts.take(options.peers))
        } catch let error as DemoError {
            throw error
        } catch {
            throw DemoError(.files, "cannot write the consortium's files in \(root): \(error)")
        }
        return demo
    }

    /// One line saying what was prepared.
    public var banner: String {
        let o = options
        let byzantine = o.byzantine > 0 ? ", \(o.byzantine) Byzantine: \(o.attacks.compactMap { $0 }.joined(separator: ","))" : ""
        return "demo: \(o.peers) institutions (\(o.topology) topology\(byzantine)) in \(directory); \(o.rounds) rounds of \(o.modelName) "
            + "with \(o.rule) on \(URL(fileURLWithPath: o.dataPath).lastPathComponent) (alpha \(o.alpha), seed \(o.seed))"
    }

    /// The peer file of member `id`.
    public func peerConfigPath(_ id: String) -> String { "\(directory)/\(id).yaml" }

    /// The ledger file of member `id`.
    public func ledgerPath(_ id: String) -> String { "\(directory)/state/\(id)/ledger.sqlite" }

    /// The standard output and standard error logs of member `id`.
    public func logPaths(_ id: String) -> (out: String, err: String) { ("\(directory)/logs/\(id).out", "\(directory)/logs/\(id).err") }

    /// The folder to write into: `directory` (must be empty or absent) or a new temporary one.
    static func makeDirectory(_ directory: String?) throws(DemoError) -> String {
        let root: String
        if let directory {
            root = URL(fileURLWithPath: directory).standardizedFileURL.path
            var isFolder: ObjCBool = false
            if FileManager.default.fileExists(atPath: root, isDirectory: &isFolder), !isFolder.boolValue {
                throw DemoError(.directory, "--dir \(directory) is a file, not a folder; give a new or empty folder for the demo's files")
            }
            if let contents = try? FileManager.default.contentsOfDirectory(atPath: root), !contents.isEmpty {
                throw DemoError(.directory, "--dir \(directory) is not empty; give a new or empty folder so no earlier run's files are mixed in")
            }
        } else {
            root = FileManager.default.temporaryDirectory.appendingPathComponent("flpeer-demo-\(UUID().uuidString.prefix(8))").path
        }
        do {
            try FileManager.default.createDirectory(atPath: root, withIntermediateDirectories: true)
        } catch {
            throw DemoError(.directory, "cannot create \(root): \(error)")
        }
        return root
    }

    /// The plan's beta and declared Byzantine count: each peer aggregates its
    /// neighbours' updates and its own, so the rule must absorb the attackers
    /// among the fewest inputs; attackers it cannot absorb are left undeclared (an experiment).
    static func plannedTrimming(_ o: DemoOptions, graph: [[Int]]?) -> (beta: Double, declared: Int, notes: [String]) {
        let inputs = graph.map { $0.map { $0.count + 1 }.min() ?? o.peers } ?? o.peers
        let expected = o.maxByzantine ?? o.byzantine
        let beta = o.beta ?? min(0.49, max(0.2, (Double(expected) / Double(inputs) * 100).rounded(.up) / 100))
        let absorbable = switch o.rule {
        case "trimmed-mean", "bounded-trimmed-mean": AggregationRule.trimCount(beta: beta, n: inputs) >= expected
        case "mean": expected == 0
        default: 2 * expected < inputs
        }
        let notes = absorbable ? [] : ["demo: \(o.rule) cannot absorb \(expected) Byzantine member(s) among \(inputs) inputs; the plan declares none (an experiment)"]
        return (beta, absorbable ? expected : 0, notes)
    }
}
