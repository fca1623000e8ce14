/// A first-order optimizer with its hyper-parameters.
public enum OptimizerKind: Sendable, Equatable, Codable {
    /// Minibatch SGD with (heavy-ball) momentum: v ← μv + g; w ← w − η·v.
    case sgd(learningRate: Float, momentum: Float)
    /// Adam (Kingma and Ba 2015) with β₁ = 0.9, β₂ = 0.999, ε = 1e-8.
    case adam(learningRate: Float)
}

/// Optimizer state for one parameter vector.
public struct Optimizer: Sendable {
    public let kind: OptimizerKind
    private var first: [Float]
    private var second: [Float]
    private var step = 0

    /// Fresh state (zero moments) for `count` parameters.
    public init(_ kind: OptimizerKind, count: Int) {
        self.kind = kind
        first = [Float](repeating: 0, count: count)
        if case .adam = kind {
            second = [Float](repeating: 0, count: count)
        } else {
            second = []
        }
    }

    /// Applies one update of `parameters` with `gradient`.
    public mutating func apply(_ gradient: UnsafeBufferPointer<Float>, to parameters: UnsafeMutableBufferPointer<Float>) {
        step += 1
        let n = parameters.count
        switch kind {
        case .sgd(let lr, let mu):
            first.withUnsafeMutableBufferPointer { v in
                for i in 0..<n {
                    v[i] = mu * v[i] + gradient[i]
                    parameters[i] -= lr * v[i]
                }
            }
        case .adam(let lr):
            let b1: Float = 0.9, b2: Float = 0.999, eps: Float = 1e-8
            let c1 = 1 - Float(_pow(Double(b1), Double(step)))
            let c2 = 1 - Float(_pow(Double(b2), Double(step)))
            let stepSize = lr * c2.squareRoot() / c1
            first.withUnsafeMutableBufferPointer { m in
                second.withUnsafeMutableBufferPointer { v in
                    for i in 0..<n {
                        let g = gradient[i]
                        m[i] = b1 * m[i] + (1 - b1) * g
                        v[i] = b2 * v[i] + (1 - b2) * g * g
                        parameters[i] -= stepSize * m[i] / (v[i].squareRoot() + eps * c2.squareRoot())
                    }
                }
            }
        }
    }
}
