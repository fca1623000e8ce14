import FLCore
import FLLedger
import Foundation

extension RoundEngine.Session {
    var modelPath: String { "\(config.stateDirectory)/model.safetensors" }
    var summaryPath: String { "\(config.stateDirectory)/summary.json" }

    /// Writes model.safetensors from the model saved with this peer's last aggregate.
    func writeFinalModel() throws {
        guard let bytes = try store.localState("model") else {
            throw RoundError("\(store.path) holds no saved model to write to \(modelPath)")
        }
        do {
            try Data(bytes).write(to: URL(fileURLWithPath: modelPath), options: .atomic)
        } catch {
            throw RoundError("the final model could not be written to \(modelPath) (\(error.localizedDescription)); it is kept in \(store.path): free the space or fix the folder's permissions and run join again, which writes it without the other members")
        }
    }

    /// A restart after the plan's last round was recorded: writes the final
    /// model (and the summary, if it is missing) from the local state,
    /// without round 0 or any neighbour. Nil when rounds remain.
    func finishOffline(featureCount: Int?, classes: [String]) throws -> RunSummary? {
        guard let last = try store.entries(author: config.id).last(where: { $0.header.kind == .aggregate }), last.header.round >= UInt64(plan.rounds),
              let scaler = try store.localState("standardizer") else { return nil }
        try writeFinalModel()
        engine.progress("the plan's \(plan.rounds) rounds are already recorded in \(store.path); wrote \(modelPath) from its saved state (no other member needed)")
        if let saved = try? Data(contentsOf: URL(fileURLWithPath: summaryPath)), let summary = try? JSONDecoder().decode(RunSummary.self, from: saved) {
            return summary
        }
        guard let standardizer = try? JSONDecoder().decode(Standardizer?.self, from: Data(scaler)) else {
            throw RoundError("\(store.path) holds an unreadable saved standardiser; start from an empty state directory")
        }
        let spec = featureCount.map { ModelSpec(kind: plan.model, inputs: $0, classes: classes.count, hidden: plan.model == .mlp ? plan.hidden : []) }
        let summary = RunSummary(id: config.id, rounds: [], secondsPerRound: 0, bytesIn: 0, bytesOut: 0, modelFile: modelPath, ledgerFile: store.path,
                                 model: spec, classes: classes, standardizer: standardizer, cpuSeconds: processCPUSeconds(), roundCPUSeconds: 0)
        try writeSummary(summary)
        return summary
    }

    func writeSummary(_ summary: RunSummary) throws {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        try encoder.encode(summary).write(to: URL(fileURLWithPath: summaryPath), options: .atomic)
    }
}
