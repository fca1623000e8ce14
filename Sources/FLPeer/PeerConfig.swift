import FLCore
import FLGossip
import FLIdentity
import Foundation
import X509

/// One institution's own file: who it is, its key and certificate, where it
/// listens, its data and its state directory, and the network file it joins.
public struct PeerConfig: Sendable {
    public let file: String
    public let network: NetworkConfig
    public let id: String
    public let keyFile: String
    public let certificateFile: String
    public let listenHost: String
    public let listenPort: Int
    public let trainData: String
    public let validationData: String?
    /// Rows an external learner reports the final model's results on (`data.test`, given to it as `FLPEER_TEST`).
    public var testData: String? = nil
    /// The external learner that trains and evaluates the model (`learner:`), nil for the built-in one.
    public var learner: LearnerConfig? = nil
    public let stateDirectory: String
    /// Members this peer dials; by default those whose id sorts after its own,
    /// so each pair of a full mesh has exactly one connection.
    public let dial: [String]
    /// How this member misbehaves, for robustness experiments only (`attack:`).
    public let attack: Attack?
    /// Members this peer links to directly (its neighbours, or all others).
    public let neighbourCount: Int
    /// Injected faults, for fault-tolerance tests only (`faults:`).
    public let faults: Faults

    /// Fault injection: rounds in which this peer is slow, and by how much.
    public struct Faults: Sendable, Equatable {
        public var slowRounds: Set<Int> = []
        public var slowSeconds: Double = 0
        /// Members whose direct link this peer cuts once `cutAfterRound` is recorded.
        public var cutLinks: Set<String> = []
        public var cutAfterRound: Int = 0
    }

    /// Loads the peer file and the network file it names, and checks that they
    /// agree and that this member's and the CA's certificates are valid at `now`.
    public static func load(_ file: String, now: Date = Date()) throws(ConfigError) -> PeerConfig {
        let y = try YAMLReader.load(file)
        try y.onlyKeys(["network", "id", "key", "certificate", "listen", "data", "state_dir", "neighbours", "attack", "faults", "learner"])
        let networkFile = try y.existingFile("network", example: "network.yaml")
        let network = try NetworkConfig.load(networkFile)
        let id = try y.string("id", example: "alice")
        guard network.members.contains(where: { $0.id == id }) else {
            throw y.error("id", "is '\(id)', which is not a member in \(networkFile)", "use one of: \(network.members.map(\.id).joined(separator: ", "))", at: y.child("id"))
        }
        let key = try y.existingFile("key", example: "\(id).key.pem")
        let cert = try y.existingFile("certificate", example: "\(id).pem")
        let listen = try y.string("listen", example: "127.0.0.1:7001")
        let (host, port) = try parseAddress(listen, reader: y, key: "listen")
        if let own = network.members.first(where: { $0.id == id }), port != own.port, port != 0 {
            throw y.error("listen", "is '\(listen)', but \(networkFile) gives '\(id)' the address \(own.host):\(own.port), so the others would dial a port nobody listens on",
                          "listen on port \(own.port) (any host, e.g. '0.0.0.0:\(own.port)', is fine) or change the address in the network file", at: y.child("listen"))
        }
        guard let data = try y.mapping("data") else {
            throw y.error("data", "is missing", "add 'data:' with 'train: part-1.csv' (the institution's own CSV)")
        }
        try data.onlyKeys(["train", "validation", "test"])
        let train = try data.existingFile("train", example: "part-1.csv")
        let validation = data.child("validation") == nil ? nil : try data.existingFile("validation", example: "validation.csv")
        let test = data.child("test") == nil ? nil : try data.existingFile("test", example: "test.csv")
        let state = try y.folder("state_dir", example: "state/\(id)")
        var dial = network.members.map(\.id).filter { $0 > id }
        var neighbourCount = network.members.count - 1
        if let list = try y.sequence("neighbours") {
            var ids: [String] = []
            for (item, node) in list {
                guard let n = node.string, network.members.contains(where: { $0.id == n }), n != id else {
                    throw item.error(item.path, "is '\(node.string ?? "?")', not another member", "list ids from \(networkFile) other than '\(id)'", at: node)
                }
                ids.append(n)
            }
            dial = ids.filter { $0 > id }
            neighbourCount = Set(ids).count
        }
        let attack = try parseAttack(y)
        var faults = Faults()
        if let f = try y.mapping("faults") {
            try f.onlyKeys(["slow_rounds", "slow_seconds", "cut_links", "cut_after_round"])
            faults.cutAfterRound = try f.int("cut_after_round", default: 0, range: 0...1_000_000)
            for (item, node) in try f.sequence("cut_links") ?? [] {
                guard let m = node.string, network.members.contains(where: { $0.id == m }), m != id else {
                    throw item.error(item.path, "is not another member of \(network.file)", "list member ids, e.g. 'cut_links: [inst03]'", at: node)
                }
                faults.cutLinks.insert(m)
            }
            faults.slowSeconds = try f.double("slow_seconds", default: 0, valid: { $0 >= 0 && $0 <= 3600 }, expectation: "seconds from 0 to 3600")
            for (item, node) in try f.sequence("slow_rounds") ?? [] {
                guard let r = node.int, r >= 1 else { throw item.error(item.path, "is not a round number", "list rounds from 1, e.g. 'slow_rounds: [2, 3]'", at: node) }
                faults.slowRounds.insert(r)
            }
        }
        try checkRobustness(network, inputs: neighbourCount + 1)
        var config = PeerConfig(file: file, network: network, id: id, keyFile: key, certificateFile: cert, listenHost: host, listenPort: port,
                                trainData: train, validationData: validation, stateDirectory: state, dial: dial,
                                attack: attack, neighbourCount: neighbourCount, faults: faults)
        config.testData = test
        config.learner = try parseLearner(y)
        try config.checkValidity(of: try config.tls(), at: now)
        return config
    }

