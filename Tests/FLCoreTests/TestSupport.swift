import FLCore
import Foundation
import Testing

/// Result of running a child process.
struct ProcessOutput {
    let status: Int32
    let stdout: String
    let stderr: String
}

/// Runs `executable` with `arguments` and waits for it.
func runProcess(_ executable: String, _ arguments: [String], input: String? = nil) throws -> ProcessOutput {
    let p = Process()
    p.executableURL = URL(fileURLWithPath: "/usr/bin/env")
    p.arguments = [executable] + arguments
    let out = Pipe(), err = Pipe()
    p.standardOutput = out
    p.standardError = err
    try p.run()
    let o = out.fileHandleForReading.readDataToEndOfFile()
    let e = err.fileHandleForReading.readDataToEndOfFile()
    p.waitUntilExit()
    return ProcessOutput(status: p.terminationStatus, stdout: String(decoding: o, as: UTF8.self), stderr: String(decoding: e, as: UTF8.self))
}

/// Runs a Python snippet with `python3 -c`; extra arguments arrive as sys.argv[1:].
func runPython(_ code: String, _ arguments: [String] = []) throws -> ProcessOutput {
    try runProcess("python3", ["-c", code] + arguments)
}

/// A fresh temporary directory, removed by the caller.
func makeTemporaryDirectory() throws -> URL {
    let url = FileManager.default.temporaryDirectory.appendingPathComponent("flpeer-test-\(UUID().uuidString)")
    try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
    return url
}

/// The repository root (two levels above this file's folder).
let repositoryRoot: URL = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()

/// Path of a bundled data set.
func bundledData(_ name: String) -> String { repositoryRoot.appendingPathComponent("data/\(name)").path }

/// Random Float32 values from a seeded generator.
func randomFloats(_ count: Int, _ rng: inout SeededGenerator, scale: Double = 1) -> [Float] {
    (0..<count).map { _ in Float(rng.nextGaussian() * scale) }
}
