/// Metrics of a classifier on a labelled test set.
public struct ClassificationMetrics: Sendable, Equatable, Codable {
    public let classes: Int
    /// confusion[t][p]: rows of true class t predicted as p.
    public let confusion: [[Int]]
    public let accuracy: Double
    public let precision: [Double]
    public let recall: [Double]
    public let f1: [Double]
    public let macroPrecision: Double
    public let macroRecall: Double
    public let macroF1: Double
    /// Mean negative log-likelihood of the true class (probabilities clipped at 1e-15).
    public let logLoss: Double
    /// Area under the ROC curve (two classes only; class 1 is positive).
    public let rocAUC: Double?

    /// Computes all metrics from true labels and predicted class probabilities (rows × classes).
    public init(labels: [Int], probabilities: [Float], classes: Int) {
        precondition(probabilities.count == labels.count * classes, "probabilities do not match labels")
        self.classes = classes
        let n = labels.count
        var confusion = [[Int]](repeating: [Int](repeating: 0, count: classes), count: classes)
        var nll = 0.0
        for r in 0..<n {
            var best = 0
            for k in 1..<classes where probabilities[r * classes + k] > probabilities[r * classes + best] { best = k }
            confusion[labels[r]][best] += 1
            nll += Self.negativeLogLikelihood(probabilities[r * classes + labels[r]])
        }
        self.confusion = confusion
        let correct = (0..<classes).reduce(0) { $0 + confusion[$1][$1] }
        accuracy = n == 0 ? 0 : Double(correct) / Double(n)
        var p = [Double](), rc = [Double](), f = [Double]()
        for k in 0..<classes {
            let tp = Double(confusion[k][k])
            let predicted = Double((0..<classes).reduce(0) { $0 + confusion[$1][k] })
            let actual = Double(confusion[k].reduce(0, +))
            let pk = predicted > 0 ? tp / predicted : 0
            let rk = actual > 0 ? tp / actual : 0
            p.append(pk)
            rc.append(rk)
            f.append(pk + rk > 0 ? 2 * pk * rk / (pk + rk) : 0)
        }
        precision = p
        recall = rc
        f1 = f
        macroPrecision = p.reduce(0, +) / Double(classes)
        macroRecall = rc.reduce(0, +) / Double(classes)
        macroF1 = f.reduce(0, +) / Double(classes)
        logLoss = n == 0 ? 0 : nll / Double(n)
        rocAUC = classes == 2 ? ClassificationMetrics.auc(labels: labels, scores: (0..<n).map { Double(probabilities[$0 * 2 + 1]) }) : nil
    }

    /// ROC-AUC by the rank-sum (Mann–Whitney) formula, averaging ranks over
    /// ties; nil when one class is absent.
    public static func auc(labels: [Int], scores: [Double]) -> Double? {
        let positives = labels.filter { $0 == 1 }.count
        let negatives = labels.count - positives
        guard positives > 0, negatives > 0 else { return nil }
        let order = scores.indices.sorted { scores[$0] < scores[$1] }
        var rankSumPositive = 0.0
        var i = 0
        while i < order.count {
            var j = i
            while j + 1 < order.count && scores[order[j + 1]] == scores[order[i]] { j += 1 }
            let averageRank = Double(i + j) / 2 + 1
            for t in i...j where labels[order[t]] == 1 { rankSumPositive += averageRank }
            i = j + 1
        }
        let p = Double(positives), q = Double(negatives)
        return (rankSumPositive - p * (p + 1) / 2) / (p * q)
    }
}

extension ClassificationMetrics {
    /// −log p of the true class's probability, p clipped to [1e-15, 1].
    static func negativeLogLikelihood(_ p: Float) -> Double { -_log(min(max(Double(p), 1e-15), 1)) }
}

extension Network {
    /// Metrics of this network on `data`.
    public func evaluate(on data: Dataset) -> ClassificationMetrics {
        ClassificationMetrics(labels: data.labels, probabilities: predictProbabilities(data.features, rows: data.rows), classes: spec.classes)
    }
}

extension Network {
    /// Mean log loss (probabilities clipped at 1e-15, as `evaluate`) of the
    /// rows of each class in `classes`, in that order; 0 for a class without
    /// rows.
    public func classLosses(on data: Dataset, classes: [Int]) -> [Double] {
        let p = predictProbabilities(data.features, rows: data.rows)
        let k = spec.classes
        var slot = [Int](repeating: -1, count: k)
        for (i, c) in classes.enumerated() where c >= 0 && c < k { slot[c] = i }
        var sums = [Double](repeating: 0, count: classes.count)
        var counts = [Int](repeating: 0, count: classes.count)
        for (row, y) in data.labels.enumerated() where slot[y] >= 0 {
            sums[slot[y]] += ClassificationMetrics.negativeLogLikelihood(p[row * k + y])
            counts[slot[y]] += 1
        }
        return zip(sums, counts).map { $1 == 0 ? 0 : $0 / Double($1) }
    }
}
