/// Coordinate-wise aggregation of equally long Float32 vectors.
///
/// The kernels stream through the inputs in blocks of eight coordinates,
/// keep only O(N) SIMD registers of state per block, and write straight into
/// the output: memory use is the inputs plus one output, whatever N and D.
public enum Aggregator {
    typealias V = SIMD8<Float>

    /// Aggregates `inputs` with `rule`.
    /// - Parameters:
    ///   - weights: per-input weights for `.weightedMean` (non-negative, positive sum).
    ///   - center: the aggregating peer's own vector for `.clipping`; `inputs[0]` when nil.
    ///   - countTrimmed: also count, per input, the coordinates it lost to trimming.
    public static func aggregate(
        _ inputs: [[Float]],
        rule: AggregationRule,
        weights: [Double]? = nil,
        center: [Float]? = nil,
        countTrimmed: Bool = true
    ) throws(AggregationError) -> AggregationResult {
        guard let first = inputs.first else { throw .noInputs }
        let d = first.count
        for (i, x) in inputs.enumerated() where x.count != d {
            throw .lengthMismatch(input: i, expected: d, found: x.count)
        }
        let n = inputs.count
        var values = [Float](repeating: 0, count: d)
        var trimmed = [Int](repeating: 0, count: n)
        if d == 0 { return AggregationResult(values: [], trimmed: trimmed, clipScales: nil, trimPerSide: 0, tau: nil) }
        var result = AggregationResult(values: [], trimmed: [], clipScales: nil, trimPerSide: 0, tau: nil)

        switch rule {
        case .mean:
            try withPointers(inputs) { (ptrs) throws(AggregationError) in
                try values.withUnsafeMutableBufferPointer { (out) throws(AggregationError) in
                    try meanKernel(ptrs, weights: nil, out: out)
                }
            }
        case .weightedMean:
            guard let weights, weights.count == n else {
                throw .invalidWeights("expected \(n) weights, got \(weights?.count ?? 0)")
            }
            guard weights.allSatisfy({ $0 >= 0 && $0.isFinite }) else { throw .invalidWeights("weights must be finite and non-negative") }
            let total = weights.reduce(0, +)
            guard total > 0 else { throw .invalidWeights("weights sum to zero") }
            let normalized = weights.map { Float($0 / total) }
            try withPointers(inputs) { (ptrs) throws(AggregationError) in
                try values.withUnsafeMutableBufferPointer { (out) throws(AggregationError) in
                    try meanKernel(ptrs, weights: normalized, out: out)
                }
            }
        case .trimmedMean(let beta):
            guard beta >= 0, beta < 0.5 else { throw .invalidBeta(beta) }
            let k = AggregationRule.trimCount(beta: beta, n: n)
            (values, trimmed) = try trimmedMean(inputs, trimPerSide: k, countTrimmed: countTrimmed)
            result.trimPerSide = k
        case .median:
            let k = (n - 1) / 2
            (values, trimmed) = try trimmedMean(inputs, trimPerSide: k, countTrimmed: countTrimmed)
            result.trimPerSide = k
        case .clipping(let tau):
            if let tau, !(tau > 0 && tau.isFinite) { throw .invalidTau(tau) }
            let c = center ?? first
            guard c.count == d else { throw .lengthMismatch(input: -1, expected: d, found: c.count) }
            let clipped = try clip(inputs, center: c, tau: tau, into: &values)
            result.clipScales = clipped.scales
            result.tau = clipped.tau
            for i in 0..<n where clipped.scales[i] < 1 { trimmed[i] = d }
        }
        result.values = values
        result.trimmed = trimmed
        return result
    }

    /// Trimmed mean dropping `k` values from each side (requires n ≥ 2k + 1).
    /// With `countTrimmed`, also returns per input the number of coordinates
    /// at which that input lay strictly outside the range of kept values
    /// (zeros otherwise).
    public static func trimmedMean(
        _ inputs: [[Float]], trimPerSide k: Int, countTrimmed: Bool
    ) throws(AggregationError) -> (values: [Float], trimmed: [Int]) {
        guard let first = inputs.first else { throw .noInputs }
        let n = inputs.count
        precondition(k >= 0 && 2 * k < n, "trim count \(k) too large for \(n) inputs")
        let d = first.count
        for (i, x) in inputs.enumerated() where x.count != d {
            throw .lengthMismatch(input: i, expected: d, found: x.count)
        }
        var values = [Float](repeating: 0, count: d)
        var counts = [Int](repeating: 0, count: n)
        guard d > 0 else { return (values, counts) }
        try withPointers(inputs) { (ptrs) throws(AggregationError) in
            try values.withUnsafeMutableBufferPointer { (out) throws(AggregationError) in
                try counts.withUnsafeMutableBufferPointer { (c) throws(AggregationError) in
                    try trimmedMeanKernel(ptrs, count: d, trimPerSide: k, out: out.baseAddress!, trimmed: countTrimmed ? c : nil)
                }
            }
        }
        return (values, counts)
    }

