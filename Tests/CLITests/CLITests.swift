import Foundation
import Testing

/// The directory holding the built products (next to the test bundle).
let productsDirectory: URL = {
    var url = URL(fileURLWithPath: CommandLine.arguments[0]).resolvingSymlinksInPath()
    while url.path != "/" {
        url.deleteLastPathComponent()
        if FileManager.default.isExecutableFile(atPath: url.appendingPathComponent("flpeer").path) { return url }
    }
    return URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("../../.build/debug").standardized
}()

let repository = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()

struct Run {
    let status: Int32
    let stdout: String
    let stderr: String
}

func flpeer(_ arguments: String...) async throws -> Run { try await runProduct("flpeer", arguments) }

func ledgerTool(_ arguments: String...) async throws -> Run { try await runProduct("ledger-tool", arguments) }

/// Runs `work` on a thread of its own. Waiting for a process blocks, and a
/// blocked thread of Swift's cooperative pool (two on this machine) stalls
/// every other test in the process, the gossip tests' TLS handshakes among them.
func offPool<T: Sendable>(_ work: @escaping @Sendable () throws -> T) async throws -> T {
    try await withCheckedThrowingContinuation { continuation in
        Thread { continuation.resume(with: Result { try work() }) }.start()
    }
}

/// Waits for `process` (already started) to exit, woken by its termination
/// handler. Foundation's `waitUntilExit` on Linux spins a run loop that has
/// no sources, and kept a core busy for as long as a peer under test ran.
func exited(_ process: Process) async {
    await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
        let once = ResumeOnce(continuation)
        // Foundation clears `isRunning` before it reads the handler, so one of
        // the two calls sees the exit; `ResumeOnce` drops the other.
        process.terminationHandler = { _ in once.resume() }
        if !process.isRunning { once.resume() }
    }
}

/// Blocks the calling thread (never one of the cooperative pool) until
/// `process` exits, without spinning.
func waitForExit(_ process: Process) {
    let done = DispatchSemaphore(value: 0)
    process.terminationHandler = { _ in done.signal() }
    if process.isRunning { done.wait() }
}

/// Resumes a continuation the first time it is asked to.
final class ResumeOnce: @unchecked Sendable {
    private let lock = NSLock()
    private var continuation: CheckedContinuation<Void, Never>?

    init(_ continuation: CheckedContinuation<Void, Never>) { self.continuation = continuation }

    func resume() {
        lock.lock()
        let c = continuation
        continuation = nil
        lock.unlock()
        c?.resume()
    }
}

/// Everything written to `pipe` until its writers close it, read off the cooperative pool.
func readAll(_ pipe: Pipe) async -> String {
    let data = (try? await offPool { pipe.fileHandleForReading.readDataToEndOfFile() }) ?? Data()
    return String(decoding: data, as: UTF8.self)
}

/// Runs one of the built executables (or a program at an absolute path) and collects its output.
func runProduct(_ name: String, _ arguments: [String]) async throws -> Run {
    try await offPool { try runProductBlocking(name, arguments) }
}

func runProductBlocking(_ name: String, _ arguments: [String]) throws -> Run {
    let p = Process()
    p.executableURL = name.hasPrefix("/") ? URL(fileURLWithPath: name) : productsDirectory.appendingPathComponent(name)
    p.arguments = arguments
    let out = Pipe(), err = Pipe()
    p.standardOutput = out
    p.standardError = err
    try p.run()
    let o = out.fileHandleForReading.readDataToEndOfFile()
    let e = err.fileHandleForReading.readDataToEndOfFile()
    waitForExit(p)
    return Run(status: p.terminationStatus, stdout: String(decoding: o, as: UTF8.self), stderr: String(decoding: e, as: UTF8.self))
}

func temporaryDirectory() throws -> URL {
    let url = FileManager.default.temporaryDirectory.appendingPathComponent("flpeer-cli-\(UUID().uuidString)")
    try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
    return url
}

@Suite("flpeer command line")
struct CLITests {
    @Test func trainPrintsJSONWithAccuracyOnBundledData() async throws {
        let r = try await flpeer("train", "--data", repository.appendingPathComponent("data/breast_cancer.csv").path, "--seed", "3", "--json")
        #expect(r.status == 0, "\(r.stderr)")
        let obj = try #require(try JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as? [String: Any])
        let accuracy = try #require(obj["accuracy"] as? Double)
        #expect(accuracy > 0.94)
        #expect(obj["roc_auc"] is Double)
        #expect((obj["confusion_matrix"] as? [[Int]])?.count == 2)
    }

