import FLCore
import Testing

@Suite("contribution scoring")
struct ContributionScorerTests {
    /// A consortium of 64 or 128 members (the demo allows 64): players beyond
    /// a 64-bit coalition mask. A peer scoring 63 members or more crashed on a precondition.
    @Test(arguments: [64, 128]) func sampledValuesOfAManyMemberAdditiveGame(_ n: Int) {
        let worth = (0..<n).map { Double($0 % 7 + 1) }
        let v = ContributionScorer.shapley(players: n, seed: 3) { s in s.map { worth[$0] }.reduce(0, +) }
        #expect(!v.exact && v.values.count == n)
        let total = worth.reduce(0, +)
        // Truncation stops a permutation within 1 % of the grand coalition: the values sum to it within that.
        #expect(abs(v.values.reduce(0, +) - total) <= 0.011 * total, "\(v.values.reduce(0, +)) vs \(total)")
        #expect(v.values[6] > v.values[0], "a player worth 7 scores above one worth 1: \(v.values[6]) vs \(v.values[0])")
    }

    /// In an additive game each player's Shapley value is its own worth.
    @Test func anAdditiveGameGivesEachPlayerItsWorth() {
        let worth = [3.0, -1.0, 0.5, 2.0, 0.0]
        let v = ContributionScorer.shapley(players: 5, seed: 1) { s in s.map { worth[$0] }.reduce(0, +) }
        #expect(v.exact && v.evaluations == 31)
        for (a, b) in zip(v.values, worth) { #expect(abs(a - b) < 1e-12) }
    }

    /// Efficiency and symmetry on a non-additive game: the values sum to the
    /// grand coalition's utility, and two interchangeable players get the same.
    @Test func valuesAreEfficientAndSymmetric() {
        // Utility saturates: the square root of the number of "useful" players (0, 1, 2), plus player 3's fixed 0.3.
        let utility: ([Int]) -> Double = { s in Double(s.filter { $0 < 3 }.count).squareRoot() + (s.contains(3) ? 0.3 : 0) }
        let v = ContributionScorer.shapley(players: 4, seed: 1, utility: utility)
        #expect(abs(v.values.reduce(0, +) - utility([0, 1, 2, 3])) < 1e-12)
        #expect(abs(v.values[0] - v.values[1]) < 1e-12 && abs(v.values[1] - v.values[2]) < 1e-12)
        #expect(abs(v.values[3] - 0.3) < 1e-12)
        #expect(abs(v.values[0] - 3.0.squareRoot() / 3) < 1e-12)
    }

    /// Per-class values: component k of each player's value is its Shapley
    /// value in the game of component k alone (linearity), exactly and when
    /// sampled; every coalition is evaluated once for all components.
    @Test func perClassValuesAreTheGamesOfEachClass() {
        // Class 0 is additive; class 1 saturates on players 0–2 (player 3 is worth 0.3 there).
        let worth = [1.0, -2.0, 0.5, 4.0]
        let utility: ([Int]) -> [Double] = { s in
            [s.map { worth[$0] }.reduce(0, +), Double(s.filter { $0 < 3 }.count).squareRoot() + (s.contains(3) ? 0.3 : 0)]
        }
        var calls = 0
        let v = ContributionScorer.shapley(players: 4, dimensions: 2, seed: 1) { s in calls += 1; return utility(s) }
        #expect(v.exact && v.evaluations == 15 && calls == 15)
        for k in 0..<2 {
            let alone = ContributionScorer.shapley(players: 4, seed: 1) { utility($0)[k] }
            for p in 0..<4 { #expect(abs(v.values[p][k] - alone.values[p]) < 1e-12, "player \(p) class \(k)") }
        }
        #expect(abs(v.values[3][1] - 0.3) < 1e-12 && abs(v.values[1][0] + 2) < 1e-12)
        // Sampled (12 players): repeatable, and each class's values add up to its grand coalition's utility within the truncation.
        let many: ([Int]) -> [Double] = { s in [Double(s.count), Double(s.filter { $0 % 2 == 0 }.count)] }
        let sampled = ContributionScorer.shapley(players: 12, dimensions: 2, seed: 5, utility: many)
        #expect(!sampled.exact && sampled == ContributionScorer.shapley(players: 12, dimensions: 2, seed: 5, utility: many))
        #expect(abs(sampled.values.map { $0[0] }.reduce(0, +) - 12) < 0.2 && abs(sampled.values.map { $0[1] }.reduce(0, +) - 6) < 0.2)
        #expect(sampled.values[1][1] == 0 && sampled.values[0][1] > 0.5)
    }

    /// Above `exactUpTo`, sampled permutations come close to the exact values
    /// and are the same for the same seed.
    @Test func sampledValuesApproachTheExactOnesAndRepeat() {
        let worth = (0..<12).map { Double($0 % 4) - 0.5 }
        // Diminishing returns on the sum of worth, so truncation and sampling matter.
        let utility: ([Int]) -> Double = { s in let x = s.map { worth[$0] }.reduce(0, +); return x - 0.01 * x * x }
        let exact = ContributionScorer.shapley(players: 12, seed: 7, exactUpTo: 12, utility: utility)
        let sampled = ContributionScorer.shapley(players: 12, seed: 7, exactUpTo: 10, utility: utility)
        let again = ContributionScorer.shapley(players: 12, seed: 7, exactUpTo: 10, utility: utility)
        #expect(exact.exact && !sampled.exact && sampled.permutations >= 10)
        #expect(sampled == again)
        let scale = exact.values.map(abs).max()!
        for (a, b) in zip(sampled.values, exact.values) { #expect(abs(a - b) < 0.15 * scale, "\(sampled.values) vs \(exact.values)") }
        // Fewer coalitions than the 4095 of the exact computation.
        #expect(sampled.evaluations < exact.evaluations)
    }

    /// Coalitions evaluated in batches give the values of the direct game,
    /// exact and sampled, with the same coalitions evaluated.
    @Test(arguments: [5, 12]) func batchedCoalitionsGiveTheDirectValues(_ n: Int) async throws {
        let worth = (0..<n).map { Double($0 % 4) - 0.5 }
        let utility: ([Int]) -> [Double] = { s in let x = s.map { worth[$0] }.reduce(0, +); return [x - 0.01 * x * x, Double(s.count)] }
        let direct = ContributionScorer.shapley(players: n, dimensions: 2, seed: 3, utility: utility)
        var requests = 0
        let batched = try await ContributionScorer.shapley(players: n, dimensions: 2, seed: 3) { (coalitions: [[Int]]) async throws -> [[Double]] in
            requests += 1
            return coalitions.map(utility)
        }
        #expect(batched == direct)
        #expect(requests >= 1 && (n > 10 || requests == 1), "\(requests) batches")
    }

    /// An update made of the crowd's last statistics (ALIE's μ − zσ, IPM's −εμ)
    /// lies in the plane of μ and σ; a trained one does not.
    @Test func staleUpdatesAreExplainedByLastRoundsStatistics() {
        var rng = SeededGenerator(seed: 3)
        let previous: [[Float]] = (0..<6).map { _ in (0..<200).map { _ in Float(rng.nextGaussian()) + 0.3 } }
        let alie = Attack.alie(z: 0.84).update(local: [Float](repeating: 0, count: 200), base: [Float](repeating: 0, count: 200), observed: previous,
                                               members: 10, attackers: 4, rng: &rng)
        let ipm = Attack.ipm(epsilon: 0.1).update(local: [Float](repeating: 0, count: 200), base: [Float](repeating: 0, count: 200), observed: previous,
                                                  members: 10, attackers: 4, rng: &rng)
        let trained: [Float] = (0..<200).map { _ in Float(rng.nextGaussian()) + 0.3 }
        #expect(ContributionScorer.staleResidual(step: alie, previous: previous)! < 1e-4)
        #expect(ContributionScorer.staleResidual(step: ipm, previous: previous)! < 1e-4)
        #expect(ContributionScorer.staleResidual(step: trained, previous: previous)! > 0.5)
        let zero = [Float](repeating: 0, count: 200)
        let gates = ContributionScorer.gates(updates: [alie, trained], bases: [zero, zero], previousChanges: [nil, nil], previousSteps: [previous, previous],
                                             trimmed: [0, 0], beta: 0.2)
        #expect(gates == [.stale, nil])
    }

    @Test func gatesCatchEchoReplayCopyAndHeavyTrimming() {
        let base: [Float] = [1, 1, 1, 1]
        let previous: [Float] = [0.5, -0.5, 0.5, -0.5]
        let updates: [[Float]] = [
            [1.6, 0.9, 1.2, 0.7],  // honest
            [0.8, 1.4, 1.1, 1.3],  // honest
            [1.0, 1.0, 1.0, 1.0001],  // echo: the base back
            [1.52, 0.49, 1.5, 0.51],  // replay: base + previous change + a little noise
            [0.8, 1.4, 1.1, 1.3001],  // copy of update 1 (so update 1 is a copy of it too)
            [1.3, 1.3, 0.6, 0.6],  // trimmed in 4 of 4 coordinates
        ]
        let gates = ContributionScorer.gates(updates: updates, base: base, previousChange: previous, trimmed: [0, 1, 2, 0, 1, 4], beta: 0.2)
        #expect(gates == [nil, .copy, .echo, .replay, .copy, .trimmed])
        // Round 1 has no previous change: no replay gate.
        #expect(ContributionScorer.gates(updates: [updates[0], updates[3]], base: base, previousChange: nil, trimmed: [0, 0], beta: 0) == [nil, nil])
    }
}
