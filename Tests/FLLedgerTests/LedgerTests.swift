import Crypto
import FLIdentity
import Foundation
import GRDB
import Testing
import X509

@testable import FLLedger

/// Three institutions that each keep a ledger and replicate each other's chains.
struct LedgerFixture {
    let dir: String
    let ca: ConsortiumCA
    var keys: [String: Curve25519.Signing.PrivateKey] = [:]
    var certs: [String: String] = [:]
    var stores: [String: LedgerStore] = [:]
    let members = ["a", "b", "c"]

    init(rounds: Int = 2) throws {
        dir = FileManager.default.temporaryDirectory.appendingPathComponent("flpeer-ledger-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        ca = try ConsortiumCA.create(consortium: "demo")
        for m in members {
            let (key, csr) = try InstitutionKey.generate(institution: m)
            keys[m] = key
            certs[m] = try PEMFiles.pem(try ca.sign(csr, days: 30))
            let store = try LedgerStore(path: "\(dir)/\(m).sqlite", consortium: "demo")
            try store.append(author: m, kind: .genesis, round: 0, body: EntryBody.genesis(certificatePEM: certs[m]!), key: key)
            stores[m] = store
        }
        try sync()
        for r in 1...UInt64(rounds) {
            for m in members {
                try stores[m]!.append(author: m, kind: .update, round: r, body: EntryBody.update(
                    round: r, baseHash: String(repeating: "0", count: 64), updateHash: Self.updateHash(m, r), samples: 100, codec: "f32", metrics: ["accuracy": 0.9]), key: keys[m]!)
            }
            try sync()
            for m in members {
                try stores[m]!.append(author: m, kind: .aggregate, round: r, body: EntryBody.aggregate(
                    round: r, included: members.map { .init(author: $0, updateHash: Self.updateHash($0, r), trimmed: 0) },
                    rule: "trimmed-mean", parameters: ["beta": 0.2], resultHash: String(repeating: "a", count: 64), scores: ["a": ["0": 1], "b": ["0": 1], "c": ["0": 1]]), key: keys[m]!)
            }
            try sync()
            for m in members {
                let heads = try stores[m]!.heads().map { (author: $0.key, seq: $0.value.seq, hash: $0.value.hash) }
                try stores[m]!.append(author: m, kind: .checkpoint, round: r, body: EntryBody.checkpoint(heads: heads), key: keys[m]!)
            }
            try sync()
        }
    }

    static func updateHash(_ m: String, _ r: UInt64) -> String { hex(SHA256.hash(data: Array("\(m)-\(r)".utf8))) }

    /// Every store pulls every other store's entries.
    func sync() throws {
        for m in members {
            for other in members where other != m {
                let report = try stores[m]!.merge(try stores[other]!.allEntries(), caCertificate: ca.certificate)
                #expect(report.refused.isEmpty, "\(report.refused)")
            }
        }
    }

    func path(_ m: String) -> String { "\(dir)/\(m).sqlite" }

    func rules(_ path: String, against: [String] = []) throws -> Set<String> {
        Set(try LedgerVerifier.verify(path: path, caCertificate: ca.certificate, against: against).findings.map(\.rule))
    }
}

@Suite("ledger")
struct LedgerTests {
    @Test func anIntactReplicatedLedgerVerifies() throws {
        let f = try LedgerFixture()
        defer { try? FileManager.default.removeItem(atPath: f.dir) }
        for m in f.members {
            let report = try LedgerVerifier.verify(path: f.path(m), caCertificate: f.ca.certificate, against: f.members.filter { $0 != m }.map(f.path))
            #expect(report.findings.isEmpty, "\(report.findings)")
            #expect(report.chains == 3 && report.rounds == 2)
            #expect(report.entries == 3 * (1 + 2 * 3))
        }
        let heads = try f.stores["a"]!.heads()
        #expect(heads.count == 3 && heads.values.allSatisfy { $0.seq == 6 })
        #expect(try f.stores["b"]!.entries(author: "a", after: 4).map(\.header.seq) == [5, 6])
    }

