import FLCore
import Testing

/// Brute-force references computed in Double by sorting each coordinate.
enum Reference {
    static func column(_ inputs: [[Float]], _ j: Int) -> [Double] { inputs.map { Double($0[j]) } }

    static func trimmedMean(_ inputs: [[Float]], k: Int) -> [Double] {
        (0..<inputs[0].count).map { j in
            let sorted = column(inputs, j).sorted()
            let kept = sorted[k..<(sorted.count - k)]
            return kept.reduce(0, +) / Double(kept.count)
        }
    }

    static func trimmedCounts(_ inputs: [[Float]], k: Int) -> [Int] {
        var counts = [Int](repeating: 0, count: inputs.count)
        for j in 0..<inputs[0].count {
            let col = column(inputs, j)
            let sorted = col.sorted()
            let low = sorted[k], high = sorted[sorted.count - 1 - k]
            for i in inputs.indices where col[i] < low || col[i] > high { counts[i] += 1 }
        }
        return counts
    }

    static func median(_ inputs: [[Float]]) -> [Double] {
        (0..<inputs[0].count).map { j in
            let s = column(inputs, j).sorted()
            return s.count % 2 == 1 ? s[s.count / 2] : (s[s.count / 2 - 1] + s[s.count / 2]) / 2
        }
    }

    static func weightedMean(_ inputs: [[Float]], _ w: [Double]) -> [Double] {
        let total = w.reduce(0, +)
        return (0..<inputs[0].count).map { j in zip(column(inputs, j), w).reduce(0) { $0 + $1.0 * $1.1 } / total }
    }

    static func clipping(_ inputs: [[Float]], center: [Float], tau: Double) -> [Double] {
        let n = Double(inputs.count)
        var out = center.map(Double.init)
        for x in inputs {
            let diff = zip(x, center).map { Double($0) - Double($1) }
            let norm = diff.reduce(0) { $0 + $1 * $1 }.squareRoot()
            guard norm > 0 else { continue }
            let s = min(1, tau / norm)
            for j in out.indices { out[j] += s * diff[j] / n }
        }
        return out
    }
}

func expectClose(_ a: [Float], _ b: [Double], tolerance: Double = 1e-5, sourceLocation: SourceLocation = #_sourceLocation) {
    #expect(a.count == b.count, sourceLocation: sourceLocation)
    var worst = 0.0
    for (x, y) in zip(a, b) { worst = max(worst, abs(Double(x) - y) / max(1, abs(y))) }
    #expect(worst <= tolerance, "largest relative error \(worst)", sourceLocation: sourceLocation)
}

@Suite("aggregation")
struct AggregationTests {
    /// Inputs with many exact ties when `ties` is set (small integer values).
    func inputs(n: Int, d: Int, seed: UInt64, ties: Bool) -> [[Float]] {
        var rng = SeededGenerator(seed: seed)
        return (0..<n).map { _ in
            (0..<d).map { _ in ties ? Float(rng.nextInt(below: 4)) - 1.5 : Float(rng.nextGaussian()) }
        }
    }

    @Test("trimmed mean equals the sorted reference for every N and β", arguments: [1, 2, 3, 4, 5, 7, 10, 13, 20])
    func trimmedMeanMatchesReference(n: Int) throws {
        for beta in [0.0, 0.1, 0.2, 0.3, 0.45] {
            for (d, ties) in [(1, false), (7, true), (8, false), (37, true), (100, false)] {
                let x = inputs(n: n, d: d, seed: UInt64(n * 1000 + d), ties: ties)
                let r = try Aggregator.aggregate(x, rule: .trimmedMean(beta: beta))
                let k = AggregationRule.trimCount(beta: beta, n: n)
                #expect(r.trimPerSide == k)
                expectClose(r.values, Reference.trimmedMean(x, k: k))
                #expect(r.trimmed == Reference.trimmedCounts(x, k: k), "n=\(n) beta=\(beta) d=\(d)")
            }
        }
    }

    @Test("median equals the sorted reference", arguments: [1, 2, 3, 4, 6, 9, 10])
    func medianMatchesReference(n: Int) throws {
        for ties in [false, true] {
            let x = inputs(n: n, d: 29, seed: UInt64(n), ties: ties)
            let r = try Aggregator.aggregate(x, rule: .median)
            expectClose(r.values, Reference.median(x))
        }
    }

    @Test func meansMatchReference() throws {
        for n in [1, 2, 3, 11] {
            let x = inputs(n: n, d: 45, seed: UInt64(n), ties: false)
            let w = (0..<n).map { Double($0 * 3 + 1) }
            expectClose(try Aggregator.aggregate(x, rule: .mean).values, Reference.weightedMean(x, [Double](repeating: 1, count: n)))
            expectClose(try Aggregator.aggregate(x, rule: .weightedMean, weights: w).values, Reference.weightedMean(x, w))
        }
    }

