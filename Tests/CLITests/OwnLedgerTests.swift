import FLIdentity
import FLPeer
import Foundation
import Testing

/// A peer's own ledger file across stops, lost write-ahead logs and failed
/// final writes, with real `flpeer join` processes on loopback.
@Suite("own ledger durability")
struct OwnLedgerTests {
    /// Waits until `done` holds or `seconds` pass.
    static func wait(_ seconds: Double, until done: () -> Bool) async throws {
        let deadline = Date().addingTimeInterval(seconds)
        while !done(), Date() < deadline { try await Task.sleep(for: .milliseconds(20)) }
    }

    /// Every member's ledger verifies against the other two with both
    /// verifiers, and ledger-tool reports no finding of `rule`.
    static func expectLedgersVerifyAgainstEachOther(_ c: JoinCluster, without rule: String? = nil) async throws {
        let ledgers = JoinCluster.ids.map(c.ledger)
        for l in ledgers {
            let (swift, python) = try await bothVerifiers(l, ca: c.ca, against: ledgers.filter { $0 != l })
            if let rule { #expect(!swift.findings.contains { $0.contains(rule) }, "ledger-tool \(swift)") }
            #expect(swift.status == 0 && python.status == 0, "\(l): ledger-tool \(swift); verify_ledger.py \(python)")
        }
    }

    /// SIGTERM mid-run: each member's ledger.sqlite, copied without its
    /// -wal, verifies and holds the member's chain (the stop message says the
    /// file keeps every entry, so the file alone must).
    @Test func aStoppedPeersLedgerFileAloneHoldsEveryEntry() async throws {
        try await TakingTurns.run { try await aStoppedPeersLedgerFileAloneHoldsEveryEntryRun() }
    }

    func aStoppedPeersLedgerFileAloneHoldsEveryEntryRun() async throws {
        let dir = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        // More rounds than the test needs: SIGTERM must land mid-run even on a loaded machine.
        let c = try JoinCluster(in: dir, plan: [("rounds: 1\n", "rounds: 100\n")])
        let processes = try JoinCluster.ids.map { try c.start($0, log: "\($0).out", errors: "\($0).err") }
        defer { for p in processes where p.isRunning { p.terminate() } }
        try await Self.wait(90) { c.output("inst01.out").contains("round   2") }
        for p in processes { kill(p.processIdentifier, SIGTERM) }
        for p in processes { await exited(p) }
        for id in JoinCluster.ids {
            #expect(c.output("\(id).err").contains("keeps every entry written so far"), "\(c.output("\(id).err").suffix(2000))")
            let wal = (try? FileManager.default.attributesOfItem(atPath: c.ledger(id) + "-wal")[.size] as? Int) ?? 0
            #expect(wal == 0, "\(id): \(wal) bytes left in the write-ahead log")
            let alone = dir.appendingPathComponent("\(id)-alone.sqlite").path
            try FileManager.default.copyItem(atPath: c.ledger(id), toPath: alone)
            let (swift, python) = try await bothVerifiers(alone, ca: c.ca)
            #expect(swift.status == 0 && python.status == 0, "\(id): ledger-tool \(swift); verify_ledger.py \(python)")
            let shown = try await ledgerTool("show", alone)
            #expect(shown.stdout.contains(id) && shown.stdout.contains("aggregate"), "\(shown.stdout.prefix(1000))")
        }
    }

    /// inst02 is SIGKILLed after round 3 and its -wal and -shm are deleted
    /// (its file then holds nothing). Restarted, it must not sign a new
    /// genesis: it recovers its chain from the others' replicas, finds the
    /// model saved with its last aggregate lost, and stops with one
    /// sentence. The others finish, and no ledger shows equivocation.
    @Test func aPeerThatLostItsWriteAheadLogNeverSignsAPositionTwice() async throws {
        try await TakingTurns.run { try await aPeerThatLostItsWriteAheadLogNeverSignsAPositionTwiceRun() }
    }

    func aPeerThatLostItsWriteAheadLogNeverSignsAPositionTwiceRun() async throws {
        let dir = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        // inst02 is slow from round 4 on, so the kill lands mid-run; the others from round 6 on (at least 25 s),
        // so they are still there when inst02 comes back, even on a loaded machine.
        let slow = (4...10).map(String.init).joined(separator: ", ")
        let c = try JoinCluster(in: dir, plan: [("rounds: 1\n", "rounds: 10\n"), ("quorum: 3", "quorum: 2")],
                                extra: ["inst02": "faults:\n  slow_rounds: [\(slow)]\n  slow_seconds: 4\n",
                                        "inst01": "faults:\n  slow_rounds: [6, 7, 8, 9, 10]\n  slow_seconds: 5\n",
                                        "inst03": "faults:\n  slow_rounds: [6, 7, 8, 9, 10]\n  slow_seconds: 5\n"])
        var processes = try JoinCluster.ids.map { try c.start($0, log: "\($0).first.out") }
        defer { for p in processes where p.isRunning { p.terminate() } }
        try await Self.wait(90) { c.output("inst02.first.out").contains("round   3") }
        kill(processes[1].processIdentifier, SIGKILL)
        await exited(processes[1])
        for suffix in ["-wal", "-shm"] { try? FileManager.default.removeItem(atPath: c.ledger("inst02") + suffix) }
        processes[1] = try c.start("inst02", log: "inst02.second.out", errors: "inst02.second.err")
        try await Self.wait(150) { !processes.contains(where: \.isRunning) }
        let second = c.output("inst02.second.out") + c.output("inst02.second.err")
        #expect(!processes[1].isRunning && processes[1].terminationStatus != 0, "\(second.suffix(3000))")
        #expect(second.contains("from the replicas up to #"), "\(second.suffix(3000))")
        #expect(second.contains("this peer stops rather than sign"), "\(second.suffix(3000))")
        for (i, id) in [(0, "inst01"), (2, "inst03")] {
            #expect(!processes[i].isRunning && processes[i].terminationStatus == 0, "\(id): \(c.output("\(id).first.out").suffix(1500))")
            #expect(c.output("\(id).first.out").contains("round  10"), "\(id)")
        }
        try await Self.expectLedgersVerifyAgainstEachOther(c, without: "equivocation")
    }

    /// inst01 starts alone on an empty state directory (a new one, or one
    /// that lost its write-ahead log: it cannot tell). It signs no genesis
    /// while no member could show an earlier chain, and stops with one sentence.
    @Test func aPeerAloneWithoutItsChainSignsNoGenesis() async throws {
        let dir = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let c = try JoinCluster(in: dir, plan: [("round_deadline_seconds: 30", "round_deadline_seconds: 3")])
        let alone = try c.start("inst01", log: "inst01.out", errors: "inst01.err")
        defer { if alone.isRunning { alone.terminate() } }
        try await Self.wait(60) { !alone.isRunning }
        let said = c.output("inst01.out") + c.output("inst01.err")
        #expect(!alone.isRunning && alone.terminationStatus != 0, "\(said.suffix(2000))")
        #expect(said.contains("waiting for another member before signing this peer's genesis"), "\(said.suffix(2000))")
        #expect(said.contains("no other member was reachable within 3 s"), "\(said.suffix(2000))")
        let shown = try await ledgerTool("show", c.ledger("inst01"))
        #expect(!shown.stdout.contains("genesis"), "\(shown.stdout.prefix(1000)) \(shown.stderr)")
    }

    /// inst02's certificate expires about 20 s into a run that lasts longer:
    /// it stops with one sentence instead of signing entries the others would
    /// refuse, and the other two finish the plan (quorum 2).
    @Test func aPeerWhoseCertificateExpiresMidRunStopsWithASentence() async throws {
        try await TakingTurns.run { try await aPeerWhoseCertificateExpiresMidRunStopsWithASentenceRun() }
    }

    func aPeerWhoseCertificateExpiresMidRunStopsWithASentenceRun() async throws {
        let dir = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        // 12 rounds of at least 3 s each (every member slow): the plan outlasts inst02's certificate.
        let slow = "faults:\n  slow_rounds: [\((1...12).map(String.init).joined(separator: ", "))]\n  slow_seconds: 3\n"
        let c = try JoinCluster(in: dir, plan: [("rounds: 1\n", "rounds: 12\n"), ("quorum: 3", "quorum: 2"), ("round_deadline_seconds: 30", "round_deadline_seconds: 8")],
                                extra: Dictionary(uniqueKeysWithValues: JoinCluster.ids.map { ($0, slow) }))
        let ca = try ConsortiumCA.load(directory: "\(c.root)/pki/ca")
        let (key, csr) = try InstitutionKey.generate(institution: "inst02")
        let certificate = try ca.sign(csr, days: 1, now: Date().addingTimeInterval(-86_400 + 20))
        try PEMFiles.pem(certificate).write(toFile: "\(c.root)/pki/inst02/inst02.pem", atomically: true, encoding: .utf8)
        try Ed25519Keys.pem(key).write(toFile: "\(c.root)/pki/inst02/inst02.key.pem", atomically: true, encoding: .utf8)
        let processes = try JoinCluster.ids.map { try c.start($0, log: "\($0).out", errors: "\($0).err") }
        defer { for p in processes where p.isRunning { p.terminate() } }
        try await Self.wait(150) { !processes.contains(where: \.isRunning) }
        let said = c.output("inst02.out") + c.output("inst02.err")
        #expect(!processes[1].isRunning && processes[1].terminationStatus != 0, "\(said.suffix(2000))")
        #expect(said.contains("inst02: this member's certificate expired at \(PeerConfig.utc(certificate.notValidAfter)); the other members refuse entries signed after it, so this peer stops"),
                "\(said.suffix(2000))")
        for (i, id) in [(0, "inst01"), (2, "inst03")] {
            #expect(!processes[i].isRunning && processes[i].terminationStatus == 0, "\(id): \(c.output("\(id).err").suffix(1500))")
            #expect(c.output("\(id).out").contains("round  12"), "\(id)")
        }
        try await Self.expectLedgersVerifyAgainstEachOther(c, without: "time-in-validity")
    }

