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

/// Ledgers written by three peers that ran two rounds over mutual TLS:
/// genesis, then per round an update, an aggregate naming all three updates
/// and a checkpoint from each peer, each replicated through the transport.
struct ExchangedLedgers {
    static let members = ["a", "b", "c"]
    let dir: URL
    let ca: ConsortiumCA
    let keys: [String: Curve25519.Signing.PrivateKey]

    var caPath: String { dir.appendingPathComponent("ca.pem").path }
    func path(_ m: String) -> String { dir.appendingPathComponent("\(m).sqlite").path }
    /// a's ledger as it was after round 1.
    var roundOne: String { dir.appendingPathComponent("a-round1.sqlite").path }

    static func updateHash(_ m: String, _ r: UInt64) -> String { hex(SHA256.hash(data: Array("update \(m) \(r)".utf8))) }

    static func record() async throws -> ExchangedLedgers {
        let dir = try temporaryDirectory()
        let ca = try ConsortiumCA.create(consortium: "demo")
        try ca.save(directory: dir.path)
        let trust = ConsortiumTrust(consortium: "demo", caCertificate: ca.certificate, members: Set(members), revocations: nil)
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 2)
        var keys: [String: Curve25519.Signing.PrivateKey] = [:]
        var stores: [String: LedgerStore] = [:]
        var nodes: [String: GossipNode] = [:]
        var ports: [String: Int] = [:]
        var tasks: [Task<Void, Error>] = []
        // Full mesh: c listens, b dials c, a dials b and c.
        for m in ["c", "b", "a"] {
            let (key, csr) = try InstitutionKey.generate(institution: m)
            keys[m] = key
            let certPEM = try PEMFiles.pem(try ca.sign(csr, days: 5))
            let store = try LedgerStore(path: dir.appendingPathComponent("\(m).sqlite").path, consortium: "demo")
            try store.append(author: m, kind: .genesis, round: 0, body: EntryBody.genesis(certificatePEM: certPEM), key: key)
            stores[m] = store
            var config = GossipConfig(tls: try PeerTLS(trust: trust, certificatePEM: certPEM, keyPEM: Ed25519Keys.pem(key)),
                                      dial: ports.map { PeerAddress(institution: $0.key, host: "127.0.0.1", port: $0.value) },
                                      blobDirectory: dir.appendingPathComponent("\(m)-blobs").path)
            config.ledger = LedgerSync(store: store, caCertificate: ca.certificate, identity: (m, key))
            config.backoffBase = .milliseconds(20)
            config.backoffCap = .milliseconds(200)
            let node = try GossipNode(config: config, group: group, logger: Logger(label: m) { _ in SwiftLogNoOpLogHandler() })
            ports[m] = try await node.start()
            nodes[m] = node
            tasks.append(Task { try await node.run() })
        }
        var seqs = Dictionary(uniqueKeysWithValues: members.map { ($0, UInt64(0)) })
        /// Waits until every peer holds every chain up to `seqs`.
        func settle() async throws {
            let deadline = ContinuousClock.now + .seconds(30)
            while ContinuousClock.now < deadline {
                if try members.allSatisfy({ try stores[$0]!.heads().mapValues(\.seq) == seqs }) { return }
                try await Task.sleep(for: .milliseconds(20))
            }
            throw TestFailure(description: "peers did not converge on \(seqs)")
        }
        func append(_ m: String, _ kind: EntryKind, _ r: UInt64, _ body: [UInt8]) async throws {
            try stores[m]!.append(author: m, kind: kind, round: r, body: body, key: keys[m]!)
            seqs[m]! += 1
            await nodes[m]!.ledgerChanged()
        }
        try await settle()
        for r in UInt64(1)...2 {
            for m in members {
                try await append(m, .update, r, EntryBody.update(round: r, baseHash: String(repeating: "0", count: 64), updateHash: updateHash(m, r),
                                                                 samples: 100 * (members.firstIndex(of: m)! + 1), codec: "f32", metrics: ["accuracy": 0.9]))
            }
            try await settle()
            for m in members {
                try await append(m, .aggregate, r, EntryBody.aggregate(
                    round: r, included: members.enumerated().map { .init(author: $1, updateHash: updateHash($1, r), trimmed: 3 * $0) },
                    rule: "trimmed-mean", parameters: ["beta": 0.2], resultHash: updateHash("aggregate-\(m)", r),
                    scores: ["a": ["0": 0.25], "b": ["0": 0.5], "c": ["0": 0.125]]))
            }
            try await settle()
            for m in members {
                let heads = try stores[m]!.heads().map { (author: $0.key, seq: $0.value.seq, hash: $0.value.hash) }
                try await append(m, .checkpoint, r, EntryBody.checkpoint(heads: heads))
            }
            try await settle()
            if r == 1 { try stores["a"]!.backup(to: dir.appendingPathComponent("a-round1.sqlite").path) }
        }
        for t in tasks { t.cancel() }
        for t in tasks { _ = await t.result }
        try await group.shutdownGracefully()
        return ExchangedLedgers(dir: dir, ca: ca, keys: keys)
    }

    /// A copy of `m`'s ledger to tamper with.
    func copy(_ m: String, _ name: String) throws -> String {
        let target = dir.appendingPathComponent("\(m)-\(name.replacingOccurrences(of: " ", with: "-")).sqlite").path
        try LedgerStore(path: path(m), consortium: "demo").backup(to: target)
        return target
    }
}

