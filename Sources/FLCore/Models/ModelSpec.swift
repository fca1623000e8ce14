/// The architecture of a built-in classifier.
public struct ModelSpec: Sendable, Equatable, Codable, CustomStringConvertible {
    /// Which family of model.
    public enum Kind: String, Sendable, Codable, CaseIterable {
        /// Multinomial logistic (softmax) regression: one dense layer.
        case logreg
        /// Multi-layer perceptron with ReLU hidden layers.
        case mlp
    }

    public let kind: Kind
    /// Number of input features.
    public let inputs: Int
    /// Number of classes (outputs).
    public let classes: Int
    /// Hidden layer widths (empty for logreg).
    public let hidden: [Int]

    /// A model spec; logreg ignores `hidden`.
    public init(kind: Kind, inputs: Int, classes: Int, hidden: [Int] = []) {
        precondition(inputs > 0 && classes > 1, "a classifier needs inputs and at least two classes")
        self.kind = kind
        self.inputs = inputs
        self.classes = classes
        self.hidden = kind == .logreg ? [] : hidden
        precondition(self.hidden.allSatisfy { $0 > 0 }, "hidden widths must be positive")
    }

    /// Layer widths from input to output.
    public var widths: [Int] { [inputs] + hidden + [classes] }

    /// Total number of parameters.
    public var parameterCount: Int {
        let w = widths
        return (0..<(w.count - 1)).reduce(0) { $0 + w[$1] * w[$1 + 1] + w[$1 + 1] }
    }

    public var description: String {
        kind == .logreg ? "logreg(\(inputs)→\(classes))" : "mlp(\(widths.map(String.init).joined(separator: "→")))"
    }
}
