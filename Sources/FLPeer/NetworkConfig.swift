import FLCore
import FLGossip
import FLIdentity
import Foundation
import X509

/// The consortium-wide file every member holds: who is in, how to reach
/// them, which CA to trust, which certificates are revoked, and the plan.
public struct NetworkConfig: Sendable {
    public struct Member: Sendable, Equatable {
        public let id: String
        public let host: String
        public let port: Int
    }

    public let file: String
    public let consortium: String
    /// Absolute paths.
    public let caFile: String
    public let revocationListFile: String?
    public let members: [Member]
    /// The most members a consortium may list (`ContributionScorer.shapley` plays at most 128 players).
    public static let maximumMembers = 128
    public let plan: TrainingPlan

    /// Loads and checks `file`.
    public static func load(_ file: String) throws(ConfigError) -> NetworkConfig {
        let y = try YAMLReader.load(file)
        try y.onlyKeys(["consortium", "ca", "revocation_list", "members", "plan"])
        let consortium = try y.string("consortium", example: "oncology-eu")
        do {
            try MemberName.validate(consortium, what: "the consortium name")
        } catch {
            throw y.error("consortium", "is not a valid name (\(error.reason))", "use lowercase letters, digits, '.', '_' and '-'", at: y.child("consortium"))
        }
        let ca = try y.existingFile("ca", example: "ca.pem")
        let crl = y.child("revocation_list") == nil ? nil : try y.existingFile("revocation_list", example: "crl.pem")
        guard let list = try y.sequence("members"), !list.isEmpty else {
            throw y.error("members", "is missing or empty", "list each member as '- id: alice' with 'address: 127.0.0.1:7001'")
        }
        guard list.count <= Self.maximumMembers else {
            throw y.error("members", "lists \(list.count) members, more than the \(Self.maximumMembers) flpeer supports (its contribution scores play one game over all members)",
                          "split the consortium into groups of at most \(Self.maximumMembers) members")
        }
        var members: [Member] = []
        var seen = Set<String>()
        for (m, _) in list {
            guard m.node.mapping != nil else {
                throw m.error(m.path, "must be a mapping with 'id' and 'address'", "write '- id: alice' and '  address: 127.0.0.1:7001'")
            }
            try m.onlyKeys(["id", "address"])
            let id = try m.string("id", example: "alice")
            do {
                try MemberName.validate(id, what: "the member id")
            } catch {
                throw m.error(m.keyPath("id"), "is not a valid id (\(error.reason))", "use lowercase letters, digits, '.', '_' and '-'", at: m.child("id"))
            }
            guard seen.insert(id).inserted else {
                throw m.error(m.keyPath("id"), "repeats member '\(id)'", "give every member a different id", at: m.child("id"))
            }
            let address = try m.string("address", example: "127.0.0.1:7001")
            let (host, port) = try parseAddress(address, reader: m, key: "address")
            if let other = members.first(where: { $0.host.lowercased() == host.lowercased() && $0.port == port }) {
                throw m.error(m.keyPath("address"), "is '\(address)', which member '\(other.id)' already uses", "give every member its own HOST:PORT", at: m.child("address"))
            }
            members.append(Member(id: id, host: host, port: port))
        }
        let plan = try TrainingPlan.load(try y.mapping("plan"), in: y, memberCount: members.count)
        return NetworkConfig(file: file, consortium: consortium, caFile: ca, revocationListFile: crl, members: members, plan: plan)
    }

    /// The trust a peer derives from this file (CA, members, revocations).
    public func trust() throws(ConfigError) -> ConsortiumTrust {
        let caCert: Certificate
        do {
            caCert = try PEMFiles.certificate(at: caFile)
        } catch {
            throw ConfigError(file: file, key: "ca", problem: "names a file that is not a PEM certificate (\(error.reason))", fix: "point it at the consortium CA's ca.pem")
        }
        guard ConsortiumCA.consortiumName(of: caCert) == consortium else {
            throw ConfigError(file: file, key: "ca", problem: "is the CA of consortium '\(ConsortiumCA.consortiumName(of: caCert) ?? "?")', not '\(consortium)'", fix: "use the CA certificate made by 'flpeer ca init --consortium \(consortium)'")
        }
        var crl: RevocationList?
        if let revocationListFile {
            do {
                crl = try RevocationList.load(path: revocationListFile, caCertificate: caCert)
            } catch {
                throw ConfigError(file: file, key: "revocation_list", problem: "cannot be used (\(error.reason))", fix: "use the crl.pem that 'flpeer ca revoke' maintains")
            }
        }
        return ConsortiumTrust(consortium: consortium, caCertificate: caCert, members: Set(members.map(\.id)), revocations: crl)
    }
}

