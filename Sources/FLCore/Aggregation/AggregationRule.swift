/// How a peer combines the updates of one round, coordinate by coordinate.
public enum AggregationRule: Sendable, Equatable, CustomStringConvertible {
    /// Arithmetic mean.
    case mean
    /// Mean weighted by each input's weight (e.g. its sample count).
    case weightedMean
    /// Drops the `trimCount(n:)` smallest and largest values of every
    /// coordinate and averages the rest.
    case trimmedMean(beta: Double)
    /// Coordinate-wise median (mean of the two middle values for even N).
    case median
    /// Self-centred clipping (ClippedGossip, He, Karimireddy and Jaggi 2022):
    /// `c + 1/N · Σ_j clip(x_j − c, τ)`, where `c` is the aggregating peer's own
    /// vector and `clip(z, τ) = z · min(1, τ/‖z‖)`. A nil `tau` is chosen
    /// adaptively as the median distance of the other inputs to `c`.
    case clipping(tau: Double?)
    /// Norm bounding, then trimmed mean. Every input whose distance from the
    /// round's reference (the model all members started the round from) is
    /// above the median distance is pulled back to it along its own
    /// direction, so no member moves the model further than the median member
    /// does (a scaled update loses its scale); the bounded inputs are then
    /// combined with the trimmed mean of the same `beta`.
    case boundedTrimmedMean(beta: Double)

    /// The default robust rule: trimmed mean with β = 0.2.
    public static let `default` = AggregationRule.trimmedMean(beta: 0.2)

    /// Values trimmed from EACH side for `n` inputs: ⌊β·n⌋, lowered to
    /// ⌊(n−1)/2⌋ so at least one value is always kept. ⌊β·n⌋ is computed
    /// as ⌊β·n + 1e-9⌋ so that β·n that is mathematically whole (0.2·10)
    /// is not lost to binary rounding. This is the same count Flower's and
    /// SciPy's `trim_mean` use.
    public static func trimCount(beta: Double, n: Int) -> Int {
        guard n > 0 else { return 0 }
        let k = Int((beta * Double(n) + 1e-9).rounded(.down))
        return max(0, min(k, (n - 1) / 2))
    }

    public var description: String {
        switch self {
        case .mean: "mean"
        case .weightedMean: "weighted-mean"
        case .trimmedMean(let beta): "trimmed-mean(beta=\(beta))"
        case .median: "median"
        case .clipping(let tau): tau.map { "clipping(tau=\($0))" } ?? "clipping(tau=adaptive)"
        case .boundedTrimmedMean(let beta): "bounded-trimmed-mean(beta=\(beta))"
        }
    }
}

/// Why a set of inputs could not be aggregated.
public enum AggregationError: Error, Equatable, CustomStringConvertible {
    case noInputs
    case lengthMismatch(input: Int, expected: Int, found: Int)
    case nonFinite(input: Int)
    case invalidBeta(Double)
    case invalidWeights(String)
    case invalidTau(Double)

    public var description: String {
        switch self {
        case .noInputs: "nothing to aggregate: no inputs"
        case .lengthMismatch(let i, let e, let f): "input \(i) has \(f) coordinates, expected \(e)"
        case .nonFinite(let i): "input \(i) contains NaN or infinity and cannot be aggregated"
        case .invalidBeta(let b): "trim fraction beta must be in [0, 0.5), got \(b)"
        case .invalidWeights(let why): "invalid aggregation weights: \(why)"
        case .invalidTau(let t): "clipping radius tau must be positive and finite, got \(t)"
        }
    }
}

/// What an aggregation did besides computing the vector.
public struct AggregationStats: Sendable, Equatable {
    /// Per input: coordinates at which its value lay strictly outside the
    /// range of values that were kept (trimmed mean, median), or every
    /// coordinate when its whole difference vector was clipped (clipping).
    /// Zero for the mean rules, and when counting was not asked for.
    public var trimmed: [Int]
    /// Per input, the clipping factor min(1, τ/‖x − c‖) (clipping, and the
    /// norm bound of bounded trimmed mean).
    public var clipScales: [Double]?
    /// Values dropped from each side of each coordinate (trimmed mean, median).
    public var trimPerSide: Int
    /// The clipping radius or norm bound used (clipping, bounded trimmed mean).
    public var tau: Double?
}

/// The output of one aggregation: the vector and its statistics.
public struct AggregationResult: Sendable, Equatable {
    /// The aggregated vector.
    public var values: [Float]
    public var stats: AggregationStats

    public var trimmed: [Int] { stats.trimmed }
    public var clipScales: [Double]? { stats.clipScales }
    public var trimPerSide: Int { stats.trimPerSide }
    public var tau: Double? { stats.tau }
}
