import FLCore
import Foundation
import Testing

@Suite("models")
struct ModelTests {
    func toyData(rows: Int, features: Int, classes: Int, seed: UInt64) -> Dataset {
        var rng = SeededGenerator(seed: seed)
        let x = randomFloats(rows * features, &rng)
        let y = (0..<rows).map { _ in rng.nextInt(below: classes) }
        return Dataset(featureNames: (0..<features).map { "f\($0)" }, labelName: "label",
                       classNames: (0..<classes).map(String.init), features: x, labels: y)
    }

    @Test("analytic gradient matches finite differences", arguments: [ModelSpec.Kind.logreg, .mlp])
    func gradientMatchesFiniteDifferences(kind: ModelSpec.Kind) throws {
        let spec = ModelSpec(kind: kind, inputs: 5, classes: 3, hidden: [6, 4])
        let data = toyData(rows: 7, features: 5, classes: 3, seed: 1)
        var net = Network(spec: spec, seed: 3)
        // Move biases off zero so no ReLU sits exactly at its kink.
        for i in net.parameters.indices { net.parameters[i] += 0.01 * Float(i % 7) }
        var ws = Network.Workspace(network: net, batch: 7)
        func loss(_ n: Network) -> Double {
            var w = Network.Workspace(network: n, batch: 7)
            var g = [Float](repeating: 0, count: n.parameters.count)
            return data.features.withUnsafeBufferPointer { x in
                data.labels.withUnsafeBufferPointer { y in
                    g.withUnsafeMutableBufferPointer { Double(n.lossAndGradient(features: x.baseAddress!, labels: y.baseAddress!, rows: 7, l2: 0.1, grad: $0, ws: &w)) }
                }
            }
        }
        var grad = [Float](repeating: 0, count: net.parameters.count)
        _ = data.features.withUnsafeBufferPointer { x in
            data.labels.withUnsafeBufferPointer { y in
                grad.withUnsafeMutableBufferPointer { net.lossAndGradient(features: x.baseAddress!, labels: y.baseAddress!, rows: 7, l2: 0.1, grad: $0, ws: &ws) }
            }
        }
        var worst = 0.0
        for i in net.parameters.indices {
            let h: Float = 1e-2
            var plus = net, minus = net
            plus.parameters[i] += h
            minus.parameters[i] -= h
            let numeric = (loss(plus) - loss(minus)) / Double(2 * h)
            worst = max(worst, abs(numeric - Double(grad[i])))
        }
        #expect(worst < 2e-3, "largest gradient error \(worst)")
    }

    @Test func trainingIsDeterministicPerSeed() throws {
        let data = toyData(rows: 50, features: 4, classes: 3, seed: 2)
        let spec = ModelSpec(kind: .mlp, inputs: 4, classes: 3, hidden: [8])
        let config = TrainingConfig(epochs: 3, batchSize: 8, optimizer: .sgd(learningRate: 0.1, momentum: 0.9), seed: 5)
        var a = Network(spec: spec, seed: 5), b = Network(spec: spec, seed: 5), c = Network(spec: spec, seed: 6)
        Trainer.train(&a, on: data, config: config)
        Trainer.train(&b, on: data, config: config)
        Trainer.train(&c, on: data, config: TrainingConfig(epochs: 3, batchSize: 8, optimizer: .sgd(learningRate: 0.1, momentum: 0.9), seed: 6))
        #expect(a.parameters == b.parameters)
        #expect(a.parameters != c.parameters)
        #expect(a.parameterSet.sha256() == b.parameterSet.sha256())
    }

    @Test func trainingLowersTheLossWithBothOptimizers() throws {
        let d = try CSVLoader.load(path: bundledData("breast_cancer.csv"))
        let std = Standardizer(fitting: d).transform(d)
        for opt in [OptimizerKind.sgd(learningRate: 0.05, momentum: 0.9), .adam(learningRate: 0.01)] {
            var net = Network(spec: ModelSpec(kind: .logreg, inputs: 30, classes: 2), seed: 1)
            let s = Trainer.train(&net, on: std, config: TrainingConfig(epochs: 5, optimizer: opt, seed: 1))
            #expect(s.epochLosses.last! < s.epochLosses.first! * 0.7)
            #expect(s.samples == 5 * 569)
        }
    }

