import Foundation
import Subprocess
#if canImport(System)
import System
#else
import SystemPackage
#endif

extension DemoConsortium {
    /// How long a member may take to stop after SIGTERM before it is killed.
    public static let stopGrace: Duration = .seconds(10)

    /// Runs every member's `flpeer join` (from `executable`) to its end, its
    /// output in logs/ID.out and logs/ID.err; the first member's lines also go
    /// to `progress`. A member that exits with a failure stops the others
    /// (SIGTERM, then SIGKILL after `stopGrace`) and fails the run, naming it
    /// and its log. Cancelling the calling task stops every member the same
    /// way and throws `CancellationError` once they are gone.
    func runMembers(executable: String, progress: @escaping @Sendable (String) -> Void) async throws {
        try FileManager.default.createDirectory(atPath: "\(directory)/logs", withIntermediateDirectories: true)
        do {
            try await withThrowingTaskGroup(of: (String, TerminationStatus).self) { group in
                for (i, id) in ids.enumerated() {
                    group.addTask { (id, try await runMember(id, executable: executable, echo: i == 0 ? progress : nil)) }
                }
                while let (id, status) = try await group.next() {
                    if Task.isCancelled { throw CancellationError() }
                    if !status.isSuccess { throw memberFailure(id, status) }
                }
            }
        } catch where Task.isCancelled {
            throw CancellationError()
        }
    }

    /// Runs member `id` until it exits; its standard output is copied to its
    /// log (and line by line to `echo`) as it arrives.
    func runMember(_ id: String, executable: String, echo: (@Sendable (String) -> Void)?) async throws -> TerminationStatus {
        let logs = logPaths(id)
        guard FileManager.default.createFile(atPath: logs.out, contents: nil), let out = FileHandle(forWritingAtPath: logs.out) else {
            throw DemoError(.files, "cannot write \(logs.out)")
        }
        defer { try? out.close() }
        let errors: FileDescriptor
        do {
            errors = try FileDescriptor.open(FilePath(logs.err), .writeOnly, options: [.create, .truncate], permissions: [.ownerReadWrite, .groupRead, .otherRead])
        } catch {
            throw DemoError(.files, "cannot write \(logs.err): \(error)")
        }
        var platform = PlatformOptions()
        platform.teardownSequence = [.gracefulShutDown(allowedDurationToNextStep: Self.stopGrace)]
        do {
            return try await Subprocess.run(.path(FilePath(executable)), arguments: ["join", "--config", peerConfigPath(id)], platformOptions: platform,
                                            input: .none, output: .sequence, error: .fileDescriptor(errors, closeAfterSpawningProcess: true)) { execution in
                var lines = LineSplitter()
                for try await buffer in execution.standardOutput {
                    let bytes = buffer.withUnsafeBytes { [UInt8]($0) }
                    try out.write(contentsOf: bytes)
                    if let echo { lines.append(bytes).forEach(echo) }
                }
            }.terminationStatus
        } catch let error as SubprocessError {
            throw DemoError(.spawn, "cannot run \(executable) for \(id): \(error)")
        }
    }

    /// The error for a member that stopped with `status`, with the last line of its log.
    func memberFailure(_ id: String, _ status: TerminationStatus) -> DemoError {
        let log = logPaths(id).err
        let why = (try? String(contentsOfFile: log, encoding: .utf8))?.split(separator: "\n").last.map(String.init) ?? "no message"
        let how = switch status {
        case .exited(let code): "exited with status \(code)"
        case .signaled(let signal): "was killed by signal \(signal)"
        }
        return DemoError(.memberFailed, "member \(id) \(how) before the plan's end: \(why) (log: \(log))")
    }
}

/// Cuts a byte stream into lines (without their newline), keeping a partial last line for later.
struct LineSplitter {
    private var pending: [UInt8] = []

    /// The complete non-empty lines that `bytes` finished.
    mutating func append(_ bytes: [UInt8]) -> [String] {
        pending += bytes
        guard let last = pending.lastIndex(of: UInt8(ascii: "\n")) else { return [] }
        let lines = pending[...last].split(separator: UInt8(ascii: "\n")).map { String(decoding: $0, as: UTF8.self) }
        pending.removeSubrange(...last)
        return lines
    }
}
