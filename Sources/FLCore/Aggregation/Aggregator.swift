/// Coordinate-wise aggregation of equally long Float32 vectors.
///
/// The kernels stream through the inputs in blocks of eight coordinates,
/// keep only O(N) SIMD registers of state per block, and write straight into
/// the output: memory use is the inputs plus one output, whatever N and D.
public enum Aggregator {
    typealias V = SIMD8<Float>
    /// The trimmed-mean kernel's vector: four lanes keep both sorted lists in
    /// registers on SSE (sixteen registers); eight lanes would spill them.
    typealias T = SIMD8<Float>
    typealias TI = SIMD8<Int32>

    /// Aggregates `inputs` with `rule` into a new vector.
    /// - Parameters:
    ///   - weights: per-input weights for `.weightedMean` (non-negative, positive sum).
    ///   - center: the aggregating peer's own vector for `.clipping`; `inputs[0]` when nil.
    ///   - reference: the vector every input started from, for `.boundedTrimmedMean`
    ///     (the round's base model); `center`, else `inputs[0]`, when nil.
    ///   - countTrimmed: also count, per input, the coordinates it lost to trimming.
    public static func aggregate(
        _ inputs: [[Float]],
        rule: AggregationRule,
        weights: [Double]? = nil,
        center: [Float]? = nil,
        reference: [Float]? = nil,
        countTrimmed: Bool = true
    ) throws(AggregationError) -> AggregationResult {
        var values = [Float]()
        let stats = try aggregate(inputs, rule: rule, weights: weights, center: center, reference: reference, countTrimmed: countTrimmed, into: &values)
        return AggregationResult(values: values, stats: stats)
    }

    /// Aggregates into `values`, reusing its storage when it already has the
    /// right length (a round engine keeps one output buffer across rounds, so
    /// no memory is touched beyond the inputs and that buffer).
    public static func aggregate(
        _ inputs: [[Float]],
        rule: AggregationRule,
        weights: [Double]? = nil,
        center: [Float]? = nil,
        reference: [Float]? = nil,
        countTrimmed: Bool = true,
        into values: inout [Float]
    ) throws(AggregationError) -> AggregationStats {
        guard let first = inputs.first else { throw .noInputs }
        let d = first.count
        for (i, x) in inputs.enumerated() where x.count != d {
            throw .lengthMismatch(input: i, expected: d, found: x.count)
        }
        let n = inputs.count
        if values.count != d { values = [Float](repeating: 0, count: d) }
        var stats = AggregationStats(trimmed: [Int](repeating: 0, count: n), clipScales: nil, trimPerSide: 0, tau: nil)
        if d == 0 { return stats }

        switch rule {
        case .mean, .weightedMean:
            var normalized: [Float]?
            if rule == .weightedMean {
                guard let weights, weights.count == n else {
                    throw .invalidWeights("expected \(n) weights, got \(weights?.count ?? 0)")
                }
                guard weights.allSatisfy({ $0 >= 0 && $0.isFinite }) else { throw .invalidWeights("weights must be finite and non-negative") }
                let total = weights.reduce(0, +)
                guard total > 0 else { throw .invalidWeights("weights sum to zero") }
                normalized = weights.map { Float($0 / total) }
            }
            try withPointers(inputs) { (ptrs) throws(AggregationError) in
                try values.withUnsafeMutableBufferPointer { (out) throws(AggregationError) in
                    try meanKernel(ptrs, weights: normalized, out: out)
                }
            }
        case .trimmedMean, .median:
            var k = (n - 1) / 2
            if case .trimmedMean(let beta) = rule {
                guard beta >= 0, beta < 0.5 else { throw .invalidBeta(beta) }
                k = AggregationRule.trimCount(beta: beta, n: n)
            }
            try withPointers(inputs) { (ptrs) throws(AggregationError) in
                try values.withUnsafeMutableBufferPointer { (out) throws(AggregationError) in
                    try stats.trimmed.withUnsafeMutableBufferPointer { (c) throws(AggregationError) in
                        try trimmedMeanKernel(ptrs, count: d, trimPerSide: k, out: out.baseAddress!, trimmed: countTrimmed ? c : nil)
                    }
                }
            }
            stats.trimPerSide = k
        case .clipping(let tau):
            if let tau, !(tau > 0 && tau.isFinite) { throw .invalidTau(tau) }
            let c = center ?? first
            guard c.count == d else { throw .lengthMismatch(input: -1, expected: d, found: c.count) }
            let clipped = try clip(inputs, center: c, tau: tau, into: &values)
            stats.clipScales = clipped.scales
            stats.tau = clipped.tau
            for i in 0..<n where clipped.scales[i] < 1 { stats.trimmed[i] = d }
        case .boundedTrimmedMean(let beta):
            guard beta >= 0, beta < 0.5 else { throw .invalidBeta(beta) }
            let k = AggregationRule.trimCount(beta: beta, n: n)
            let ref = reference ?? center ?? first
            guard ref.count == d else { throw .lengthMismatch(input: -1, expected: d, found: ref.count) }
            for (i, x) in inputs.enumerated() where !x.withUnsafeBufferPointer({ VectorMath.allFinite($0) }) { throw .nonFinite(input: i) }
            // Norm bounding: no input moves further from the reference than the median input does.
            let norms = inputs.map { x in x.withUnsafeBufferPointer { a in ref.withUnsafeBufferPointer { VectorMath.squaredDistance(a, $0).squareRoot() } } }
            let sorted = norms.sorted()
            let bound = n % 2 == 1 ? sorted[n / 2] : (sorted[n / 2 - 1] + sorted[n / 2]) / 2
            var bounded = inputs
            var scales = [Double](repeating: 1, count: n)
            for i in 0..<n where norms[i] > bound {
                scales[i] = bound / norms[i]
                let f = Float(scales[i])
                bounded[i] = zip(inputs[i], ref).map { $1 + f * ($0 - $1) }
            }
            try withPointers(bounded) { (ptrs) throws(AggregationError) in
                try values.withUnsafeMutableBufferPointer { (out) throws(AggregationError) in
                    try stats.trimmed.withUnsafeMutableBufferPointer { (c) throws(AggregationError) in
                        try trimmedMeanKernel(ptrs, count: d, trimPerSide: k, out: out.baseAddress!, trimmed: countTrimmed ? c : nil)
                    }
                }
            }
            stats.trimPerSide = k
            stats.clipScales = scales
            stats.tau = bound
        }
        return stats
    }

