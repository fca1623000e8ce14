/// Why a data set could not be split as asked.
public struct SplitError: Error, Equatable, CustomStringConvertible {
    public let reason: String
    public var description: String { reason }
}

/// Train/validation/test splits and non-IID partitioning across institutions.
public enum Splitting {
    /// Row indices of a stratified split: within every class the rows are
    /// shuffled and `round(fraction · count)` go to the second part.
    public static func stratified(_ data: Dataset, fraction: Double, seed: UInt64) -> (first: [Int], second: [Int]) {
        precondition(fraction >= 0 && fraction <= 1, "fraction must be in [0, 1]")
        var rng = SeededGenerator(seed: seed, stream: "stratified-split")
        var first: [Int] = [], second: [Int] = []
        for var group in data.indicesByClass() {
            rng.shuffle(&group)
            let take = Int((fraction * Double(group.count)).rounded())
            second.append(contentsOf: group.prefix(take))
            first.append(contentsOf: group.dropFirst(take))
        }
        rng.shuffle(&first)
        rng.shuffle(&second)
        return (first, second)
    }

    /// Train, validation and test row indices, each stratified by class.
    public static func trainValidationTest(_ data: Dataset, validation: Double, test: Double, seed: UInt64) -> (train: [Int], validation: [Int], test: [Int]) {
        precondition(validation >= 0 && test >= 0 && validation + test < 1, "fractions must leave training rows")
        let (rest, testRows) = stratified(data, fraction: test, seed: seed)
        let restData = data.subset(rest)
        let (train, val) = stratified(restData, fraction: validation / (1 - test), seed: seed &+ 1)
        return (train.map { rest[$0] }, val.map { rest[$0] }, testRows)
    }

    /// Label-skewed partition of `indices` (rows of `data`) into `parts`
    /// lists, as Flower Datasets' `DirichletPartitioner` does: for each class,
    /// proportions p ~ Dirichlet(α,…,α) split that class's shuffled rows at
    /// ⌊cumsum(p)·count⌋. The whole draw is repeated (up to `maxAttempts`)
    /// until every part has at least `minPartSize` rows. Every row lands in
    /// exactly one part. With `weights`, each class's proportions are
    /// multiplied by them and renormalised (quantity skew on top of the
    /// label skew: part i's expected size scales with weights[i]).
    public static func dirichlet(
        _ data: Dataset, indices: [Int]? = nil, parts: Int, alpha: Double, minPartSize: Int = 10,
        seed: UInt64, maxAttempts: Int = 10, weights: [Double]? = nil
    ) throws(SplitError) -> [[Int]] {
        if let weights, weights.count != parts || !weights.allSatisfy({ $0 > 0 && $0.isFinite }) {
            throw SplitError(reason: "expected \(parts) positive weights, got \(weights)")
        }
        guard parts >= 1 else { throw SplitError(reason: "the number of parts must be at least 1, got \(parts)") }
        guard alpha > 0, alpha.isFinite else { throw SplitError(reason: "alpha must be a positive number, got \(alpha)") }
        let rows = indices ?? Array(0..<data.rows)
        guard rows.count >= parts * minPartSize else {
            throw SplitError(reason: "\(rows.count) rows cannot give \(parts) parts of at least \(minPartSize) rows each")
        }
        var byClass = [[Int]](repeating: [], count: data.classCount)
        for r in rows { byClass[data.labels[r]].append(r) }
        var rng = SeededGenerator(seed: seed, stream: "dirichlet-partition")
        var smallest = 0
        for _ in 0..<maxAttempts {
            var result = [[Int]](repeating: [], count: parts)
            for var group in byClass where !group.isEmpty {
                rng.shuffle(&group)
                var p = rng.nextDirichlet(alpha: alpha, count: parts)
                // Quantity skew: member i's expected share of every class scales with weights[i].
                if let weights {
                    p = zip(p, weights).map { $0 * $1 }
                    let total = p.reduce(0, +)
                    p = p.map { $0 / total }
                }
                var cumulative = 0.0
                var start = 0
                for part in 0..<parts {
                    cumulative += p[part]
                    let end = part == parts - 1 ? group.count : min(group.count, Int(cumulative * Double(group.count)))
                    if end > start { result[part].append(contentsOf: group[start..<end]) }
                    start = max(start, end)
                }
            }
            smallest = result.map(\.count).min() ?? 0
            if smallest >= minPartSize {
                for i in result.indices { rng.shuffle(&result[i]) }
                return result
            }
        }
        throw SplitError(reason: "after \(maxAttempts) draws some part still had only \(smallest) rows (minimum \(minPartSize)); raise alpha or lower the minimum part size")
    }
}