    /// A member that appended after another stopped leaves that replica
    /// behind: lag, not a finding. The owner's own chain missing an entry
    /// another member checkpointed is a rollback, and both verifiers say so.
    @Test func aLaggingReplicaVerifiesButARolledBackOwnChainDoesNot() throws {
        let f = try LedgerFixture(rounds: 1)
        defer { try? FileManager.default.removeItem(atPath: f.dir) }
        let b = f.stores["b"]!, c = f.stores["c"]!
        // b appends an evidence-like late entry that only c pulls; c checkpoints it.
        try b.append(author: "b", kind: .update, round: 2, body: EntryBody.update(
            round: 2, baseHash: "00", updateHash: "33", samples: 1, codec: "f32", metrics: [:]), key: f.keys["b"]!)
        _ = try c.merge(try b.allEntries(), caCertificate: f.ca.certificate)
        let heads = try c.heads().map { (author: $0.key, seq: $0.value.seq, hash: $0.value.hash) }
        try c.append(author: "c", kind: .checkpoint, round: 2, body: EntryBody.checkpoint(heads: heads), key: f.keys["c"]!)
        // a never got b's or c's last entries: behind, and intact.
        let lagging = try LedgerVerifier.verify(path: f.path("a"), caCertificate: f.ca.certificate, against: [f.path("b"), f.path("c")])
        #expect(lagging.findings.isEmpty, "\(lagging.findings)")
        #expect(try pythonRules(f, f.path("a"), against: [f.path("b"), f.path("c")]).isEmpty)
        // b's file rolled back to before its own last entry: c's checkpoint names it.
        let copy = "\(f.dir)/b-old.sqlite"
        try f.stores["a"]!.backup(to: copy)
        try setOwner(copy, "b")
        let rolledBack = try LedgerVerifier.verify(path: copy, caCertificate: f.ca.certificate, against: [f.path("c")])
        #expect(rolledBack.findings.map(\.rule) == ["not-truncated"] && rolledBack.findings.first?.author == "b", "\(rolledBack.findings)")
        #expect(try pythonRules(f, copy, against: [f.path("c")]) == ["not-truncated"])
    }

    /// The rules ledger-tools/verify_ledger.py reports (the independent verifier).
    private func pythonRules(_ f: LedgerFixture, _ path: String, against: [String]) throws -> [String] {
        let caPath = "\(f.dir)/ca.pem"
        try PEMFiles.pem(f.ca.certificate).write(toFile: caPath, atomically: true, encoding: .utf8)
        let script = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("ledger-tools/verify_ledger.py").path
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        p.arguments = ["python3", script, path, "--ca", caPath, "--json"] + against.flatMap { ["--against", $0] }
        let out = Pipe()
        p.standardOutput = out
        try p.run()
        let data = out.fileHandleForReading.readDataToEndOfFile()
        p.waitUntilExit()
        let obj = try JSONSerialization.jsonObject(with: data) as? [String: Any]
        return (obj?["findings"] as? [[String: Any]] ?? []).compactMap { $0["rule"] as? String }
    }

    private func setOwner(_ path: String, _ owner: String) throws {
        let db = try DatabaseQueue(path: path)
        try db.write { try $0.execute(sql: "UPDATE meta SET value = ? WHERE key = 'owner'", arguments: [owner]) }
        try db.close()
    }

    /// Issue 14 item 5: b's certificate is valid for 30 days; an entry b signs
    /// dated after that (or before its certificate) is refused by the merge,
    /// with a reason naming the time and the validity, and nothing is stored.
    @Test func mergeRefusesEntriesDatedOutsideTheirAuthorsCertificate() throws {
        let f = try LedgerFixture(rounds: 1)
        defer { try? FileManager.default.removeItem(atPath: f.dir) }
        let a = f.stores["a"]!, b = f.stores["b"]!
        let head = try b.heads()["b"]!
        let body = EntryBody.update(round: 2, baseHash: "00", updateHash: "11", samples: 1, codec: "f32", metrics: [:])
        let day: Int64 = 86_400_000
        let now = Int64(Date().timeIntervalSince1970 * 1000)
        for time in [now + 31 * day, now - 2 * day] {
            let header = EntryHeader(consortium: "demo", author: "b", seq: head.seq + 1, prev: head.hash, round: 2, kind: .update, timeMillis: time, bodyLength: 0)
            let report = try a.merge([try LedgerEntry.make(header: header, body: body, key: f.keys["b"]!)], caCertificate: f.ca.certificate)
            #expect(report.stored == 0)
            #expect(report.refused.first?.contains("b#\(head.seq + 1): its time \(time) (unix ms) lies outside 'b''s certificate validity") == true, "\(report.refused)")
        }
        #expect(try a.heads()["b"]?.seq == head.seq)
        let inside = EntryHeader(consortium: "demo", author: "b", seq: head.seq + 1, prev: head.hash, round: 2, kind: .update, timeMillis: now, bodyLength: 0)
        #expect(try a.merge([try LedgerEntry.make(header: inside, body: body, key: f.keys["b"]!)], caCertificate: f.ca.certificate).stored == 1)
    }