struct TestFailure: Error, CustomStringConvertible {
    let description: String
}

/// What one verifier said about a file.
struct Verdict: Equatable, CustomStringConvertible {
    let status: Int32
    /// "author#seq rule" per finding.
    let findings: Set<String>
    var rules: Set<String> { Set(findings.map { String($0.split(separator: " ").last!) }) }
    var description: String { "exit \(status): \(findings.sorted().joined(separator: ", "))" }
}

/// Runs `ledger-tool verify` and `ledger-tools/verify_ledger.py` on one file.
func bothVerifiers(_ ledger: String, ca: String, against: [String] = []) async throws -> (swift: Verdict, python: Verdict) {
    let args = [ledger, "--ca", ca] + against.flatMap { ["--against", $0] } + ["--json"]
    func verdict(_ r: Run, _ who: String) throws -> Verdict {
        guard r.status == 0 || r.status == 1,
              let obj = try JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as? [String: Any],
              let findings = obj["findings"] as? [[String: Any]]
        else { throw TestFailure(description: "\(who) exited \(r.status): \(r.stderr)") }
        return Verdict(status: r.status, findings: Set(findings.map { "\($0["author"] ?? "?")#\($0["seq"] ?? "?") \($0["rule"] ?? "?")" }))
    }
    let swift = try verdict(try await runProduct("ledger-tool", ["verify"] + args), "ledger-tool")
    let python = try verdict(try await runProcess("python3", [repository.appendingPathComponent("ledger-tools/verify_ledger.py").path] + args), "verify_ledger.py")
    return (swift, python)
}

/// Runs a program found on PATH.
func runProcess(_ program: String, _ arguments: [String]) async throws -> Run {
    try await runProduct("/usr/bin/env", [program] + arguments)
}

/// `runProcess` for a clean-up in a `defer` (which cannot wait): blocks its thread.
func runProcessNow(_ program: String, _ arguments: [String]) throws -> Run {
    try runProductBlocking("/usr/bin/env", [program] + arguments)
}

/// Raw SQL and byte edits by an attacker with the file, in a separate
/// process using Python's sqlite3 module (not GRDB).
func tamper(_ path: String, _ code: String) async throws {
    let prelude = """
        import hashlib, json, sqlite3, struct, sys
        db = sqlite3.connect(sys.argv[1])
        def row(a, s):
            return db.execute("SELECT id, header, body, hash, signature FROM entries WHERE author=? AND seq=?", (a, s)).fetchone()
        def rehash(header, body):
            return hashlib.sha256(b"flpeer/ledger-entry/v1\\x00" + header + body).digest()
        def dump(o):
            return json.dumps(o, sort_keys=True, separators=(",", ":")).encode()

        """
    let r = try await runProcess("python3", ["-c", prelude + code + "\ndb.commit()\n", path])
    guard r.status == 0 else { throw TestFailure(description: "tampering failed: \(r.stderr)") }
}

@Suite("tamper suite over ledgers from a real exchange", .serialized)
struct TamperSuiteTests {
    struct Case: Sendable {
        let name: String
        let file: String
        let against: [String]
        let rule: String
        /// Swift-side preparation (signing with a member's key) that returns the Python tampering code.
        let prepare: @Sendable (ExchangedLedgers, String) throws -> String
    }

