/// Per-feature standardisation (x − mean) / std, fitted on one data set
/// (an institution's local training rows) and applied to others.
public struct Standardizer: Sendable, Equatable, Codable {
    public let means: [Float]
    /// Standard deviations; constant features get 1 so they map to 0.
    public let stds: [Float]

    /// Fits means and population standard deviations on `data`.
    public init(fitting data: Dataset) {
        let f = data.featureCount
        var mean = [Double](repeating: 0, count: f)
        var sq = [Double](repeating: 0, count: f)
        for r in 0..<data.rows {
            for c in 0..<f { mean[c] += Double(data.features[r * f + c]) }
        }
        let n = Double(max(data.rows, 1))
        for c in 0..<f { mean[c] /= n }
        for r in 0..<data.rows {
            for c in 0..<f {
                let d = Double(data.features[r * f + c]) - mean[c]
                sq[c] += d * d
            }
        }
        means = mean.map { Float($0) }
        stds = sq.map { s in
            let sd = (s / n).squareRoot()
            return sd > 1e-12 ? Float(sd) : 1
        }
    }

    /// `data` with every feature standardised.
    public func transform(_ data: Dataset) -> Dataset {
        precondition(data.featureCount == means.count, "feature count mismatch")
        var out = data
        let f = means.count
        for r in 0..<data.rows {
            for c in 0..<f { out.features[r * f + c] = (data.features[r * f + c] - means[c]) / stds[c] }
        }
        return out
    }
}

extension Standardizer {
    /// A standardiser with given means and standard deviations (non-positive
    /// or non-finite deviations become 1).
    public init(means: [Float], stds: [Float]) {
        precondition(means.count == stds.count, "means and stds differ in length")
        self.means = means
        self.stds = stds.map { $0.isFinite && $0 > 1e-12 ? $0 : 1 }
    }
}

/// Per-feature count, sum and sum of squares of one institution's rows:
/// what peers share so that all standardise features the same way without
/// sharing any row.
public struct FeatureStatistics: Sendable, Equatable, Codable {
    public var count: Int
    public var sums: [Double]
    public var squares: [Double]

    public init(count: Int, sums: [Double], squares: [Double]) {
        self.count = count
        self.sums = sums
        self.squares = squares
    }

    public init(of data: Dataset) {
        let f = data.featureCount
        var sums = [Double](repeating: 0, count: f), squares = [Double](repeating: 0, count: f)
        for r in 0..<data.rows {
            for c in 0..<f {
                let v = Double(data.features[r * f + c])
                sums[c] += v
                squares[c] += v * v
            }
        }
        self.init(count: data.rows, sums: sums, squares: squares)
    }

    /// The standardiser of the pooled rows of all `parts` (which must have equal widths).
    public static func pooled(_ parts: [FeatureStatistics]) -> Standardizer? {
        guard let f = parts.first?.sums.count, parts.allSatisfy({ $0.sums.count == f && $0.squares.count == f && $0.count >= 0 }) else { return nil }
        let n = Double(parts.reduce(0) { $0 + $1.count })
        guard n > 0 else { return nil }
        var means = [Float](), stds = [Float]()
        for c in 0..<f {
            let mean = parts.reduce(0) { $0 + $1.sums[c] } / n
            let variance = max(0, parts.reduce(0) { $0 + $1.squares[c] } / n - mean * mean)
            means.append(Float(mean))
            stds.append(Float(variance.squareRoot()))
        }
        return Standardizer(means: means, stds: stds)
    }
}
