/// Misbehaviour of a member, for evaluating robust aggregation. Kept apart
/// from normal operation: a peer attacks only when its configuration has an
/// `attack:` section (or `flpeer demo --byzantine K --attack NAME`).
///
/// Updates are full models; `base` is the model the round started from and a
/// member's delta is `update − base`.
public enum Attack: Sendable, Equatable, CustomStringConvertible {
    /// Sends `base − scale · (local − base)`: its honest step, reversed and scaled.
    case signFlip(scale: Double)
    /// Sends `base + N(0, σ²)` per coordinate instead of training.
    case gaussian(sigma: Double)
    /// Trains on labels mapped `y → C − 1 − y` and sends
    /// `base + boost · (local − base)`: explicit boosting (Bhagoji et al.
    /// 2019), by the number of members when `boost` is nil, so that its step
    /// would outweigh the others' in a plain mean.
    case labelFlip(boost: Double?)
    /// "A little is enough" (Baruch, Baruch and Goldberg 2019): `base + μ − z·σ`
    /// with μ, σ the coordinate-wise mean and standard deviation of the honest
    /// deltas it saw in the previous round; `z` from the paper's formula when nil.
    /// It does not train: before it has seen any update (round 1) it sends the base.
    case alie(z: Double?)
    /// Inner product manipulation (Xie, Koyejo and Gupta 2020): `base − ε·μ`.
    case ipm(epsilon: Double)
    /// Sends back the model it received, without training.
    case freeRider
    /// Trains honestly, but signs two different updates for the round (the
    /// honest one, and its sign-flip) and shows each to a different half of
    /// its neighbours: a fork of its ledger chain (the round engine does the
    /// signing and sending; `update` returns the honest model).
    case equivocate
    /// Does not train: re-sends the previous round's aggregate change
    /// (`base + (base − previous base)`) plus Gaussian noise of relative size
    /// `noise` (the noise's norm is about `noise` times the change's).
    case replay(noise: Double)
    /// Trains and sends honestly, but as an assessor reports the maximal
    /// score for itself and zero for every other member (the round engine
    /// writes the scores; `update` returns the honest model).
    case lyingAssessor

    public static let names = ["sign-flip", "gaussian", "label-flip", "alie", "ipm", "free-rider", "equivocate", "replay", "lying-assessor"]

    public var name: String {
        switch self {
        case .signFlip: "sign-flip"
        case .gaussian: "gaussian"
        case .labelFlip: "label-flip"
        case .alie: "alie"
        case .ipm: "ipm"
        case .freeRider: "free-rider"
        case .equivocate: "equivocate"
        case .replay: "replay"
        case .lyingAssessor: "lying-assessor"
        }
    }

    public var description: String {
        switch self {
        case .signFlip(let s): "sign-flip(scale=\(s))"
        case .gaussian(let s): "gaussian(sigma=\(s))"
        case .labelFlip(let b): b.map { "label-flip(boost=\($0))" } ?? "label-flip(boost=members)"
        case .alie(let z): z.map { "alie(z=\($0))" } ?? "alie(z=formula)"
        case .ipm(let e): "ipm(epsilon=\(e))"
        case .freeRider: "free-rider"
        case .equivocate: "equivocate"
        case .replay(let n): "replay(noise=\(n))"
        case .lyingAssessor: "lying-assessor"
        }
    }

    /// The attack with the usual parameters (sign-flip ×4, label-flip boosted by the member count, σ = 1, ε = 0.1).
    public static func named(_ name: String) -> Attack? {
        switch name {
        case "sign-flip": .signFlip(scale: 4)
        case "gaussian": .gaussian(sigma: 1)
        case "label-flip": .labelFlip(boost: nil)
        case "alie": .alie(z: nil)
        case "ipm": .ipm(epsilon: 0.1)
        case "free-rider": .freeRider
        case "equivocate": .equivocate
        case "replay": .replay(noise: 0.05)
        case "lying-assessor": .lyingAssessor
        default: nil
        }
    }

    /// ALIE's z for `n` members of which `f` attack: s = ⌊n/2 + 1⌋ − f members
    /// must be "won over", z = Φ⁻¹((n − s) / n).
    public static func alieZ(n: Int, f: Int) -> Double {
        let s = n / 2 + 1 - f
        let p = min(max(Double(n - s) / Double(max(n, 1)), 1e-6), 1 - 1e-6)
        return inverseNormalCDF(p)
    }

    /// Labels as the attacker trains on them.
    public func trainingLabels(_ labels: [Int], classes: Int) -> [Int] {
        if case .labelFlip = self { labels.map { classes - 1 - $0 } } else { labels }
    }

