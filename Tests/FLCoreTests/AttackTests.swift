import Testing

@testable import FLCore

@Suite("attacks for robustness experiments")
struct AttackTests {
    @Test func inverseNormalMatchesKnownQuantiles() {
        // Φ⁻¹ from standard tables.
        for (p, z) in [(0.5, 0.0), (0.6, 0.2533471), (0.7, 0.5244005), (0.975, 1.9599640), (0.01, -2.3263479), (0.999, 3.0902323)] {
            #expect(abs(Attack.inverseNormalCDF(p) - z) < 1e-6, "Φ⁻¹(\(p))")
        }
    }

    @Test func alieZFollowsThePaper() {
        // s = ⌊n/2 + 1⌋ − f; z = Φ⁻¹((n − s)/n).
        #expect(abs(Attack.alieZ(n: 5, f: 1) - 0.2533471) < 1e-6)   // s = 2, Φ⁻¹(0.6)
        #expect(abs(Attack.alieZ(n: 10, f: 2) - 0.2533471) < 1e-6)  // s = 4, Φ⁻¹(0.6)
        #expect(abs(Attack.alieZ(n: 10, f: 3) - 0.5244005) < 1e-6)  // s = 3, Φ⁻¹(0.7)
    }

    @Test func eachAttackSendsWhatItsDefinitionSays() {
        var rng = SeededGenerator(seed: 1)
        let base: [Float] = [1, 1, 1], local: [Float] = [2, 0, 1]
        let observed: [[Float]] = [[1, -1, 0], [3, 1, 0]]  // mean [2, 0, 0], std [1, 1, 0]
        func send(_ a: Attack) -> [Float] { a.update(local: local, base: base, observed: observed, members: 5, attackers: 1, rng: &rng) }
        #expect(send(.signFlip(scale: 4)) == [-3, 5, 1])
        #expect(send(.freeRider) == base)
        #expect(send(.labelFlip(boost: 1)) == local)
        #expect(send(.labelFlip(boost: 4)) == [5, -3, 1])
        #expect(send(.labelFlip(boost: nil)) == [6, -4, 1])  // boosted by the 5 members
        #expect(send(.equivocate) == local)  // the round engine signs the second, flipped update
        #expect(send(.ipm(epsilon: 0.5)) == [0, 1, 1])
        #expect(send(.alie(z: 1)) == [2, 0, 1])  // base + μ − 1·σ
        #expect(Attack.alie(z: 1).update(local: local, base: base, observed: [], members: 5, attackers: 1, rng: &rng) == base)  // nothing seen yet
        let noisy = send(.gaussian(sigma: 1))
        #expect(noisy != base && noisy.allSatisfy(\.isFinite))
        #expect(Attack.labelFlip(boost: 4).trainingLabels([0, 1, 9], classes: 10) == [9, 8, 0])
        #expect(Attack.signFlip(scale: 4).trainingLabels([0, 1], classes: 10) == [0, 1])
        #expect(send(.lyingAssessor) == local)  // lies only in its scores
        // Replay: base + the previous change, plus noise of about 5 % of its norm; the base in round 1.
        let change: [Float] = (0..<1000).map { Float($0 % 7) - 3 }
        let big = [Float](repeating: 1, count: 1000)
        let replayed = Attack.replay(noise: 0.05).update(local: big, base: big, observed: [], previousChange: change, members: 5, attackers: 1, rng: &rng)
        let offBy = zip(replayed, zip(big, change).map { $0 + $1 }).map { Double($0 - $1) * Double($0 - $1) }.reduce(0, +).squareRoot()
        let changeNorm = change.map { Double($0 * $0) }.reduce(0, +).squareRoot()
        #expect(offBy > 0.03 * changeNorm && offBy < 0.07 * changeNorm)
        #expect(send(.replay(noise: 0.05)) == base)
        #expect(Attack.names.allSatisfy { Attack.named($0)?.name == $0 })
    }
}