    @Test func parameterSetsUsePyTorchLinearLayout() throws {
        let net = Network(spec: ModelSpec(kind: .mlp, inputs: 64, classes: 10, hidden: [32]), seed: 0)
        let set = net.parameterSet
        #expect(set.names == ["layers.0.weight", "layers.0.bias", "layers.1.weight", "layers.1.bias"])
        #expect(set["layers.0.weight"]?.shape == [32, 64] && set["layers.1.weight"]?.shape == [10, 32])
        let back = try Network(spec: net.spec, parameters: set)
        #expect(back == net)
        #expect(throws: TensorError.self) { try Network(spec: ModelSpec(kind: .logreg, inputs: 64, classes: 10), parameters: set) }
    }

    // Centralised accuracy on the bundled data, one seed each (the five-seed
    // means of the acceptance are measured by benchmarks/accuracy.sh).
    @Test func breastCancerLogregReachesCentralisedAccuracy() throws {
        let d = try CSVLoader.load(path: bundledData("breast_cancer.csv"))
        let r = CentralizedTraining.run(data: d, kind: .logreg, config: .defaults(for: .logreg, seed: 1))
        #expect(r.metrics.accuracy >= 0.96)
        #expect(r.metrics.rocAUC! > 0.98)
    }

    @Test func digitsLogregReachesCentralisedAccuracy() throws {
        let d = try CSVLoader.load(path: bundledData("digits.csv"))
        let r = CentralizedTraining.run(data: d, kind: .logreg, config: .defaults(for: .logreg, seed: 1))
        #expect(r.metrics.accuracy >= 0.95)
    }

    @Test func digitsMLPReachesCentralisedAccuracy() throws {
        let d = try CSVLoader.load(path: bundledData("digits.csv"))
        var config = TrainingConfig.defaults(for: .mlp, seed: 1)
        config.epochs = 30
        let r = CentralizedTraining.run(data: d, kind: .mlp, hidden: [64], config: config)
        #expect(r.metrics.accuracy >= 0.96)
    }
}

@Suite("parameter hash")
struct ParameterHashTests {
    /// The test vector published in docs/parameter-hash.md.
    static func vectorSet() throws -> ParameterSet {
        var set = ParameterSet()
        try set.append("w", Tensor(shape: [2, 2], scalars: [1, -2, 0.5, 0]))
        try set.append("b", Tensor(shape: [2], scalars: [0.25, -0.0]))
        return set
    }

    @Test func canonicalBytesAndHashMatchTheSpecVector() throws {
        let set = try Self.vectorSet()
        #expect(hexString(set.canonicalBytes()) == "0200000000000000" + "0100000000000000" + "62" + "0100000000000000" + "0200000000000000"
            + "0000803e" + "00000080"
            + "0100000000000000" + "77" + "0200000000000000" + "0200000000000000" + "0200000000000000"
            + "0000803f" + "000000c0" + "0000003f" + "00000000")
        #expect(set.sha256Hex() == "2d9657ae3c4831144f1391535edadeffcaada25f8b302aa05ca757f94d511bea")
    }

    @Test func hashIgnoresInsertionOrderButSeesEveryBit() throws {
        let set = try Self.vectorSet()
        var reordered = ParameterSet()
        try reordered.append("b", set["b"]!)
        try reordered.append("w", set["w"]!)
        #expect(reordered.sha256() == set.sha256())
        var flipped = set
        flipped = try flipped.withFlattened(set.flattened().enumerated().map { $0.offset == 5 ? 0.0 : $0.element })  // -0.0 → +0.0
        #expect(flipped.sha256() != set.sha256())
        var renamed = ParameterSet()
        try renamed.append("w", set["w"]!)
        try renamed.append("c", set["b"]!)
        #expect(renamed.sha256() != set.sha256())
        var reshaped = ParameterSet()
        try reshaped.append("w", Tensor(shape: [4], scalars: set["w"]!.scalars))
        try reshaped.append("b", set["b"]!)
        #expect(reshaped.sha256() != set.sha256())
    }
}

