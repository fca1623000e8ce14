import FLCore
import Foundation

/// The settings of a throw-away demo consortium (what `flpeer demo`'s options set).
/// The command checks them; `DemoConsortium.prepare` assumes they are in range.
public struct DemoOptions: Sendable {
    /// Number of member institutions.
    public var peers: Int = 5
    /// Training rounds.
    public var rounds: Int = 30
    /// Path of the CSV data set (see `DemoOptions.resolveData`).
    public var dataPath: String
    /// Label column of the CSV file.
    public var label: String = "label"
    /// Dirichlet concentration of the label skew between members.
    public var alpha: Double = 0.5
    /// The model every member trains.
    public var model: ModelSpec.Kind = .logreg
    /// trimmed-mean, bounded-trimmed-mean, mean, median or clipping.
    public var rule: String = "trimmed-mean"
    /// Fraction trimmed from each side (nil: 0.2, raised to absorb the declared Byzantine members).
    public var beta: Double?
    /// Misbehaving members (the last ones).
    public var byzantine: Int = 0
    /// Their attacks, one per member in turn.
    public var attackNames: [String] = ["sign-flip"]
    /// Byzantine members the plan declares (nil: `byzantine`).
    public var maxByzantine: Int?
    /// validation-loss or none.
    public var screen: String = "validation-loss"
    /// Member i's expected data share scales from 1 (the first) to this (the last).
    public var sizeSkew: Double = 1
    /// One positive weight per member for its expected data share, instead of `sizeSkew`.
    public var sizeWeights: [Double]?
    /// Local epochs per round.
    public var localEpochs: Int = 4
    /// Local learning rate (nil: the plan's default for the model).
    public var learningRate: Double?
    /// Seed of the data split, model initialisation and training order.
    public var seed: Int = 0
    /// full, line or regular:D.
    public var topology: String = "full"
    /// An external learner every member runs on its own part instead of `model` (nil: the built-in model).
    public var learner: LearnerConfig?
    /// The plan's `local_parameters`: tensors each member keeps (external learners).
    public var localParameters: [String] = []
    /// When set, each member's part is split again: this fraction of each of
    /// its classes becomes its own test rows (`data.test`), which its
    /// accuracy is reported on instead of the common test split (external learners).
    public var ownTestFraction: Double?

    /// What trains: the built-in model's name or the external learner's command.
    public var modelName: String { learner.map { "`\($0.command.joined(separator: " "))`" } ?? model.rawValue }

    /// The plan's learning rate: the option, or the model's default.
    public var plannedLearningRate: Double { learningRate ?? (model == .logreg ? 0.05 : 0.003) }

    /// Options with every default, on the CSV file at `dataPath`.
    public init(dataPath: String) {
        self.dataPath = dataPath
    }

    /// Refuses settings the consortium cannot be built from (the command
    /// checks every option with a usage message; this guards library callers).
    public func check() throws(DemoError) {
        let problem: String? =
            if !(2...99).contains(peers) { "peers must be from 2 to 99, got \(peers)" }
            else if rounds < 1 { "rounds must be at least 1, got \(rounds)" }
            else if !(0..<peers).contains(byzantine) { "byzantine must be from 0 to \(peers - 1), got \(byzantine)" }
            else if byzantine > 0 && attackNames.isEmpty { "attackNames must name an attack for the \(byzantine) Byzantine member(s)" }
            else if let w = sizeWeights, w.count != peers || !w.allSatisfy({ $0 > 0 && $0.isFinite }) { "sizeWeights must hold \(peers) positive numbers" }
            else if (ownTestFraction != nil || !localParameters.isEmpty) && learner == nil { "ownTestFraction and localParameters need an external learner" }
            else if let f = ownTestFraction, !(f > 0 && f < 1) { "ownTestFraction must be between 0 and 1, got \(f)" }
            else { nil }
        if let problem { throw DemoError(.options, "demo options: \(problem)") }
    }

    /// The institution ids, inst01…instNN.
    public var ids: [String] { (1...peers).map { String(format: "inst%02d", $0) } }

    /// The attack of each member (nil: honest): the last `byzantine` members, attacks in turn.
    public var attacks: [String?] {
        (0..<peers).map { i in i >= peers - byzantine ? attackNames[(i - (peers - byzantine)) % attackNames.count] : nil }
    }

    /// Each member's neighbours (indices), nil for a full mesh; throws when no regular graph was found.
    public func graph() throws(DemoError) -> [[Int]]? {
        if topology == "line" { return Topology.line(n: peers) }
        guard topology.hasPrefix("regular:"), let d = Int(topology.dropFirst(8)) else { return nil }
        guard let g = Topology.randomRegular(n: peers, degree: d, seed: UInt64(seed) &+ 0x70b0) else {
            throw DemoError(.topology, "no connected \(topology) graph on \(peers) members was found; try another --seed")
        }
        return g
    }

    /// Each member's expected data share relative to the largest, or nil for equal shares.
    var sizeShares: [Double]? {
        if let w = sizeWeights, let top = w.max() { return w.map { $0 / top } }
        return sizeSkew == 1 ? nil : (0..<peers).map { 1 + (sizeSkew - 1) * Double($0) / Double(max(peers - 1, 1)) }
    }

    /// The bundled data sets by name (digits, breast-cancer), looked up in ./data and
    /// in every folder above `executable`; any other name is a CSV path.
    public static func resolveData(_ name: String, executable: String) throws(DemoError) -> String {
        let bundled = ["digits": "digits.csv", "breast-cancer": "breast_cancer.csv"]
        guard let file = bundled[name] else {
            guard FileManager.default.fileExists(atPath: name) else {
                throw DemoError(.data, "--data \(name) is neither digits, breast-cancer nor an existing CSV file")
            }
            return name
        }
        var candidates = ["data/\(file)"]
        var url = URL(fileURLWithPath: executable).deletingLastPathComponent()
        while url.path != "/" {
            candidates.append(url.appendingPathComponent("data/\(file)").path)
            url.deleteLastPathComponent()
        }
        guard let found = candidates.first(where: FileManager.default.fileExists) else {
            throw DemoError(.data, "the bundled data set '\(name)' (data/\(file)) was not found; run from the repository or pass --data FILE.csv")
        }
        return URL(fileURLWithPath: found).standardizedFileURL.path
    }
}

/// Why a demo consortium could not be prepared or run.
public struct DemoError: Error, CustomStringConvertible, Sendable, Equatable {
    /// What failed.
    public enum Code: String, Sendable {
        case options, directory, data, split, topology, files, spawn, memberFailed, results, interrupted
    }

    public let code: Code
    public let description: String

    public init(_ code: Code, _ description: String) {
        self.code = code
        self.description = description
    }
}
