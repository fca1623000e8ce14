import FLIdentity
import Foundation
import Testing

@testable import FLPeer

/// A temporary consortium folder with a CA, two members' keys and certificates.
struct ConfigFixture {
    let dir: String

    init() throws {
        dir = FileManager.default.temporaryDirectory.appendingPathComponent("flpeer-config-\(UUID().uuidString)").path
        let ca = try ConsortiumCA.create(consortium: "demo")
        try ca.save(directory: "\(dir)/ca")
        for id in ["alice", "bob"] {
            let (key, csr) = try InstitutionKey.generate(institution: id)
            try PEMFiles.write(Ed25519Keys.pem(key), to: "\(dir)/\(id).key.pem", secret: true)
            try PEMFiles.write(try PEMFiles.pem(try ca.sign(csr, days: 30)), to: "\(dir)/\(id).pem")
        }
        try "label,x\n0,1\n1,2\n".write(toFile: "\(dir)/train.csv", atomically: true, encoding: .utf8)
        try write("network.yaml", Self.network)
        try write("alice.yaml", Self.peer)
    }

    static let network = """
        consortium: demo
        ca: ca/ca.pem
        revocation_list: ca/crl.pem
        members:
          - id: alice
            address: 127.0.0.1:7001
          - id: bob
            address: 127.0.0.1:7002
        plan:
          rounds: 5
          rule: median
        """

    static let peer = """
        network: network.yaml
        id: alice
        key: alice.key.pem
        certificate: alice.pem
        listen: 127.0.0.1:7001
        data:
          train: train.csv
        state_dir: state/alice
        """

    func write(_ name: String, _ text: String) throws {
        try text.write(toFile: "\(dir)/\(name)", atomically: true, encoding: .utf8)
    }

    /// Loads alice.yaml after replacing `old` with `new` in `file`; returns the error.
    func error(in file: String, replacing old: String, with new: String) throws -> ConfigError? {
        let original = file == "network.yaml" ? Self.network : Self.peer
        #expect(original.contains(old), "fixture lacks \(old)")
        try write(file, original.replacingOccurrences(of: old, with: new))
        defer { try? write(file, original) }
        do {
            _ = try PeerConfig.load("\(dir)/alice.yaml")
            return nil
        } catch {
            return error
        }
    }
}

@Suite("configuration")
struct ConfigTests {
    @Test func aValidConfigurationLoads() throws {
        let f = try ConfigFixture()
        defer { try? FileManager.default.removeItem(atPath: f.dir) }
        let peer = try PeerConfig.load("\(f.dir)/alice.yaml")
        #expect(peer.id == "alice" && peer.network.consortium == "demo")
        #expect(peer.network.members.map(\.id) == ["alice", "bob"])
        #expect(peer.dial == ["bob"])
        #expect(peer.network.plan.rounds == 5 && peer.network.plan.rule == .median && peer.network.plan.quorum == 2)
        #expect(peer.network.plan.screen == .validationLoss && peer.network.plan.model == .logreg)
        #expect(peer.stateDirectory == "\(f.dir)/state/alice")
        let gossip = try peer.gossipConfig()
        #expect(gossip.dial.map(\.port) == [7002])
        #expect(gossip.institution == "alice")
    }

