/// A feed-forward classifier (logistic regression or ReLU MLP) whose
/// parameters live in one flat Float32 vector, so training, hashing and
/// aggregation all work on the same memory.
///
/// Layer `l` has weight `layers.l.weight` of shape [out, in] (PyTorch's
/// `nn.Linear` layout) and bias `layers.l.bias` of shape [out].
public struct Network: Sendable, Equatable {
    /// Offsets of one dense layer inside `parameters`.
    public struct Layer: Sendable, Equatable {
        public let inputs: Int
        public let outputs: Int
        public let weightOffset: Int
        public let biasOffset: Int
    }

    public let spec: ModelSpec
    public let layers: [Layer]
    /// All parameters, layer by layer: weights (row-major [out, in]) then biases.
    public var parameters: [Float]

    /// A network with Glorot-uniform weights (He-uniform before ReLU) and zero biases.
    public init(spec: ModelSpec, seed: UInt64) {
        self.spec = spec
        self.layers = Network.makeLayers(spec)
        self.parameters = [Float](repeating: 0, count: spec.parameterCount)
        var rng = SeededGenerator(seed: seed, stream: "init")
        for (l, layer) in layers.enumerated() {
            let fanIn = Double(layer.inputs), fanOut = Double(layer.outputs)
            let limit = l < layers.count - 1 ? (6.0 / fanIn).squareRoot() : (6.0 / (fanIn + fanOut)).squareRoot()
            for i in 0..<(layer.inputs * layer.outputs) {
                parameters[layer.weightOffset + i] = Float((rng.nextUnitDouble() * 2 - 1) * limit)
            }
        }
    }

    /// A network holding the given parameter set, which must match the spec's layout.
    public init(spec: ModelSpec, parameters set: ParameterSet) throws(TensorError) {
        self.spec = spec
        self.layers = Network.makeLayers(spec)
        // Tensors are matched by name, so any order (safetensors files sort them) loads.
        let template = Network.emptyParameterSet(spec)
        var flat: [Float] = []
        flat.reserveCapacity(template.scalarCount)
        for e in template.entries {
            guard set.entries.count == template.entries.count, let t = set[e.name], t.shape == e.tensor.shape else {
                try template.checkSameLayout(as: set)
                preconditionFailure("layouts differ but checkSameLayout accepted them")
            }
            flat += t.scalars
        }
        self.parameters = flat
    }

    private static func makeLayers(_ spec: ModelSpec) -> [Layer] {
        var out: [Layer] = []
        var offset = 0
        let w = spec.widths
        for l in 0..<(w.count - 1) {
            let layer = Layer(inputs: w[l], outputs: w[l + 1], weightOffset: offset, biasOffset: offset + w[l] * w[l + 1])
            out.append(layer)
            offset = layer.biasOffset + w[l + 1]
        }
        return out
    }

    private static func emptyParameterSet(_ spec: ModelSpec) -> ParameterSet {
        var set = ParameterSet()
        for (l, layer) in makeLayers(spec).enumerated() {
            try! set.append("layers.\(l).weight", Tensor(zeros: [layer.outputs, layer.inputs]))
            try! set.append("layers.\(l).bias", Tensor(zeros: [layer.outputs]))
        }
        return set
    }

    /// The parameters as a named parameter set.
    public var parameterSet: ParameterSet {
        try! Network.emptyParameterSet(spec).withFlattened(parameters)
    }

    /// Class probabilities for `rows` samples of `spec.inputs` features each (row-major).
    public func predictProbabilities(_ features: [Float], rows: Int) -> [Float] {
        precondition(features.count == rows * spec.inputs, "feature matrix has the wrong size")
        var ws = Workspace(network: self, batch: max(rows, 1))
        var out = [Float](repeating: 0, count: rows * spec.classes)
        features.withUnsafeBufferPointer { x in
            parameters.withUnsafeBufferPointer { p in
                forward(p.baseAddress!, x.baseAddress!, rows: rows, ws: &ws)
            }
        }
        ws.activations[layers.count].withUnsafeBufferPointer { a in
            for i in 0..<(rows * spec.classes) { out[i] = a[i] }
        }
        return out
    }

    /// Most probable class per row.
    public func predict(_ features: [Float], rows: Int) -> [Int] {
        let p = predictProbabilities(features, rows: rows)
        let c = spec.classes
        return (0..<rows).map { r in
            var best = 0
            for k in 1..<c where p[r * c + k] > p[r * c + best] { best = k }
            return best
        }
    }

    /// Scratch buffers for one batch size, reused across steps.
    public struct Workspace {
        /// activations[0] is the input batch, activations[L] the softmax output.
        var activations: [[Float]]
        var deltas: [[Float]]
        let batch: Int

        public init(network: Network, batch: Int) {
            self.batch = batch
            let w = network.spec.widths
            activations = w.map { [Float](repeating: 0, count: $0 * batch) }
            deltas = w.map { [Float](repeating: 0, count: $0 * batch) }
        }
    }

