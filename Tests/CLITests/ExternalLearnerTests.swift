import Foundation
import Testing

/// External learners over real processes (docs/learner-protocol.md): the numpy
/// example in a federation whose ledgers every verifier accepts, and a learner
/// that misbehaves in each way the protocol names.
@Suite("external learners")
struct ExternalLearnerTests {
    static let numpy = repository.appendingPathComponent("examples/learners/numpy_softmax.py").path
    static let hostile = repository.appendingPathComponent("Tests/CLITests/Fixtures/hostile_learner.py").path

    @Test func aThreeMemberNumpyFederationPassesEveryVerifier() async throws {
        try await TakingTurns.run {
            let dir = try temporaryDirectory()
            defer { try? FileManager.default.removeItem(at: dir) }
            let root = dir.appendingPathComponent("demo").path
            let r = try await flpeer("demo", "--peers", "3", "--rounds", "4", "--learner-command", "python3 \(Self.numpy)", "--dir", root, "--json")
            #expect(r.status == 0, "\(r.stderr.suffix(2000))")
            let summary = try #require(try JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as? [String: Any], "stdout: \(r.stdout)")
            #expect(summary["ledger_verified"] as? Bool == true && summary["model"] as? String == "external")
            let accuracy = try #require(summary["mean_accuracy"] as? Double), central = try #require(summary["centralized_accuracy"] as? Double)
            #expect(accuracy > 0.8 && central > 0.8 && abs(accuracy - central) < 0.1, "federated \(accuracy), centralised \(central)")
            #expect(r.stderr.contains("answered hello and init"), "\(r.stderr.prefix(1000))")
            let ids = ["inst01", "inst02", "inst03"]
            let ledgers = ids.map { "\(root)/state/\($0)/ledger.sqlite" }
            let ca = "\(root)/pki/ca/ca.pem"
            for l in ledgers {
                let (swift, python) = try await bothVerifiers(l, ca: ca, against: ledgers.filter { $0 != l })
                #expect(swift.status == 0 && python.status == 0, "ledger-tool \(swift); verify_ledger.py \(python)")
                let verified = try await ledgerTool("report", l, "--verify")
                #expect(verified.status == 0 && verified.stderr.contains("recorded credits re-derive"), "\(verified.stderr)")
                #expect(ids.allSatisfy(verified.stdout.contains))
            }
            let export = try await ledgerTool("export", ledgers[0], "--jsonl")
            let report = try await ledgerTool("report", ledgers[0], "--format", "json")
            let exportFile = dir.appendingPathComponent("export.jsonl").path, reportFile = dir.appendingPathComponent("report.json").path
            try export.stdout.write(toFile: exportFile, atomically: true, encoding: .utf8)
            try report.stdout.write(toFile: reportFile, atomically: true, encoding: .utf8)
            let check = try await runProcess("python3", [repository.appendingPathComponent("ledger-tools/credits.py").path, exportFile, "--compare", reportFile])
            #expect(check.status == 0 && check.stderr.contains("agrees exactly"), "\(check.stderr)")
            // Round 0 records every member's initial model: the same hash, three times.
            #expect(export.stdout.contains("learner-layout/v1"))
        }
    }

    /// A model with BatchNorm-like tensors: the int64 counter never leaves a
    /// member (each counts its own batches); the Float32 running statistics
    /// are aggregated like weights, unless the plan's `local_parameters`
    /// names them, and then each member keeps its own.
    @Test func nonFloatBuffersStayLocalAndTheRunningStatisticsFollowThePlan() async throws {
        try await TakingTurns.run {
            let dir = try temporaryDirectory()
            defer { try? FileManager.default.removeItem(at: dir) }
            let script = repository.appendingPathComponent("Tests/CLITests/Fixtures/numpy_batchnorm.py").path
            for local in [false, true] {
                let root = dir.appendingPathComponent(local ? "local" : "shared").path
                let r = try await runProduct("flpeer", ["demo", "--peers", "3", "--rounds", "3", "--learner-command", "python3 \(script)", "--dir", root]
                                         + (local ? ["--local-parameters", "bn.*"] : []))
                #expect(r.status == 0, "\(r.stderr.suffix(1500))")
                #expect(r.stderr.contains(local ? "650 shared parameters in 2 tensors, 2 kept local" : "714 shared parameters in 3 tensors, 1 kept local"), "\(r.stderr.prefix(800))")
                let read = try await runProcess("python3", ["-c", """
                    import sys
                    from safetensors.numpy import load_file
                    for i in (1, 2, 3):
                        m = load_file(f"{sys.argv[1]}/state/inst0{i}/model.safetensors")
                        l = load_file(f"{sys.argv[1]}/state/inst0{i}/learner/local.safetensors")
                        mean = (l if "bn.running_mean" in l else m)["bn.running_mean"]
                        print(",".join(sorted(m)), ",".join(sorted(l)), int(l["bn.num_batches_tracked"]), round(float(mean.sum()), 3))
                    """, root])
                #expect(read.status == 0, "\(read.stderr)")
                let lines = read.stdout.split(separator: "\n").map { $0.split(separator: " ").map(String.init) }
                try #require(lines.count == 3, "\(read.stdout)")
                #expect(lines.allSatisfy { $0[0] == (local ? "bias,weight" : "bias,bn.running_mean,weight") })
                #expect(lines.allSatisfy { $0[1] == (local ? "bn.num_batches_tracked,bn.running_mean" : "bn.num_batches_tracked") })
                // Each member counted its own batches: the counters differ with the members' row counts.
                #expect(lines.allSatisfy { Int($0[2])! > 0 } && Set(lines.map { $0[2] }).count > 1, "\(read.stdout)")
                // Aggregated statistics are the same everywhere; local ones are each member's.
                #expect(Set(lines.map { $0[3] }).count == (local ? 3 : 1), "\(read.stdout)")
            }
        }
    }

