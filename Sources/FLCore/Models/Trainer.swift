/// Hyper-parameters of local training.
public struct TrainingConfig: Sendable, Equatable, Codable {
    public var epochs: Int
    public var batchSize: Int
    public var optimizer: OptimizerKind
    /// L2 penalty on weights (not biases): adds (l2/2)·‖W‖² to the loss.
    public var l2: Float
    public var seed: UInt64

    public init(epochs: Int, batchSize: Int = 32, optimizer: OptimizerKind, l2: Float = 1e-4, seed: UInt64 = 0) {
        precondition(epochs >= 0 && batchSize > 0, "epochs must be ≥ 0 and batch size > 0")
        self.epochs = epochs
        self.batchSize = batchSize
        self.optimizer = optimizer
        self.l2 = l2
        self.seed = seed
    }

    /// Settings that reach centralised accuracy on the bundled data sets.
    public static func defaults(for kind: ModelSpec.Kind, seed: UInt64 = 0) -> TrainingConfig {
        switch kind {
        case .logreg: TrainingConfig(epochs: 60, batchSize: 32, optimizer: .sgd(learningRate: 0.03, momentum: 0.9), l2: 3e-3, seed: seed)
        case .mlp: TrainingConfig(epochs: 60, batchSize: 32, optimizer: .adam(learningRate: 0.003), l2: 1e-4, seed: seed)
        }
    }
}

/// What one call to `Trainer.train` did.
public struct TrainingSummary: Sendable, Equatable {
    /// Mean training loss of each epoch.
    public var epochLosses: [Float]
    /// Samples processed (epochs × rows).
    public var samples: Int
    /// Optimizer steps taken.
    public var steps: Int
}

/// Minibatch training of a `Network` on a labelled feature matrix.
public enum Trainer {
    /// Trains `network` in place for `config.epochs` epochs; the sample order
    /// of each epoch is drawn from `config.seed`, so equal inputs give equal results.
    @discardableResult
    public static func train(
        _ network: inout Network, on data: Dataset, config: TrainingConfig,
        progress: ((_ epoch: Int, _ loss: Float) -> Void)? = nil
    ) -> TrainingSummary {
        var optimizer = Optimizer(config.optimizer, count: network.parameters.count)
        return train(&network, on: data, config: config, optimizer: &optimizer, progress: progress)
    }

    /// As above, continuing with existing optimizer state.
    @discardableResult
    public static func train(
        _ network: inout Network, on data: Dataset, config: TrainingConfig, optimizer: inout Optimizer,
        progress: ((_ epoch: Int, _ loss: Float) -> Void)? = nil
    ) -> TrainingSummary {
        precondition(data.featureCount == network.spec.inputs, "data has \(data.featureCount) features, model expects \(network.spec.inputs)")
        let rows = data.rows
        var summary = TrainingSummary(epochLosses: [], samples: 0, steps: 0)
        guard rows > 0 else { return summary }
        let f = data.featureCount
        let batch = min(config.batchSize, rows)
        var rng = SeededGenerator(seed: config.seed, stream: "minibatch-order")
        var order = Array(0..<rows)
        var ws = Network.Workspace(network: network, batch: batch)
        var bx = [Float](repeating: 0, count: batch * f)
        var by = [Int](repeating: 0, count: batch)
        var grad = [Float](repeating: 0, count: network.parameters.count)

        for epoch in 0..<config.epochs {
            rng.shuffle(&order)
            var epochLoss: Double = 0
            var start = 0
            while start < rows {
                let b = min(batch, rows - start)
                data.features.withUnsafeBufferPointer { src in
                    bx.withUnsafeMutableBufferPointer { dst in
                        for r in 0..<b {
                            let row = order[start + r]
                            (dst.baseAddress! + r * f).update(from: src.baseAddress! + row * f, count: f)
                            by[r] = data.labels[row]
                        }
                    }
                }
                let loss = bx.withUnsafeBufferPointer { x in
                    by.withUnsafeBufferPointer { y in
                        grad.withUnsafeMutableBufferPointer { g in
                            network.lossAndGradient(features: x.baseAddress!, labels: y.baseAddress!, rows: b, l2: config.l2, grad: g, ws: &ws)
                        }
                    }
                }
                grad.withUnsafeBufferPointer { g in
                    network.parameters.withUnsafeMutableBufferPointer { p in optimizer.apply(g, to: p) }
                }
                epochLoss += Double(loss) * Double(b)
                summary.steps += 1
                start += b
            }
            let mean = Float(epochLoss / Double(rows))
            summary.epochLosses.append(mean)
            summary.samples += rows
            progress?(epoch + 1, mean)
        }
        return summary
    }
}
