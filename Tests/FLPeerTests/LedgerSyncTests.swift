import Crypto
import FLGossip
import FLIdentity
import FLLedger
import FLWire
import Foundation
import Logging
import NIOPosix
import Testing

@testable import FLPeer

@Suite("ledger sync over the transport", .serialized)
struct LedgerSyncTests {
    /// A — B — C over real mutual-TLS sockets, no A–C link: every peer ends
    /// with every chain, and every replica verifies and agrees.
    @Test func chainsReachEveryPeerThroughRelays() async throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("flpeer-sync-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 2)
        let ca = try ConsortiumCA.create(consortium: "demo")
        let members = ["a", "b", "c"]
        let trust = ConsortiumTrust(consortium: "demo", caCertificate: ca.certificate, members: Set(members), revocations: nil)
        var keys: [String: Curve25519.Signing.PrivateKey] = [:]
        var stores: [String: LedgerStore] = [:]
        var nodes: [String: GossipNode] = [:]
        var tasks: [Task<Void, Error>] = []
        defer { for t in tasks { t.cancel() } }
        var portOfB = 0
        for m in ["b", "a", "c"] {
            let (key, csr) = try InstitutionKey.generate(institution: m)
            keys[m] = key
            let certPEM = try PEMFiles.pem(try ca.sign(csr, days: 5))
            let store = try LedgerStore(path: "\(dir)/\(m).sqlite", consortium: "demo")
            try store.append(author: m, kind: .genesis, round: 0, body: EntryBody.genesis(certificatePEM: certPEM), key: key)
            stores[m] = store
            var config = GossipConfig(tls: try PeerTLS(trust: trust, certificatePEM: certPEM, keyPEM: Ed25519Keys.pem(key)),
                                      dial: m == "b" ? [] : [PeerAddress(institution: "b", host: "127.0.0.1", port: portOfB)],
                                      blobDirectory: "\(dir)/\(m)-blobs")
            config.ledger = LedgerSync(store: store, caCertificate: ca.certificate)
            config.backoffBase = .milliseconds(20)
            config.backoffCap = .milliseconds(200)
            let node = try GossipNode(config: config, group: group, logger: Logger(label: m) { _ in SwiftLogNoOpLogHandler() })
            let port = try await node.start()
            if m == "b" { portOfB = port }
            nodes[m] = node
            tasks.append(Task { try await node.run() })
        }
        // Each member writes 70 more entries (more than one pull batch) and tells its neighbours.
        for m in members {
            for r in 1...70 {
                try stores[m]!.append(author: m, kind: .update, round: UInt64(r), body: EntryBody.update(
                    round: UInt64(r), baseHash: "00", updateHash: "\(m)\(r)", samples: 1, codec: "f32", metrics: [:]), key: keys[m]!)
            }
            await nodes[m]!.ledgerChanged()
        }
        let deadline = ContinuousClock.now + .seconds(30)
        func complete() throws -> Bool {
            try members.allSatisfy { m in
                let heads = try stores[m]!.heads()
                return members.allSatisfy { heads[$0]?.seq == 70 }
            }
        }
        while try !complete(), ContinuousClock.now < deadline {
            try await Task.sleep(for: .milliseconds(50))
        }
        let finalHeads = try members.map { try stores[$0]!.heads().mapValues(\.seq) }
        #expect(try complete(), "heads: \(finalHeads)")
        for m in members {
            let others = members.filter { $0 != m }.map { "\(dir)/\($0).sqlite" }
            let report = try LedgerVerifier.verify(path: "\(dir)/\(m).sqlite", caCertificate: ca.certificate, against: others)
            #expect(report.intact, "\(m): \(report.findings.prefix(3))")
            #expect(report.chains == 3 && report.entries == 3 * 71)
        }
        let peersOfA = await nodes["a"]!.connectedPeers()
        #expect(peersOfA == ["b"], "a has no direct link to c")
    }
}