    // MARK: - Kernels

    /// Calls `body` with base pointers of every input array.
    static func withPointers<R>(
        _ arrays: [[Float]], _ body: (UnsafeBufferPointer<UnsafePointer<Float>>) throws(AggregationError) -> R
    ) throws(AggregationError) -> R {
        var ptrs = [UnsafePointer<Float>]()
        ptrs.reserveCapacity(arrays.count)
        func recurse(_ i: Int) throws(AggregationError) -> R {
            if i == arrays.count {
                return try ptrs.withUnsafeBufferPointer { (p) throws(AggregationError) in try body(p) }
            }
            return try arrays[i].withUnsafeBufferPointer { (buf) throws(AggregationError) in
                // An empty array may have no base address; any valid pointer will do
                // since no element is read.
                ptrs.append(buf.baseAddress ?? UnsafePointer(bitPattern: 0x10)!)
                return try recurse(i + 1)
            }
        }
        return try recurse(0)
    }

    /// Plain or weighted mean; `weights`, when given, are already normalised.
    public static func meanKernel(
        _ ptrs: UnsafeBufferPointer<UnsafePointer<Float>>, weights: [Float]?, out: UnsafeMutableBufferPointer<Float>
    ) throws(AggregationError) {
        let n = ptrs.count
        let d = out.count
        guard n > 0 else { throw .noInputs }
        let o = out.baseAddress!
        var probe = V()
        let scale = V(repeating: 1 / Float(n))
        var j = 0
        if let weights {
            try weights.withUnsafeBufferPointer { (w) throws(AggregationError) in
                while j + 8 <= d {
                    var s = V()
                    for i in 0..<n {
                        let x = VectorMath.load(ptrs[i] + j)
                        probe += x * 0
                        s = s + x * V(repeating: w[i])
                    }
                    VectorMath.store(s, o + j)
                    j += 8
                }
                while j < d {
                    var s: Float = 0
                    for i in 0..<n { let x = ptrs[i][j]; probe[0] += x * 0; s += w[i] * x }
                    o[j] = s
                    j += 1
                }
            }
        } else {
            while j + 8 <= d {
                var s = V()
                for i in 0..<n {
                    let x = VectorMath.load(ptrs[i] + j)
                    probe += x * 0
                    s += x
                }
                VectorMath.store(s * scale, o + j)
                j += 8
            }
            while j < d {
                var s: Float = 0
                for i in 0..<n { let x = ptrs[i][j]; probe[0] += x * 0; s += x }
                o[j] = s / Float(n)
                j += 1
            }
        }
        if probe.sum() != 0 { throw .nonFinite(input: firstNonFinite(ptrs, count: d)) }
    }

    /// Sum of the inputs into `out`, with no checks: the bandwidth baseline
    /// the aggregation benchmarks compare against.
    public static func streamingSum(_ ptrs: UnsafeBufferPointer<UnsafePointer<Float>>, out: UnsafeMutableBufferPointer<Float>) {
        let n = ptrs.count
        let d = out.count
        let o = out.baseAddress!
        var j = 0
        while j + 8 <= d {
            var s = V()
            for i in 0..<n { s += VectorMath.load(ptrs[i] + j) }
            VectorMath.store(s, o + j)
            j += 8
        }
        while j < d {
            var s: Float = 0
            for i in 0..<n { s += ptrs[i][j] }
            o[j] = s
            j += 1
        }
    }

