import Crypto
import FLIdentity
import FLLedger
import Foundation
import Testing

/// One small honest ledger (two members, one round, written by member a),
/// built once and copied for every corruption case.
struct CorpusLedger {
    let dir: URL
    var caPath: String { dir.appendingPathComponent("ca.pem").path }
    var memberCertPath: String { dir.appendingPathComponent("b.pem").path }
    var base: String { dir.appendingPathComponent("base.sqlite").path }

    static let shared = Task { try build() }

    static func build() throws -> CorpusLedger {
        let dir = try temporaryDirectory()
        let ca = try ConsortiumCA.create(consortium: "demo")
        try ca.save(directory: dir.path)
        let live = dir.appendingPathComponent("live.sqlite").path
        let store = try LedgerStore(path: live, consortium: "demo")
        var keys: [String: Curve25519.Signing.PrivateKey] = [:]
        for m in ["a", "b"] {
            let (key, csr) = try InstitutionKey.generate(institution: m)
            keys[m] = key
            let pem = try PEMFiles.pem(try ca.sign(csr, days: 5))
            try pem.write(toFile: dir.appendingPathComponent("\(m).pem").path, atomically: true, encoding: .utf8)
            try store.append(author: m, kind: .genesis, round: 0, body: EntryBody.genesis(certificatePEM: pem), key: key)
        }
        func hash(_ m: String) -> String { hex(SHA256.hash(data: Array("update \(m)".utf8))) }
        for m in ["a", "b"] {
            try store.append(author: m, kind: .update, round: 1, body: EntryBody.update(
                round: 1, baseHash: String(repeating: "0", count: 64), updateHash: hash(m), samples: 10, codec: "f32", metrics: [:]), key: keys[m]!)
        }
        try store.append(author: "a", kind: .aggregate, round: 1, body: EntryBody.aggregate(
            round: 1, included: ["a", "b"].map { .init(author: $0, updateHash: hash($0), trimmed: 0) }, rule: "mean", parameters: [:],
            resultHash: "00", scores: [:]), key: keys["a"]!)
        for m in ["a", "b"] {
            let heads = try store.heads().map { (author: $0.key, seq: $0.value.seq, hash: $0.value.hash) }
            try store.append(author: m, kind: .checkpoint, round: 1, body: EntryBody.checkpoint(heads: heads), key: keys[m]!)
        }
        try store.backup(to: dir.appendingPathComponent("base.sqlite").path)
        return CorpusLedger(dir: dir)
    }
}

/// What one verifier said: its exit code and the rule names it reported.
struct Outcome: Equatable, CustomStringConvertible {
    let status: Int32
    let rules: Set<String>
    let stderr: String
    static func == (l: Outcome, r: Outcome) -> Bool { l.status == r.status && l.rules == r.rules }
    var description: String { "exit \(status) \(rules.sorted()) \(stderr.prefix(300))" }

    init(_ r: Run) {
        status = r.status
        stderr = r.stderr
        let obj = (try? JSONSerialization.jsonObject(with: Data(r.stdout.utf8))) as? [String: Any]
        rules = Set(((obj?["findings"] as? [[String: Any]]) ?? []).compactMap { $0["rule"] as? String })
    }
}

@Suite("ledger corruption corpus: both verifiers agree and never crash", .serialized)
struct LedgerCorpusTests {
    enum Edit: Sendable {
        /// Python sqlite3 code run on the copy (`db` is open on it; `loosen(t)` drops t's constraints).
        case sql(String)
        /// A byte-level or file-system edit of the copy.
        case file(@Sendable (String) throws -> Void)
        case none
    }

    struct Case: Sendable, CustomTestStringConvertible {
        let name: String
        let edit: Edit
        let status: Int32
        var rule: String? = nil
        var memberCA = false
        /// A WAL beside the file is read through SQLite's index, FILE-shm, which SQLite creates.
        var createsSHM = false
        var testDescription: String { name }
    }