    /// Refuses a plan whose rule cannot absorb `max_byzantine` wrong inputs
    /// among the `inputs` this peer aggregates (its neighbours and itself).
    static func checkRobustness(_ network: NetworkConfig, inputs n: Int) throws(ConfigError) {
        let plan = network.plan, f = plan.maxByzantine
        guard f > 0 else { return }
        let key = "plan.max_byzantine"
        switch plan.rule {
        case .trimmedMean, .boundedTrimmedMean:
            let k = AggregationRule.trimCount(beta: plan.beta, n: n)
            if k < f {
                let needed = (Double(f) / Double(n) * 100).rounded(.up) / 100
                throw ConfigError(file: network.file, key: key,
                                  problem: "is \(f), but trimmed-mean with beta \(plan.beta) over this peer's \(n) inputs (its neighbours and itself) trims only \(k) value(s) per side",
                                  fix: "raise plan.beta to at least \(needed) (below 0.5), lower max_byzantine, or give the peer more neighbours")
            }
        case .mean:
            throw ConfigError(file: network.file, key: key, problem: "is \(f), but the plain mean absorbs no Byzantine member",
                              fix: "use rule: trimmed-mean, median or clipping, or set max_byzantine: 0")
        case .median, .clipping:
            if 2 * f >= n {
                throw ConfigError(file: network.file, key: key, problem: "is \(f), but \(plan.rule) needs a majority of honest inputs and this peer aggregates \(n)",
                                  fix: "lower max_byzantine below \(n) / 2 or give the peer more neighbours")
            }
        }
    }

    /// `learner: {command: [python3, train.py], working_dir: ., timeout_seconds: 300}`.
    static func parseLearner(_ y: YAMLReader) throws(ConfigError) -> LearnerConfig? {
        guard let l = try y.mapping("learner") else { return nil }
        try l.onlyKeys(["command", "working_dir", "timeout_seconds"])
        let example = "'command: [python3, examples/learners/numpy_softmax.py]'"
        guard let node = l.child("command") else { throw l.error(l.keyPath("command"), "is missing", "add the worker's program and arguments as a list, e.g. \(example)") }
        guard let items = node.sequence else {
            throw l.error(l.keyPath("command"), "must be a list of the program and its arguments (no shell runs it)", "write it as a list, e.g. \(example)", at: node)
        }
        let command = items.compactMap(\.string)
        guard !command.isEmpty, command.count == items.count, !command[0].isEmpty else {
            throw l.error(l.keyPath("command"), "must list the program and then its arguments, each a string", "write e.g. \(example)", at: node)
        }
        var workingDirectory = (y.file as NSString).deletingLastPathComponent
        if l.child("working_dir") != nil {
            workingDirectory = try l.folder("working_dir", example: ".")
            var isFolder: ObjCBool = false
            guard FileManager.default.fileExists(atPath: workingDirectory, isDirectory: &isFolder), isFolder.boolValue else {
                throw l.error(l.keyPath("working_dir"), "names \(workingDirectory), which does not exist", "create the folder or fix the path (relative paths start at this file's folder)", at: l.child("working_dir"))
            }
        }
        let timeout = try l.double("timeout_seconds", default: 300, valid: { $0 > 0 && $0 <= 86_400 }, expectation: "a positive number of seconds up to 86400")
        return LearnerConfig(command: command, workingDirectory: workingDirectory.isEmpty ? "." : workingDirectory, timeoutSeconds: timeout)
    }