/// HOST:PORT, with IPv6 hosts in brackets; no scheme, no spaces.
func parseAddress(_ text: String, reader: YAMLReader, key: String) throws(ConfigError) -> (String, Int) {
    let example = key == "listen" ? "127.0.0.1:7001" : "10.0.0.5:7001"
    if text.contains("://") {
        throw reader.error(reader.keyPath(key), "is '\(text)', a URL, not HOST:PORT (peers always speak mutual TLS)", "drop the scheme and write e.g. '\(key): \(example)'", at: reader.child(key))
    }
    if text.contains(where: \.isWhitespace) {
        throw reader.error(reader.keyPath(key), "is '\(text)', which contains a space", "write HOST:PORT without spaces, e.g. '\(key): \(example)'", at: reader.child(key))
    }
    var host = Substring(text), portText: Substring = ""
    if text.hasPrefix("["), let close = text.firstIndex(of: "]") {
        host = text[text.index(after: text.startIndex)..<close]
        portText = text[text.index(after: close)...].drop(while: { $0 == ":" })
    } else if let colon = text.lastIndex(of: ":") {
        host = text[..<colon]
        portText = text[text.index(after: colon)...]
    }
    let bracketed = text.hasPrefix("[")
    let allowed: (Character) -> Bool = { c in
        c.isASCII && (c.isLetter || c.isNumber || c == "." || c == "-" || c == "_" || (bracketed && (c == ":" || c == "%")))
    }
    guard !host.isEmpty, host.allSatisfy(allowed), let port = Int(portText), (1...65535).contains(port) || (port == 0 && key == "listen") else {
        throw reader.error(reader.keyPath(key), "is '\(text)', not HOST:PORT", "write e.g. '\(key): 127.0.0.1:7001'", at: reader.child(key))
    }
    return (String(host), port)
}

/// How the consortium trains: read by every peer from the network file.
public struct TrainingPlan: Sendable, Equatable {
    public var rounds: Int
    public var model: ModelSpec.Kind
    public var hidden: [Int]
    public var rule: Rule
    public var beta: Double
    public var localEpochs: Int
    public var batchSize: Int
    public var learningRate: Double
    /// Members (including oneself) whose updates a round needs before its deadline may end it.
    public var quorum: Int
    public var roundDeadlineSeconds: Double
    public var maxByzantine: Int
    public var seed: Int
    /// The label column of every member's CSV.
    public var label: String
    /// Every class name in a fixed order, so that all members index labels
    /// alike even when a member's data lacks some classes. Required to train.
    public var classes: [String]?
    /// L2 penalty on weights during local training.
    public var l2: Double
    /// Which updates a peer drops before aggregating (`plan.screen`).
    public var screen: Screen = .validationLoss
    /// Glob patterns (fnmatch) of an external learner's tensors that are never
    /// shared or aggregated: each member keeps its own (`plan.local_parameters`).
    public var localParameters: [String] = []

    /// How a peer combines the updates of a round (`plan.rule`).
    public enum Rule: String, Sendable, CaseIterable, CustomStringConvertible {
        case trimmedMean = "trimmed-mean"
        case boundedTrimmedMean = "bounded-trimmed-mean"
        case mean
        case median
        case clipping

        public var description: String { rawValue }

        /// The aggregation rule, with the plan's `beta` where it trims.
        public func aggregation(beta: Double) -> AggregationRule {
            switch self {
            case .mean: .mean
            case .median: .median
            case .clipping: .clipping(tau: nil)
            case .boundedTrimmedMean: .boundedTrimmedMean(beta: beta)
            case .trimmedMean: .trimmedMean(beta: beta)
            }
        }
    }

