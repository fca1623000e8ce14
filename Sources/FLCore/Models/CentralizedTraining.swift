/// Centralised training on one data set: the baseline a federation is judged against.
public enum CentralizedTraining {
    /// What a centralised run produced.
    public struct Result: Sendable {
        public let spec: ModelSpec
        public let config: TrainingConfig
        public let trainRows: Int
        public let testRows: Int
        public let metrics: ClassificationMetrics
        public let network: Network
        public let standardizer: Standardizer
        public let summary: TrainingSummary
        public let seconds: Double
    }

    /// Splits `data` 80/20 stratified by class (seeded), fits standardisation
    /// on the training rows only, trains, and evaluates on the test rows.
    public static func run(
        data: Dataset, kind: ModelSpec.Kind, hidden: [Int] = [64], config: TrainingConfig,
        testFraction: Double = 0.2, progress: ((Int, Float) -> Void)? = nil
    ) -> Result {
        let (trainIdx, testIdx) = Splitting.stratified(data, fraction: testFraction, seed: config.seed)
        return run(train: data.subset(trainIdx), test: data.subset(testIdx), kind: kind, hidden: hidden, config: config, progress: progress)
    }

    /// Trains on `train` and evaluates on `test` (standardisation fitted on `train`).
    public static func run(
        train: Dataset, test: Dataset, kind: ModelSpec.Kind, hidden: [Int] = [64], config: TrainingConfig,
        progress: ((Int, Float) -> Void)? = nil
    ) -> Result {
        let clock = ContinuousClock()
        let start = clock.now
        let scaler = Standardizer(fitting: train)
        let trainStd = scaler.transform(train)
        let testStd = scaler.transform(test)
        let spec = ModelSpec(kind: kind, inputs: train.featureCount, classes: train.classCount, hidden: hidden)
        var net = Network(spec: spec, seed: config.seed)
        let summary = Trainer.train(&net, on: trainStd, config: config, progress: progress)
        let metrics = net.evaluate(on: testStd)
        let elapsed = start.duration(to: clock.now)
        let seconds = Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) * 1e-18
        return Result(spec: spec, config: config, trainRows: train.rows, testRows: test.rows, metrics: metrics,
                      network: net, standardizer: scaler, summary: summary, seconds: seconds)
    }
}