@Suite struct ClassLossEvaluatorTests {
    @Test(arguments: [ModelSpec.Kind.logreg, .mlp])
    func sameLossesAsTheNetwork(kind: ModelSpec.Kind) {
        var rng = SeededGenerator(seed: 7)
        let rows = 37, inputs = 13, classes = 5
        let features = (0..<(rows * inputs)).map { _ in Float(rng.nextUnitDouble() * 4 - 2) }
        let labels = (0..<rows).map { $0 % classes }
        let data = Dataset(featureNames: (0..<inputs).map { "f\($0)" }, labelName: "label", classNames: (0..<classes).map(String.init), features: features, labels: labels)
        let spec = ModelSpec(kind: kind, inputs: inputs, classes: classes, hidden: kind == .mlp ? [9] : [])
        var evaluator = ClassLossEvaluator(network: Network(spec: spec, seed: 1), data: data, classes: [0, 2, 3])
        for seed in 1...4 {
            let net = Network(spec: spec, seed: UInt64(seed))
            let fast = evaluator.losses(net.parameters), reference = net.classLosses(on: data, classes: [0, 2, 3])
            for (a, b) in zip(fast, reference) { #expect(abs(a - b) <= 1e-5 * max(1, abs(b)), "\(fast) vs \(reference)") }
            #expect(fast != [0, 0, 0])
            let (_, probabilities) = evaluator.lossesAndProbabilities(net.parameters)
            let expected = net.predictProbabilities(data.features, rows: data.rows)
            #expect(probabilities.count == expected.count)
            #expect(zip(probabilities, expected).allSatisfy { abs($0 - $1) <= 1e-5 })
        }
    }

    /// The vectorised e^x the evaluator's softmax uses, against the C library's, across the range a softmax feeds it.
    @Test func blockedExpIsWithinTwoUlp() {
        var x: Float = -87
        while x <= 88 {
            let v = BlockedDense.exp(SIMD8<Float>(repeating: x))
            let reference = Float(Foundation.exp(Double(x)))
            #expect(abs(v[0] - reference) <= 2 * reference.ulp, "e^\(x): \(v[0]) vs \(reference)")
            x += 0.37
        }
        #expect(BlockedDense.exp(SIMD8<Float>(repeating: -200))[0] > 0)
        #expect(BlockedDense.exp(SIMD8<Float>(repeating: 0))[0] == 1)
    }

    /// The vectorised ln the evaluator's losses use, against the C library's, from the 1e-15 clip to 1 and beyond.
    @Test func blockedLogIsWithinTwoUlp() {
        var x: Float = 1e-15
        while x <= 4 {
            let v = BlockedDense.log(SIMD8<Float>(repeating: x))[0]
            let reference = Float(Foundation.log(Double(x)))
            #expect(abs(v - reference) <= 2 * max(reference.magnitude.ulp, Float.ulpOfOne.ulp), "ln \(x): \(v) vs \(reference)")
            x *= 1.0173
        }
        #expect(BlockedDense.log(SIMD8<Float>(repeating: 1))[0] == 0)
        #expect(BlockedDense.log(SIMD8<Float>(repeating: .nan))[0].isNaN)
    }
}

extension ClassLossEvaluatorTests {
    /// A linear model: the losses of the mean of several parameter vectors, from their logits, match those of the mean vector.
    @Test func theMeanOfLinearModelsFromTheirLogits() {
        var rng = SeededGenerator(seed: 3)
        let rows = 41, inputs = 11, classes = 4
        let features = (0..<(rows * inputs)).map { _ in Float(rng.nextUnitDouble() * 4 - 2) }
        let data = Dataset(featureNames: (0..<inputs).map { "f\($0)" }, labelName: "label", classNames: (0..<classes).map(String.init),
                           features: features, labels: (0..<rows).map { $0 % classes })
        let spec = ModelSpec(kind: .logreg, inputs: inputs, classes: classes, hidden: [])
        var evaluator = ClassLossEvaluator(network: Network(spec: spec, seed: 1), data: data, classes: [0, 1, 3])
        #expect(evaluator.isLinear)
        let members = (1...3).map { Network(spec: spec, seed: UInt64($0)).parameters }
        let mean = (0..<members[0].count).map { j in members.map { $0[j] }.reduce(0, +) / 3 }
        let direct = evaluator.losses(mean)
        let viaLogits = evaluator.losses(meanOfLogits: members.map { evaluator.logits($0) })
        for (a, b) in zip(direct, viaLogits) { #expect(abs(a - b) <= 1e-5 * max(1, abs(a)), "\(direct) vs \(viaLogits)") }
        let mlp = ClassLossEvaluator(network: Network(spec: ModelSpec(kind: .mlp, inputs: inputs, classes: classes, hidden: [5]), seed: 1), data: data, classes: [0])
        #expect(!mlp.isLinear)
    }
}
