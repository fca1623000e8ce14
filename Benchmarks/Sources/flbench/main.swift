// flbench: release-mode benchmarks of FLCore. Prints one JSON object per run
// so the scripts in benchmarks/ can put the figures beside their anchors.
//
//   flbench aggregate [--n 10] [--d 10000000] [--beta 0.2] [--runs 5]
//   flbench memory [--n 10] [--d 10000000]
//   flbench transfer [--mb 100] [--runs 3]
//   flbench ledger [--entries 5000]
//   flbench train [--hidden 64] [--batch 32] [--epochs 20] [--data PATH]
//   flbench score [--members 10] [--rows 180] [--hidden 0] [--runs 5] [--data PATH]
import FLCore
import Foundation

func argument(_ name: String, _ fallback: String) -> String {
    let args = CommandLine.arguments
    if let i = args.firstIndex(of: "--\(name)"), i + 1 < args.count { return args[i + 1] }
    return fallback
}

func seconds(_ body: () throws -> Void) rethrows -> Double {
    let clock = ContinuousClock()
    let start = clock.now
    try body()
    let d = start.duration(to: clock.now)
    return Double(d.components.seconds) + Double(d.components.attoseconds) * 1e-18
}

func median(_ xs: [Double]) -> Double {
    let s = xs.sorted()
    return s.count % 2 == 1 ? s[s.count / 2] : (s[s.count / 2 - 1] + s[s.count / 2]) / 2
}

/// Peak resident set size of this process so far, in bytes.
func peakRSS() -> Int {
    var usage = rusage()
    getrusage(RUSAGE_SELF.rawValue, &usage)
    return usage.ru_maxrss * 1024
}

/// Current resident set size, in bytes (from /proc/self/statm).
func currentRSS() -> Int {
    guard let text = try? String(contentsOfFile: "/proc/self/statm", encoding: .utf8) else { return 0 }
    let fields = text.split(separator: " ")
    return (Int(fields[1]) ?? 0) * Int(sysconf(Int32(_SC_PAGESIZE)))
}

func printJSON(_ object: [String: Any]) {
    let data = try! JSONSerialization.data(withJSONObject: object, options: [.sortedKeys, .withoutEscapingSlashes])
    print(String(decoding: data, as: UTF8.self))
}

func aggregateBenchmark() throws {
    let n = Int(argument("n", "10"))!
    let d = Int(argument("d", "10000000"))!
    let beta = Double(argument("beta", "0.2"))!
    let runs = Int(argument("runs", "5"))!
    let baseline = currentRSS()
    var rng = SeededGenerator(seed: 42)
    var inputs: [[Float]] = []
    for _ in 0..<n {
        inputs.append([Float](unsafeUninitializedCapacity: d) { buf, count in
            for j in 0..<d { buf[j] = Float(Int64(bitPattern: rng.next()) >> 40) * 0x1p-20 }
            count = d
        })
    }
    let afterInputs = currentRSS()
    // Every timed variant writes into an output allocated (and touched) once
    // beforehand, as a round engine reuses its buffer; the "allocating"
    // variant adds the cost of a fresh 4·D-byte output each call.
    var sumOut = [Float](repeating: 0, count: d)
    var trimOut = [Float](repeating: 0, count: d)
    var sumTimes: [Double] = [], trimTimes: [Double] = [], countTimes: [Double] = [], allocTimes: [Double] = []
    var checksum: Float = 0
    for _ in 0..<runs {
        sumTimes.append(seconds {
            Aggregator.withInputPointers(inputs) { ptrs in
                sumOut.withUnsafeMutableBufferPointer { Aggregator.streamingSum(ptrs, out: $0) }
            }
        })
        checksum += sumOut[d / 2]
        trimTimes.append(try seconds {
            _ = try Aggregator.aggregate(inputs, rule: .trimmedMean(beta: beta), countTrimmed: false, into: &trimOut)
        })
        checksum += trimOut[d / 3]
        var stats: AggregationStats?
        countTimes.append(try seconds {
            stats = try Aggregator.aggregate(inputs, rule: .trimmedMean(beta: beta), countTrimmed: true, into: &trimOut)
        })
        checksum += Float(stats!.trimmed[0] % 7)
        var r: AggregationResult?
        allocTimes.append(try seconds { r = try Aggregator.aggregate(inputs, rule: .trimmedMean(beta: beta), countTrimmed: false) })
        checksum += r!.values[d / 4]
        r = nil
    }
    let sum = median(sumTimes), trim = median(trimTimes), counted = median(countTimes), allocating = median(allocTimes)
    let bytesIn = Double(n * d * 4)
    printJSON([
        "benchmark": "aggregate", "n": n, "d": d, "beta": beta, "runs": runs,
        "trim_per_side": AggregationRule.trimCount(beta: beta, n: n),
        "streaming_sum_s": sum, "trimmed_mean_s": trim, "trimmed_mean_with_counts_s": counted,
        "trimmed_mean_allocating_s": allocating,
        "trimmed_over_sum": trim / sum, "counted_over_sum": counted / sum, "allocating_over_sum": allocating / sum,
        "streaming_sum_GBps": bytesIn / sum / 1e9, "trimmed_mean_GBps": bytesIn / trim / 1e9,
        "inputs_MB": bytesIn / 1e6, "output_MB": Double(d * 4) / 1e6,
        "rss_before_inputs_MB": Double(baseline) / 1e6, "rss_after_inputs_MB": Double(afterInputs) / 1e6,
        "peak_rss_MB": Double(peakRSS()) / 1e6,
        // Peak beyond the inputs: the two reused outputs plus the allocating variant's output.
        "peak_over_inputs_MB": Double(peakRSS() - afterInputs) / 1e6,
        "checksum": Double(checksum),
    ])
}

