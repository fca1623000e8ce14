/// Mean loss per class of many candidate parameter vectors on one fixed set
/// of rows, as the credit scorer needs for every coalition of a round. The
/// rows are held eight at a time in `BlockedDense`'s transposed layout, so a
/// candidate costs one pass of register-tiled kernels per layer and a
/// vectorised softmax, and nothing is allocated per call. The values equal
/// `Network.classLosses(on:classes:)` up to float rounding (the same sums in
/// another order, and `BlockedDense.exp` for `expf`): within 1e-5 relative.
public struct ClassLossEvaluator: Sendable {
    public let network: Network
    public let classes: [Int]
    private let labels: [Int]
    private let rows: Int
    private let blocks: Int
    /// The features, blocked.
    private let input: [Float]
    /// Where each label's loss goes in the result (-1: not scored).
    private let slot: [Int]
    /// Per row of every block (padding included): where its true class's
    /// probability is in the last layer's buffer, and its slot (-1: padding or not scored).
    private let truthAt: [Int]
    private let truthSlot: [Int]
    private let counts: [Int]
    /// One blocked buffer per layer output.
    private var activations: [[Float]]

    /// `network` gives the layout; its parameters are not used.
    public init(network: Network, data: Dataset, classes: [Int]) {
        precondition(data.featureCount == network.spec.inputs, "data and network disagree on the feature count")
        self.network = network
        self.classes = classes
        self.labels = data.labels
        self.rows = data.rows
        self.blocks = BlockedDense.blocks(rows: data.rows)
        self.input = BlockedDense.transpose(data.features, rows: data.rows, width: data.featureCount)
        var slot = [Int](repeating: -1, count: network.spec.classes)
        for (i, c) in classes.enumerated() where c >= 0 && c < network.spec.classes { slot[c] = i }
        self.slot = slot
        var counts = [Int](repeating: 0, count: classes.count)
        for y in data.labels where y >= 0 && y < slot.count && slot[y] >= 0 { counts[slot[y]] += 1 }
        self.counts = counts
        let k = network.spec.classes, lanes = BlockedDense.lanes
        var truthAt = [Int](repeating: 0, count: self.blocks * lanes), truthSlot = [Int](repeating: -1, count: self.blocks * lanes)
        for (row, y) in data.labels.enumerated() where y >= 0 && y < k && slot[y] >= 0 {
            truthAt[row] = ((row / lanes) * k + y) * lanes + row % lanes
            truthSlot[row] = slot[y]
        }
        self.truthAt = truthAt
        self.truthSlot = truthSlot
        let blocks = max(1, self.blocks)
        self.activations = network.layers.map { [Float](repeating: 0, count: blocks * $0.outputs * BlockedDense.lanes) }
    }

    /// The mean negative log-likelihood of each of `classes` over its rows (0 for a class without rows).
    public mutating func losses(_ parameters: [Float]) -> [Double] {
        precondition(parameters.count == network.parameters.count, "parameter vector has the wrong length")
        forward(parameters, layers: network.layers.count)
        softmaxLast()
        return classMeans()
    }

    /// The class losses and the probabilities of every class on every row
    /// (rows × classes, row-major, as `Network.predictProbabilities`), from one pass.
    public mutating func lossesAndProbabilities(_ parameters: [Float]) -> (losses: [Double], probabilities: [Float]) {
        let losses = self.losses(parameters)
        let k = network.spec.classes, lanes = BlockedDense.lanes, rows = self.rows
        let probabilities = activations[activations.count - 1].withUnsafeBufferPointer { prob in
            [Float](unsafeUninitializedCapacity: rows * k) { out, count in
                for r in 0..<rows {
                    let base = (r / lanes) * k * lanes + r % lanes
                    for c in 0..<k { out[r * k + c] = prob[base + c * lanes] }
                }
                count = rows * k
            }
        }
        return (losses, probabilities)
    }

    /// Whether the model is linear in its parameters up to the softmax
    /// (logistic regression), so that the logits of a mean of parameter
    /// vectors are the mean of their logits.
    public var isLinear: Bool { network.layers.count == 1 }

    /// The logits (before the softmax) of a linear model on every row, in
    /// the evaluator's own (blocked) layout: for `losses(meanOfLogits:)`.
    public mutating func logits(_ parameters: [Float]) -> [Float] {
        precondition(isLinear && parameters.count == network.parameters.count, "logits are for a linear model's parameter vector")
        forward(parameters, layers: 1)
        return activations[0]
    }

    /// The class losses of the mean of linear models given by their `logits`
    /// (as `logits(_:)` returns): the same value as `losses` of the mean
    /// parameter vector in exact arithmetic, within float rounding here.
    public mutating func losses(meanOfLogits members: [[Float]]) -> [Double] {
        precondition(isLinear && !members.isEmpty, "the mean of at least one linear model")
        let n = activations[0].count
        precondition(members.allSatisfy { $0.count == n }, "logits must come from this evaluator's logits(_:)")
        let scale = 1 / Float(members.count)
        activations[0].withUnsafeMutableBufferPointer { z in
            members[0].withUnsafeBufferPointer { first in z.baseAddress!.update(from: first.baseAddress!, count: n) }
            for m in members.dropFirst() {
                m.withUnsafeBufferPointer { v in VectorMath.axpy(1, v, z) }
            }
            VectorMath.scale(z, by: scale)
        }
        softmaxLast()
        return classMeans()
    }

    /// The first `layers` layers of the network on every block.
    private mutating func forward(_ parameters: [Float], layers count: Int) {
        let layers = network.layers, blocks = self.blocks
        parameters.withUnsafeBufferPointer { p in
            for l in 0..<count {
                let layer = layers[l]
                let relu = l != layers.count - 1
                let previous = l == 0 ? input : activations[l - 1]
                previous.withUnsafeBufferPointer { x in
                    activations[l].withUnsafeMutableBufferPointer { out in
                        BlockedDense.layer(weights: p.baseAddress! + layer.weightOffset, bias: p.baseAddress! + layer.biasOffset,
                                           inputs: layer.inputs, outputs: layer.outputs, input: x.baseAddress!, output: out.baseAddress!,
                                           blocks: blocks, relu: relu)
                    }
                }
            }
        }
    }

    private mutating func softmaxLast() {
        let k = network.spec.classes, blocks = self.blocks
        activations[activations.count - 1].withUnsafeMutableBufferPointer { z in
            for b in 0..<blocks { BlockedDense.softmax(z.baseAddress! + b * k * BlockedDense.lanes, classes: k) }
        }
    }

    /// Per scored class, the mean negative log-likelihood of its rows from
    /// the last layer's probabilities (clipped to [1e-15, 1]), eight rows at a time.
    private func classMeans() -> [Double] {
        let lanes = BlockedDense.lanes
        var sums = [Double](repeating: 0, count: classes.count)
        activations[activations.count - 1].withUnsafeBufferPointer { prob in
            for b in 0..<blocks {
                let base = b * lanes
                var p = BlockedDense.V()
                for l in 0..<lanes { p[l] = prob[truthAt[base + l]] }
                p.replace(with: BlockedDense.V(repeating: 1e-15), where: p .< 1e-15)
                p.replace(with: BlockedDense.V(repeating: 1), where: p .> 1)
                let logs = BlockedDense.log(p)
                for l in 0..<lanes where truthSlot[base + l] >= 0 { sums[truthSlot[base + l]] -= Double(logs[l]) }
            }
        }
        return zip(sums, counts).map { $1 == 0 ? 0 : $0 / Double($1) }
    }
}
