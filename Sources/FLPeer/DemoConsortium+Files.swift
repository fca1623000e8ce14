import FLCore
import FLIdentity
import Foundation

extension DemoConsortium {
    /// data/test.csv (the common held-out split) and data/ID.csv (each member's rows).
    func writeData() throws {
        try FileManager.default.createDirectory(atPath: "\(directory)/data", withIntermediateDirectories: true)
        try CSVLoader.render(dataset.subset(testRows)).write(toFile: "\(directory)/data/test.csv", atomically: true, encoding: .utf8)
        for (i, rows) in parts.enumerated() {
            try CSVLoader.render(dataset.subset(rows)).write(toFile: "\(directory)/data/\(ids[i]).csv", atomically: true, encoding: .utf8)
        }
        for (i, rows) in (ownTests ?? []).enumerated() {
            try CSVLoader.render(dataset.subset(rows)).write(toFile: "\(directory)/data/\(ids[i])-test.csv", atomically: true, encoding: .utf8)
        }
    }

    /// The coordinator's CA in pki/ca, then each institution's key and certificate in pki/ID.
    func writeIdentities(_ ca: ConsortiumCA) throws {
        try FileManager.default.createDirectory(atPath: "\(directory)/pki/ca", withIntermediateDirectories: true)
        try ca.save(directory: "\(directory)/pki/ca")
        for id in ids {
            try FileManager.default.createDirectory(atPath: "\(directory)/pki/\(id)", withIntermediateDirectories: true)
            let (key, csr) = try InstitutionKey.generate(institution: id)
            try PEMFiles.write(Ed25519Keys.pem(key), to: "\(directory)/pki/\(id)/\(id).key.pem", secret: true)
            try PEMFiles.write(try PEMFiles.pem(try ca.sign(csr, days: 7)), to: "\(directory)/pki/\(id)/\(id).pem")
        }
    }

    /// network.yaml and one peer file per member, listening on `ports` of the loopback address.
    func writeConfigs(ports: [Int]) throws {
        try networkYAML(ports: ports).write(toFile: "\(directory)/network.yaml", atomically: true, encoding: .utf8)
        for (i, (id, port)) in zip(ids, ports).enumerated() {
            let neighbours = graph.map { "\nneighbours: [\($0[i].map { ids[$0] }.joined(separator: ", "))]" } ?? ""
            let attack = options.attacks[i].map { "\nattack:\n  kind: \($0)" } ?? ""
            var learner = ""
            if let l = options.learner {
                func quoted(_ s: String) -> String { "\"\(s.replacingOccurrences(of: "\\", with: "\\\\").replacingOccurrences(of: "\"", with: "\\\""))\"" }
                learner = "\nlearner:\n  command: [\(l.command.map(quoted).joined(separator: ", "))]\n  working_dir: \(quoted(l.workingDirectory ?? directory))\n  timeout_seconds: \(l.timeoutSeconds)"
            }
            let test = options.learner == nil ? "" : ownTests == nil ? "\n  test: data/test.csv" : "\n  test: data/\(id)-test.csv"
            try """
                network: network.yaml
                id: \(id)
                key: pki/\(id)/\(id).key.pem
                certificate: pki/\(id)/\(id).pem
                listen: 127.0.0.1:\(port)
                data:
                  train: data/\(id).csv\(test)
                state_dir: state/\(id)\(neighbours)\(attack)\(learner)

                """.write(toFile: peerConfigPath(id), atomically: true, encoding: .utf8)
        }
    }

    /// The network file: members on their loopback ports and the training plan.
    func networkYAML(ports: [Int]) -> String {
        let o = options
        let quoted = dataset.classNames.map { "\"\($0)\"" }.joined(separator: ", ")
        var network = """
            # Written by 'flpeer demo'.
            consortium: \(Self.consortium)
            ca: pki/ca/ca.pem
            revocation_list: pki/ca/crl.pem
            members:

            """
        for (id, port) in zip(ids, ports) { network += "  - id: \(id)\n    address: 127.0.0.1:\(port)\n" }
        network += """
            plan:
              rounds: \(o.rounds)
              model: \(o.model.rawValue)
              hidden: [64]
              rule: \(o.rule)
              beta: \(beta)
              max_byzantine: \(declared)
              screen: \(o.screen)
              local_epochs: \(o.localEpochs)\(o.learningRate.map { "\n  learning_rate: \($0)" } ?? "")
              batch_size: 32
              quorum: \(o.peers)
              round_deadline_seconds: 30
              seed: \(o.seed)
              label: \(o.label)
              classes: [\(quoted)]\(o.localParameters.isEmpty ? "" : "\n  local_parameters: [\(o.localParameters.map { "\"\($0)\"" }.joined(separator: ", "))]")

            """
        return network
    }
}

/// Free loopback TCP ports, found by binding port 0.
enum FreePorts {
    static func take(_ n: Int) throws(DemoError) -> [Int] {
        var sockets: [Int32] = []
        defer { for s in sockets { close(s) } }
        var ports: [Int] = []
        for _ in 0..<n {
            let s = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
            guard s >= 0 else { throw DemoError(.files, "cannot open a socket to find a free port") }
            sockets.append(s)
            var addr = sockaddr_in()
            addr.sin_family = sa_family_t(AF_INET)
            addr.sin_port = 0
            addr.sin_addr.s_addr = inet_addr("127.0.0.1")
            var len = socklen_t(MemoryLayout<sockaddr_in>.size)
            let bound = withUnsafePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(s, $0, len) } }
            guard bound == 0 else { throw DemoError(.files, "cannot bind a loopback port") }
            _ = withUnsafeMutablePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(s, $0, &len) } }
            ports.append(Int(UInt16(bigEndian: addr.sin_port)))
        }
        return ports
    }
}