    // MARK: - Kernels

    /// Calls `body` with the base pointer of every input (for the low-level kernels).
    public static func withInputPointers<R>(_ arrays: [[Float]], _ body: (UnsafeBufferPointer<UnsafePointer<Float>>) -> R) -> R {
        try! withPointers(arrays) { (p) throws(AggregationError) in body(p) }
    }

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
        if probe.sum() != 0, let bad = firstNonFinite(ptrs, count: d) { throw .nonFinite(input: bad) }
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
        var probe = T()
        try withUnsafeTemporaryAllocation(of: TI.self, capacity: n) { (laneCounts) throws(AggregationError) in
            for i in 0..<n { laneCounts[i] = .zero }
            // Fixed list lengths let the compiler keep both lists in registers.
            let lc = trimmed == nil ? nil : laneCounts
            // Fixed list lengths let the compiler keep both lists in registers.
            switch k {
            case 0: var l = Empty(); trimLoop(ptrs, d, out, lc, trimmed, &probe, lists: &l)
            case 1: var l = Cons<Empty>(); trimLoop(ptrs, d, out, lc, trimmed, &probe, lists: &l)
            case 2: var l = Cons<Cons<Empty>>(); trimLoop(ptrs, d, out, lc, trimmed, &probe, lists: &l)
            case 3: var l = Cons<Cons<Cons<Empty>>>(); trimLoop(ptrs, d, out, lc, trimmed, &probe, lists: &l)
            case 4: var l = Cons<Cons<Cons<Cons<Empty>>>>(); trimLoop(ptrs, d, out, lc, trimmed, &probe, lists: &l)
            default:
                withUnsafeTemporaryAllocation(of: T.self, capacity: 2 * k) { lists in
                    var l = Dynamic(lo: lists.baseAddress!, hi: lists.baseAddress! + k, k: k)
                    trimLoop(ptrs, d, out, lc, trimmed, &probe, lists: &l)
                }
            }
        }
        // The probe is the plain sum of every value: non-finite if any value is,
        // and (rarely) also when huge finite values overflow; the exact scan decides.
        if !probe.sum().isFinite, let bad = firstNonFinite(ptrs, count: d) { throw .nonFinite(input: bad) }
    }

    /// Lane-wise minimum as a compare and a select (the standard library's
    /// `pointwiseMin` is far slower here).
    @inline(__always) static func vmin(_ a: T, _ b: T) -> T { a.replacing(with: b, where: b .< a) }
    /// Lane-wise maximum as a compare and a select.
    @inline(__always) static func vmax(_ a: T, _ b: T) -> T { a.replacing(with: b, where: b .> a) }

    /// Two sorted lists of `count` SIMD registers each.
    protocol TrimLists {
        var count: Int { get }
        mutating func reset()
        /// Inserts `c` into the ascending low list; returns the value pushed out.
        mutating func pushLow(_ c: T) -> T
        /// Inserts `c` into the descending high list; returns the value pushed out.
        mutating func pushHigh(_ c: T) -> T
    }

    /// Empty lists: the end of a `Cons` chain.
    struct Empty: TrimLists, InitializableTrimLists {
        init() {}
        var count: Int { 0 }
        @inline(__always) mutating func reset() {}
        @inline(__always) mutating func pushLow(_ x: T) -> T { x }
        @inline(__always) mutating func pushHigh(_ x: T) -> T { x }
    }

    /// One more register in each list, in front of `Tail`. A chain of these
    /// is a fixed-length list made of plain stored properties, which the
    /// optimiser keeps in registers (an `InlineArray` was kept in memory).
    struct Cons<Tail: TrimLists & InitializableTrimLists>: TrimLists, InitializableTrimLists {
        var lo = T(repeating: .infinity)
        var hi = T(repeating: -.infinity)
        var tail = Tail()
        init() {}
        var count: Int { 1 + tail.count }
        @inline(__always) mutating func reset() {
            lo = T(repeating: .infinity)
            hi = T(repeating: -.infinity)
            tail.reset()
        }
        @inline(__always) mutating func pushLow(_ x: T) -> T {
            let a = lo
            lo = vmin(a, x)
            return tail.pushLow(vmax(a, x))
        }
        @inline(__always) mutating func pushHigh(_ x: T) -> T {
            let a = hi
            hi = vmax(a, x)
            return tail.pushHigh(vmin(a, x))
        }
    }

    protocol InitializableTrimLists { init() }

    /// Lists of any length, in scratch memory.
    struct Dynamic: TrimLists {
        let lo: UnsafeMutablePointer<T>
        let hi: UnsafeMutablePointer<T>
        let k: Int
        var count: Int { k }
        @inline(__always) mutating func reset() {
            for t in 0..<k { lo[t] = T(repeating: .infinity); hi[t] = T(repeating: -.infinity) }
        }
        @inline(__always) mutating func pushLow(_ x: T) -> T {
            var c = x
            for t in 0..<k { let a = lo[t]; lo[t] = vmin(a, c); c = vmax(a, c) }
            return c
        }
        @inline(__always) mutating func pushHigh(_ x: T) -> T {
            var c = x
            for t in 0..<k { let a = hi[t]; hi[t] = vmax(a, c); c = vmin(a, c) }
            return c
        }
    }

    @inline(__always)
    static func trimLoop<L: TrimLists>(
        _ ptrs: UnsafeBufferPointer<UnsafePointer<Float>>, _ d: Int, _ out: UnsafeMutablePointer<Float>,
        _ laneCounts: UnsafeMutableBufferPointer<TI>?, _ trimmed: UnsafeMutableBufferPointer<Int>?,
        _ probe: inout T, lists: inout L
    ) {
        let n = ptrs.count
        let k = lists.count
        let lanes = T.scalarCount
        let kept = T(repeating: 1 / Float(n - 2 * k))
        let body = d - d % lanes
        var p = probe

        @inline(__always)
        func block(_ load: (Int) -> T) -> T {
            lists.reset()
            var sum = T()
            var mn = T(repeating: .infinity)
            var mx = T(repeating: -.infinity)
            for i in 0..<k {  // fill the low list; what it pushes out is a +∞ placeholder
                let x = load(i)
                p += x
                _ = lists.pushLow(x)
            }
            for i in k..<(2 * k) {  // fill the high list; it pushes out −∞ placeholders
                let x = load(i)
                p += x
                _ = lists.pushHigh(lists.pushLow(x))
            }
            for i in (2 * k)..<n {
                let x = load(i)
                p += x
                let c = lists.pushHigh(lists.pushLow(x))
                sum += c
                if laneCounts != nil {
                    mn = vmin(mn, c)
                    mx = vmax(mx, c)
                }
            }
            if let laneCounts, k > 0 {
                let one = TI(repeating: 1)
                for i in 0..<n {
                    let x = load(i)
                    let outside = (x .< mn) .| (x .> mx)
                    laneCounts[i] &+= TI.zero.replacing(with: one, where: outside)
                }
            }
            return sum * kept
        }

        var j = 0
        while j < body {
            let r = block { i in UnsafeRawPointer(ptrs[i] + j).loadUnaligned(as: T.self) }
            UnsafeMutableRawPointer(out + j).storeBytes(of: r, as: T.self)
            j += lanes
            // Flush lane counters before Int32 could overflow.
            if let laneCounts, j % (1 << 30) == 0 { flush(laneCounts, into: trimmed!, n: n) }
        }
        if body < d {
            let tail = d - body
            let r = block { i in
                var v = T()  // padding lanes are 0 for every input: equal, never trimmed
                for l in 0..<tail { v[l] = ptrs[i][body + l] }
                return v
            }
            for l in 0..<tail { out[body + l] = r[l] }
        }
        if let laneCounts { flush(laneCounts, into: trimmed!, n: n) }
        probe = p
    }

    private static func flush(_ lanes: UnsafeMutableBufferPointer<TI>, into counts: UnsafeMutableBufferPointer<Int>, n: Int) {
        for i in 0..<n {
            for l in 0..<T.scalarCount { counts[i] += Int(lanes[i][l]) }
            lanes[i] = .zero
        }
    }

    /// Index of the first input holding NaN or ±∞, if any.
    static func firstNonFinite(_ ptrs: UnsafeBufferPointer<UnsafePointer<Float>>, count d: Int) -> Int? {
        for i in 0..<ptrs.count where !VectorMath.allFinite(UnsafeBufferPointer(start: ptrs[i], count: d)) {
            return i
        }
        return nil
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
