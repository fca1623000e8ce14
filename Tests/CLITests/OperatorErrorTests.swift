import FLIdentity
import Foundation
import Testing

/// A two-member consortium folder written with FLIdentity, so that the
/// certificates' validity windows can be chosen.
struct OperatorFixture {
    let dir: URL
    var path: String { dir.path }

    /// `caYears`/`caIssued` and `days`/`issued` set the CA's and alice's validity windows.
    init(caIssued: Date = Date(), caYears: Int = 10, issued: Date = Date(), days: Int = 30) throws {
        dir = try temporaryDirectory()
        let ca = try ConsortiumCA.create(consortium: "demo", years: caYears, now: caIssued)
        try ca.save(directory: "\(dir.path)/ca", now: caIssued)
        for id in ["alice", "bob"] {
            let (key, csr) = try InstitutionKey.generate(institution: id)
            try PEMFiles.write(Ed25519Keys.pem(key), to: "\(dir.path)/\(id).key.pem", secret: true)
            try PEMFiles.write(try PEMFiles.pem(try ca.sign(csr, days: days, now: issued)), to: "\(dir.path)/\(id).pem")
        }
        try write("train.csv", "label,x,y\n0,1,0\n1,2,1\n0,1,1\n1,3,0\n0,0,1\n1,2,2\n0,1,2\n1,3,3\n")
        try write("network.yaml", Self.network)
        try write("alice.yaml", Self.peer)
    }

    static let network = """
        consortium: demo
        ca: ca/ca.pem
        members:
          - id: alice
            address: 127.0.0.1:7001
          - id: bob
            address: 127.0.0.1:7002
        plan:
          rounds: 1
          rule: mean
          classes: [0, 1]
          round_deadline_seconds: 2
        """

    static let peer = """
        network: network.yaml
        id: alice
        key: alice.key.pem
        certificate: alice.pem
        listen: 127.0.0.1:0
        data:
          train: train.csv
        state_dir: state/alice
        """

    func write(_ name: String, _ text: String) throws {
        try text.write(toFile: "\(dir.path)/\(name)", atomically: true, encoding: .utf8)
    }

    func remove() { try? FileManager.default.removeItem(at: dir) }
}

private let day: TimeInterval = 86_400

@Suite("operator errors")
struct OperatorErrorTests {
    @Test func configCheckNamesAnExpiredCertificateAndJoinStopsWithTheSameSentence() async throws {
        let f = try OperatorFixture(issued: Date().addingTimeInterval(-40 * day), days: 30)
        defer { f.remove() }
        let check = try await flpeer("config", "check", "--config", "\(f.path)/alice.yaml")
        #expect(check.status == 1)
        #expect(check.stderr.contains("alice.yaml: key 'certificate' names alice.pem, which expired on "), "\(check.stderr)")
        #expect(check.stderr.contains("UTC; ask the coordinator for a new certificate"), "\(check.stderr)")
        #expect(!check.stdout.contains("certificate valid"))
        let join = try await flpeer("join", "--config", "\(f.path)/alice.yaml")
        #expect(join.status == 1)
        #expect(join.stderr.contains("key 'certificate' names alice.pem, which expired on "), "\(join.stderr)")
    }

    @Test func configCheckNamesANotYetValidCertificate() async throws {
        let f = try OperatorFixture(issued: Date().addingTimeInterval(2 * day), days: 30)
        defer { f.remove() }
        let check = try await flpeer("config", "check", "--config", "\(f.path)/alice.yaml")
        #expect(check.status == 1)
        #expect(check.stderr.contains("alice.yaml: key 'certificate' names alice.pem, which is not valid until "), "\(check.stderr)")
        #expect(check.stderr.contains("check this machine's clock"), "\(check.stderr)")
    }

    @Test func configCheckNamesAnExpiredCA() async throws {
        let issued = Date().addingTimeInterval(-800 * day)
        let f = try OperatorFixture(caIssued: issued, caYears: 1, issued: Date(), days: 30)
        defer { f.remove() }
        let check = try await flpeer("config", "check", "--config", "\(f.path)/alice.yaml")
        #expect(check.status == 1)
        #expect(check.stderr.contains("network.yaml: key 'ca' names ca.pem, which expired on "), "\(check.stderr)")
    }

    @Test func configCheckPrintsTheValidityOfAGoodCertificate() async throws {
        let f = try OperatorFixture()
        defer { f.remove() }
        let check = try await flpeer("config", "check", "--config", "\(f.path)/alice.yaml")
        #expect(check.status == 0, "\(check.stderr)")
        #expect(check.stdout.contains("certificate valid until 20"), "\(check.stdout)")
    }