/// Peak memory of one trimmed-mean aggregation alone: generates the inputs,
/// runs one allocating aggregation with trim counts, reports peak RSS above
/// the resident size after the inputs were built.
func memoryBenchmark() throws {
    let n = Int(argument("n", "10"))!
    let d = Int(argument("d", "10000000"))!
    var rng = SeededGenerator(seed: 42)
    var inputs: [[Float]] = []
    for _ in 0..<n {
        inputs.append([Float](unsafeUninitializedCapacity: d) { buf, count in
            for j in 0..<d { buf[j] = Float(Int64(bitPattern: rng.next()) >> 40) * 0x1p-20 }
            count = d
        })
    }
    let afterInputs = currentRSS()
    let peakBefore = peakRSS()
    let r = try Aggregator.aggregate(inputs, rule: .trimmedMean(beta: 0.2), countTrimmed: true)
    let peak = peakRSS()
    printJSON([
        "benchmark": "memory", "n": n, "d": d, "inputs_MB": Double(n * d * 4) / 1e6, "output_MB": Double(d * 4) / 1e6,
        "rss_after_inputs_MB": Double(afterInputs) / 1e6, "peak_before_aggregation_MB": Double(peakBefore) / 1e6,
        "peak_rss_MB": Double(peak) / 1e6, "aggregation_added_MB": Double(peak - afterInputs) / 1e6,
        "checksum": Double(r.values[d / 2]),
    ])
}

func trainBenchmark() throws {
    let hidden = Int(argument("hidden", "64"))!
    let batch = Int(argument("batch", "32"))!
    let epochs = Int(argument("epochs", "20"))!
    let path = argument("data", "data/digits.csv")
    let raw = try CSVLoader.load(path: path)
    let data = Standardizer(fitting: raw).transform(raw)
    let spec = ModelSpec(kind: .mlp, inputs: data.featureCount, classes: data.classCount, hidden: [hidden])
    var times: [Double] = []
    var samples = 0
    var lastLoss: Float = 0
    for run in 0..<5 {
        var net = Network(spec: spec, seed: UInt64(run))
        let config = TrainingConfig(epochs: epochs, batchSize: batch, optimizer: .sgd(learningRate: 0.01, momentum: 0.9), l2: 1e-4, seed: UInt64(run))
        var summary: TrainingSummary?
        times.append(seconds { summary = Trainer.train(&net, on: data, config: config) })
        samples = summary!.samples
        lastLoss = summary!.epochLosses.last!
    }
    let t = median(times)
    printJSON([
        "benchmark": "train", "model": spec.description, "batch": batch, "epochs": epochs, "rows": data.rows,
        "samples_per_run": samples, "median_s": t, "samples_per_s": Double(samples) / t, "final_loss": Double(lastLoss),
    ])
}

switch CommandLine.arguments.dropFirst().first {
case "aggregate": try aggregateBenchmark()
case "train": try trainBenchmark()
case "memory": try memoryBenchmark()
case "transfer": try await transferBenchmark()
case "ledger": try ledgerBenchmark()
case "score": try scoreBenchmark()
case "transfer-receive": try await transferReceive()
default:
    FileHandle.standardError.write(Data("usage: flbench aggregate|train|memory|transfer|ledger|score [options]\n".utf8))
    exit(64)
}