    /// inst01's final model write fails (model.safetensors is a folder):
    /// it stops with a sentence saying the model is kept. Run again once the
    /// folder is gone, alone (the others have finished), it writes the same
    /// model as the others hold within seconds, with no round 0.
    @Test func aRestartAfterTheLastRoundFinishesWithoutTheOthers() async throws {
        try await TakingTurns.run { try await aRestartAfterTheLastRoundFinishesWithoutTheOthersRun() }
    }

    func aRestartAfterTheLastRoundFinishesWithoutTheOthersRun() async throws {
        let dir = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let c = try JoinCluster(in: dir, plan: [("rounds: 1\n", "rounds: 3\n"), ("round_deadline_seconds: 30", "round_deadline_seconds: 5")])
        let blocker = "\(c.root)/again/inst01/model.safetensors"
        try FileManager.default.createDirectory(atPath: "\(blocker)/occupied", withIntermediateDirectories: true)
        let processes = try JoinCluster.ids.map { try c.start($0, log: "\($0).out", errors: "\($0).err") }
        defer { for p in processes where p.isRunning { p.terminate() } }
        try await Self.wait(120) { !processes.contains(where: \.isRunning) }
        #expect(processes[0].terminationStatus != 0)
        #expect(c.output("inst01.err").contains("the final model could not be written to \(blocker)"), "\(c.output("inst01.err").suffix(2000))")
        #expect(processes[1].terminationStatus == 0 && processes[2].terminationStatus == 0)
        try FileManager.default.removeItem(atPath: blocker)
        let started = Date()
        let again = try c.start("inst01", log: "inst01.again.out")
        await exited(again)
        #expect(again.terminationStatus == 0, "\(c.output("inst01.again.out"))")
        #expect(Date().timeIntervalSince(started) < 8, "finishing offline must not wait for neighbours")
        #expect(c.output("inst01.again.out").contains("rounds are already recorded"), "\(c.output("inst01.again.out"))")
        let written = try Data(contentsOf: URL(fileURLWithPath: blocker))
        let others = try Data(contentsOf: URL(fileURLWithPath: "\(c.root)/again/inst02/model.safetensors"))
        #expect(written == others, "inst01's final model differs from inst02's")
    }
}

