import FLIdentity
import Foundation
import Logging
import NIOCore
import NIOPosix
import X509

@testable import FLGossip

/// Collects log records so tests can assert on what an operator would read.
final class LogRecorder: @unchecked Sendable {
    private let lock = NSLock()
    private var records: [(message: String, metadata: [String: String])] = []

    func append(_ message: String, _ metadata: [String: String]) {
        lock.lock()
        records.append((message, metadata))
        lock.unlock()
    }

    var all: [(message: String, metadata: [String: String])] {
        lock.lock()
        defer { lock.unlock() }
        return records
    }

    func logger(_ label: String) -> Logger {
        var l = Logger(label: label) { _ in RecordingHandler(recorder: self) }
        l.logLevel = .info
        return l
    }
}

struct RecordingHandler: LogHandler {
    let recorder: LogRecorder
    var metadata: Logger.Metadata = [:]
    var logLevel: Logger.Level = .info
    subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }
    func log(event: LogEvent) {
        var all = metadata
        if let m = event.metadata { all.merge(m) { $1 } }
        recorder.append("\(event.message)", all.mapValues { "\($0)" })
    }
}

/// A consortium on loopback: a CA and certificates for any institution.
struct TestConsortium {
    let name = "test-consortium"
    let ca: ConsortiumCA
    var members: Set<String>
    var revocations: RevocationList?
    let root: String

    init(members: Set<String>) throws {
        ca = try ConsortiumCA.create(consortium: name)
        self.members = members
        root = FileManager.default.temporaryDirectory.appendingPathComponent("flpeer-gossip-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: root, withIntermediateDirectories: true)
    }

    var trust: ConsortiumTrust { ConsortiumTrust(consortium: name, caCertificate: ca.certificate, members: members, revocations: revocations) }

    /// TLS credentials for `institution`, issued by `issuer` (default: this CA).
    func tls(_ institution: String, issuer: ConsortiumCA? = nil, days: Int = 30, issuedAt: Date = Date()) throws -> PeerTLS {
        let (key, csr) = try InstitutionKey.generate(institution: institution)
        let cert = try (issuer ?? ca).sign(csr, days: days, now: issuedAt)
        return try PeerTLS(trust: trust, certificatePEM: try PEMFiles.pem(cert), keyPEM: Ed25519Keys.pem(key))
    }

    func config(_ tls: PeerTLS, dial: [PeerAddress] = []) -> GossipConfig {
        var c = GossipConfig(tls: tls, dial: dial, blobDirectory: "\(root)/\(tls.member.institution)-\(UUID().uuidString)")
        c.backoffBase = .milliseconds(20)
        c.backoffCap = .milliseconds(200)
        return c
    }
}

/// Waits until `predicate` holds for an event, or fails after `timeout`.
func waitFor(_ node: GossipNode, timeout: Duration = .seconds(20), _ predicate: @escaping @Sendable (GossipEvent) -> Bool) async -> GossipEvent? {
    await withTaskGroup(of: GossipEvent?.self) { group in
        group.addTask {
            for await e in node.events where predicate(e) { return e }
            return nil
        }
        group.addTask {
            try? await Task.sleep(for: timeout)
            return nil
        }
        let first = await group.next() ?? nil
        group.cancelAll()
        return first
    }
}