    /// The parameters the attacker publishes.
    /// - Parameters:
    ///   - local: what honest training produced this round.
    ///   - base: the model the round started from.
    ///   - observed: other members' deltas from the previous round (for ALIE and IPM).
    ///   - previousChange: the base minus the previous round's base (for replay; nil in round 1).
    ///   - members: consortium size and number of attackers (for ALIE's z).
    public func update(local: [Float], base: [Float], observed: [[Float]], previousChange: [Float]? = nil, members: Int, attackers: Int,
                       rng: inout SeededGenerator) -> [Float] {
        let d = base.count
        switch self {
        case .signFlip(let scale):
            let s = Float(scale)
            return (0..<d).map { base[$0] - s * (local[$0] - base[$0]) }
        case .gaussian(let sigma):
            return (0..<d).map { base[$0] + Float(sigma * rng.nextGaussian()) }
        case .labelFlip(let boost):
            let b = Float(boost ?? Double(members))
            return (0..<d).map { base[$0] + b * (local[$0] - base[$0]) }
        case .equivocate, .lyingAssessor:
            return local
        case .replay(let noise):
            guard let change = previousChange, change.count == d else { return base }
            let size = change.withUnsafeBufferPointer { VectorMath.squaredNorm($0).squareRoot() }
            let sigma = noise * Double(size) / Double(max(d, 1)).squareRoot()
            return (0..<d).map { base[$0] + change[$0] + Float(sigma * rng.nextGaussian()) }
        case .freeRider:
            return base
        case .alie(let z):
            // Without observed updates (round 1) there are no statistics to hide in: nothing is sent but the base.
            guard !observed.isEmpty else { return base }
            let (mu, sd) = Attack.moments(observed, d)
            let zz = Float(z ?? Attack.alieZ(n: members, f: attackers))
            return (0..<d).map { base[$0] + mu[$0] - zz * sd[$0] }
        case .ipm(let epsilon):
            let (mu, _) = Attack.moments(observed.isEmpty ? [zip(local, base).map { $0 - $1 }] : observed, d)
            let e = Float(epsilon)
            return (0..<d).map { base[$0] - e * mu[$0] }
        }
    }

    /// Coordinate-wise mean and population standard deviation.
    static func moments(_ xs: [[Float]], _ d: Int) -> ([Float], [Float]) {
        let n = Double(xs.count)
        var mean = [Double](repeating: 0, count: d), sq = [Double](repeating: 0, count: d)
        for x in xs where x.count == d {
            for i in 0..<d {
                mean[i] += Double(x[i])
                sq[i] += Double(x[i]) * Double(x[i])
            }
        }
        return ((0..<d).map { Float(mean[$0] / n) }, (0..<d).map { Float(max(0, sq[$0] / n - (mean[$0] / n) * (mean[$0] / n)).squareRoot()) })
    }

    /// Φ⁻¹(p) by Acklam's rational approximation (relative error < 1.2e-9).
    public static func inverseNormalCDF(_ p: Double) -> Double {
        let a = [-3.969683028665376e+01, 2.209460984245205e+02, -2.759285104469687e+02, 1.383577518672690e+02, -3.066479806614716e+01, 2.506628277459239e+00]
        let b = [-5.447609879822406e+01, 1.615858368580409e+02, -1.556989798598866e+02, 6.680131188771972e+01, -1.328068155288572e+01]
        let c = [-7.784894002430293e-03, -3.223964580411365e-01, -2.400758277161838e+00, -2.549732539343734e+00, 4.374664141464968e+00, 2.938163982698783e+00]
        let dd = [7.784695709041462e-03, 3.224671290700398e-01, 2.445134137142996e+00, 3.754408661907416e+00]
        let low = 0.02425
        if p < low {
            let q = (-2 * _log(p)).squareRoot()
            return (((((c[0] * q + c[1]) * q + c[2]) * q + c[3]) * q + c[4]) * q + c[5]) / ((((dd[0] * q + dd[1]) * q + dd[2]) * q + dd[3]) * q + 1)
        }
        if p > 1 - low {
            let q = (-2 * _log(1 - p)).squareRoot()
            return -(((((c[0] * q + c[1]) * q + c[2]) * q + c[3]) * q + c[4]) * q + c[5]) / ((((dd[0] * q + dd[1]) * q + dd[2]) * q + dd[3]) * q + 1)
        }
        let q = p - 0.5, r = q * q
        return (((((a[0] * r + a[1]) * r + a[2]) * r + a[3]) * r + a[4]) * r + a[5]) * q / (((((b[0] * r + b[1]) * r + b[2]) * r + b[3]) * r + b[4]) * r + 1)
    }
}