    static let entryColumns = ["author", "seq", "kind", "round", "prev", "header", "body", "hash", "signature"]
    static let forkColumns = ["author", "seq", "header", "body", "hash", "signature"]
    static let fork = "db.execute(\"INSERT INTO forks(author, seq, header, body, hash, signature) SELECT author, seq, header, body, zeroblob(32), signature FROM entries WHERE author='b' AND seq=1\")\nloosen('forks')\n"

    static let cases: [Case] = {
        var c: [Case] = [Case(name: "the honest ledger", edit: .none, status: 0)]
        for col in entryColumns {
            c.append(Case(name: "entries.\(col) NULL", edit: .sql("loosen('entries')\ndb.execute(\"UPDATE entries SET \(col)=NULL WHERE author='b' AND seq=1\")"), status: 1, rule: "row-format"))
            c.append(Case(name: "entries.\(col) TEXT", edit: .sql("loosen('entries')\ndb.execute(\"UPDATE entries SET \(col)='x' WHERE author='b' AND seq=1\")"),
                          status: 1, rule: col == "author" ? nil : "row-format"))
        }
        let outOfRange: [(String, String)] = [
            ("author", "''"), ("seq", "9223372036854775807"), ("seq", "-1"), ("seq", "1.5"), ("kind", "99"), ("round", "-1"), ("round", "9223372036854775807"),
            ("prev", "zeroblob(31)"), ("header", "x''"), ("body", "x'ff'"), ("hash", "zeroblob(3)"), ("signature", "x'00'"),
        ]
        for (col, v) in outOfRange {
            c.append(Case(name: "entries.\(col) = \(v)", edit: .sql("loosen('entries')\ndb.execute(\"UPDATE entries SET \(col)=\(v) WHERE author='b' AND seq=1\")"), status: 1))
        }
        for col in forkColumns {
            c.append(Case(name: "forks.\(col) NULL", edit: .sql(fork + "db.execute(\"UPDATE forks SET \(col)=NULL\")"), status: 1, rule: "row-format"))
        }
        c.append(Case(name: "forks.seq TEXT", edit: .sql(fork + "db.execute(\"UPDATE forks SET seq='x'\")"), status: 1, rule: "row-format"))
        c.append(Case(name: "forks.seq = 2^63-1", edit: .sql(fork + "db.execute(\"UPDATE forks SET seq=9223372036854775807\")"), status: 1, rule: "evidence-valid"))
        c += [
            Case(name: "meta consortium NULL", edit: .sql("loosen('meta')\ndb.execute(\"UPDATE meta SET value=NULL WHERE key='consortium'\")"), status: 2),
            Case(name: "meta consortium BLOB", edit: .sql("loosen('meta')\ndb.execute(\"UPDATE meta SET value=x'64656d6f' WHERE key='consortium'\")"), status: 2),
            Case(name: "meta consortium INTEGER (stored as the text '42')", edit: .sql("loosen('meta')\ndb.execute(\"UPDATE meta SET value=42 WHERE key='consortium'\")"), status: 1, rule: "consortium"),
            Case(name: "meta consortium not a member name", edit: .sql("db.execute(\"UPDATE meta SET value='Bad Name' WHERE key='consortium'\")"), status: 2),
            Case(name: "meta consortium missing", edit: .sql("db.execute(\"DELETE FROM meta WHERE key='consortium'\")"), status: 2),
            Case(name: "meta owner names a member without a chain", edit: .sql("db.execute(\"UPDATE meta SET value='zz' WHERE key='owner'\")"), status: 1, rule: "owner-chain"),
            Case(name: "meta owner NULL", edit: .sql("loosen('meta')\ndb.execute(\"UPDATE meta SET value=NULL WHERE key='owner'\")"), status: 0),
            Case(name: "meta key NULL", edit: .sql("loosen('meta')\ndb.execute(\"UPDATE meta SET key=NULL WHERE key='owner'\")"), status: 0),
            Case(name: "forks table dropped", edit: .sql("db.execute('DROP TABLE forks')"), status: 1, rule: "schema"),
            Case(name: "a table added", edit: .sql("db.execute('CREATE TABLE extra(x)')"), status: 1, rule: "schema"),
            Case(name: "local_state dropped (an older schema)", edit: .sql("db.execute('DROP TABLE local_state')"), status: 0),
            Case(name: "an index dropped", edit: .sql("db.execute('DROP INDEX entries_round_kind')"), status: 0),
            Case(name: "meta table dropped", edit: .sql("db.execute('DROP TABLE meta')"), status: 2),
            Case(name: "entries table dropped", edit: .sql("db.execute('DROP TABLE entries')"), status: 2),
            Case(name: "empty ledger whose meta names an owner", edit: .sql("db.execute('DELETE FROM entries')"), status: 1, rule: "owner-chain"),
            Case(name: "empty ledger without an owner", edit: .sql("db.execute('DELETE FROM entries')\ndb.execute(\"DELETE FROM meta WHERE key='owner'\")"), status: 0),
            Case(name: "not SQLite", edit: .file { try "not a database\n".write(toFile: $0, atomically: true, encoding: .utf8) }, status: 2),
            Case(name: "zero bytes", edit: .file { try Data().write(to: URL(fileURLWithPath: $0)) }, status: 2),
            Case(name: "missing file", edit: .file { try FileManager.default.removeItem(atPath: $0) }, status: 2),
            Case(name: "truncated to its first page", edit: .file { p in try Data(try Data(contentsOf: URL(fileURLWithPath: p)).prefix(4096)).write(to: URL(fileURLWithPath: p)) }, status: 2),
            Case(name: "bytes of an entries page overwritten", edit: .sql(
                "page = db.execute(\"SELECT rootpage FROM sqlite_master WHERE name='entries'\").fetchone()[0]\ndb.close()\n"
                    + "f = open(sys.argv[1], 'r+b'); f.seek((page - 1) * 4096 + 8); f.write(b'\\xab' * 64); f.close()\ndb = sqlite3.connect(':memory:')"), status: 2),
            Case(name: "a leaf page's cell overwritten", edit: .sql(
                "page = db.execute(\"SELECT pageno FROM dbstat WHERE name='entries' AND pagetype='leaf' ORDER BY pageno LIMIT 1\").fetchone()[0]\ndb.close()\n"
                    + "f = open(sys.argv[1], 'r+b'); f.seek(page * 4096 - 300); f.write(b'\\xab' * 32); f.close()\ndb = sqlite3.connect(':memory:')"), status: 1),
            Case(name: "a copy with its WAL holding a deletion (read through its index -shm)", edit: .sql(walCopy(keepWAL: true)), status: 1, rule: "seq-contiguous", createsSHM: true),
            Case(name: "a copy made without its WAL (undetectable alone)", edit: .sql(walCopy(keepWAL: false)), status: 0),
            Case(name: "a read-only copy", edit: .file { try FileManager.default.setAttributes([.posixPermissions: 0o444], ofItemAtPath: $0) }, status: 0),
            Case(name: "a member certificate as --ca", edit: .none, status: 2, memberCA: true),
        ]
        return c
    }()