    /// Forward pass; reads the input from `x`, leaves softmax probabilities in the last activation.
    func forward(_ p: UnsafePointer<Float>, _ x: UnsafePointer<Float>, rows: Int, ws: inout Workspace) {
        precondition(rows <= ws.batch, "batch larger than workspace")
        ws.activations[0].withUnsafeMutableBufferPointer { a0 in
            a0.baseAddress!.update(from: x, count: rows * spec.inputs)
        }
        for (l, layer) in layers.enumerated() {
            let last = l == layers.count - 1
            let input = ws.activations[l]
            ws.activations[l + 1].withUnsafeMutableBufferPointer { out in
                input.withUnsafeBufferPointer { inp in
                    let ni = layer.inputs, no = layer.outputs
                    for r in 0..<rows {
                        let row = UnsafeBufferPointer(start: inp.baseAddress! + r * ni, count: ni)
                        for o in 0..<no {
                            let w = UnsafeBufferPointer(start: p + layer.weightOffset + o * ni, count: ni)
                            var z = VectorMath.dot(row, w) + p[layer.biasOffset + o]
                            if !last && z < 0 { z = 0 }
                            out[r * no + o] = z
                        }
                        if last { Network.softmaxInPlace(out.baseAddress! + r * no, count: no) }
                    }
                }
            }
        }
    }

    @inline(__always)
    static func softmaxInPlace(_ z: UnsafeMutablePointer<Float>, count: Int) {
        var m = z[0]
        for k in 1..<count where z[k] > m { m = z[k] }
        var s: Float = 0
        for k in 0..<count { let e = _expf(z[k] - m); z[k] = e; s += e }
        let inv = 1 / s
        for k in 0..<count { z[k] *= inv }
    }

    /// Mean softmax cross-entropy over the batch plus (l2/2)·‖weights‖²;
    /// writes the gradient of that loss into `grad` (overwriting it).
    public func lossAndGradient(
        features x: UnsafePointer<Float>, labels: UnsafePointer<Int>, rows: Int, l2: Float,
        grad: UnsafeMutableBufferPointer<Float>, ws: inout Workspace
    ) -> Float {
        precondition(grad.count == parameters.count, "gradient buffer has the wrong size")
        let g = grad.baseAddress!
        g.update(repeating: 0, count: grad.count)
        let L = layers.count
        return parameters.withUnsafeBufferPointer { pbuf -> Float in
            let p = pbuf.baseAddress!
            forward(p, x, rows: rows, ws: &ws)
            let c = spec.classes
            let invB = 1 / Float(rows)
            var loss: Float = 0
            // δ_L = (softmax − onehot) / B
            ws.activations[L].withUnsafeBufferPointer { probs in
                ws.deltas[L].withUnsafeMutableBufferPointer { d in
                    for r in 0..<rows {
                        let y = labels[r]
                        loss -= _logf(max(probs[r * c + y], 1e-12))
                        for k in 0..<c { d[r * c + k] = probs[r * c + k] * invB }
                        d[r * c + y] -= invB
                    }
                }
            }
            loss *= invB
            for l in stride(from: L - 1, through: 0, by: -1) {
                let layer = layers[l]
                let ni = layer.inputs, no = layer.outputs
                let delta = ws.deltas[l + 1]
                let act = ws.activations[l]
                delta.withUnsafeBufferPointer { d in
                    act.withUnsafeBufferPointer { a in
                        for r in 0..<rows {
                            let arow = UnsafeBufferPointer(start: a.baseAddress! + r * ni, count: ni)
                            for o in 0..<no {
                                let dv = d[r * no + o]
                                if dv == 0 { continue }
                                VectorMath.axpy(dv, arow, UnsafeMutableBufferPointer(start: g + layer.weightOffset + o * ni, count: ni))
                                g[layer.biasOffset + o] += dv
                            }
                        }
                    }
                }
                if l > 0 {
                    ws.deltas[l].withUnsafeMutableBufferPointer { dprev in
                        dprev.update(repeating: 0)
                        delta.withUnsafeBufferPointer { d in
                            act.withUnsafeBufferPointer { a in
                                for r in 0..<rows {
                                    let out = UnsafeMutableBufferPointer(start: dprev.baseAddress! + r * ni, count: ni)
                                    for o in 0..<no {
                                        let dv = d[r * no + o]
                                        if dv == 0 { continue }
                                        VectorMath.axpy(dv, UnsafeBufferPointer(start: p + layer.weightOffset + o * ni, count: ni), out)
                                    }
                                    // ReLU derivative: zero where the activation was clipped.
                                    for i in 0..<ni where a[r * ni + i] <= 0 { out[i] = 0 }
                                }
                            }
                        }
                    }
                }
                if l2 > 0 {
                    let wcount = ni * no
                    let w = UnsafeBufferPointer(start: p + layer.weightOffset, count: wcount)
                    loss += 0.5 * l2 * VectorMath.squaredNorm(w)
                    VectorMath.axpy(l2, w, UnsafeMutableBufferPointer(start: g + layer.weightOffset, count: wcount))
                }
            }
            return loss
        }
    }
}
