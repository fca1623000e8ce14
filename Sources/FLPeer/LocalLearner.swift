import FLCore
import Foundation

/// Which of a peer's local rows an evaluation uses.
public enum LocalRows: Sendable, Equatable {
    /// The validation split: the screen and the round's metrics.
    case validation
    /// Every row the peer holds, true labels: what it scores others' updates on.
    case assessment
}

/// One round of local training: the new parameters and what to report of it.
public struct LearnerUpdate: Sendable, Equatable {
    public var parameters: [Float]
    /// Recorded in the update entry (`train_loss`, …).
    public var metrics: [String: Double]
    /// The rows it trained on, recorded as the update's sample count (nil: all training rows).
    public var samples: Int?

    public init(parameters: [Float], metrics: [String: Double], samples: Int? = nil) {
        self.parameters = parameters
        self.metrics = metrics
        self.samples = samples
    }
}

/// A candidate model's fit on local rows.
public struct LearnerEvaluation: Sendable, Equatable {
    /// Mean negative log-likelihood per class (0 for a class without rows), indexed by class.
    public var classLosses: [Double]
    /// Rows per class.
    public var classCounts: [Int]
    /// confusion[t][p]: rows of true class t predicted as p.
    public var confusion: [[Int]]
    public var logLoss: Double
    public var accuracy: Double

    public init(classLosses: [Double], classCounts: [Int], confusion: [[Int]], logLoss: Double, accuracy: Double) {
        self.classLosses = classLosses
        self.classCounts = classCounts
        self.confusion = confusion
        self.logLoss = logLoss
        self.accuracy = accuracy
    }
}

/// Per-class losses of many candidate models on one fixed set of rows, as
/// the credit scorer asks for every coalition of a round: synchronous and
/// allocation-free, made and used by one task. A reference
/// type, so that calls through the protocol reuse its buffers (a mutating
/// call on a value in an existential box would copy them every time).
public protocol CandidateScorer: AnyObject {
    /// The mean loss of each scored class, in the order the scorer was made with.
    func losses(_ parameters: [Float]) -> [Double]
    /// When the model's outputs are linear in its parameters (up to the
    /// softmax): a member's outputs on every row, so that the losses of a
    /// coalition's mean come from the mean of its members' outputs. Nil otherwise.
    func outputs(_ parameters: [Float]) -> [Float]?
    /// The losses of the model whose outputs are the mean of `outputs`.
    func losses(meanOfOutputs outputs: [[Float]]) -> [Double]
}

/// What the round engine asks of whatever trains the model. The engine
/// handles parameter vectors (flat `[Float]`, what rounds aggregate) and
/// update bytes; nothing else in it knows what a model is.
public protocol LocalLearner: Sendable {
    /// The model every member starts from (the same for one plan seed).
    func initialParameters() -> [Float]
    /// Trains from `parameters` for one round.
    func train(from parameters: [Float], round: Int, seed: UInt64) async throws -> LearnerUpdate
    /// Evaluates candidate models on local rows.
    func evaluate(_ candidates: [[Float]], on rows: LocalRows) async throws -> [LearnerEvaluation]
    /// A scorer of many candidates' per-class losses on `rows`, for `classes`
    /// (class indices), or nil when candidates are scored in batches through
    /// `evaluate` (an external learner).
    func scorer(on rows: LocalRows, classes: [Int]) -> (any CandidateScorer)?
    /// Update bytes (docs/wire-protocol.md: safetensors) for parameters.
    func encode(_ parameters: [Float], metadata: [String: String]?) -> [UInt8]
    /// The parameters in update bytes, if they are a finite model of this plan's shape.
    func decode(_ bytes: [UInt8]) -> [Float]?
    /// The canonical hash of parameters (hex SHA-256 of the parameter set, docs/ledger-spec.md).
    func hash(_ parameters: [Float]) -> String
}

/// The built-in learner: FLCore's logistic regression and MLP, trained and
/// evaluated in this process, in the calling task (the engine's, never an
/// event loop). Rounds of these models take milliseconds, about what a hop
/// to a thread pool and back costs on a busy machine, so they run inline:
/// one thread of Swift's cooperative pool at a time.
public struct SwiftModelLearner: LocalLearner {
    public let spec: ModelSpec
    let planSeed: UInt64
    let training: @Sendable (UInt64) -> TrainingConfig
    let train: Dataset
    let validation: Dataset
    let assessment: Dataset
    let layout: Network

    public init(spec: ModelSpec, planSeed: UInt64, training: @escaping @Sendable (UInt64) -> TrainingConfig,
                train: Dataset, validation: Dataset, assessment: Dataset) {
        self.spec = spec
        self.planSeed = planSeed
        self.training = training
        self.train = train
        self.validation = validation
        self.assessment = assessment
        self.layout = Network(spec: spec, seed: planSeed)
    }

    public func initialParameters() -> [Float] { layout.parameters }

    public func train(from parameters: [Float], round: Int, seed: UInt64) async throws -> LearnerUpdate {
        var net = layout
        net.parameters = parameters
        let summary = Trainer.train(&net, on: train, config: training(seed))
        return LearnerUpdate(parameters: net.parameters, metrics: ["train_loss": Double(summary.epochLosses.last ?? 0)])
    }

    public func evaluate(_ candidates: [[Float]], on rows: LocalRows) async throws -> [LearnerEvaluation] {
        let data = rows == .validation ? validation : assessment
        let k = spec.classes
        var counts = [Int](repeating: 0, count: k)
        for y in data.labels where y >= 0 && y < k { counts[y] += 1 }
        var evaluator = ClassLossEvaluator(network: layout, data: data, classes: Array(0..<k))
        return candidates.map { parameters in
            let (losses, probabilities) = evaluator.lossesAndProbabilities(parameters)
            let m = ClassificationMetrics(labels: data.labels, probabilities: probabilities, classes: k)
            return LearnerEvaluation(classLosses: losses, classCounts: counts, confusion: m.confusion, logLoss: m.logLoss, accuracy: m.accuracy)
        }
    }

    public func scorer(on rows: LocalRows, classes: [Int]) -> (any CandidateScorer)? {
        ClassLossScorer(ClassLossEvaluator(network: layout, data: rows == .validation ? validation : assessment, classes: classes))
    }

    public func encode(_ parameters: [Float], metadata: [String: String]?) -> [UInt8] {
        var net = layout
        net.parameters = parameters
        return Safetensors.encode(net.parameterSet, metadata: metadata)
    }

    public func decode(_ bytes: [UInt8]) -> [Float]? {
        guard let (set, _) = try? Safetensors.decode(bytes), let net = try? Network(spec: spec, parameters: set),
              net.parameters.allSatisfy(\.isFinite) else { return nil }
        return net.parameters
    }

    public func hash(_ parameters: [Float]) -> String {
        var net = layout
        net.parameters = parameters
        return net.parameterSet.sha256Hex()
    }
}

/// `ClassLossEvaluator` as a `CandidateScorer`.
public final class ClassLossScorer: CandidateScorer {
    private var evaluator: ClassLossEvaluator

    public init(_ evaluator: ClassLossEvaluator) { self.evaluator = evaluator }

    public func losses(_ parameters: [Float]) -> [Double] { evaluator.losses(parameters) }

    public func outputs(_ parameters: [Float]) -> [Float]? { evaluator.isLinear ? evaluator.logits(parameters) : nil }

    public func losses(meanOfOutputs outputs: [[Float]]) -> [Double] { evaluator.losses(meanOfLogits: outputs) }
}
