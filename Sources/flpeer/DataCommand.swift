import ArgumentParser
import FLCore
import Foundation

struct DataCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "data",
        abstract: "Prepare data sets for a consortium.",
        subcommands: [SplitCommand.self]
    )
}

struct SplitCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "split",
        abstract: "Split one CSV into a held-out test CSV and label-skewed parts, one per institution.",
        discussion: "Writes DIR/test.csv and DIR/part-1.csv … DIR/part-N.csv, and prints each part's label histogram."
    )

    @Option(help: "CSV file with a header row and a label column.")
    var data: String

    @Option(help: "Name of the label column.")
    var label: String = "label"

    @Option(help: "Number of institutions.")
    var parts: Int

    @Option(help: "Dirichlet concentration: small values give strong label skew.")
    var alpha: Double = 0.5

    @Option(help: "Random seed.")
    var seed: UInt64 = 0

    @Option(help: "Fraction of rows held out as the common test set (stratified).")
    var testFraction: Double = 0.2

    @Option(help: "Smallest allowed part, in rows.")
    var minPartSize: Int = 10

    @Option(help: "Output directory (created if missing).")
    var out: String

    func validate() throws {
        if parts < 1 { throw ValidationError("--parts must be at least 1, got \(parts).") }
        if !(alpha > 0) { throw ValidationError("--alpha must be positive, got \(alpha).") }
        if !(testFraction >= 0 && testFraction < 1) { throw ValidationError("--test-fraction must be in [0, 1), got \(testFraction).") }
        if minPartSize < 1 { throw ValidationError("--min-part-size must be at least 1, got \(minPartSize).") }
    }

    func run() async throws {
        let dataset: Dataset
        do {
            dataset = try CSVLoader.load(path: data, labelColumn: label)
        } catch {
            throw CLIError("\(error)")
        }
        let (rest, test) = Splitting.stratified(dataset, fraction: testFraction, seed: seed)
        let partition: [[Int]]
        do {
            partition = try Splitting.dirichlet(dataset, indices: rest, parts: parts, alpha: alpha, minPartSize: minPartSize, seed: seed)
        } catch {
            throw CLIError("cannot split \(data): \(error)")
        }
        do {
            try FileManager.default.createDirectory(atPath: out, withIntermediateDirectories: true)
            try write(dataset.subset(test), to: "\(out)/test.csv")
            for (i, rows) in partition.enumerated() {
                try write(dataset.subset(rows), to: "\(out)/part-\(i + 1).csv")
            }
        } catch {
            throw CLIError("cannot write to \(out): \(error.localizedDescription)")
        }
        let names = dataset.classNames
        let width = max(6, names.map(\.count).max() ?? 1)
        func row(_ title: String, _ counts: [Int]) -> String {
            title.padding(toLength: 10, withPad: " ", startingAt: 0)
                + counts.map { String($0).leftPad(width) }.joined(separator: " ")
                + String(counts.reduce(0, +)).leftPad(8)
        }
        print("label".padding(toLength: 10, withPad: " ", startingAt: 0) + names.map { $0.leftPad(width) }.joined(separator: " ") + "total".leftPad(8))
        for (i, rows) in partition.enumerated() {
            print(row("part-\(i + 1)", dataset.subset(rows).classHistogram()))
        }
        print(row("test", dataset.subset(test).classHistogram()))
        print("wrote \(parts) parts and test.csv to \(out)")
    }

    private func write(_ d: Dataset, to path: String) throws {
        try CSVLoader.render(d).write(toFile: path, atomically: true, encoding: .utf8)
    }
}

extension String {
    func leftPad(_ n: Int) -> String { count >= n ? self : String(repeating: " ", count: n - count) + self }
}
