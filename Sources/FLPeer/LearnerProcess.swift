import FLLedger
import Foundation
import Subprocess
import SystemPackage

/// Why an external learner could not do what the round engine asked: one
/// sentence naming the learner's command, the verb and the round.
public struct LearnerError: Error, CustomStringConvertible, Sendable, Equatable {
    public let description: String
    public init(_ description: String) { self.description = description }
}

/// One long-lived learner worker process (docs/learner-protocol.md): a
/// request is one JSON line on its standard input, the answer one JSON line
/// on its standard output. Its standard error goes to a log file (at most
/// `logLimit` bytes). A request not answered within the timeout, a line that
/// is not a JSON object, a line longer than `maximumLine` or output nobody
/// asked for ends the process (its whole process group); it is always
/// reaped, so it never lingers as a zombie.
actor LearnerProcess {
    /// How the learner is named in errors: "the learner `python3 x.py`".
    nonisolated let name: String
    let command: [String]
    let timeout: Duration
    let logPath: String
    static let maximumLine = 4 << 20
    static let logLimit = 16 << 20

    private var write: (@Sendable ([UInt8]) async throws -> Void)?
    private var kill: (@Sendable () -> Void)?
    private var startWaiter: CheckedContinuation<Void, Never>?
    /// Why the process can no longer answer, once it cannot.
    private var ended: LearnerError?
    private var outputClosed = false
    /// The open request: its number, what it asks (for messages), its answer when it came first, and who waits.
    private var open: (id: Int, what: String, result: Result<[String: JSONValue], LearnerError>?, waiter: CheckedContinuation<[String: JSONValue], any Error>?)?
    private var nextID = 0
    private var turn: [CheckedContinuation<Void, Never>] = []
    private var busy = false
    private var task: Task<Void, Never>?
    private var exitWaiters: [CheckedContinuation<Void, Never>] = []
    private var exitStatus: String?

    init(command: [String], timeout: Duration, logPath: String) {
        self.command = command
        self.timeout = timeout
        self.logPath = logPath
        self.name = "the learner `\(command.joined(separator: " "))`"
    }

    /// Starts the process; returns once it runs (or could not be started).
    func start(environment: [String: String], workingDirectory: String?) async {
        let command = command
        let logPath = logPath
        var platform = PlatformOptions()
        platform.processGroupID = 0  // its own group: a timeout ends the workers it started too
        platform.teardownSequence = [.gracefulShutDown(allowedDurationToNextStep: .seconds(2))]
        let executable: Executable = command[0].contains("/") ? .path(FilePath(command[0])) : .name(command[0])
        var env: [Environment.Key: String?] = [:]
        for (k, v) in environment { env[Environment.Key(stringLiteral: k)] = v }
        let environment = Environment.inherit.updating(env)
        _ = FileManager.default.createFile(atPath: logPath, contents: nil)
        task = Task.detached {
            do {
                let result = try await Subprocess.run(
                    executable, arguments: Arguments(Array(command.dropFirst())), environment: environment,
                    workingDirectory: workingDirectory.map { FilePath($0) }, platformOptions: platform,
                    input: .inputWriter, output: .sequence, error: .sequence
                ) { execution in
                    let writer = execution.standardInputWriter
                    await self.attach(write: { bytes in _ = try await writer.write(bytes) },
                                      kill: { try? execution.send(signal: .kill, toProcessGroup: true) })
                    await withTaskGroup(of: Void.self) { group in
                        group.addTask {
                            var splitter = BoundedLineSplitter(limit: Self.maximumLine)
                            do {
                                for try await buffer in execution.standardOutput {
                                    let bytes = buffer.withUnsafeBytes { [UInt8]($0) }
                                    for line in splitter.append(bytes) { await self.received(line) }
                                    if splitter.overflowed { await self.protocolBroken("printed a line of more than \(Self.maximumLine) bytes on stdout"); break }
                                }
                            } catch {}
                            await self.outputEnded()
                        }
                        group.addTask {
                            let log = FileHandle(forWritingAtPath: logPath)
                            var written = 0
                            do {
                                for try await buffer in execution.standardError {
                                    let bytes = buffer.withUnsafeBytes { [UInt8]($0) }
                                    if written < Self.logLimit { try? log?.write(contentsOf: bytes.prefix(Self.logLimit - written)) }
                                    written += bytes.count
                                }
                            } catch {}
                            try? log?.close()
                        }
                        await group.waitForAll()
                    }
                    try? await writer.finish()
                }
                let status = switch result.terminationStatus {
                case .exited(let code): "with status \(code)"
                case .signaled(let signal): "killed by signal \(signal)"
                }
                await self.exited(status)
            } catch {
                await self.couldNotStart("\(error)")
            }
        }
        if write == nil && ended == nil {
            await withCheckedContinuation { startWaiter = $0 }
        }
    }

    private func attach(write: @escaping @Sendable ([UInt8]) async throws -> Void, kill: @escaping @Sendable () -> Void) {
        self.write = write
        self.kill = kill
        startWaiter?.resume()
        startWaiter = nil
    }

    private func couldNotStart(_ why: String) {
        finish(LearnerError("\(name) could not be started (\(why)); check 'learner.command' and 'learner.working_dir'"))
        exitStatus = "not started"
        startWaiter?.resume()
        startWaiter = nil
        exitWaiters.forEach { $0.resume() }
        exitWaiters = []
    }

    /// Sends `request` (a JSON object) and returns the answer's fields.
    /// `what` names the request in messages ("`train` for round 3").
    func call(_ request: [String: JSONValue], what: String, timeout: Duration? = nil) async throws(LearnerError) -> [String: JSONValue] {
        await takeTurn()
        defer { releaseTurn() }
        if let ended { throw ended }
        guard let write else { throw LearnerError("\(name) is not running") }
        let id = nextID
        nextID += 1
        open = (id, what, nil, nil)
        let limit = timeout ?? self.timeout
        let timer = Task { [weak self] in
            try? await Task.sleep(for: limit)
            guard !Task.isCancelled else { return }
            await self?.timedOut(id, after: limit)
        }
        defer { timer.cancel() }
        do {
            var line = try JSONEncoder().encode(JSONValue.object(request))
            line.append(UInt8(ascii: "\n"))
            try await write(Array(line))
        } catch {
            // The process exited (a broken pipe): its exit says why.
            await waitForExit(upTo: .seconds(2))
            let why = ended ?? LearnerError("\(name) stopped reading its input before \(what)")
            finish(why)
        }
        do {
            return try await withCheckedThrowingContinuation { (c: CheckedContinuation<[String: JSONValue], any Error>) in
                if let result = open?.result {
                    open = nil
                    c.resume(with: result)
                } else if let ended {
                    open = nil
                    c.resume(throwing: ended)
                } else {
                    open?.waiter = c
                }
            }
        } catch let error as LearnerError {
            throw error
        } catch {
            throw LearnerError("\(name) failed \(what): \(error)")
        }
    }

    private func takeTurn() async {
        if !busy {
            busy = true
            return
        }
        await withCheckedContinuation { turn.append($0) }
    }

    private func releaseTurn() {
        if turn.isEmpty { busy = false } else { turn.removeFirst().resume() }
    }

    private func deliver(_ result: Result<[String: JSONValue], LearnerError>) {
        guard var o = open else { return }
        if let waiter = o.waiter {
            open = nil
            waiter.resume(with: result.mapError { $0 as any Error })
        } else {
            o.result = result
            open = o
        }
    }

    private func received(_ line: [UInt8]) {
        guard ended == nil else { return }
        guard let o = open, o.result == nil else {
            protocolBroken("printed a line on stdout while no request was open ('\(Self.excerpt(line))'); print logs to stderr")
            return
        }
        guard let object = JSONValue.object(parsing: line) else {
            protocolBroken("answered \(o.what) with '\(Self.excerpt(line))', which is not a JSON object on one line; print logs to stderr")
            return
        }
        if object["ok"] == .bool(false) {
            let why = object["error"]?.string ?? "no reason given"
            deliver(.failure(LearnerError("\(name) failed \(o.what): \(why)")))
            return
        }
        deliver(.success(object))
    }

    /// Ends the process for a protocol violation.
    private func protocolBroken(_ what: String) {
        finish(LearnerError("\(name) \(what)\(open.map { " (during \($0.what))" } ?? ""); it was stopped"))
        kill?()
    }

    private func timedOut(_ id: Int, after limit: Duration) {
        guard let o = open, o.id == id, o.result == nil, ended == nil else { return }
        finish(LearnerError("\(name) did not answer \(o.what) within \(Self.secondsText(limit)) s; it was stopped (raise 'learner.timeout_seconds' if it needs longer)\(lastLogLine())"))
        kill?()
    }

    private func outputEnded() {
        outputClosed = true
    }

    private func exited(_ status: String) {
        exitStatus = status
        finish(LearnerError("\(name) exited \(status)\(open.map { " during \($0.what)" } ?? "")\(lastLogLine())"))
        exitWaiters.forEach { $0.resume() }
        exitWaiters = []
    }

    /// Records why no more answers come, and fails the open request with it.
    private func finish(_ error: LearnerError) {
        if ended == nil { ended = error }
        deliver(.failure(ended!))
    }

    private func waitForExit(upTo limit: Duration) async {
        guard exitStatus == nil else { return }
        let waker = Task { [weak self] in
            try? await Task.sleep(for: limit)
            await self?.wakeExitWaiters()
        }
        await withCheckedContinuation { exitWaiters.append($0) }
        waker.cancel()
    }

    private func wakeExitWaiters() {
        exitWaiters.forEach { $0.resume() }
        exitWaiters = []
    }

    /// "; its last log line: …" from the learner's standard error, or nothing.
    nonisolated func lastLogLine() -> String {
        guard let text = try? String(contentsOfFile: logPath, encoding: .utf8),
              let last = text.split(separator: "\n").last(where: { !$0.trimmingCharacters(in: .whitespaces).isEmpty }) else { return "" }
        return "; its last log line: \(last.prefix(300)) (log: \(logPath))"
    }

    /// Whole seconds without a fraction, else one decimal.
    static func secondsText(_ d: Duration) -> String {
        let s = Double(d.components.seconds) + Double(d.components.attoseconds) * 1e-18
        return s == s.rounded() ? String(Int(s)) : String(format: "%.1f", s)
    }

    static func excerpt(_ line: [UInt8]) -> String {
        let text = String(decoding: line.prefix(80), as: UTF8.self)
        return line.count > 80 ? text + "…" : text
    }

    /// Asks the worker to stop (`shutdown`), closes its input, and waits for
    /// it to exit; a worker that does not is killed. Safe to call twice.
    func shutdown() async {
        if ended == nil, write != nil {
            _ = try? await call(["verb": .string("shutdown")], what: "`shutdown`", timeout: .seconds(5))
        }
        if exitStatus == nil {
            await waitForExit(upTo: .seconds(5))
        }
        if exitStatus == nil { kill?() }
        await task?.value
        finish(LearnerError("\(name) was shut down"))
    }

    /// How the process ended, once it has ("with status 0", "killed by signal 9").
    var status: String? { exitStatus }
}

/// Cuts a byte stream into lines like `LineSplitter`, but refuses to hold a
/// line longer than `limit` (a worker could otherwise make the peer buffer
/// without end): once one is seen, `overflowed` is set and nothing more is returned.
struct BoundedLineSplitter {
    let limit: Int
    private var pending: [UInt8] = []
    private(set) var overflowed = false

    init(limit: Int) { self.limit = limit }

    mutating func append(_ bytes: [UInt8]) -> [[UInt8]] {
        guard !overflowed else { return [] }
        var lines: [[UInt8]] = []
        var start = bytes.startIndex
        for i in bytes.indices where bytes[i] == UInt8(ascii: "\n") {
            pending += bytes[start..<i]
            if !pending.isEmpty { lines.append(pending) }
            pending = []
            start = i + 1
        }
        pending += bytes[start...]
        if pending.count > limit || lines.contains(where: { $0.count > limit }) {
            overflowed = true
            return []
        }
        return lines
    }
}