    /// A screen of updates before aggregation.
    public enum Screen: String, Sendable, CaseIterable {
        /// When `maxByzantine` > 0, each peer drops up to that many other
        /// members' updates that raise its validation loss above the round's
        /// starting model, worst first (the default).
        case validationLoss = "validation-loss"
        /// No screen.
        case none
    }

    /// Local-training settings: SGD with momentum 0.9 for logreg, Adam for an MLP.
    public func trainingConfig(seed: UInt64) -> TrainingConfig {
        TrainingConfig(epochs: localEpochs, batchSize: batchSize,
                       optimizer: model == .logreg ? .sgd(learningRate: Float(learningRate), momentum: 0.9) : .adam(learningRate: Float(learningRate)),
                       l2: Float(l2), seed: seed)
    }


    static func load(_ y: YAMLReader?, in parent: YAMLReader, memberCount: Int) throws(ConfigError) -> TrainingPlan {
        guard let y else {
            throw parent.error("plan", "is missing", "add a 'plan:' section with at least 'rounds: 30'")
        }
        try y.onlyKeys(["rounds", "model", "hidden", "rule", "beta", "local_epochs", "batch_size", "learning_rate", "l2", "quorum", "round_deadline_seconds", "max_byzantine", "seed", "label", "classes", "screen", "local_parameters"])
        let model = try y.choice("model", default: ModelSpec.Kind.logreg)
        var hidden = [64]
        if let h = y.child("hidden") {
            let values = h.sequence?.compactMap(\.int) ?? (h.int.map { [$0] } ?? [])
            guard !values.isEmpty, values.allSatisfy({ $0 > 0 && $0 <= 4096 }), (h.sequence?.count ?? 1) == values.count else {
                throw y.error(y.keyPath("hidden"), "must be a layer width or a list of widths from 1 to 4096", "write e.g. 'hidden: 64' or 'hidden: [128, 64]'", at: h)
            }
            hidden = values
        }
        var classes: [String]?
        if let c = y.child("classes") {
            let names = c.sequence?.compactMap(\.string) ?? []
            guard names.count >= 2, names.count == c.sequence?.count, Set(names).count == names.count else {
                throw y.error(y.keyPath("classes"), "must list at least two different class names", "write e.g. 'classes: [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]'", at: c)
            }
            classes = names
        }
        var plan = TrainingPlan(
            rounds: try y.int("rounds", range: 1...100_000),
            model: model,
            hidden: hidden,
            rule: try y.choice("rule", default: Rule.trimmedMean),
            beta: try y.double("beta", default: 0.2, valid: { $0 >= 0 && $0 < 0.5 }, expectation: "a fraction from 0 up to (not including) 0.5"),
            localEpochs: try y.int("local_epochs", default: 1, range: 1...1000),
            batchSize: try y.int("batch_size", default: 32, range: 1...65536),
            learningRate: try y.double("learning_rate", default: model == .logreg ? 0.05 : 0.003, valid: { $0 > 0 && $0 < 100 }, expectation: "a positive number"),
            quorum: try y.int("quorum", default: memberCount, range: 1...max(1, memberCount)),
            roundDeadlineSeconds: try y.double("round_deadline_seconds", default: 30, valid: { $0 > 0 && $0 <= 86_400 }, expectation: "a positive number of seconds"),
            maxByzantine: try y.int("max_byzantine", default: 0, range: 0...max(0, memberCount - 1)),
            seed: try y.int("seed", default: 0, range: 0...Int(Int32.max)),
            label: try y.optionalString("label", example: "label") ?? "label",
            classes: classes,
            l2: try y.double("l2", default: model == .logreg ? 3e-3 : 1e-4, valid: { $0 >= 0 && $0 < 10 }, expectation: "a non-negative number")
        )
        plan.screen = try y.choice("screen", default: Screen.validationLoss)
        for (item, node) in try y.sequence("local_parameters") ?? [] {
            guard let pattern = node.string, !pattern.isEmpty else {
                throw item.error(item.path, "is not a tensor-name pattern", "list glob patterns as strings, e.g. 'local_parameters: [\"fc2.*\", \"*.running_*\"]'", at: node)
            }
            plan.localParameters.append(pattern)
        }
        return plan
    }
}