    /// Deletes b's last entry in a WAL that is copied beside the file (or left behind).
    static func walCopy(keepWAL: Bool) -> String {
        """
        import shutil
        db.close()
        shutil.copy(sys.argv[1], sys.argv[1] + '.src')
        s = sqlite3.connect(sys.argv[1] + '.src'); s.execute('PRAGMA wal_autocheckpoint=0')
        s.execute("DELETE FROM entries WHERE author='b' AND seq=1"); s.commit()
        shutil.copy(sys.argv[1] + '.src', sys.argv[1])
        \(keepWAL ? "shutil.copy(sys.argv[1] + '.src-wal', sys.argv[1] + '-wal')" : "")
        db = sqlite3.connect(':memory:')
        """
    }

    static func apply(_ edit: Edit, to path: String) async throws {
        switch edit {
        case .none: break
        case .file(let change): try change(path)
        case .sql(let code):
            let prelude = """
                import sqlite3, sys
                db = sqlite3.connect(sys.argv[1])
                def loosen(t):
                    db.execute(f'CREATE TABLE loose AS SELECT * FROM {t}'); db.execute(f'DROP TABLE {t}'); db.execute(f'ALTER TABLE loose RENAME TO {t}')

                """
            let r = try await runProcess("python3", ["-c", prelude + code + "\ndb.commit()\ndb.close()\n", path])
            guard r.status == 0 else { throw TestFailure(description: "corrupting failed: \(r.stderr)") }
        }
    }