    /// `attack: {kind: sign-flip, scale: 4}` and the like.
    static func parseAttack(_ y: YAMLReader) throws(ConfigError) -> Attack? {
        guard let a = try y.mapping("attack") else { return nil }
        try a.onlyKeys(["kind", "scale", "sigma", "z", "epsilon", "boost", "noise"])
        guard a.child("kind") != nil else {
            throw a.error(a.keyPath("kind"), "is missing", "add 'kind:' with one of: \(Attack.names.joined(separator: ", "))")
        }
        let kind = try a.choice("kind", default: "", options: Attack.names)
        let positive: (Double) -> Bool = { $0 > 0 && $0.isFinite }
        switch kind {
        case "sign-flip": return .signFlip(scale: try a.double("scale", default: 4, valid: positive, expectation: "a positive number"))
        case "gaussian": return .gaussian(sigma: try a.double("sigma", default: 1, valid: positive, expectation: "a positive number"))
        case "alie": return .alie(z: a.child("z") == nil ? nil : try a.double("z", default: 1, valid: { $0.isFinite }, expectation: "a number"))
        case "ipm": return .ipm(epsilon: try a.double("epsilon", default: 0.1, valid: positive, expectation: "a positive number"))
        case "label-flip": return .labelFlip(boost: a.child("boost") == nil ? nil : try a.double("boost", default: 1, valid: positive, expectation: "a positive number"))
        case "equivocate": return .equivocate
        case "replay": return .replay(noise: try a.double("noise", default: 0.05, valid: { $0 >= 0 && $0.isFinite }, expectation: "a number ≥ 0"))
        case "lying-assessor": return .lyingAssessor
        default: return .freeRider
        }
    }

    /// TLS credentials, checked against the network: the certificate must be
    /// this member's and chain to the network's CA.
    public func tls() throws(ConfigError) -> PeerTLS {
        let trust = try network.trust()
        let tls: PeerTLS
        do {
            tls = try PeerTLS(trust: trust, certificateFile: certificateFile, keyFile: keyFile)
        } catch {
            throw ConfigError(file: file, key: "key", problem: "and 'certificate' do not form a usable pair (\(error.reason))", fix: "use the key from 'flpeer keygen' and the certificate the coordinator issued for it")
        }
        guard tls.member.institution == id, tls.member.consortium == network.consortium else {
            throw ConfigError(file: file, key: "certificate", problem: "is for '\(tls.member.institution)' in '\(tls.member.consortium)', not '\(id)' in '\(network.consortium)'", fix: "use the certificate issued for this member")
        }
        guard trust.caCertificate.publicKey.isValidSignature(tls.certificate.signature, for: tls.certificate) else {
            throw ConfigError(file: file, key: "certificate", problem: "was not issued by the CA named in \(network.file)", fix: "have the consortium's CA sign this member's CSR")
        }
        if let crl = trust.revocations, crl.isRevoked(tls.certificate) {
            throw ConfigError(file: file, key: "certificate", problem: "is revoked in \(network.revocationListFile ?? "the revocation list")", fix: "ask the coordinator for a new certificate ('flpeer keygen', then 'flpeer ca sign')")
        }
        return tls
    }

    /// The gossip settings for this peer.
    public func gossipConfig() throws(ConfigError) -> GossipConfig {
        let addresses = Dictionary(uniqueKeysWithValues: network.members.map { ($0.id, $0) })
        var c = GossipConfig(tls: try tls(), listenHost: listenHost, listenPort: listenPort,
                             dial: dial.compactMap { addresses[$0].map { PeerAddress(institution: $0.id, host: $0.host, port: $0.port) } },
                             blobDirectory: "\(stateDirectory)/blobs")
        var h: UInt64 = 0xCBF2_9CE4_8422_2325  // FNV-1a of the id: a stable per-peer jitter seed
        for b in id.utf8 { h = (h ^ UInt64(b)) &* 0x0000_0100_0000_01B3 }
        c.seed = UInt64(network.plan.seed) ^ h
        return c
    }
}