    @Test func anAbsurdValidityIsOneSentenceNamingTheFlag() async throws {
        let dir = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        #expect(try await flpeer("ca", "init", "--consortium", "demo", "--out", "\(dir.path)/ca").status == 0)
        #expect(try await flpeer("keygen", "--institution", "alice", "--out", dir.path).status == 0)
        let r = try await flpeer("ca", "sign", "--ca", "\(dir.path)/ca", "--csr", "\(dir.path)/alice.csr.pem", "--days", "99999999999", "--out", "\(dir.path)/alice.pem")
        #expect(r.status == 64)
        #expect(r.stderr.contains("--days must be from 1 to 36500 (100 years), got 99999999999"), "\(r.stderr)")
        #expect(!FileManager.default.fileExists(atPath: "\(dir.path)/alice.pem"))
        // A certificate (or a key) given as the CSR is named as what it is, without the parser's internals.
        #expect(try await flpeer("ca", "sign", "--ca", "\(dir.path)/ca", "--csr", "\(dir.path)/alice.csr.pem", "--out", "\(dir.path)/alice.pem").status == 0)
        for (file, what) in [("alice.pem", "holds a certificate, not a certificate signing request"), ("alice.key.pem", "holds a private key, not a certificate signing request")] {
            let wrong = try await flpeer("ca", "sign", "--ca", "\(dir.path)/ca", "--csr", "\(dir.path)/\(file)", "--out", "\(dir.path)/bob.pem")
            #expect(wrong.status != 0 && wrong.stderr.contains(what) && wrong.stderr.contains("flpeer keygen") && !wrong.stderr.contains(".swift"), "\(wrong.stderr)")
            #expect(!FileManager.default.fileExists(atPath: "\(dir.path)/bob.pem"))
        }
        let years = try await flpeer("ca", "init", "--consortium", "demo", "--out", "\(dir.path)/ca2", "--years", "99999999")
        #expect(years.status == 64)
        #expect(years.stderr.contains("--years must be from 1 to 100, got 99999999"), "\(years.stderr)")
    }

    @Test func demoDirThatIsAFileIsNamed() async throws {
        let dir = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let file = "\(dir.path)/notes.txt"
        try "x".write(toFile: file, atomically: true, encoding: .utf8)
        let r = try await flpeer("demo", "--dir", file)
        #expect(r.status == 1)
        #expect(r.stderr.contains("--dir \(file) is a file, not a folder; give a new or empty folder"), "\(r.stderr)")
    }

    @Test func joinWithTooFewRowsForAValidationSplitSaysSoInsteadOfAFakeAccuracy() async throws {
        let f = try OperatorFixture()
        defer { f.remove() }
        try f.write("train.csv", "label,x,y\n0,1,0\n")
        let join = try await flpeer("join", "--config", "\(f.path)/alice.yaml")
        #expect(join.status == 1)
        #expect(join.stderr.contains("alice.yaml: key 'data.train' names train.csv, whose 1 row(s) leave no validation rows (10 % of each class is set aside, so some class needs at least 5 rows); add rows to train.csv or name a separate validation CSV as 'data.validation'."), "\(join.stderr)")
        #expect(!join.stdout.contains("validation accuracy"), "\(join.stdout)")
    }

    /// inst03's CSV keeps 10 of the 64 feature columns: it stops in round 0
    /// naming the mismatch, and the others name inst03 when they refuse it.
    @Test func aMemberWithAnotherFeatureCountIsNamedInRoundZero() async throws {
        let dir = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let c = try JoinCluster(in: dir, plan: [])
        let peerFile = try String(contentsOfFile: "\(c.root)/inst03.yaml", encoding: .utf8)
        let train = try #require(peerFile.split(separator: "\n").first { $0.contains("train:") }?.split(separator: ":").last?.trimmingCharacters(in: .whitespaces))
        let csv = train.hasPrefix("/") ? train : "\(c.root)/\(train)"
        let lines = try String(contentsOfFile: csv, encoding: .utf8).split(separator: "\n")
        let header = lines[0].split(separator: ",")
        let label = try #require(header.firstIndex(of: "label"))
        let keep = [label] + Array(header.indices.filter { $0 != label }.prefix(10))
        try lines.map { line in let v = line.split(separator: ",", omittingEmptySubsequences: false); return keep.map { String(v[$0]) }.joined(separator: ",") }
            .joined(separator: "\n").appending("\n").write(toFile: csv, atomically: true, encoding: .utf8)
        let processes = try JoinCluster.ids.map { try c.start($0, log: "\($0).out", errors: "\($0).err") }
        defer { for p in processes where p.isRunning { p.terminate() } }
        let deadline = Date().addingTimeInterval(60)
        while (processes[2].isRunning || !c.output("inst01.out").contains("member 'inst03'")), Date() < deadline { try await Task.sleep(for: .milliseconds(50)) }
        #expect(!processes[2].isRunning && processes[2].terminationStatus == 1)
        #expect(c.output("inst03.err").contains("inst03: this member's \((csv as NSString).lastPathComponent) has 10 feature column(s) but inst01, inst02 have 64; give this peer a CSV with the same feature columns as the others"), "\(c.output("inst03.err").suffix(2000))")
        #expect(c.output("inst01.out").contains("member 'inst03' has 10 feature column(s) and this peer's"), "\(c.output("inst01.out"))")
    }
}