    @Test func clippingMatchesReference() throws {
        for n in [1, 2, 3, 8] {
            var x = inputs(n: n, d: 33, seed: UInt64(40 + n), ties: false)
            if n > 2 { x[n - 1] = x[n - 1].map { $0 * 1000 } }  // one far outlier
            for tau in [0.5, 3.0] {
                let r = try Aggregator.aggregate(x, rule: .clipping(tau: tau), center: x[0])
                expectClose(r.values, Reference.clipping(x, center: x[0], tau: tau))
            }
            // Adaptive τ is the median distance of the other inputs to the centre.
            let r = try Aggregator.aggregate(x, rule: .clipping(tau: nil))
            let distances = x.map { v in zip(v, x[0]).reduce(0.0) { $0 + Double($1.0 - $1.1) * Double($1.0 - $1.1) }.squareRoot() }
                .filter { $0 > 0 }.sorted()
            let expectedTau = distances.isEmpty ? 0 : (distances.count % 2 == 1 ? distances[distances.count / 2] : (distances[distances.count / 2 - 1] + distances[distances.count / 2]) / 2)
            #expect(abs((r.tau ?? -1) - expectedTau) <= 1e-5 * max(1, expectedTau))
            expectClose(r.values, Reference.clipping(x, center: x[0], tau: expectedTau))
            if n > 2 { #expect(r.trimmed[n - 1] == 33, "the outlier is clipped") }
        }
    }

    /// Bounded trimmed mean: an input further from the reference than the
    /// median distance is pulled back to it along its own direction, then the
    /// trimmed mean combines the bounded inputs.
    @Test func boundedTrimmedMeanPullsFarInputsBackToTheMedianDistance() throws {
        let reference: [Float] = [0, 0]
        // Distances 1, 2, 3, 4 and 40: the median distance is 3.
        let x: [[Float]] = [[1, 0], [0, 2], [3, 0], [0, -4], [-40, 0]]
        let r = try Aggregator.aggregate(x, rule: .boundedTrimmedMean(beta: 0.2), reference: reference)
        #expect(r.tau == 3)
        #expect(r.clipScales == [1, 1, 1, 0.75, 0.075])
        // Bounded: [1,0] [0,2] [3,0] [0,-3] [-3,0]; trimming one per side leaves x: 0,0,1 and y: 0,0,0.
        let expected = try Aggregator.aggregate([[1, 0], [0, 2], [3, 0], [0, -3], [-3, 0]], rule: .trimmedMean(beta: 0.2)).values
        expectClose(r.values, expected.map(Double.init))
        expectClose(r.values, [1.0 / 3, 0])
        #expect(AggregationRule.boundedTrimmedMean(beta: 0.2).description == "bounded-trimmed-mean(beta=0.2)")
        #expect(throws: AggregationError.invalidBeta(0.5)) { try Aggregator.aggregate(x, rule: .boundedTrimmedMean(beta: 0.5), reference: reference) }
        #expect(throws: AggregationError.nonFinite(input: 1)) { try Aggregator.aggregate([[1, 0], [.nan, 0], [0, 1]], rule: .boundedTrimmedMean(beta: 0.2), reference: reference) }
    }

    @Test func nonFiniteInputsAreRejectedNamingTheInput() throws {
        for bad in [Float.nan, .infinity, -.infinity] {
            var x = inputs(n: 5, d: 19, seed: 3, ties: false)
            x[3][17] = bad  // in the scalar tail
            for rule in [AggregationRule.mean, .weightedMean, .trimmedMean(beta: 0.2), .median, .clipping(tau: 1)] {
                #expect(throws: AggregationError.nonFinite(input: 3)) {
                    try Aggregator.aggregate(x, rule: rule, weights: [1, 1, 1, 1, 1])
                }
            }
            x[3][17] = 0
            x[1][2] = bad  // in the SIMD body
            #expect(throws: AggregationError.nonFinite(input: 1)) { try Aggregator.aggregate(x, rule: .trimmedMean(beta: 0.2)) }
        }
    }

    @Test func badArgumentsGiveTypedErrors() {
        #expect(throws: AggregationError.noInputs) { try Aggregator.aggregate([], rule: .mean) }
        #expect(throws: AggregationError.lengthMismatch(input: 1, expected: 2, found: 3)) {
            try Aggregator.aggregate([[1, 2], [1, 2, 3]], rule: .median)
        }
        #expect(throws: AggregationError.invalidBeta(0.5)) { try Aggregator.aggregate([[1]], rule: .trimmedMean(beta: 0.5)) }
        #expect(throws: AggregationError.self) { try Aggregator.aggregate([[1], [2]], rule: .weightedMean, weights: [0, 0]) }
        #expect(throws: AggregationError.self) { try Aggregator.aggregate([[1], [2]], rule: .weightedMean, weights: [1]) }
        #expect(throws: AggregationError.invalidTau(-1)) { try Aggregator.aggregate([[1]], rule: .clipping(tau: -1)) }
    }

    @Test func trimCountRounding() {
        #expect(AggregationRule.trimCount(beta: 0.2, n: 10) == 2)
        #expect(AggregationRule.trimCount(beta: 0.2, n: 5) == 1)
        #expect(AggregationRule.trimCount(beta: 0.2, n: 4) == 0)
        #expect(AggregationRule.trimCount(beta: 0.1, n: 30) == 3)  // 0.1·30 is 3.0000000000000004 in binary
        #expect(AggregationRule.trimCount(beta: 0.3, n: 10) == 3)  // 0.3·10 is 2.9999999999999996 in binary
        #expect(AggregationRule.trimCount(beta: 0.45, n: 2) == 0)
        #expect(AggregationRule.trimCount(beta: 0.49, n: 100) == 49)
    }

    @Test func hugeOutliersDoNotDestroyPrecision() throws {
        // Honest inputs near 0.01, two attackers at ±1e30: the trimmed mean must
        // equal the honest mean to Float precision, not lose it to cancellation.
        var x = (0..<8).map { i in [Float](repeating: 0.01 + Float(i) * 1e-4, count: 24) }
        x.append([Float](repeating: 1e30, count: 24))
        x.append([Float](repeating: -1e30, count: 24))
        let r = try Aggregator.aggregate(x, rule: .trimmedMean(beta: 0.1))
        expectClose(r.values, Reference.trimmedMean(x, k: 1), tolerance: 1e-6)
        #expect(r.trimmed[8] == 24 && r.trimmed[9] == 24)
    }

    @Test func emptyVectorsAggregateToEmpty() throws {
        #expect(try Aggregator.aggregate([[], []], rule: .trimmedMean(beta: 0.2)).values == [])
    }
}
