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
