import ArgumentParser
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
            The peer runs as a service: SIGINT or SIGTERM start a graceful shutdown that stops it at its next step, closes \
            its connections and leaves every ledger entry written so far intact. \
            Exit 0 on success, 1 with one sentence otherwise (also when a signal stopped it before the plan's end).
            """
    )

    @Option(help: "The peer's YAML file.")
    var config: String

    @Option(help: "Log level on standard error: trace, debug, info, notice, warning, error (default: $FLPEER_LOG_LEVEL or warning).")
    var logLevel: String = ProcessInfo.processInfo.environment["FLPEER_LOG_LEVEL"] ?? "warning"

    func run() async throws {
        // A reader of this peer's output that goes away (a demo being
        // interrupted) must not kill it mid-round: writes just fail.
        signal(SIGPIPE, SIG_IGN)
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
        try? FileHandle.standardOutput.write(contentsOf: Data(("\(peer.id): joining '\(n.consortium)' (\(n.members.count) members), \(n.plan.rounds) rounds of \(peer.learner.map { "`\($0.command.joined(separator: " "))`" } ?? n.plan.model.rawValue) with \(n.plan.rule)\n").utf8))
        let engine = RoundEngine(config: peer, logger: logger) { line in
            try? FileHandle.standardOutput.write(contentsOf: Data((line + "\n").utf8))
        }
        let service = PeerService(engine: engine) {
            printErr("\(peer.id): shutdown requested; stopping after the current step")
        }
        do {
            try await SignalShutdown.run(service, logger: logger)
        } catch let stop as Interrupted {
            throw CLIError("\(peer.id) stopped by \(stop.signal) before the plan's end; the ledger at \(peer.stateDirectory)/ledger.sqlite keeps every entry written so far")
        } catch {
            throw CLIError("\(peer.id): \(error)")
        }
        guard let summary = service.summary else { throw CLIError("\(peer.id): the peer stopped without a summary") }
        guard let final = summary.rounds.last else {
            print("\(peer.id): done: model \(summary.modelFile), ledger \(summary.ledgerFile)")
            return
        }
        print(String(format: "%@: done: %d rounds, %.3f s per round, final validation accuracy %.4f; model %@, ledger %@",
                     peer.id, summary.rounds.count, summary.secondsPerRound, final.validationAccuracy, summary.modelFile, summary.ledgerFile))
    }
}
