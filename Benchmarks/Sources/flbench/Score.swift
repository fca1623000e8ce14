import FLCore
import Foundation

/// `flbench score [--members 10] [--rows 180] [--hidden 0] [--runs 5]`: one
/// round's credit game as a peer plays it (exact Shapley over `members`
/// trained updates, trimmed mean β 0.2, class losses on `rows` digits rows),
/// and the evaluator's cost per candidate.
func scoreBenchmark() throws {
    let members = Int(argument("members", "10"))!
    let rows = Int(argument("rows", "180"))!
    let hidden = Int(argument("hidden", "0"))!
    let runs = Int(argument("runs", "5"))!
    let raw = try CSVLoader.load(path: argument("data", "data/digits.csv"))
    let all = Standardizer(fitting: raw).transform(raw)
    let k = all.featureCount
    let data = Dataset(featureNames: all.featureNames, labelName: all.labelName, classNames: all.classNames,
                       features: Array(all.features.prefix(rows * k)), labels: Array(all.labels.prefix(rows)))
    let spec = ModelSpec(kind: hidden == 0 ? .logreg : .mlp, inputs: k, classes: all.classCount, hidden: hidden == 0 ? [] : [hidden])
    let share = min(100, all.rows / members)  // each member trains on its own rows
    let updates = (0..<members).map { m -> [Float] in
        var net = Network(spec: spec, seed: 1)
        let part = Dataset(featureNames: all.featureNames, labelName: all.labelName, classNames: all.classNames,
                           features: Array(all.features[(m * share * k)..<((m + 1) * share * k)]), labels: Array(all.labels[(m * share)..<((m + 1) * share)]))
        _ = Trainer.train(&net, on: part, config: TrainingConfig(epochs: 2, batchSize: 32, optimizer: .sgd(learningRate: 0.01, momentum: 0.9), l2: 1e-4, seed: UInt64(m)))
        return net.parameters
    }
    let classes = Array(0..<all.classCount)
    var evaluator = ClassLossEvaluator(network: Network(spec: spec, seed: 1), data: data, classes: classes)
    var perCandidate: [Double] = [], game: [Double] = []
    var checksum = 0.0
    for _ in 0..<runs {
        perCandidate.append(seconds { for u in updates { checksum += evaluator.losses(u)[0] } } / Double(members))
        var buffer = [Float]()
        game.append(seconds {
            let v = ContributionScorer.shapley(players: members, dimensions: classes.count, seed: 1) { coalition in
                _ = try? Aggregator.aggregate(coalition.map { updates[$0] }, rule: .trimmedMean(beta: 0.2), countTrimmed: false, into: &buffer)
                return evaluator.losses(buffer)
            }
            checksum += v.values[0][0]
        })
    }
    printJSON(["benchmark": "score", "model": spec.description, "members": members, "rows": rows,
               "evaluate_us": median(perCandidate) * 1e6, "exact_shapley_ms": median(game) * 1e3, "checksum": checksum])
}
