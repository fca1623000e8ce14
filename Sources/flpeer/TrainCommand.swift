import ArgumentParser
import FLCore
import Foundation

struct TrainCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "train",
        abstract: "Train centrally on one CSV (80/20 stratified split) and print the test metrics."
    )

    @Option(help: "CSV file with a header row and a label column.")
    var data: String

    @Option(help: "Name of the label column.")
    var label: String = "label"

    @Option(help: "Model: logreg or mlp.")
    var model: ModelSpec.Kind = .logreg

    @Option(help: "Hidden layer widths for mlp, comma-separated (e.g. 64 or 128,64).")
    var hidden: String = "64"

    @Option(help: "Training epochs (default: 60).")
    var epochs: Int?

    @Option(help: "Optimizer: sgd (momentum 0.9; default for logreg) or adam (default for mlp).")
    var optimizer: OptimizerName?

    @Option(help: "Learning rate (default: 0.03 for logreg, 0.003 for mlp).")
    var lr: Float?

    @Option(help: "L2 penalty on weights (default: 0.003 for logreg, 0.0001 for mlp).")
    var l2: Float?

    @Option(help: "Minibatch size.")
    var batchSize: Int = 32

    @Option(help: "Random seed for the split, initial weights and batch order.")
    var seed: UInt64 = 0

    @Flag(help: "Print one JSON object instead of a table.")
    var json = false

    func validate() throws {
        if let epochs, epochs < 1 { throw ValidationError("--epochs must be at least 1, got \(epochs).") }
        if let lr, !(lr > 0 && lr.isFinite) { throw ValidationError("--lr must be a positive number, got \(lr).") }
        if let l2, !(l2 >= 0 && l2.isFinite) { throw ValidationError("--l2 must be zero or positive, got \(l2).") }
        if batchSize < 1 { throw ValidationError("--batch-size must be at least 1, got \(batchSize).") }
        if model == .mlp { _ = try parseHidden(hidden) }
    }

    func run() async throws {
        let dataset: Dataset
        do {
            dataset = try CSVLoader.load(path: data, labelColumn: label)
        } catch {
            throw CLIError("\(error)")
        }
        var config = TrainingConfig.defaults(for: model, seed: seed)
        if let epochs { config.epochs = epochs }
        if let l2 { config.l2 = l2 }
        config.batchSize = batchSize
        if optimizer != nil || lr != nil {
            let rate: Float
            switch config.optimizer {
            case .adam(let r), .sgd(let r, _): rate = lr ?? r
            }
            let useSGD = optimizer == .sgd || (optimizer == nil && { if case .sgd = config.optimizer { return true } else { return false } }())
            config.optimizer = useSGD ? .sgd(learningRate: rate, momentum: 0.9) : .adam(learningRate: rate)
        }
        let widths = model == .mlp ? try parseHidden(hidden) : []
        if !json {
            print("training \(model.rawValue) on \(data): \(dataset.rows) rows, \(dataset.featureCount) features, \(dataset.classCount) classes")
        }
        let quiet = json
        let result = CentralizedTraining.run(data: dataset, kind: model, hidden: widths, config: config) { epoch, loss in
            if !quiet && (epoch % 10 == 0 || epoch == config.epochs) {
                printErr("epoch \(epoch)/\(config.epochs)  loss \(String(format: "%.4f", loss))")
            }
        }
        if json {
            print(try jsonSummary(result, dataset: dataset))
        } else {
            print(table(result, dataset: dataset))
        }
    }

    func jsonSummary(_ r: CentralizedTraining.Result, dataset: Dataset) throws -> String {
        let m = r.metrics
        var obj: [String: Any] = [
            "data": data, "model": r.spec.description, "seed": seed, "epochs": r.config.epochs,
            "train_rows": r.trainRows, "test_rows": r.testRows,
            "accuracy": m.accuracy, "macro_precision": m.macroPrecision, "macro_recall": m.macroRecall,
            "macro_f1": m.macroF1, "log_loss": m.logLoss, "confusion_matrix": m.confusion,
            "classes": dataset.classNames, "precision": m.precision, "recall": m.recall, "f1": m.f1,
            "seconds": r.seconds,
        ]
        if let auc = m.rocAUC { obj["roc_auc"] = auc }
        let bytes = try JSONSerialization.data(withJSONObject: obj, options: [.sortedKeys, .withoutEscapingSlashes])
        return String(decoding: bytes, as: UTF8.self)
    }

    func table(_ r: CentralizedTraining.Result, dataset: Dataset) -> String {
        let m = r.metrics
        var s = "model \(r.spec)  train \(r.trainRows) rows  test \(r.testRows) rows  \(String(format: "%.2f", r.seconds)) s\n"
        s += String(format: "accuracy   %.4f\nmacro F1   %.4f\nlog loss   %.4f\n", m.accuracy, m.macroF1, m.logLoss)
        if let auc = m.rocAUC { s += String(format: "ROC-AUC    %.4f\n", auc) }
        s += "\nclass        precision  recall  f1      support\n"
        for k in 0..<m.classes {
            let name = dataset.classNames[k].padding(toLength: 12, withPad: " ", startingAt: 0)
            s += String(format: "%@ %.4f     %.4f  %.4f  %d\n", name, m.precision[k], m.recall[k], m.f1[k], m.confusion[k].reduce(0, +))
        }
        return s
    }
}

/// Parses "64" or "128,64" into widths.
func parseHidden(_ text: String) throws -> [Int] {
    let parts = text.split(separator: ",").map { Int($0.trimmingCharacters(in: .whitespaces)) }
    guard !parts.isEmpty, parts.allSatisfy({ ($0 ?? 0) > 0 }) else {
        throw ValidationError("--hidden must be positive layer widths separated by commas (e.g. 64 or 128,64), got '\(text)'.")
    }
    return parts.map { $0! }
}

extension ModelSpec.Kind: ExpressibleByArgument {}

/// Optimizer choice on the command line.
enum OptimizerName: String, ExpressibleByArgument, CaseIterable {
    case adam, sgd
}

/// A runtime failure reported as one sentence, exit code 1.
struct CLIError: Error, CustomStringConvertible {
    let description: String
    init(_ message: String) { description = message }
}

/// Writes a line to standard error (progress that must not pollute --json output).
func printErr(_ line: String) {
    try? FileHandle.standardError.write(contentsOf: Data((line + "\n").utf8))
}
