/// Scores each update of a round by its Shapley value within the round
/// (GTG-Shapley style, Liu et al. 2022): the players are the round's
/// updates, a coalition's model is the coalition aggregated with the deployed
/// rule, and its utility is how much that model lowers the assessor's
/// validation loss below the round's starting model. Exact up to
/// `exactUpTo` players; above that, sampled permutations with within-round
/// truncation and early stopping, seeded so that every run is repeatable.
///
/// Before the game, gates give an update zero for the round and keep it out
/// of the game (docs/credits.md):
/// - `echo`: its step is under a tenth of the median step (it sent back the
///   model it received);
/// - `replay`: its step is within a fifth of the previous round's aggregate
///   change (it re-sent the last change instead of training);
/// - `stale`: its step is, within 5 %, a combination a·μ + b·σ of the mean and
///   spread of the steps its author received the round before (built from
///   the crowd's statistics instead of training, as ALIE or IPM do);
/// - `copy`: its step is within 1 % of another update's step;
/// - `trimmed`: the rule trimmed it in more than half of the coordinates it
///   would not trim anyway (more than 0.5 + β of all coordinates).
public enum ContributionScorer {
    /// The scoring rule and its version, recorded in every aggregate entry.
    public static let ruleVersion = "gtg-shapley/2"

    public enum Gate: String, Sendable, Codable, CaseIterable {
        case echo, replay, stale, copy, trimmed
    }

    /// Gate thresholds (relative step lengths), part of `ruleVersion`.
    public static let echoBelow: Float = 0.1
    public static let replayWithin: Float = 0.2
    public static let copyWithin: Float = 0.01
    public static let staleWithin: Double = 0.05

    /// How far a step is from every update built only from the statistics
    /// of the steps its author received the round before: the relative
    /// residual of the least-squares fit δ ≈ a·μ + b·σ (μ, σ the
    /// coordinate-wise mean and standard deviation of those steps). A
    /// trained update is far from that plane; one made of the crowd's last
    /// statistics (a shifted mean, as ALIE or IPM send) lies in it.
    public static func staleResidual(step: [Float], previous: [[Float]]) -> Double? {
        let d = step.count
        guard !previous.isEmpty, previous.allSatisfy({ $0.count == d }) else { return nil }
        // The same statistics ALIE and IPM compute from what they received.
        let (mu32, sigma32) = Attack.moments(previous, d)
        let mu = mu32.map(Double.init), sigma = sigma32.map(Double.init)
        var mm = 0.0, ms = 0.0, ss = 0.0, ym = 0.0, ys = 0.0, yy = 0.0
        for i in 0..<d {
            let y = Double(step[i])
            mm += mu[i] * mu[i]; ms += mu[i] * sigma[i]; ss += sigma[i] * sigma[i]
            ym += y * mu[i]; ys += y * sigma[i]; yy += y * y
        }
        guard yy > 0 else { return nil }
        // Normal equations of the 2×2 fit, with a 1-D fallback when μ and σ are parallel.
        let det = mm * ss - ms * ms
        var explained: Double
        if det > 1e-12 * max(mm * ss, 1e-300) {
            let a = (ym * ss - ys * ms) / det, b = (ys * mm - ym * ms) / det
            explained = a * ym + b * ys
        } else if mm > 0 {
            explained = ym * ym / mm
        } else {
            explained = 0
        }
        explained = min(max(explained, 0), yy)
        return ((yy - explained) / yy).squareRoot()
    }

    /// Which updates a gate stops, with the reason (nil: scored).
    /// - Parameters:
    ///   - updates: the included updates (full models).
    ///   - base: the model the round started from.
    ///   - previousChange: base minus the previous round's starting model (nil in round 1).
    ///   - trimmed: coordinates the rule trimmed from each update.
    ///   - beta: the rule's trim fraction per side (0 for rules that do not trim).
    public static func gates(updates: [[Float]], base: [Float], previousChange: [Float]?, trimmed: [Int], beta: Double) -> [Gate?] {
        gates(updates: updates, bases: updates.map { _ in base }, previousChanges: updates.map { _ in previousChange }, trimmed: trimmed, beta: beta)
    }