    @Test func mergeRefusesForgeriesAndKeepsForksAsEvidence() throws {
        let f = try LedgerFixture(rounds: 1)
        defer { try? FileManager.default.removeItem(atPath: f.dir) }
        let a = f.stores["a"]!, b = f.stores["b"]!
        // Replaying b's stored entries changes nothing.
        let again = try a.merge(try b.allEntries(), caCertificate: f.ca.certificate)
        #expect(again.stored == 0 && again.forks == 0 && again.duplicates > 0)
        // An entry for b's next seq signed with c's key is refused.
        let head = try b.heads()["b"]!
        let now = Int64(Date().timeIntervalSince1970 * 1000)
        let header = EntryHeader(consortium: "demo", author: "b", seq: head.seq + 1, prev: head.hash, round: 2, kind: .update, timeMillis: now, bodyLength: 0)
        let body = EntryBody.update(round: 2, baseHash: "00", updateHash: "11", samples: 1, codec: "f32", metrics: [:])
        let forged = try LedgerEntry.make(header: header, body: body, key: f.keys["c"]!)
        #expect(try a.merge([forged], caCertificate: f.ca.certificate).refused.first?.contains("signature is not by 'b'") == true)
        // An entry from another consortium is refused.
        var foreignHeader = header
        foreignHeader.consortium = "other"
        let foreign = try LedgerEntry.make(header: foreignHeader, body: body, key: f.keys["b"]!)
        #expect(try a.merge([foreign], caCertificate: f.ca.certificate).refused.first?.contains("consortium") == true)
        // b signs two different entries for the same seq: the second is kept as evidence and b is flagged.
        let first = try LedgerEntry.make(header: header, body: body, key: f.keys["b"]!)
        let second = try LedgerEntry.make(header: header, body: EntryBody.update(round: 2, baseHash: "00", updateHash: "22", samples: 1, codec: "f32", metrics: [:]), key: f.keys["b"]!)
        #expect(try a.merge([first], caCertificate: f.ca.certificate).stored == 1)
        #expect(try a.merge([second], caCertificate: f.ca.certificate).forks == 1)
        #expect(try a.entries(author: "b").last?.hash == first.hash, "the first entry is never overwritten")
        #expect(try a.flaggedAuthors(caCertificate: f.ca.certificate) == ["b"])
        #expect(try f.rules(f.path("a")).contains("equivocation"))
    }

    @Test func appendsArePersistentAndSeqIsARecordColumn() throws {
        let f = try LedgerFixture(rounds: 1)
        defer { try? FileManager.default.removeItem(atPath: f.dir) }
        #expect(throws: LedgerError.self) {
            try f.stores["a"]!.append(author: "a", kind: .genesis, round: 0, body: EntryBody.genesis(certificatePEM: f.certs["a"]!), key: f.keys["a"]!)
        }
        let reopened = try LedgerStore(path: f.path("a"), consortium: "demo")
        #expect(try reopened.heads()["a"]?.seq == 3)
        #expect(throws: LedgerError.self) { try LedgerStore(path: f.path("a"), consortium: "other") }
        let mode = try reopened.pool.read { db in try String.fetchOne(db, sql: "PRAGMA journal_mode") }
        #expect(mode == "wal")
        let sync = try reopened.pool.read { db in try Int.fetchOne(db, sql: "PRAGMA synchronous") }
        #expect(sync == 2, "synchronous=FULL")
    }

    @Test func unusableInputIsReportedAsSuch() throws {
        let f = try LedgerFixture(rounds: 1)
        defer { try? FileManager.default.removeItem(atPath: f.dir) }
        #expect(throws: UnusableLedger.self) { try LedgerVerifier.verify(path: "\(f.dir)/missing.sqlite", caCertificate: f.ca.certificate) }
        try "not sqlite".write(toFile: "\(f.dir)/junk.sqlite", atomically: true, encoding: .utf8)
        #expect(throws: UnusableLedger.self) { try LedgerVerifier.verify(path: "\(f.dir)/junk.sqlite", caCertificate: f.ca.certificate) }
        let other = try DatabaseQueue(path: "\(f.dir)/other.sqlite")
        try other.write { db in try db.execute(sql: "CREATE TABLE t(x)") }
        #expect(throws: UnusableLedger.self) { try LedgerVerifier.verify(path: "\(f.dir)/other.sqlite", caCertificate: f.ca.certificate) }
    }
}
