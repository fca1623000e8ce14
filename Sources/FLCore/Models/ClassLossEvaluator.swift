/// Mean loss per class of many candidate parameter vectors on one fixed set
/// of rows, as the credit scorer needs for every coalition of a round: the
/// same numbers as `Network.classLosses(on:classes:)`, bit for bit, without
/// its per-call allocations and input copy, and with four outputs of a
/// layer computed per pass over a row.
public struct ClassLossEvaluator: Sendable {
    public let network: Network
    public let classes: [Int]
    private let features: [Float]
    private let labels: [Int]
    private let rows: Int
    /// Where each label's loss goes in the result (-1: not scored).
    private let slot: [Int]
    private let counts: [Int]
    /// One buffer per layer output, rows × width.
    private var activations: [[Float]]

    /// `network` gives the layout; its parameters are not used.
    public init(network: Network, data: Dataset, classes: [Int]) {
        precondition(data.featureCount == network.spec.inputs, "data and network disagree on the feature count")
        self.network = network
        self.classes = classes
        self.features = data.features
        self.labels = data.labels
        self.rows = data.rows
        var slot = [Int](repeating: -1, count: network.spec.classes)
        for (i, c) in classes.enumerated() where c >= 0 && c < network.spec.classes { slot[c] = i }
        self.slot = slot
        var counts = [Int](repeating: 0, count: classes.count)
        for y in data.labels where y >= 0 && y < slot.count && slot[y] >= 0 { counts[slot[y]] += 1 }
        self.counts = counts
        self.activations = network.layers.map { [Float](repeating: 0, count: max(1, data.rows) * $0.outputs) }
    }

    /// The mean negative log-likelihood of each of `classes` over its rows (0 for a class without rows).
    public mutating func losses(_ parameters: [Float]) -> [Double] {
        precondition(parameters.count == network.parameters.count, "parameter vector has the wrong length")
        let layers = network.layers, rows = self.rows
        parameters.withUnsafeBufferPointer { p in
            features.withUnsafeBufferPointer { x in
                for (l, layer) in layers.enumerated() {
                    let last = l == layers.count - 1
                    let previous = l == 0 ? nil : activations[l - 1]
                    activations[l].withUnsafeMutableBufferPointer { out in
                        func run(_ input: UnsafeBufferPointer<Float>) {
                            for r in 0..<rows {
                                Self.layerRow(p.baseAddress!, layer, input.baseAddress! + r * layer.inputs, out.baseAddress! + r * layer.outputs, relu: !last)
                                if last { Network.softmaxInPlace(out.baseAddress! + r * layer.outputs, count: layer.outputs) }
                            }
                        }
                        if let previous { previous.withUnsafeBufferPointer(run) } else { run(x) }
                    }
                }
            }
        }
        let k = network.spec.classes
        var sums = [Double](repeating: 0, count: classes.count)
        activations[layers.count - 1].withUnsafeBufferPointer { prob in
            for (row, y) in labels.enumerated() where slot[y] >= 0 {
                sums[slot[y]] += ClassificationMetrics.negativeLogLikelihood(prob[row * k + y])
            }
        }
        return zip(sums, counts).map { $1 == 0 ? 0 : $0 / Double($1) }
    }

    /// Whether the model is linear in its parameters up to the softmax
    /// (logistic regression), so that the logits of a mean of parameter
    /// vectors are the mean of their logits.
    public var isLinear: Bool { network.layers.count == 1 }

    /// The logits (before the softmax) of a linear model on every row, rows × classes.
    public func logits(_ parameters: [Float]) -> [Float] {
        precondition(isLinear && parameters.count == network.parameters.count, "logits are for a linear model's parameter vector")
        let layer = network.layers[0], rows = self.rows
        var out = [Float](repeating: 0, count: rows * layer.outputs)
        parameters.withUnsafeBufferPointer { p in
            features.withUnsafeBufferPointer { x in
                out.withUnsafeMutableBufferPointer { o in
                    for r in 0..<rows {
                        Self.layerRow(p.baseAddress!, layer, x.baseAddress! + r * layer.inputs, o.baseAddress! + r * layer.outputs, relu: false)
                    }
                }
            }
        }
        return out
    }

    /// The class losses of the mean of linear models given by their `logits`
    /// (as `logits(_:)` returns): the same value as `losses` of the mean
    /// parameter vector in exact arithmetic, within float rounding here.
    public mutating func losses(meanOfLogits members: [[Float]]) -> [Double] {
        precondition(isLinear && !members.isEmpty, "the mean of at least one linear model")
        let k = network.spec.classes, n = rows * k
        let scale = 1 / Float(members.count)
        activations[0].withUnsafeMutableBufferPointer { z in
            members[0].withUnsafeBufferPointer { first in z.baseAddress!.update(from: first.baseAddress!, count: n) }
            for m in members.dropFirst() {
                m.withUnsafeBufferPointer { v in VectorMath.axpy(1, v, z) }
            }
            VectorMath.scale(z, by: scale)
            for r in 0..<rows { Network.softmaxInPlace(z.baseAddress! + r * k, count: k) }
        }
        var sums = [Double](repeating: 0, count: classes.count)
        activations[0].withUnsafeBufferPointer { prob in
            for (row, y) in labels.enumerated() where slot[y] >= 0 {
                sums[slot[y]] += ClassificationMetrics.negativeLogLikelihood(prob[row * k + y])
            }
        }
        return zip(sums, counts).map { $1 == 0 ? 0 : $0 / Double($1) }
    }

    /// One row through one dense layer: out[o] = w[o]·x + b[o] (ReLU unless last).
    @inline(__always)
    private static func layerRow(_ p: UnsafePointer<Float>, _ layer: Network.Layer, _ x: UnsafePointer<Float>, _ out: UnsafeMutablePointer<Float>, relu: Bool) {
        let ni = layer.inputs, no = layer.outputs
        var o = 0
        while o + 4 <= no {
            let w = p + layer.weightOffset + o * ni
            let d = VectorMath.dot4(x, w, w + ni, w + 2 * ni, w + 3 * ni, count: ni)
            out[o] = d.0 + p[layer.biasOffset + o]
            out[o + 1] = d.1 + p[layer.biasOffset + o + 1]
            out[o + 2] = d.2 + p[layer.biasOffset + o + 2]
            out[o + 3] = d.3 + p[layer.biasOffset + o + 3]
            o += 4
        }
        while o < no {
            out[o] = VectorMath.dot(UnsafeBufferPointer(start: x, count: ni), UnsafeBufferPointer(start: p + layer.weightOffset + o * ni, count: ni)) + p[layer.biasOffset + o]
            o += 1
        }
        if relu { for i in 0..<no where out[i] < 0 { out[i] = 0 } }
    }
}