    /// Both verifiers on one file, with the directory listing before and after.
    static func verify(_ path: String, ca: String, against: [String] = []) async throws -> (swift: Outcome, python: Outcome) {
        let args = [path, "--ca", ca] + against.flatMap { ["--against", $0] } + ["--json"]
        let swift = Outcome(try await runProduct("ledger-tool", ["verify"] + args))
        let python = Outcome(try await runProcess("python3", [repository.appendingPathComponent("ledger-tools/verify_ledger.py").path] + args))
        return (swift, python)
    }

    @Test(arguments: cases) func bothVerifiersAgreeWithoutCrashing(_ c: Case) async throws {
        let f = try await CorpusLedger.shared.value
        let dir = f.dir.appendingPathComponent(UUID().uuidString).path
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let copy = dir + "/ledger.sqlite"
        try FileManager.default.copyItem(atPath: f.base, toPath: copy)
        try await Self.apply(c.edit, to: copy)
        try? FileManager.default.removeItem(atPath: copy + ".src")
        let before = try FileManager.default.contentsOfDirectory(atPath: dir).sorted()
        let (swift, python) = try await Self.verify(copy, ca: c.memberCA ? f.memberCertPath : f.caPath)
        let after = try FileManager.default.contentsOfDirectory(atPath: dir).filter { !(c.createsSHM && $0 == "ledger.sqlite-shm") }.sorted()
        #expect(after == before, "\(c.name): an audit wrote beside the file")
        #expect(swift.status == c.status, "\(c.name): ledger-tool \(swift)")
        #expect(python.status == c.status, "\(c.name): verify_ledger.py \(python)")
        #expect(swift == python, "\(c.name): ledger-tool \(swift) vs verify_ledger.py \(python)")
        #expect(!python.stderr.contains("Traceback"), "\(c.name): \(python.stderr)")
        if let rule = c.rule { #expect(swift.rules.contains(rule), "\(c.name): \(swift)") }
        if c.name.hasSuffix(" NULL") {
            // The read paths of the other subcommands, and the file as a replica, never crash on the row.
            for args in [["show", copy], ["export", copy, "--jsonl"], ["verify", f.base, "--ca", f.caPath, "--against", copy]] {
                let r = try await runProduct("ledger-tool", args)
                #expect([0, 1, 2].contains(r.status), "\(c.name): ledger-tool \(args[0]) exited \(r.status): \(r.stderr)")
            }
        }
        if c.status == 2 {
            #expect(swift.stderr.split(separator: "\n").count == 1 && python.stderr.split(separator: "\n").count == 1, "\(c.name): one sentence each")
        }
    }

    @Test func theCorpusHasAtLeastFortyCases() {
        print("ledger corruption corpus: \(Self.cases.count) cases")
        #expect(Self.cases.count >= 40)
    }

    /// Deleting the last entry of another member's chain leaves one file consistent: both verifiers
    /// say so in a note, and with `--against` that member's own file they name the missing entry.
    @Test func aDeletedLastEntryOfAnotherChainIsNamedWithAgainst() async throws {
        let f = try await CorpusLedger.shared.value
        let dir = f.dir.appendingPathComponent("tail-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let copy = dir + "/a.sqlite", other = dir + "/b.sqlite"
        try FileManager.default.copyItem(atPath: f.base, toPath: copy)
        try FileManager.default.copyItem(atPath: f.base, toPath: other)
        try await Self.apply(.sql("db.execute(\"UPDATE meta SET value='b' WHERE key='owner'\")"), to: other)
        try await Self.apply(.sql("db.execute(\"DELETE FROM entries WHERE author='b' AND seq=2\")"), to: copy)
        let alone = try await Self.verify(copy, ca: f.caPath)
        #expect(alone.swift.status == 0 && alone.python.status == 0, "\(alone)")
        #expect(alone.swift.stderr.contains("note: a deleted last entry of another member's chain") && alone.python.stderr.contains("note: a deleted last entry of another member's chain"))
        let against = try await Self.verify(copy, ca: f.caPath, against: [other])
        let note = "note: \(other) holds b#2, beyond this file's chain of b (ends at seq 1)"
        #expect(against.swift.stderr.contains(note), "ledger-tool: \(against.swift.stderr)")
        #expect(against.python.stderr.contains(note), "verify_ledger.py: \(against.python.stderr)")
        #expect(against.swift == against.python)
    }

    /// An entry's time must lie within its author's certificate validity (notBefore ≤ time ≤ notAfter,
    /// in unix ms): a certificate valid for one day from 2020-01-01, entries an hour and two days later.
    @Test func anEntryTimedOutsideItsCertificateIsAFindingInBothVerifiers() async throws {
        let dir = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let t0 = Date(timeIntervalSince1970: 1_577_836_800)
        let ca = try ConsortiumCA.create(consortium: "demo", now: t0)
        try ca.save(directory: dir.path, now: t0)
        let (key, csr) = try InstitutionKey.generate(institution: "a")
        let pem = try PEMFiles.pem(try ca.sign(csr, days: 1, now: t0))
        let path = dir.appendingPathComponent("a.sqlite").path
        do {
            let store = try LedgerStore(path: path, consortium: "demo")
            try store.append(author: "a", kind: .genesis, round: 0, body: EntryBody.genesis(certificatePEM: pem), key: key, time: t0)
            for (r, later) in [(UInt64(1), 3600.0), (2, 2 * 86400.0)] {
                try store.append(author: "a", kind: .update, round: r, body: EntryBody.update(
                    round: r, baseHash: "00", updateHash: "\(r)", samples: 1, codec: "f32", metrics: [:]), key: key, time: t0.addingTimeInterval(later))
            }
        }
        let (swift, python) = try await Self.verify(path, ca: dir.appendingPathComponent("ca.pem").path)
        #expect(swift.status == 1 && swift.rules == ["time-in-validity"], "ledger-tool \(swift)")
        #expect(swift == python, "ledger-tool \(swift) vs verify_ledger.py \(python)")
        let text = try await runProduct("ledger-tool", ["verify", path, "--ca", dir.appendingPathComponent("ca.pem").path])
        #expect(text.stdout.contains("a#2 time-in-validity: expected a time within 'a' certificate validity (1577836500000...1577923200000 ms), found 1578009600000 ms"), "\(text.stdout)")
    }

    /// A read-only folder: both verifiers read the ledger and create nothing in it.
    @Test func aReadOnlyFolderIsAuditedWithoutWriting() async throws {
        let f = try await CorpusLedger.shared.value
        let dir = f.dir.appendingPathComponent("ro-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        try FileManager.default.copyItem(atPath: f.base, toPath: dir + "/ledger.sqlite")
        try FileManager.default.setAttributes([.posixPermissions: 0o555], ofItemAtPath: dir)
        defer {
            try? FileManager.default.setAttributes([.posixPermissions: 0o755], ofItemAtPath: dir)
            try? FileManager.default.removeItem(atPath: dir)
        }
        let (swift, python) = try await Self.verify(dir + "/ledger.sqlite", ca: f.caPath)
        #expect(swift.status == 0 && python.status == 0, "ledger-tool \(swift); verify_ledger.py \(python)")
        #expect(try FileManager.default.contentsOfDirectory(atPath: dir) == ["ledger.sqlite"])
    }
}