    /// Gates with each update measured from its own author's starting model
    /// (`bases[i]`) and that author's previous change (peers that screen
    /// differently start a round from different models).
    public static func gates(updates: [[Float]], bases: [[Float]], previousChanges: [[Float]?], previousSteps: [[[Float]]] = [],
                             trimmed: [Int], beta: Double) -> [Gate?] {
        let steps = updates.indices.map { i in zip(updates[i], bases[i]).map { $0 - $1 } }
        let norms = steps.map { norm($0) }
        let sortedNorms = norms.sorted()
        let median = sortedNorms.isEmpty ? 0 : sortedNorms[sortedNorms.count / 2]
        let d = bases.first?.count ?? 0
        return steps.indices.map { i -> Gate? in
            if norms[i] <= echoBelow * median { return .echo }
            if let previousChange = previousChanges[i], case let previousNorm = norm(previousChange), previousNorm > 0,
               distance(steps[i], previousChange) <= replayWithin * previousNorm { return .replay }
            if i < previousSteps.count, let r = staleResidual(step: steps[i], previous: previousSteps[i]), r <= staleWithin { return .stale }
            for j in steps.indices where j != i && norms[j] > 0 && distance(steps[i], steps[j]) <= copyWithin * norms[j] { return .copy }
            if d > 0, i < trimmed.count, Double(trimmed[i]) > (0.5 + beta) * Double(d) { return .trimmed }
            return nil
        }
    }

    /// The Shapley values of `players` players under `utility`, which maps a
    /// coalition (sorted player indices) to its utility; the empty
    /// coalition's utility is taken as 0.
    public struct Values: Sendable, Equatable {
        public var values: [Double]
        /// Distinct coalitions evaluated.
        public var evaluations: Int
        /// Permutations sampled (0 when exact).
        public var permutations: Int
        public var exact: Bool
    }

    public static func shapley(players n: Int, seed: UInt64, exactUpTo: Int = 10, tolerance: Double = 0.01,
                               utility: ([Int]) -> Double) -> Values {
        let v = shapley(players: n, dimensions: 1, seed: seed, exactUpTo: exactUpTo, tolerance: tolerance) { [utility($0)] }
        return Values(values: v.values.map { $0[0] }, evaluations: v.evaluations, permutations: v.permutations, exact: v.exact)
    }

    /// Shapley values per player and component, for `shapley(players:dimensions:…)`.
    public struct VectorValues: Sendable, Equatable {
        /// values[player][component]
        public var values: [[Double]]
        public var evaluations: Int
        public var permutations: Int
        public var exact: Bool
    }