    @Test("each mistake is one sentence naming file, key and fix", arguments: [
        ("network.yaml", "rounds: 5", "rounds: many", "network.yaml", "plan.rounds", "whole number"),
        ("network.yaml", "address: 127.0.0.1:7002", "address: 127.0.0.1", "network.yaml", "members[1].address", "HOST:PORT"),
        ("network.yaml", "rule: median", "rule: majority", "network.yaml", "plan.rule", "trimmed-mean"),
        ("network.yaml", "rule: median", "rule: median\n  screen: loss", "network.yaml", "plan.screen", "use one of: validation-loss, none"),
        ("network.yaml", "rule: median", "rule: median\n  model: cnn", "network.yaml", "plan.model", "use one of: logreg, mlp"),
        ("network.yaml", "ca: ca/ca.pem", "ca: nowhere.pem", "network.yaml", "ca", "does not exist"),
        ("network.yaml", "  - id: bob", "  - id: alice", "network.yaml", "members[1].id", "different id"),
        ("network.yaml", "  - id: bob", (1...127).map { "  - id: m\($0)\n    address: 127.0.0.1:\(8000 + $0)\n" }.joined() + "  - id: bob",
         "network.yaml", "members", "lists 129 members, more than the 128 flpeer supports (its contribution scores play one game over all members); split the consortium into groups of at most 128 members"),
        ("network.yaml", "consortium: demo", "consortium: Demo Group", "network.yaml", "consortium", "lowercase"),
        ("network.yaml", "plan:", "plans:", "network.yaml", "plans", "not a known setting"),
        ("alice.yaml", "id: alice", "id: carol", "alice.yaml", "id", "not a member"),
        ("alice.yaml", "certificate: alice.pem", "certificate: bob.pem", "alice.yaml", "key", "do not form a usable pair"),
        ("alice.yaml", "listen: 127.0.0.1:7001", "listen: seven", "alice.yaml", "listen", "HOST:PORT"),
        ("alice.yaml", "  train: train.csv", "  train: missing.csv", "alice.yaml", "data.train", "does not exist"),
        ("alice.yaml", "state_dir: state/alice", "state_dir: [1, 2]", "alice.yaml", "state_dir", "non-empty text"),
        ("network.yaml", "address: 127.0.0.1:7002", "address: tls://127.0.0.1:7002", "network.yaml", "members[1].address", "is 'tls://127.0.0.1:7002', a URL, not HOST:PORT (peers always speak mutual TLS); drop the scheme"),
        ("network.yaml", "address: 127.0.0.1:7002", "address: '127.0.0.1 :7002'", "network.yaml", "members[1].address", "is '127.0.0.1 :7002', which contains a space; write HOST:PORT without spaces"),
        ("network.yaml", "address: 127.0.0.1:7002", "address: 127.0.0.1:7001", "network.yaml", "members[1].address", "is '127.0.0.1:7001', which member 'alice' already uses; give every member its own HOST:PORT"),
        ("alice.yaml", "listen: 127.0.0.1:7001", "listen: tls://0.0.0.0:7001", "alice.yaml", "listen", "a URL, not HOST:PORT"),
        ("alice.yaml", "listen: 127.0.0.1:7001", "listen: 127.0.0.1:7005", "alice.yaml", "listen", "gives 'alice' the address 127.0.0.1:7001, so the others would dial a port nobody listens on; listen on port 7001"),
        ("alice.yaml", "state_dir: state/alice", "state_dir: train.csv", "alice.yaml", "state_dir", "names 'train.csv', which is a file, not a folder; name a folder (it is created if absent)"),
        ("alice.yaml", "  train: train.csv", "  train: ca", "alice.yaml", "data.train", "names 'ca', which is a folder, not a file; name the file inside it"),
        ("alice.yaml", "network: network.yaml", "network: {", "alice.yaml", "", "not valid YAML"),
        ("network.yaml", "rule: median", "rule: median\n  max_byzantine: 1", "network.yaml", "plan.max_byzantine", "needs a majority of honest inputs"),
        ("network.yaml", "rule: median", "rule: trimmed-mean\n  max_byzantine: 1", "network.yaml", "plan.max_byzantine", "raise plan.beta"),
        ("network.yaml", "rule: median", "rule: mean\n  max_byzantine: 1", "network.yaml", "plan.max_byzantine", "absorbs no Byzantine member"),
        ("alice.yaml", "state_dir: state/alice", "state_dir: state/alice\nattack:\n  kind: bribery", "alice.yaml", "attack.kind", "sign-flip"),
        ("alice.yaml", "state_dir: state/alice", "state_dir: state/alice\nattack:\n  kind: gaussian\n  sigma: -1", "alice.yaml", "attack.sigma", "positive"),
        ("alice.yaml", "state_dir: state/alice", "state_dir: state/alice\nlearner:\n  working_dir: .", "alice.yaml", "learner.command", "is missing; add the worker's program and arguments as a list"),
        ("alice.yaml", "state_dir: state/alice", "state_dir: state/alice\nlearner:\n  command: python3 train.py", "alice.yaml", "learner.command", "must be a list of the program and its arguments (no shell runs it); write it as a list"),
        ("alice.yaml", "state_dir: state/alice", "state_dir: state/alice\nlearner:\n  command: [python3]\n  timeout_seconds: 0", "alice.yaml", "learner.timeout_seconds", "positive number of seconds"),
        ("alice.yaml", "state_dir: state/alice", "state_dir: state/alice\nlearner:\n  command: [python3]\n  working_dir: nowhere", "alice.yaml", "learner.working_dir", "does not exist"),
        ("alice.yaml", "state_dir: state/alice", "state_dir: state/alice\nlearner:\n  command: [python3]\n  shell: bash", "alice.yaml", "learner.shell", "not a known setting"),
        ("network.yaml", "rule: median", "rule: median\n  local_parameters: [[fc]]", "network.yaml", "plan.local_parameters[0]", "list glob patterns as strings"),
    ])
    func mistakes(file: String, old: String, new: String, named: String, key: String, phrase: String) throws {
        let f = try ConfigFixture()
        defer { try? FileManager.default.removeItem(atPath: f.dir) }
        let error = try #require(try f.error(in: file, replacing: old, with: new))
        #expect(error.file.hasSuffix(named))
        #expect(error.key == key)
        let sentence = error.description
        #expect(sentence.contains(phrase), "\(sentence)")
        #expect(sentence.hasSuffix(".") && !sentence.dropLast().contains("\n"))
        if !key.isEmpty { #expect(sentence.contains("key '\(key)'")) }
    }

    @Test func aListenHostOtherThanTheMembersAddressWithItsPortIsFine() throws {
        let f = try ConfigFixture()
        defer { try? FileManager.default.removeItem(atPath: f.dir) }
        try f.write("alice.yaml", ConfigFixture.peer.replacingOccurrences(of: "listen: 127.0.0.1:7001", with: "listen: 0.0.0.0:7001"))
        #expect(try PeerConfig.load("\(f.dir)/alice.yaml").listenHost == "0.0.0.0")
    }

    @Test func theScreenIsReadOnce() throws {
        let f = try ConfigFixture()
        defer { try? FileManager.default.removeItem(atPath: f.dir) }
        try f.write("network.yaml", ConfigFixture.network.replacingOccurrences(of: "rule: median", with: "rule: median\n  screen: none\n  model: mlp"))
        let plan = try PeerConfig.load("\(f.dir)/alice.yaml").network.plan
        #expect(plan.screen == .none && plan.model == .mlp)
    }

    @Test func aLearnerSectionAndLocalParametersAreRead() throws {
        let f = try ConfigFixture()
        defer { try? FileManager.default.removeItem(atPath: f.dir) }
        try f.write("network.yaml", ConfigFixture.network + "\n  local_parameters: [\"fc2.*\", \"*.running_*\"]\n")
        try f.write("alice.yaml", ConfigFixture.peer + "\nlearner:\n  command: [python3, \"my model.py\", --fast]\n  timeout_seconds: 12.5\n")
        let config = try PeerConfig.load("\(f.dir)/alice.yaml")
        #expect(config.learner == LearnerConfig(command: ["python3", "my model.py", "--fast"], workingDirectory: f.dir, timeoutSeconds: 12.5))
        #expect(config.network.plan.localParameters == ["fc2.*", "*.running_*"])
        #expect(ExternalLearner.matches("*.running_*", "1.running_mean") && !ExternalLearner.matches("fc2.*", "fc1.weight"))
    }

    @Test func anAttackSectionIsParsedForEvaluation() throws {
        let f = try ConfigFixture()
        defer { try? FileManager.default.removeItem(atPath: f.dir) }
        #expect(try PeerConfig.load("\(f.dir)/alice.yaml").attack == nil)
        try f.write("alice.yaml", ConfigFixture.peer + "\nattack:\n  kind: sign-flip\n  scale: 8\n")
        #expect(try PeerConfig.load("\(f.dir)/alice.yaml").attack == .signFlip(scale: 8))
        try f.write("alice.yaml", ConfigFixture.peer + "\nattack:\n  kind: alie\n")
        #expect(try PeerConfig.load("\(f.dir)/alice.yaml").attack == .alie(z: nil))
    }

    @Test func aCertificateFromAnotherCAIsRefused() throws {
        let f = try ConfigFixture()
        defer { try? FileManager.default.removeItem(atPath: f.dir) }
        let other = try ConsortiumCA.create(consortium: "demo")
        let (key, csr) = try InstitutionKey.generate(institution: "alice")
        try PEMFiles.write(Ed25519Keys.pem(key), to: "\(f.dir)/alice.key.pem", secret: true)
        try PEMFiles.write(try PEMFiles.pem(try other.sign(csr, days: 30)), to: "\(f.dir)/alice.pem")
        #expect { try PeerConfig.load("\(f.dir)/alice.yaml") } throws: { ($0 as? ConfigError)?.key == "certificate" }
    }
}

@Suite("certificate validity at load")
struct CertificateValidityTests {
    @Test func anExpiredOrNotYetValidCertificateIsNamedWithItsDate() throws {
        let f = try ConfigFixture()
        defer { try? FileManager.default.removeItem(atPath: f.dir) }
        let later = Date().addingTimeInterval(31 * 86_400)
        do {
            _ = try PeerConfig.load("\(f.dir)/alice.yaml", now: later)
            Issue.record("a certificate that expired yesterday loaded")
        } catch {
            #expect(error.key == "certificate")
            #expect(error.description.contains("names alice.pem, which expired on 20"), "\(error)")
        }
        let ca = try ConsortiumCA.load(directory: "\(f.dir)/ca")
        let (key, csr) = try InstitutionKey.generate(institution: "alice")
        try PEMFiles.write(Ed25519Keys.pem(key), to: "\(f.dir)/alice.key.pem", secret: true)
        let start = Date(timeIntervalSince1970: (Date().timeIntervalSince1970 + 86_400).rounded(.down))
        try PEMFiles.write(try PEMFiles.pem(try ca.sign(csr, days: 30, now: start)), to: "\(f.dir)/alice.pem")
        do {
            _ = try PeerConfig.load("\(f.dir)/alice.yaml")
            Issue.record("a certificate valid only from tomorrow loaded")
        } catch {
            #expect(error.description.contains("names alice.pem, which is not valid until \(PeerConfig.utc(start.addingTimeInterval(-300)))"), "\(error)")
        }
        _ = try PeerConfig.load("\(f.dir)/alice.yaml", now: start)
    }
}