    /// Seqs in every chain: 0 genesis; round 1: 1 update, 2 aggregate, 3 checkpoint; round 2: 4, 5, 6.
    static let cases: [Case] = [
        Case(name: "flip a byte in a body", file: "a", against: [], rule: "hash") { _, _ in
            "r = row('b', 1); body = bytearray(r[2]); body[len(body) // 2] ^= 0x01\ndb.execute('UPDATE entries SET body=? WHERE id=?', (bytes(body), r[0]))"
        },
        Case(name: "change a stored hash", file: "a", against: [], rule: "hash") { _, _ in
            "db.execute(\"UPDATE entries SET hash = zeroblob(32) WHERE author='c' AND seq=2\")"
        },
        Case(name: "edit a contribution score", file: "a", against: [], rule: "hash") { _, _ in
            "r = row('b', 5); o = json.loads(r[2]); o['scores']['b'] = 0.99\ndb.execute('UPDATE entries SET body=? WHERE id=?', (dump(o), r[0]))"
        },
        Case(name: "edit a score and recompute the hash", file: "a", against: [], rule: "signature") { _, _ in
            """
            r = row('c', 2); o = json.loads(r[2]); o['scores']['c'] = 0.99; body = dump(o)
            header = r[1][:-4] + struct.pack('>I', len(body))
            db.execute('UPDATE entries SET header=?, body=?, hash=? WHERE id=?', (header, body, rehash(header, body), r[0]))
            """
        },
        Case(name: "re-sign an edited entry with another institution's key", file: "a", against: [], rule: "signature") { f, copy in
            let original = try LedgerReader.entries(path: copy).first { $0.header.author == "b" && $0.header.seq == 2 }!
            guard var body = EntryBody.decode(EntryBody.Aggregate.self, from: original.body) else { throw TestFailure(description: "b#2 is not an aggregate") }
            body.scores = ["a": ["0": 0], "b": ["0": 1], "c": ["0": 0]]
            let forged = try LedgerEntry.make(header: original.header, body: EntryBody.encode(body), key: f.keys["c"]!)
            return "db.execute(\"UPDATE entries SET header=x'\(hex(forged.headerBytes))', body=x'\(hex(forged.body))', hash=x'\(hex(forged.hash))', signature=x'\(hex(forged.signature))' WHERE author='b' AND seq=2\")"
        },
        Case(name: "delete a middle entry", file: "a", against: [], rule: "seq-contiguous") { _, _ in
            "db.execute(\"DELETE FROM entries WHERE author='b' AND seq=3\")"
        },
        Case(name: "swap two entries", file: "a", against: [], rule: "columns-match-header") { _, _ in
            "db.executescript(\"UPDATE entries SET seq=1000 WHERE author='a' AND seq=1; UPDATE entries SET seq=1 WHERE author='a' AND seq=4; UPDATE entries SET seq=4 WHERE author='a' AND seq=1000;\")"
        },
        Case(name: "truncate a chain's tail", file: "a", against: ["c"], rule: "not-truncated") { _, _ in
            "db.execute(\"DELETE FROM entries WHERE author='a' AND seq >= 5\")"
        },
        Case(name: "roll the whole file back to an older copy", file: "round1", against: ["b"], rule: "not-truncated") { _, _ in "" },
        Case(name: "replay an entry into another chain", file: "a", against: [], rule: "columns-match-header") { _, _ in
            """
            db.execute(\"\"\"INSERT INTO entries(author, seq, kind, round, prev, header, body, hash, signature)
                SELECT 'c', 7, kind, round, (SELECT hash FROM entries WHERE author='c' AND seq=6), header, body, hash, signature
                FROM entries WHERE author='b' AND seq=4\"\"\")
            """
        },
        Case(name: "insert an entry from another consortium", file: "a", against: [], rule: "consortium") { f, copy in
            let head = try LedgerReader.entries(path: copy).last { $0.header.author == "b" }!
            let foreign = try LedgerEntry.make(
                header: EntryHeader(consortium: "other", author: "b", seq: head.header.seq + 1, prev: head.hash, round: 3, kind: .update, timeMillis: 0, bodyLength: 0),
                body: EntryBody.update(round: 3, baseHash: "00", updateHash: "11", samples: 1, codec: "f32", metrics: [:]), key: f.keys["b"]!)
            return """
                db.execute("INSERT INTO entries(author, seq, kind, round, prev, header, body, hash, signature) VALUES ('b', \(head.header.seq + 1), 2, 3, x'\(hex(head.hash))', x'\(hex(foreign.headerBytes))', x'\(hex(foreign.body))', x'\(hex(foreign.hash))', x'\(hex(foreign.signature))')")
                """
        },
        Case(name: "aggregate naming an update its author never signed", file: "a", against: [], rule: "aggregate-names-signed-update") { f, copy in
            try LedgerStore(path: copy, consortium: "demo").append(author: "a", kind: .aggregate, round: 2, body: EntryBody.aggregate(
                round: 2, included: [.init(author: "b", updateHash: ExchangedLedgers.updateHash("b", 99), trimmed: 0)],
                rule: "mean", parameters: [:], resultHash: "00", scores: [:]), key: f.keys["a"]!)
            return ""
        },
        Case(name: "two conflicting entries for one (author, seq)", file: "a", against: [], rule: "equivocation") { f, copy in
            // b signs a second round-2 update for its seq 4; a's merge keeps it as a fork and signs evidence.
            let stored = try LedgerReader.entries(path: copy).first { $0.header.author == "b" && $0.header.seq == 4 }!
            let second = try LedgerEntry.make(header: stored.header, body: EntryBody.update(
                round: 2, baseHash: String(repeating: "0", count: 64), updateHash: ExchangedLedgers.updateHash("b-other", 2), samples: 200, codec: "f32", metrics: [:]), key: f.keys["b"]!)
            let sync = LedgerSync(store: try LedgerStore(path: copy, consortium: "demo"), caCertificate: f.ca.certificate, identity: ("a", f.keys["a"]!))
            _ = try sync.merge([WireEntry(header: second.headerBytes, body: second.body, hash: second.hash, signature: second.signature)])
            #expect(try sync.store.flaggedAuthors(caCertificate: f.ca.certificate) == ["b"])
            #expect(try sync.store.entries(author: "a").last?.header.kind == .evidence)
            return ""
        },
        Case(name: "a fork row that proves nothing", file: "a", against: [], rule: "evidence-valid") { _, _ in
            "db.execute(\"INSERT INTO forks(author, seq, header, body, hash, signature) SELECT author, seq, header, body, zeroblob(32), signature FROM entries WHERE author='c' AND seq=2\")"
        },
    ]