    @Test func anyNumericCSVTrainsWithoutCodeChanges() async throws {
        // Three text classes, five features, label column not last: separable clusters.
        let dir = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        var csv = "f1,kind,f2,f3,f4,f5\n"
        var state: UInt64 = 12345
        func noise() -> Double {
            state = state &* 6364136223846793005 &+ 1442695040888963407
            return Double(state >> 11) / Double(1 << 53) - 0.5
        }
        let names = ["alpha", "beta", "gamma"]
        for i in 0..<300 {
            let c = i % 3
            let centre = Double(c) * 2
            csv += "\(centre + noise()),\(names[c]),\(noise()),\(-centre + noise()),\(noise()),\(centre * 0.5 + noise())\n"
        }
        let path = dir.appendingPathComponent("custom.csv").path
        try csv.write(toFile: path, atomically: true, encoding: .utf8)
        for model in ["logreg", "mlp"] {
            let r = try await flpeer("train", "--data", path, "--label", "kind", "--model", model, "--hidden", "16,8", "--epochs", "20", "--json")
            #expect(r.status == 0, "\(r.stderr)")
            let obj = try #require(try JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as? [String: Any])
            #expect((obj["accuracy"] as? Double ?? 0) > 0.9)
            #expect(obj["classes"] as? [String] == names)
        }
    }

    @Test func badCSVExitsOneNamingFileLineAndColumn() async throws {
        let dir = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let path = dir.appendingPathComponent("bad.csv").path
        try "a,b,label\n1,2,0\n3,4,1\n5,oops,0\n".write(toFile: path, atomically: true, encoding: .utf8)
        let r = try await flpeer("train", "--data", path)
        #expect(r.status == 1)
        #expect(r.stderr.contains("bad.csv, line 4, column 'b': 'oops' is not a finite number"), "\(r.stderr)")
        let usage = try await flpeer("train", "--data", path, "--epochs", "0")
        #expect(usage.status == 64)
        #expect(usage.stderr.contains("--epochs must be at least 1"))
    }

    @Test func dataSplitWritesEveryRowOnceAndPrintsHistograms() async throws {
        let dir = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let source = repository.appendingPathComponent("data/digits.csv").path
        let r = try await flpeer("data", "split", "--data", source, "--parts", "5", "--alpha", "0.5", "--seed", "1", "--out", dir.path)
        #expect(r.status == 0, "\(r.stderr)")
        let lines = r.stdout.split(separator: "\n")
        #expect(lines.first?.hasPrefix("label") == true)
        #expect(lines.filter { $0.hasPrefix("part-") }.count == 5)
        #expect(lines.contains { $0.hasPrefix("test") })
        var rows: [Substring] = []
        for name in ["test.csv"] + (1...5).map({ "part-\($0).csv" }) {
            let text = try String(contentsOf: dir.appendingPathComponent(name), encoding: .utf8)
            let body = text.split(whereSeparator: \.isNewline).dropFirst()
            #expect(!body.isEmpty)
            rows.append(contentsOf: body)
        }
        let original = try String(contentsOfFile: source, encoding: .utf8).split(whereSeparator: \.isNewline).dropFirst()
        #expect(original.count == 1797)
        let same = rows.sorted() == original.sorted()
        #expect(same, "every row lands in exactly one file (\(rows.count) rows written, \(original.count) in the source)")
    }
}

@Suite("loopback example")
struct LoopbackExampleTests {
    @Test func makeCertsCreatesAWorkingThreeMemberConsortium() async throws {
        let dir = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let copy = dir.appendingPathComponent("loopback")
        try FileManager.default.copyItem(at: repository.appendingPathComponent("network-configs/loopback"), to: copy)
        for leftover in ["pki", "state", "data"] { try? FileManager.default.removeItem(at: copy.appendingPathComponent(leftover)) }
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/bin/bash")
        p.arguments = [copy.appendingPathComponent("make-certs.sh").path, productsDirectory.appendingPathComponent("flpeer").path]
        p.environment = ProcessInfo.processInfo.environment.merging(["FLPEER_DATA": repository.appendingPathComponent("data/digits.csv").path]) { $1 }
        let out = Pipe()
        p.standardOutput = out
        p.standardError = out
        try p.run()
        let text = await readAll(out)
        await exited(p)
        #expect(p.terminationStatus == 0, "\(text)")
        for id in ["alice", "bob", "carol"] {
            #expect(text.contains("\(id).yaml: member '\(id)' of 'loopback-demo' (3 members)"), "\(text)")
            #expect(FileManager.default.fileExists(atPath: copy.appendingPathComponent("pki/\(id)/\(id).pem").path))
        }
        // A revoked member's file is then refused by its own check.
        let r = try await flpeer("ca", "revoke", "--ca", copy.appendingPathComponent("pki/ca").path, "--cert", copy.appendingPathComponent("pki/bob/bob.pem").path)
        #expect(r.status == 0)
        #expect(r.stdout.contains("now lists 1 certificate"))
        let check = try await flpeer("config", "check", "--config", copy.appendingPathComponent("bob.yaml").path)
        #expect(check.status == 1)
        #expect(check.stderr.contains("key 'certificate' is revoked"), "\(check.stderr)")
        #expect(try await flpeer("config", "check", "--config", copy.appendingPathComponent("alice.yaml").path).status == 0)
    }
}
