import FLPeer
import Foundation
import Synchronization
import Testing

/// `DemoConsortium` called directly (real `flpeer join` processes), and the
/// graceful shutdown of `flpeer join` and `flpeer demo` on SIGTERM and SIGINT.
@Suite("DemoConsortium and graceful shutdown", .serialized)
struct DemoConsortiumTests {
    static var executable: String { productsDirectory.appendingPathComponent("flpeer").path }

    /// Breast-cancer data (two classes): a round takes milliseconds even in a debug build.
    static func options(peers: Int = 3, rounds: Int) throws -> DemoOptions {
        var o = DemoOptions(dataPath: try DemoOptions.resolveData("breast-cancer", executable: executable))
        o.peers = peers
        o.rounds = rounds
        o.seed = 1
        return o
    }

    /// prepare writes the whole consortium; run trains it and returns a typed
    /// summary whose JSON keeps the keys the benchmarks read.
    @Test func preparedConsortiumRunsAndSummarises() async throws {
        let dir = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let demo = try DemoConsortium.prepare(try Self.options(rounds: 3), in: dir.appendingPathComponent("demo").path)
        for file in ["network.yaml", "inst01.yaml", "pki/ca/ca.pem", "pki/inst03/inst03.key.pem", "data/test.csv", "data/inst02.csv"] {
            #expect(FileManager.default.fileExists(atPath: "\(demo.directory)/\(file)"), "\(file)")
        }
        let again = #expect(throws: DemoError.self, "a second prepare into the same folder") {
            try DemoConsortium.prepare(try Self.options(rounds: 3), in: demo.directory)
        }
        #expect(again?.code == .directory && again?.description.contains("is not empty") == true, "\(String(describing: again))")

        let lines = Mutex<[String]>([])
        let summary = try await demo.run(executable: Self.executable) { line in lines.withLock { $0.append(line) } }
        #expect(summary.ledgerVerified && summary.findings.isEmpty, "\(summary.findings)")
        #expect(summary.members.map(\.id) == ["inst01", "inst02", "inst03"])
        for m in summary.members {
            #expect(m.roundSeconds.count == 3 && m.cpuSeconds >= m.roundCPUSeconds && m.roundCPUSeconds > 0, "\(m)")
            #expect(m.accuracy > 0.8, "\(m)")
        }
        #expect(lines.withLock { $0 }.contains { $0.hasPrefix("round   3") }, "the first member's progress reaches the caller: \(lines.withLock { $0 })")
        #expect(summary.text.hasSuffix("files: \(demo.directory)"), "\(summary.text)")

