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
    public let stateDirectory: String
    /// Members this peer dials; by default those whose id sorts after its own,
    /// so each pair of a full mesh has exactly one connection.
    public let dial: [String]

    /// Loads the peer file and the network file it names, and checks that they agree.
    public static func load(_ file: String) throws(ConfigError) -> PeerConfig {
        let y = try YAMLReader.load(file)
        try y.onlyKeys(["network", "id", "key", "certificate", "listen", "data", "state_dir", "neighbours"])
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
        guard let data = try y.mapping("data") else {
            throw y.error("data", "is missing", "add 'data:' with 'train: part-1.csv' (the institution's own CSV)")
        }
        try data.onlyKeys(["train", "validation"])
        let train = try data.existingFile("train", example: "part-1.csv")
        let validation = data.child("validation") == nil ? nil : try data.existingFile("validation", example: "validation.csv")
        let state = y.resolve(try y.string("state_dir", example: "state/\(id)"))
        var dial = network.members.map(\.id).filter { $0 > id }
        if let list = try y.sequence("neighbours") {
            var ids: [String] = []
            for (item, node) in list {
                guard let n = node.string, network.members.contains(where: { $0.id == n }), n != id else {
                    throw item.error(item.path, "is '\(node.string ?? "?")', not another member", "list ids from \(networkFile) other than '\(id)'", at: node)
                }
                ids.append(n)
            }
            dial = ids.filter { $0 > id }
        }
        let config = PeerConfig(file: file, network: network, id: id, keyFile: key, certificateFile: cert, listenHost: host, listenPort: port,
                                trainData: train, validationData: validation, stateDirectory: state, dial: dial)
        _ = try config.tls()
        return config
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