    /// Shapley values of a game whose utility is a vector of `dimensions`
    /// components (one per class): by linearity, component k of a player's
    /// value is its Shapley value in the game of component k. Every
    /// coalition is evaluated once for all components; sampling (above
    /// `exactUpTo` players) truncates and stops on L1 distances over the
    /// components.
    public static func shapley(players n: Int, dimensions d: Int, seed: UInt64, exactUpTo: Int = 10, tolerance: Double = 0.01,
                               utility: ([Int]) -> [Double]) -> VectorValues {
        precondition(n <= 128, "at most 128 players (NetworkConfig refuses more members)")
        guard n > 0 else { return VectorValues(values: [], evaluations: 0, permutations: 0, exact: true) }
        let zero = [Double](repeating: 0, count: d)
        var cache: [UInt128: [Double]] = [0: zero]
        func u(_ mask: UInt128) -> [Double] {
            if let v = cache[mask] { return v }
            let members = (0..<n).filter { mask & (1 << UInt128($0)) != 0 }
            let v = utility(members)
            precondition(v.count == d, "utility returned \(v.count) components, expected \(d)")
            cache[mask] = v
            return v
        }
        var phi = [[Double]](repeating: zero, count: n)
        if n <= exactUpTo {
            // φ_i = Σ_{S ∌ i} |S|!(n−|S|−1)!/n! · (u(S ∪ {i}) − u(S)),
            // with every coalition's utility evaluated once, in mask order,
            // into one flat table (mask × component).
            var weight = [Double](repeating: 0, count: n + 1)  // weight[n] is never used (no player is outside the grand coalition)
            for s in 0..<n { weight[s] = 1 / (Double(n) * binomial(n - 1, s)) }
            let count = 1 << n
            var table = [Double](repeating: 0, count: count * d)
            for mask in 1..<count {
                let v = utility((0..<n).filter { mask & (1 << $0) != 0 })
                precondition(v.count == d, "utility returned \(v.count) components, expected \(d)")
                for k in 0..<d { table[mask * d + k] = v[k] }
            }
            table.withUnsafeBufferPointer { t in
                for mask in 0..<count {
                    let w = weight[mask.nonzeroBitCount]
                    for i in 0..<n where mask & (1 << i) == 0 {
                        let with = (mask | (1 << i)) * d, without = mask * d
                        for k in 0..<d { phi[i][k] += w * (t[with + k] - t[without + k]) }
                    }
                }
            }
            return VectorValues(values: phi, evaluations: count - 1, permutations: 0, exact: true)
        }
        // Sampled permutations (GTG-Shapley): within a permutation, once the
        // prefix is within `tolerance` of the grand coalition's utility the
        // remaining marginals count as 0; stop when the estimates moved less
        // than `tolerance` (relative, mean over players) over the last
        // `window` permutations, after at least `minimum`. Distances are L1
        // over the components, so that gains in one class and losses in
        // another do not cancel.
        var rng = SeededGenerator(seed: seed, stream: "gtg-shapley")
        let full: UInt128 = n == 128 ? .max : (1 << UInt128(n)) - 1
        let grand = u(full)
        let grandSize = grand.map(abs).reduce(0, +)
        func l1(_ a: [Double], _ b: [Double]) -> Double { zip(a, b).map { abs($0 - $1) }.reduce(0, +) }
        var history: [[[Double]]] = []
        let window = 5, minimum = 10, maximum = 50 + 5 * n
        var k = 0
        while k < maximum {
            k += 1
            var order = Array(0..<n)
            rng.shuffle(&order)
            var mask: UInt128 = 0
            var previous = zero
            for i in order {
                if l1(grand, previous) < tolerance * grandSize { break }
                mask |= 1 << UInt128(i)
                let v = u(mask)
                for c in 0..<d { phi[i][c] += v[c] - previous[c] }
                previous = v
            }
            let estimate = phi.map { $0.map { $0 / Double(k) } }
            history.append(estimate)
            if k >= minimum, history.count > window {
                let old = history[history.count - 1 - window]
                let scale = estimate.map { $0.map(abs).reduce(0, +) }.reduce(0, +) / Double(n) + 1e-12
                let moved = zip(estimate, old).map { l1($0, $1) }.reduce(0, +) / Double(n)
                if moved / scale < tolerance { break }
            }
        }
        return VectorValues(values: phi.map { $0.map { $0 / Double(k) } }, evaluations: cache.count - 1, permutations: k, exact: false)
    }

    /// `shapley(players:dimensions:…)` for a utility computed in batches (an
    /// external learner evaluates many coalitions' models per request): plays
    /// the game with the coalitions known so far (others count as zero),
    /// has `batch` compute the ones that play asked for, and repeats until a
    /// play asks for none. That last play is the one a direct utility gives:
    /// each step it takes depends only on known values.
    public static func shapley(players n: Int, dimensions d: Int, seed: UInt64, exactUpTo: Int = 10, tolerance: Double = 0.01,
                               batch: ([[Int]]) async throws -> [[Double]]) async throws -> VectorValues {
        var known: [[Int]: [Double]] = [:]
        let zero = [Double](repeating: 0, count: d)
        while true {
            var missing: [[Int]] = []
            var asked = Set<[Int]>()
            let values = shapley(players: n, dimensions: d, seed: seed, exactUpTo: exactUpTo, tolerance: tolerance) { coalition in
                if let v = known[coalition] { return v }
                if asked.insert(coalition).inserted { missing.append(coalition) }
                return zero
            }
            if missing.isEmpty { return values }
            let computed = try await batch(missing)
            precondition(computed.count == missing.count, "batch returned \(computed.count) utilities for \(missing.count) coalitions")
            for (c, v) in zip(missing, computed) { known[c] = v }
        }
    }

    static func binomial(_ n: Int, _ k: Int) -> Double {
        var r = 1.0
        for i in 0..<k { r = r * Double(n - i) / Double(i + 1) }
        return r
    }

    static func norm(_ v: [Float]) -> Float {
        v.withUnsafeBufferPointer { a in VectorMath.squaredNorm(a).squareRoot() }
    }

    static func distance(_ a: [Float], _ b: [Float]) -> Float {
        Float(a.withUnsafeBufferPointer { x in b.withUnsafeBufferPointer { VectorMath.squaredDistance(x, $0).squareRoot() } })
    }
}