    /// A member whose peer is SIGKILLed mid-run restarts with its state
    /// directory: a new worker starts, the peer resumes after its last
    /// recorded round, every member finishes with the same model, and the
    /// killed peer's worker did not outlive it (it sees the end of its input).
    @Test func aKilledPeerWithAnExternalLearnerResumes() async throws {
        try await TakingTurns.run {
            let dir = try temporaryDirectory()
            defer { try? FileManager.default.removeItem(at: dir) }
            let learner = "learner:\n  command: [python3, \"\(Self.numpy)\"]\n"
            let c = try JoinCluster(in: dir, plan: [("rounds: 1\n", "rounds: 12\n")], extra: Dictionary(uniqueKeysWithValues: JoinCluster.ids.map { ($0, learner) }))
            var processes = try JoinCluster.ids.map { try c.start($0, log: "\($0).first.out") }
            defer { for p in processes where p.isRunning { p.terminate() } }
            let deadline = Date().addingTimeInterval(120)
            // Find inst02's worker while the peer is still in its first rounds
            // (numpy rounds take milliseconds, so looking later could find the
            // run already over), then kill the peer as soon as it has recorded
            // round 3: kill(2) is immediate, unlike spawning pgrep.
            var pid: Int32?
            while pid == nil, Date() < deadline {
                let children = try await runProcess("pgrep", ["-P", "\(processes[1].processIdentifier)", "-f", Self.numpy])
                pid = Int32(children.stdout.split(separator: "\n").first ?? "")
                if pid == nil { try await Task.sleep(for: .milliseconds(10)) }
            }
            let worker = try #require(pid, "no worker under inst02: \(c.output("inst02.first.out"))")
            while !c.output("inst02.first.out").contains("round   3"), Date() < deadline { try await Task.sleep(for: .milliseconds(5)) }
            kill(processes[1].processIdentifier, SIGKILL)
            await exited(processes[1])
            try #require(!c.output("inst02.first.out").contains("round  12"), "inst02 finished before it was killed; the test needs a longer plan")
            // Its worker reads the end of its input and exits.
            while kill(worker, 0) == 0, Date() < deadline { try await Task.sleep(for: .milliseconds(100)) }
            #expect(kill(worker, 0) != 0, "worker \(worker) outlived its peer")
            processes[1] = try c.start("inst02", log: "inst02.second.out")
            while processes.contains(where: \.isRunning), Date() < deadline { try await Task.sleep(for: .milliseconds(50)) }
            #expect(processes.allSatisfy { !$0.isRunning && $0.terminationStatus == 0 }, "\(processes.map(\.terminationStatus))")
            let second = c.output("inst02.second.out")
            #expect(second.contains("resuming after round") && second.contains("round  12") && second.contains("answered hello and init"), "\(second)")
            let ledgers = JoinCluster.ids.map(c.ledger)
            for l in ledgers {
                let (swift, python) = try await bothVerifiers(l, ca: c.ca, against: ledgers.filter { $0 != l })
                #expect(swift.status == 0 && python.status == 0, "ledger-tool \(swift); verify_ledger.py \(python)")
            }
            let models = try JoinCluster.ids.map { try Data(contentsOf: URL(fileURLWithPath: "\(c.root)/again/\($0)/model.safetensors")) }
            #expect(Set(models).count == 1)
        }
    }

    /// A misbehaviour, the round it starts in, and what the peer must say.
    struct Case: Sendable, CustomStringConvertible {
        let mode: String
        let round: Int
        let message: String
        var description: String { mode }
    }