@Suite("a member killed 50 times")
struct RepeatedKillTests {
    /// inst02 is SIGKILLed at seeded random moments (0–200 ms after each life's
    /// first finished round) and restarted, 50 times, while the three members train. Every
    /// member then finishes the plan, and every ledger verifies against the
    /// other two: no entry a neighbour held (and checkpointed) is missing from
    /// inst02's file, and inst02 never signed a position twice.
    @Test func aMemberKilledFiftyTimesMidRoundLosesNothing() async throws {
        try await TakingTurns.run { try await aMemberKilledFiftyTimesMidRoundLosesNothingRun() }
    }

    func aMemberKilledFiftyTimesMidRoundLosesNothingRun() async throws {
        let dir = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let c = try JoinCluster(in: dir, plan: [("rounds: 1\n", "rounds: 300\n")])
        var processes = try JoinCluster.ids.map { try c.start($0, log: "\($0).out", errors: "\($0).err") }
        defer { for p in processes where p.isRunning { p.terminate() } }
        var state: UInt64 = 14
        var kills = 0
        var log = "inst02.out"
        for attempt in 0..<50 {
            // Once this life of inst02 finished a round, at a random moment of the next ones.
            try await OwnLedgerTests.wait(60) { !processes[1].isRunning || c.output(log).contains("\nround ") }
            state = state &* 6364136223846793005 &+ 1442695040888963407
            try await Task.sleep(for: .milliseconds(Int(state >> 33) % 200))
            guard processes[1].isRunning else { break }
            kill(processes[1].processIdentifier, SIGKILL)
            await exited(processes[1])
            if processes[1].terminationReason == .uncaughtSignal { kills += 1 }
            log = "inst02.\(attempt).out"
            processes[1] = try c.start("inst02", log: log, errors: "inst02.\(attempt).err")
        }
        try await OwnLedgerTests.wait(240) { !processes.contains(where: \.isRunning) }
        #expect(kills == 50, "inst02 finished before it was killed 50 times (\(kills) kills)")
        for (i, id) in JoinCluster.ids.enumerated() {
            #expect(!processes[i].isRunning && processes[i].terminationStatus == 0, "\(id) did not finish")
        }
        #expect(c.output("inst01.out").contains("round 300") && c.output("inst03.out").contains("round 300"))
        try await OwnLedgerTests.expectLedgersVerifyAgainstEachOther(c)
        print("repeated kills: inst02 SIGKILLed \(kills) times mid-run; all three finished; every ledger verifies against the others")
    }
}
