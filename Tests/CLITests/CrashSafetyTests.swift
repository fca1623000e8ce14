import FLIdentity
import FLLedger
import Foundation
import Testing

@Suite("ledger crash safety")
struct CrashSafetyTests {
    /// A writer process is SIGKILLed at seeded random moments, 50 times, while
    /// appending to one ledger. After every kill the file opens, verifies intact,
    /// and holds every append the writer had acknowledged.
    @Test func killedWritersNeverLoseAcknowledgedAppends() async throws {
        let dir = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let ca = try ConsortiumCA.create(consortium: "demo")
        let (key, csr) = try InstitutionKey.generate(institution: "alice")
        let keyPath = dir.appendingPathComponent("alice.key.pem").path
        let certPath = dir.appendingPathComponent("alice.pem").path
        try PEMFiles.write(Ed25519Keys.pem(key), to: keyPath, secret: true)
        try PEMFiles.write(try PEMFiles.pem(try ca.sign(csr, days: 5)), to: certPath)
        var state: UInt64 = 2024
        var lastAcked: Int64 = -1
        var kills = 0, acknowledged: Int64 = 0
        for iteration in 0..<50 {
            // Ten kills per ledger file keep each full verification quick.
            let ledger = dir.appendingPathComponent("ledger-\(iteration / 10).sqlite").path
            if iteration % 10 == 0 {
                acknowledged += lastAcked + 1
                lastAcked = -1
            }
            let p = Process()
            p.executableURL = productsDirectory.appendingPathComponent("ledger-tool")
            p.arguments = ["_append-stress", "--ledger", ledger, "--consortium", "demo", "--author", "alice",
                           "--key", keyPath, "--certificate", certPath, "--count", "100000"]
            let out = Pipe()
            p.standardOutput = out
            p.standardError = FileHandle.nullDevice
            try p.run()
            state = state &* 6364136223846793005 &+ 1442695040888963407
            try await Task.sleep(for: .milliseconds(40 + Int(state >> 33) % 200))
            kill(p.processIdentifier, SIGKILL)
            await exited(p)
            if p.terminationReason == .uncaughtSignal { kills += 1 }
            let acked = await readAll(out)
                .split(separator: "\n").compactMap { $0.hasPrefix("acked ") ? Int64($0.dropFirst(6)) : nil }
            if let last = acked.last { lastAcked = max(lastAcked, last) }
            // The file opens as a restarting peer opens it (a writer killed before its
            // schema committed leaves an empty SQLite file, which opening completes)…
            let head = try LedgerStore(path: ledger, consortium: "demo").heads()["alice"].map { Int64($0.seq) } ?? -1
            // …and verifies.
            let report = try LedgerVerifier.verify(path: ledger, caCertificate: ca.certificate)
            #expect(report.findings.isEmpty, "after a kill: \(report.findings.prefix(3))")
            #expect(head >= lastAcked, "acknowledged seq \(lastAcked) lost; head is \(head)")
        }
        #expect(kills >= 45, "the writer must actually be killed mid-stream (\(kills) kills)")
        acknowledged += lastAcked + 1
        print("crash safety: \(kills) SIGKILLs, \(acknowledged) acknowledged appends, none lost, every file verified")
        #expect(acknowledged > 250, "the writers made progress (\(acknowledged) appends acknowledged)")
    }
}