    static let cases: [Case] = [
        Case(mode: "crash", round: 2, message: "exited with status 3 during `train` for round 2"),
        Case(mode: "hang", round: 2, message: "did not answer `train` for round 2 within 3 s; it was stopped"),
        Case(mode: "silent", round: 0, message: "did not answer `hello` (before round 1) within 3 s"),
        Case(mode: "garbage", round: 2, message: "answered `train` for round 2 with 'epoch 1 loss 0.3', which is not a JSON object"),
        Case(mode: "names", round: 2, message: "wrote a model for `train` for round 2 without tensor 'weight'"),
        Case(mode: "shapes", round: 2, message: "wrote tensor 'bias' as F32 [3] for `train` for round 2, but `hello` declared F32 [10]"),
        Case(mode: "nan", round: 2, message: "wrote NaN or infinite values in tensor 'weight' for `train` for round 2"),
        Case(mode: "big", round: 1, message: "for `train` for round 1, over the"),
        Case(mode: "symlink", round: 2, message: "candidate-1.safetensors: the learner replaced it with a symbolic link, which the peer does not follow"),
        Case(mode: "hardlink", round: 2, message: "candidate-1.safetensors: the learner gave it 2 names (a hard link to another file), and the peer does not write through a hard link"),
        Case(mode: "fifo", round: 2, message: "candidate-1.safetensors: the learner replaced it with a FIFO, which the peer does not write to"),
    ]

    /// inst03's learner misbehaves: inst03 stops with one sentence naming the
    /// learner and the round, leaves no learner process behind, and its ledger
    /// verifies; inst01 and inst02 finish the plan without it, well inside
    /// the round deadline.
    @Test(arguments: cases) func aBrokenLearnerStopsItsPeerWithASentence(_ c: Case) async throws {
        try await TakingTurns.run {
            let dir = try temporaryDirectory()
            defer { try? FileManager.default.removeItem(at: dir) }
            func learner(_ script: String) -> String { "learner:\n  command: [python3, \"\(script)\"]\n  timeout_seconds: 3\n" }
            let cluster = try JoinCluster(in: dir, plan: [("rounds: 1", "rounds: 3"), ("quorum: 3", "quorum: 2"), ("round_deadline_seconds: 30", "round_deadline_seconds: 20")],
                                          extra: ["inst01": learner(Self.numpy), "inst02": learner(Self.numpy), "inst03": learner(Self.hostile)])
            let started = Date()
            let healthy = try ["inst01", "inst02"].map { try cluster.start($0, log: "\($0).out", errors: "\($0).err") }
            // A file of the member's the learner may try to make the peer overwrite.
            let victim = dir.appendingPathComponent("victim.txt")
            try Data("not a model\n".utf8).write(to: victim)
            let broken = try cluster.start("inst03", log: "inst03.out", errors: "inst03.err",
                                           environment: ["FLPEER_HOSTILE": c.mode, "FLPEER_HOSTILE_ROUND": "\(c.round)", "FLPEER_HOSTILE_VICTIM": victim.path])
            defer { for p in healthy + [broken] where p.isRunning { p.terminate() } }
            await exited(broken)
            let errors = cluster.output("inst03.err")
            #expect(broken.terminationStatus == 1, "\(errors.suffix(1500))")
            let last = errors.split(separator: "\n").last.map(String.init) ?? ""
            #expect(last.contains("the learner `python3 \(Self.hostile)`") && last.contains(c.message), "\(last)")
            for p in healthy { await exited(p) }
            #expect(healthy.allSatisfy { $0.terminationStatus == 0 }, "\(cluster.output("inst01.err").suffix(1500))")
            #expect(Date().timeIntervalSince(started) < 60)
            #expect(try String(contentsOf: victim, encoding: .utf8) == "not a model\n", "the peer wrote through the learner's link")
            #expect(cluster.output("inst01.out").contains("round   3"))
            // No learner process outlives its peer.
            let left = try await runProcess("pgrep", ["-f", Self.hostile])
            #expect(left.stdout.isEmpty, "still running: \(left.stdout)")
            // A learner that never started leaves no ledger: nothing was signed.
            #expect(FileManager.default.fileExists(atPath: cluster.ledger("inst03")) == (c.round > 0))
            let ledgers = JoinCluster.ids.map(cluster.ledger).filter { FileManager.default.fileExists(atPath: $0) }
            for l in ledgers {
                let (swift, python) = try await bothVerifiers(l, ca: cluster.ca, against: ledgers.filter { $0 != l })
                #expect(swift.status == 0 && python.status == 0, "\(l): ledger-tool \(swift.status) \(swift.findings); verify_ledger.py \(python.status) \(python.findings)")
            }
        }
    }
}
