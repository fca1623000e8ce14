import ArgumentParser
import Dispatch
import FLPeer
import Foundation
import Logging

struct JoinCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "join",
        abstract: "Run this institution's peer until the training plan's rounds end.",
        discussion: """
            Prints one line per round (validation accuracy and loss, members heard, trimming, bytes in and out, seconds), \
            writes the final model to STATE_DIR/model.safetensors and a summary to STATE_DIR/summary.json. \
            SIGINT or SIGTERM stop the peer between steps; every ledger entry written so far stays intact. \
            Exit 0 on success, 1 with one sentence otherwise.
            """
    )

    @Option(help: "The peer's YAML file.")
    var config: String

    @Option(help: "Log level on standard error: trace, debug, info, notice, warning, error (default: $FLPEER_LOG_LEVEL or warning).")
    var logLevel: String = ProcessInfo.processInfo.environment["FLPEER_LOG_LEVEL"] ?? "warning"

    func run() async throws {
        let peer: PeerConfig
        do {
            peer = try PeerConfig.load(config)
        } catch {
            throw CLIError("\(error)")
        }
        let level = Logger.Level(rawValue: logLevel) ?? .warning
        var logger = Logger(label: "flpeer") { label in
            var h = StreamLogHandler.standardError(label: label)
            h.logLevel = level
            return h
        }
        logger.logLevel = level
        logger[metadataKey: "peer"] = "\(peer.id)"
        let n = peer.network
        FileHandle.standardOutput.write(Data(("\(peer.id): joining '\(n.consortium)' (\(n.members.count) members), \(n.plan.rounds) rounds of \(n.plan.model.rawValue) with \(n.plan.rule)\n").utf8))
        let engine = RoundEngine(config: peer, logger: logger) { line in
            FileHandle.standardOutput.write(Data((line + "\n").utf8))
        }
        let task = Task { try await engine.run() }
        let stop = StopSignals { signal in
            printErr("\(peer.id): \(signal) received; stopping after the current step")
            task.cancel()
        }
        defer { stop.cancel() }
        do {
            let summary = try await task.value
            let final = summary.rounds.last
            print(String(format: "%@: done: %d rounds, %.3f s per round, final validation accuracy %.4f; model %@, ledger %@",
                         peer.id, summary.rounds.count, summary.secondsPerRound, final?.validationAccuracy ?? 0, summary.modelFile, summary.ledgerFile))
        } catch is CancellationError {
            throw CLIError("\(peer.id) stopped by \(stop.received ?? "a signal") before the plan's end; the ledger at \(peer.stateDirectory)/ledger.sqlite keeps every entry written so far")
        } catch {
            throw CLIError("\(peer.id): \(error)")
        }
    }
}

/// SIGINT and SIGTERM handlers that call `handler` once with the signal's name.
final class StopSignals: @unchecked Sendable {
    private var sources: [DispatchSourceSignal] = []
    private let lock = NSLock()
    private var name: String?

    var received: String? {
        lock.lock()
        defer { lock.unlock() }
        return name
    }

    init(_ handler: @escaping @Sendable (String) -> Void) {
        for (sig, n) in [(SIGINT, "SIGINT"), (SIGTERM, "SIGTERM")] {
            signal(sig, SIG_IGN)
            let source = DispatchSource.makeSignalSource(signal: sig, queue: .global())
            source.setEventHandler { [weak self] in
                guard let self else { return }
                self.lock.lock()
                let first = self.name == nil
                if first { self.name = n }
                self.lock.unlock()
                if first { handler(n) }
            }
            source.resume()
            sources.append(source)
        }
    }

    func cancel() {
        for s in sources { s.cancel() }
    }
}