    /// The trimmed-mean kernel. For each block of eight coordinates every input
    /// value is pushed through two small sorted SIMD lists: `lo` keeps the k
    /// smallest values seen, `hi` the k largest of those pushed out of `lo`;
    /// whatever `hi` pushes out is a kept (middle) value and is summed. No
    /// subtraction of trimmed values ever happens, so huge outliers cannot
    /// cancel precision away. Cost per value: 4k min/max operations.
    public static func trimmedMeanKernel(
        _ ptrs: UnsafeBufferPointer<UnsafePointer<Float>>,
        count d: Int,
        trimPerSide k: Int,
        out: UnsafeMutablePointer<Float>,
        trimmed: UnsafeMutableBufferPointer<Int>?
    ) throws(AggregationError) {
        let n = ptrs.count
        precondition(n >= 2 * k + 1, "trim count too large")
        let kept = V(repeating: 1 / Float(n - 2 * k))
        let inf = V(repeating: .infinity)
        let negInf = V(repeating: -.infinity)
        var probe = V()
        let body = d - d % 8

        try withUnsafeTemporaryAllocation(of: V.self, capacity: max(1, 2 * k)) { (lists) throws(AggregationError) in
            try withUnsafeTemporaryAllocation(of: SIMD8<Int32>.self, capacity: n) { (laneCounts) throws(AggregationError) in
                let lo = lists.baseAddress!
                let hi = lo + k
                let counting = trimmed != nil
                for i in 0..<n { laneCounts[i] = .zero }

                @inline(__always)
                func block(_ load: (Int) -> V) -> V {
                    for t in 0..<k { lo[t] = inf; hi[t] = negInf }
                    var sum = V()
                    var mn = inf
                    var mx = negInf
                    for i in 0..<n {
                        let x = load(i)
                        probe += x * 0
                        var c = x
                        for t in 0..<k {
                            let a = lo[t]
                            lo[t] = a.replacing(with: c, where: c .< a)
                            c = c.replacing(with: a, where: c .< a)
                        }
                        if i < k { continue }  // c is a +∞ placeholder
                        for t in 0..<k {
                            let a = hi[t]
                            hi[t] = a.replacing(with: c, where: c .> a)
                            c = c.replacing(with: a, where: c .> a)
                        }
                        if i < 2 * k { continue }  // c is a −∞ placeholder
                        sum += c
                        if counting {
                            mn = mn.replacing(with: c, where: c .< mn)
                            mx = mx.replacing(with: c, where: c .> mx)
                        }
                    }
                    if counting && k > 0 {
                        let one = SIMD8<Int32>(repeating: 1)
                        for i in 0..<n {
                            let x = load(i)
                            let outside = (x .< mn) .| (x .> mx)
                            laneCounts[i] &+= SIMD8<Int32>.zero.replacing(with: one, where: outside)
                        }
                    }
                    return sum * kept
                }

                var j = 0
                while j < body {
                    let r = block { i in VectorMath.load(ptrs[i] + j) }
                    VectorMath.store(r, out + j)
                    j += 8
                    // Flush lane counters before Int32 could overflow.
                    if counting && j % (1 << 30) == 0 { flush(laneCounts, into: trimmed!, n: n) }
                }
                if body < d {
                    let tail = d - body
                    let r = block { i in
                        var v = V()  // padding lanes are 0 for every input: equal, never trimmed
                        for l in 0..<tail { v[l] = ptrs[i][body + l] }
                        return v
                    }
                    for l in 0..<tail { out[body + l] = r[l] }
                }
                if counting { flush(laneCounts, into: trimmed!, n: n) }
            }
        }
        if probe.sum() != 0 { throw .nonFinite(input: firstNonFinite(ptrs, count: d)) }
    }

    private static func flush(_ lanes: UnsafeMutableBufferPointer<SIMD8<Int32>>, into counts: UnsafeMutableBufferPointer<Int>, n: Int) {
        for i in 0..<n {
            for l in 0..<8 { counts[i] += Int(lanes[i][l]) }
            lanes[i] = .zero
        }
    }

    static func firstNonFinite(_ ptrs: UnsafeBufferPointer<UnsafePointer<Float>>, count d: Int) -> Int {
        for i in 0..<ptrs.count where !VectorMath.allFinite(UnsafeBufferPointer(start: ptrs[i], count: d)) {
            return i
        }
        return 0
    }

    /// Self-centred clipping; returns per-input clip factors and the τ used.
    static func clip(
        _ inputs: [[Float]], center: [Float], tau: Double?, into values: inout [Float]
    ) throws(AggregationError) -> (scales: [Double], tau: Double) {
        let n = inputs.count
        guard center.withUnsafeBufferPointer({ VectorMath.allFinite($0) }) else { throw .nonFinite(input: -1) }
        var distances = [Double](repeating: 0, count: n)
        for i in 0..<n {
            let ok = inputs[i].withUnsafeBufferPointer { VectorMath.allFinite($0) }
            guard ok else { throw .nonFinite(input: i) }
            distances[i] = inputs[i].withUnsafeBufferPointer { x in
                center.withUnsafeBufferPointer { c in VectorMath.squaredDistance(x, c).squareRoot() }
            }
        }
        let radius: Double
        if let tau {
            radius = tau
        } else {
            let others = distances.filter { $0 > 0 }.sorted()
            if others.isEmpty {
                radius = 0
            } else {
                let m = others.count
                radius = m % 2 == 1 ? others[m / 2] : (others[m / 2 - 1] + others[m / 2]) / 2
            }
        }
        let scales = distances.map { dist in dist <= radius || dist == 0 ? 1.0 : radius / dist }
        values = center
        values.withUnsafeMutableBufferPointer { out in
            for i in 0..<n where distances[i] > 0 {
                let w = Float(scales[i] / Double(n))
                inputs[i].withUnsafeBufferPointer { x in
                    center.withUnsafeBufferPointer { c in
                        // out += w·(x − c), computed as out += w·x then out −= w·c
                        VectorMath.axpy(w, x, out)
                        VectorMath.axpy(-w, c, out)
                    }
                }
            }
        }
        return (scales, radius)
    }
}