    @Test func everyTamperingIsCaughtByBothVerifiersAndTheIntactLedgersPass() async throws {
        let f = try await ExchangedLedgers.record()
        defer { try? FileManager.default.removeItem(at: f.dir) }
        for m in ExchangedLedgers.members {
            let others = ExchangedLedgers.members.filter { $0 != m }.map(f.path)
            let (swift, python) = try await bothVerifiers(f.path(m), ca: f.caPath, against: others)
            #expect(swift.status == 0 && swift.findings.isEmpty, "\(m) intact: ledger-tool \(swift)")
            #expect(python.status == 0 && python.findings.isEmpty, "\(m) intact: verify_ledger.py \(python)")
        }
        let old = try await bothVerifiers(f.roundOne, ca: f.caPath)
        #expect(old.swift.status == 0 && old.python.status == 0, "an older copy is consistent on its own: \(old)")

        for c in Self.cases {
            let copy = try f.copy(c.file == "round1" ? "a" : c.file, c.name)
            if c.file == "round1" {
                try FileManager.default.removeItem(atPath: copy)
                try FileManager.default.copyItem(atPath: f.roundOne, toPath: copy)
            }
            let code = try c.prepare(f, copy)
            if !code.isEmpty { try await tamper(copy, code) }
            let (swift, python) = try await bothVerifiers(copy, ca: f.caPath, against: c.against.map(f.path))
            #expect(swift.status == 1 && swift.rules.contains(c.rule), "\(c.name): ledger-tool \(swift)")
            #expect(python.status == 1 && python.rules.contains(c.rule), "\(c.name): verify_ledger.py \(python)")
            #expect(swift == python, "\(c.name): the verifiers disagree: ledger-tool \(swift) vs verify_ledger.py \(python)")
            print("tamper '\(c.name)': ledger-tool \(swift); verify_ledger.py \(swift == python ? "agrees" : "\(python)")")
        }
    }
}
