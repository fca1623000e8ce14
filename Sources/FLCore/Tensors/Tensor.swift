/// A dense Float32 tensor in row-major order.
public struct Tensor: Sendable, Equatable {
    /// Extent of each dimension; an empty shape is a scalar.
    public let shape: [Int]
    /// The elements, row-major; `scalars.count` equals the product of `shape`.
    public var scalars: [Float]

    /// A tensor of the given shape; fails when the element count does not match.
    public init(shape: [Int], scalars: [Float]) throws(TensorError) {
        guard shape.allSatisfy({ $0 >= 0 }) else { throw .negativeDimension(shape) }
        guard let n = Tensor.elementCount(shape), n == scalars.count else {
            throw .shapeMismatch(shape: shape, elements: scalars.count)
        }
        self.shape = shape
        self.scalars = scalars
    }

    /// A tensor of zeros.
    public init(zeros shape: [Int]) {
        precondition(shape.allSatisfy { $0 >= 0 }, "negative dimension")
        self.shape = shape
        self.scalars = [Float](repeating: 0, count: Tensor.elementCount(shape) ?? 0)
    }

    /// Number of elements a shape holds, or nil when it overflows `Int`.
    public static func elementCount(_ shape: [Int]) -> Int? {
        var n = 1
        for d in shape {
            let (p, overflow) = n.multipliedReportingOverflow(by: d)
            if overflow { return nil }
            n = p
        }
        return n
    }
}

/// Why a tensor or parameter set could not be built.
public enum TensorError: Error, Equatable, CustomStringConvertible {
    case negativeDimension([Int])
    case shapeMismatch(shape: [Int], elements: Int)
    case duplicateName(String)
    case layoutMismatch(String)

    public var description: String {
        switch self {
        case .negativeDimension(let s): "shape \(s) has a negative dimension"
        case .shapeMismatch(let s, let n): "shape \(s) does not hold \(n) elements"
        case .duplicateName(let name): "tensor name '\(name)' appears twice"
        case .layoutMismatch(let why): "parameter layouts differ: \(why)"
        }
    }
}