        let object = try #require(try JSONSerialization.jsonObject(with: Data(try summary.json().utf8)) as? [String: Any])
        #expect(Set(object.keys) == ["peers", "mean_accuracy", "honest_mean_accuracy", "beta", "byzantine", "centralized_accuracy", "seconds_per_round",
                                     "bytes_moved", "ledger_verified", "equivocation_proven", "dir", "rounds", "model", "rule", "alpha", "seed", "data",
                                     "topology", "size_skew", "size_weights", "credits_ledger", "scoring_seconds_per_round", "credit_unit",
                                     "credit_recorded_mismatches", "wall_seconds", "learner"])
        let peer = try #require((object["peers"] as? [[String: Any]])?.first)
        #expect(Set(peer.keys).isSuperset(of: ["id", "accuracy", "train_rows", "seconds_per_round", "byzantine", "flagged", "scoring_seconds_per_round",
                                               "round_seconds", "cpu_seconds", "round_cpu_seconds", "credit", "credit_share", "credit_rounds"]), "\(peer.keys)")
        #expect((peer["round_seconds"] as? [Double])?.count == 3)
    }

    /// Settings a consortium cannot be built from are refused before any file is written.
    @Test func impossibleOptionsAreRefusedBeforeAnyFileIsWritten() throws {
        let dir = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        var o = try Self.options(rounds: 1)
        o.byzantine = 1
        o.attackNames = []
        let refused = #expect(throws: DemoError.self) { try DemoConsortium.prepare(o, in: dir.appendingPathComponent("demo").path) }
        #expect(refused?.code == .options && refused?.description.contains("attackNames") == true, "\(String(describing: refused))")
        #expect(!FileManager.default.fileExists(atPath: dir.appendingPathComponent("demo").path))
    }

    /// A member that cannot start fails the run at once, naming it and its log;
    /// the others are stopped instead of waiting out the round deadline (30 s).
    @Test func aMemberThatDiesEarlyFailsTheRunNamingIt() async throws {
        let dir = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let demo = try DemoConsortium.prepare(try Self.options(rounds: 3), in: dir.appendingPathComponent("demo").path)
        let config = demo.peerConfigPath("inst02")
        try String(contentsOfFile: config, encoding: .utf8).replacingOccurrences(of: "data/inst02.csv", with: "data/missing.csv")
            .write(toFile: config, atomically: true, encoding: .utf8)
        let started = ContinuousClock.now
        do {
            _ = try await demo.run(executable: Self.executable)
            Issue.record("the run succeeded without inst02")
        } catch {
            #expect(error.code == .memberFailed, "\(error)")
            #expect(error.description.contains("member inst02 exited with status 1") && error.description.contains("(log: \(demo.directory)/logs/inst02.err)"),
                    "\(error)")
            #expect(error.description.contains("missing.csv"), "the member's own last line says why: \(error)")
        }
        #expect(started.duration(to: .now) < .seconds(20))
    }

    /// A peer whose members never come stops on the signal with one sentence,
    /// promptly, having signed nothing: its empty file could be one that lost
    /// its write-ahead log, and no member is there to show an earlier chain.
    @Test(arguments: [SIGTERM, SIGINT])
    func joinStopsCleanlyOnASignal(_ signal: Int32) async throws {
        let dir = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let demo = try DemoConsortium.prepare(try Self.options(peers: 2, rounds: 1), in: dir.appendingPathComponent("demo").path)
        let p = Process()
        p.executableURL = URL(fileURLWithPath: Self.executable)
        p.arguments = ["join", "--config", demo.peerConfigPath("inst01")]
        let (output, errors) = (dir.appendingPathComponent("inst01.out").path, dir.appendingPathComponent("inst01.err").path)
        for f in [output, errors] { _ = FileManager.default.createFile(atPath: f, contents: nil) }
        p.standardOutput = FileHandle(forWritingAtPath: output)
        p.standardError = FileHandle(forWritingAtPath: errors)
        try p.run()
        func said() -> String { [output, errors].map { (try? String(contentsOfFile: $0, encoding: .utf8)) ?? "" }.joined() }
        // Wait until it waits for a member before signing its genesis, then stop it.
        let deadline = Date().addingTimeInterval(30)
        while Date() < deadline, !said().contains("waiting for another member before signing this peer's genesis") {
            try await Task.sleep(for: .milliseconds(50))
        }
        let signalled = Date()
        kill(p.processIdentifier, signal)
        await exited(p)
        let stderr = said()
        #expect(Date().timeIntervalSince(signalled) < 10)
        let name = signal == SIGTERM ? "SIGTERM" : "SIGINT"
        let ledger = demo.ledgerPath("inst01")
        #expect(p.terminationReason == .exit && p.terminationStatus == 1)
        #expect(stderr.contains("waiting for another member before signing this peer's genesis"), "\(stderr)")
        #expect(stderr.contains("inst01: shutdown requested; stopping after the current step"), "\(stderr)")
        #expect(stderr.contains("inst01 stopped by \(name) before the plan's end; the ledger at \(ledger) keeps every entry written so far"), "\(stderr)")
        let shown = try await ledgerTool("show", ledger)
        #expect(!shown.stdout.contains("genesis"), "\(shown.stdout)\(shown.stderr)")
    }

    /// SIGINT to `flpeer demo` mid-run: it sends SIGTERM to every member,
    /// waits for them, and exits 1 saying it was interrupted; every member
    /// stopped on that SIGTERM and left a ledger that verifies.
    @Test func demoForwardsSIGTERMToItsMembersOnSIGINT() async throws {
        let dir = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let root = dir.appendingPathComponent("demo").path
        let p = Process()
        p.executableURL = URL(fileURLWithPath: Self.executable)
        p.arguments = ["demo", "--peers", "3", "--rounds", "5000", "--data", "breast-cancer", "--dir", root, "--json"]
        let out = Pipe(), err = Pipe()
        p.standardOutput = out
        p.standardError = err
        try p.run()
        let deadline = Date().addingTimeInterval(60)
        while Date() < deadline, p.isRunning {
            if let log = try? String(contentsOfFile: "\(root)/logs/inst01.out", encoding: .utf8), log.contains("round   2") { break }
            try await Task.sleep(for: .milliseconds(50))
        }
        let signalled = Date()
        kill(p.processIdentifier, SIGINT)
        let stdout = await readAll(out)
        let stderr = await readAll(err)
        await exited(p)
        #expect(Date().timeIntervalSince(signalled) < 15)
        #expect(p.terminationStatus == 1 && stdout.isEmpty, "\(stdout)")
        #expect(stderr.contains("demo interrupted by SIGINT: its 3 members were sent SIGTERM and have stopped; files in \(root)"), "\(stderr.suffix(2000))")
        for id in ["inst01", "inst02", "inst03"] {
            let log = try String(contentsOfFile: "\(root)/logs/\(id).err", encoding: .utf8)
            #expect(log.contains("\(id) stopped by SIGTERM before the plan's end"), "\(id): \(log.suffix(2000))")
            let verify = try await ledgerTool("verify", "\(root)/state/\(id)/ledger.sqlite", "--ca", "\(root)/pki/ca/ca.pem")
            #expect(verify.status == 0, "\(id): \(verify.stdout)\(verify.stderr)")
        }
    }
}
